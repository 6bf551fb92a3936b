"""Checks of a model's potential before a run: V and its gradient must be finite where walkers start and
over the declared domain.

A potential that is not finite there (``sqrt(q)`` with q < 0, ``log(q)`` at q <= 0, ``1/q`` on a grid
through 0) would otherwise make the integrator report a blow-up at step 0 and blame the step size.
"""
from __future__ import annotations

import numpy as np

from .errors import InputError

#: Grid points over the declared domain: per dimension, chosen so the grid has at most ~GRID_POINTS points.
GRID_POINTS = 4096


def _fmt(q) -> str:
    q = np.asarray(q, dtype=float).ravel()
    return f"{q[0]:.6g}" if q.size == 1 else "(" + ", ".join(f"{x:.6g}" for x in q) + ")"


def first_nonfinite(potential, points):
    """The first of ``points`` (n, d) where V (when the potential has a value kernel) or a component of its
    gradient is not finite, as (index, V, gradient), else None."""
    g = np.empty(potential.dim)
    for i, q in enumerate(np.ascontiguousarray(points, dtype=float)):
        v = float(potential.value(q)) if potential.value is not None else 0.0
        potential.grad(q, g)
        if not (np.isfinite(v) and np.all(np.isfinite(g))):
            return i, (v if potential.value is not None else None), g.copy()
    return None


def domain_grid(domain, points: int = GRID_POINTS) -> np.ndarray:
    """A regular grid (n, d) over ``domain`` [[lo, hi], ...], ends and midpoints included (an odd number of
    points per axis, so the centre of a symmetric domain, where singularities like 1/q sit, is on it)."""
    d = len(domain)
    n = max(3, int(points ** (1.0 / d)) | 1)
    axes = [np.linspace(float(lo), float(hi), n) for lo, hi in domain]
    return np.stack([a.ravel() for a in np.meshgrid(*axes, indexing="ij")], axis=1)


def check_potential_finite(potential, initial_q=None, domain=None) -> None:
    """Raise :class:`InputError` (CLI exit 2) when V or grad V is not finite at an initial state
    ``initial_q`` (walkers, d) or on a grid over ``domain`` [[lo, hi], ...] (the histogram range)."""
    def what(v, g):
        gtxt = _fmt(g) if g.size > 1 else f"{g[0]:.6g}"
        return (f"V = {v:.6g}, " if v is not None else "") + f"grad V = {gtxt}"

    if initial_q is not None:
        bad = first_nonfinite(potential, initial_q)
        if bad is not None:
            i, v, g = bad
            raise InputError(f"potential is not finite where walker {i} starts, q = {_fmt(initial_q[i])} "
                             f"({what(v, g)}); fix the expression or [simulation] init_mean/init_sd")
    if domain is not None:
        grid = domain_grid(domain)
        bad = first_nonfinite(potential, grid)
        if bad is not None:
            i, v, g = bad
            rng = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in domain)
            raise InputError(f"potential is not finite at q = {_fmt(grid[i])} inside the declared domain {rng} "
                             f"({what(v, g)}); fix the expression or [potential] domain")


def check_model_potential(model) -> None:
    """:func:`check_potential_finite` for a model file: the initial states of the run's walkers (the same
    draws :func:`bayescg.simulate.simulate` makes from ``[simulation]`` seed, init_mean, init_sd) and the
    ``[potential]`` domain.  A model without V (``[trajectory]`` data only) has nothing to check."""
    from .pipeline import potential_from_model
    from .simulate import initial_walker_state, walker_seeds

    sec = model.require("potential")
    if sec.expression is None and sec.module is None:
        return  # no V (a [trajectory] model learns U from its data): nothing to check
    pot = potential_from_model(model)
    s = model.simulation
    q0 = None
    if s is not None:
        mean = np.zeros(pot.dim) if not s.init_mean else np.broadcast_to(np.asarray(s.init_mean, float), (pot.dim,))
        q0 = initial_walker_state(walker_seeds(s.seed, s.walkers), pot.dim, mean, s.init_sd)[0]
    check_potential_finite(pot, q0, model.potential.domain)
