"""Integrators by name.  Adding one: a file with ``step(grad, c, q, p, g, tmp, z, s)`` (numba ``@inner``, one step in
place; c: state.Consts) and ``constants(d, delta, A, G, beta, Z) -> (E, L)`` (Python), plus one entry in
``INTEGRATORS`` below.  It then runs in :func:`bayescg.simulate.simulate` and ``run_trajectories`` and is
selectable as ``[simulation] integrator`` in model files.  ``lanes=True`` additionally claims that the
step is the lane loop's scheme (half-drift, friction kick, white kick L z when ``stochastic``, half-drift;
:func:`bayescg.kernels.loops.lane_block`), which then runs it for d = 1, 2 on the SIMD gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from numba import njit

from . import damped, damped_white, hamiltonian, langevin


@dataclass(frozen=True)
class Integrator:
    name: str
    equation: str
    step: object               # numba step(grad, c, q, p, g, tmp, z, s)
    constants: Callable        # (d, delta, A, G, beta, Z) -> (E, L) (d, d)
    stochastic: bool = False   # draws normals from the walker's stream (so no trap detection)
    reuses_grad: bool = False  # g carries grad U(q) between steps (computed once before the first)
    lanes: bool = False        # the lane loop implements it (d = 1, 2)
    kick_noise: bool = False   # takes the white-kick covariance Z (``kick_noise``)


INTEGRATORS = {i.name: i for i in (
    Integrator("damped", "(3.2)", damped.step, damped.constants, lanes=True),
    Integrator("langevin", "(4.2) BAOAB", langevin.step, langevin.constants, stochastic=True, reuses_grad=True),
    Integrator("hamiltonian", "(4.1)", hamiltonian.step, hamiltonian.constants),
    Integrator("damped_white", "(3.2) + white kick N(0, delta Z)", damped_white.step, damped_white.constants,
               stochastic=True, lanes=True, kick_noise=True),
)}
#: code of an integrator in the compiled loops: its position in INTEGRATORS
CODES = {name: k for k, name in enumerate(INTEGRATORS)}


def _link(code, this, rest):
    @njit(inline="always")
    def dispatch(kind, grad, c, q, p, g, tmp, z, s):
        if kind == code:
            this(grad, c, q, p, g, tmp, z, s)
        else:
            rest(kind, grad, c, q, p, g, tmp, z, s)
    return dispatch


@njit(inline="always")
def _none(kind, grad, c, q, p, g, tmp, z, s):
    return


def _chain():
    f = _none
    for name in reversed(list(INTEGRATORS)):
        f = _link(CODES[name], INTEGRATORS[name].step, f)
    return f


#: step(kind, grad, c, q, p, g, tmp, z, s): the step of integrator code ``kind`` (built from the registry)
step = _chain()
