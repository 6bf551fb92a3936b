"""Property-based tests (hypothesis): expression compilation and integrator invariants."""
import math

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from bayescg.potentials import Potential
from bayescg.kernels.registry import INTEGRATORS
from bayescg.simulate import simulate

# --- expressions ----------------------------------------------------------------------------
VARS = ["x", "y", "z"]
atoms = st.sampled_from(["x", "y", "z", "1", "2", "0.5", "3"])


def _combine(children):
    unary = st.builds(lambda f, a: f"{f}({a})", st.sampled_from(["sin", "cos", "exp", "tanh", "atan"]), children)
    binary = st.builds(lambda a, op, b: f"({a}){op}({b})", children, st.sampled_from(["+", "-", "*"]), children)
    power = st.builds(lambda a, n: f"({a})**{n}", children, st.integers(2, 3))
    return st.one_of(unary, binary, power)


expressions = st.recursive(atoms, _combine, max_leaves=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions, point=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=3))
def test_compiled_value_and_gradient_match_sympy(expr, point):
    pot = Potential.from_expression(expr, VARS)
    syms = sympy.symbols(VARS, real=True)
    f = sympy.sympify(expr, locals=dict(zip(VARS, syms)))
    subs = dict(zip(syms, point))
    want_v = float(f.evalf(subs=subs))
    want_g = [float(sympy.diff(f, s).evalf(subs=subs)) for s in syms]
    assume(math.isfinite(want_v) and all(math.isfinite(g) for g in want_g) and abs(want_v) < 1e8)
    q = np.array(point, float)
    got_g = np.empty(3)
    pot.grad(q, got_g)
    assert pot.value(q) == pytest.approx(want_v, rel=1e-9, abs=1e-9)
    np.testing.assert_allclose(got_g, want_g, rtol=1e-8, atol=1e-8)


# --- integrator invariants ---------------------------------------------------------------------
def spd(d):
    return st.lists(st.floats(-1, 1), min_size=d * d, max_size=d * d).map(
        lambda v: (lambda B: B @ B.T + 0.2 * np.eye(d))(np.array(v).reshape(d, d)))


@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 3), data=st.data(), h=st.floats(1e-3, 2.0), beta=st.floats(0.1, 10.0))
def test_exact_ou_step_preserves_gibbs_momentum_law(d, data, h, beta):
    """For any SPD friction and inverse mass, F C F^T + L L^T = C with C = A^-1 / beta exactly."""
    G, A = data.draw(spd(d)), data.draw(spd(d))
    F, L = INTEGRATORS["langevin"].constants(d, h, A, G, beta, None)
    C = np.linalg.inv(A) / beta
    np.testing.assert_allclose(F @ C @ F.T + L @ L.T, C, rtol=1e-7, atol=1e-9 * np.abs(C).max())


@settings(max_examples=25, deadline=None)
@given(a=st.floats(0.2, 4.0), gamma=st.floats(0.05, 1.0), frac=st.floats(0.05, 0.9), q0=st.floats(-3, 3))
def test_damped_map_without_micro_scales_settles_at_the_minimum(a, gamma, frac, q0):
    """No unresolved scales means no effective noise: the damped map (3.2) on a smooth convex V is a
    contraction (stable step delta^2 a < 4) and every walker ends at the minimiser, reported trapped."""
    delta = frac * 2.0 / math.sqrt(a)
    e = math.exp(-gamma * delta)
    # spectral radius of the linear map (q, p) -> ... of V = a q^2 / 2
    Mh = np.array([[1.0, delta / 2], [0.0, 1.0]])
    Mk = np.array([[1.0, 0.0], [-delta * a, e]])
    rho = max(abs(np.linalg.eigvals(Mh @ Mk @ Mh)))
    assume(rho < 0.999)
    n = int(math.log(1e-14) / math.log(rho)) + 3000
    pot = Potential.from_expression(f"{a}*q**2/2", ["q"])
    r = simulate(pot, delta, gamma, steps=4 * n, walkers=4, seed=3, init_mean=np.array([q0]),
                 bins=8, hist_range=[(-5, 5)], burn_in=0.0)
    assert r.trapped_fraction == 1.0
    assert np.all(np.abs(r.final_q) < 1e-6) and np.all(np.abs(r.final_p) < 1e-6)
