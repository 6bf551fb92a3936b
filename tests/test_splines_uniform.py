"""The closed-form uniform cubic on the interior spans of a clamped knot vector (splines._eval_1d_ws):
against scipy.interpolate.BSpline, and bit for bit the old Cox-de Boor evaluation on the spans near the ends."""
import numba
import numpy as np
import pytest
from scipy.interpolate import BSpline

from bayescg import splines as sp
from bayescg.kernels.state import LANES as L


@numba.njit
def _scalar(x, t, c, k, wall, uni):
    return sp._eval_1d_scalar(x, t, c, k, wall, uni)


def _points(t, rng):
    """Dense, random, exactly at every knot and one ulp either side, near both ends, outside the box."""
    lo, hi = t[3], t[-4]
    w = hi - lo
    at = np.unique(t)
    return np.concatenate([
        np.linspace(lo, hi, 1001), rng.uniform(lo, hi, 1000), at, np.nextafter(at, -np.inf), np.nextafter(at, np.inf),
        lo + w * np.array([1e-12, 1e-6, 1e-3, 0.01]), hi - w * np.array([1e-12, 1e-6, 1e-3, 0.01]),
        lo - w * np.array([1e-9, 0.1, 1.0]), hi + w * np.array([1e-9, 0.1, 1.0]),
    ])


def _truth(t, c, wall, x):
    """scipy's spline inside the box; outside, its Taylor continuation at the edge plus the wall."""
    s = BSpline(t, c, 3)
    xc = np.clip(x, t[3], t[-4])
    dx = x - xc
    v, g = s(xc), s.derivative()(xc)
    return v + g * dx + 0.5 * wall * dx * dx, g + wall * dx


@pytest.mark.parametrize("n_knots, lo, hi", [(8, -2.0, 3.0), (20, -7.0, 7.0), (40, -7.0, 7.0), (40, 0.0, 1.0),
                                             (33, 10.0, 12.5)])
def test_closed_form_matches_scipy(n_knots, lo, hi):
    rng = np.random.default_rng(n_knots)
    t = sp.clamped_knots(lo, hi, n_knots)
    uni = sp._uniform_spans(t, 3)
    assert uni[1] == 3 and uni[2] == n_knots - 4  # the interior spans take the closed form
    assert uni[0] == pytest.approx((n_knots - 1) / (hi - lo), rel=1e-15)
    c = rng.normal(size=sp.n_basis(t, 3)) * rng.choice([1.0, 30.0])
    x = _points(t, rng)
    want_v, want_g = _truth(t, c, 2.0, x)
    v, g = sp.SplineRep([t], c, wall=2.0).value_grad(x)
    # the box (its values set the scale, not the wall's outside), then every point
    box = (x >= lo) & (x <= hi)
    tol = 1e-12 * max(1.0, np.abs(want_v[box]).max())
    assert np.abs(v - want_v)[box].max() <= tol and np.abs(g[:, 0] - want_g)[box].max() <= tol
    tol = 1e-12 * max(1.0, np.abs(want_v).max())
    assert np.abs(v - want_v).max() <= tol and np.abs(g[:, 0] - want_g).max() <= tol
    # the engine's kernels (lane kernel, scalar kernel) on the same points: the same bits
    pot = sp.spline_potential([t], c, wall=2.0)
    xs = x[:x.size // L * L]
    for i in range(0, xs.size, L):
        S = np.zeros(2 * L)
        S[:L] = xs[i:i + L]
        pot.grad_lanes(S)
        assert np.array_equal(S[L:], g[i:i + L, 0])
    assert all(pot.grad_scalar(xi) == gi for xi, gi in zip(x[::97], g[::97, 0]))


@pytest.mark.parametrize("n_knots", [8, 20, 40])
def test_end_spans_bit_identical_to_cox_de_boor(n_knots):
    """Outside the closed-form spans the evaluation is the old one: bspline_value_grad_1d (span search +
    Cox-de Boor, unchanged) with the Taylor continuation and wall, operation for operation."""
    rng = np.random.default_rng(100 + n_knots)
    t = sp.clamped_knots(-7.0, 7.0, n_knots)
    c = rng.normal(size=sp.n_basis(t, 3))
    uni = sp._uniform_spans(t, 3)
    x = _points(t, rng)
    y = (np.clip(x, t[3], t[-4]) - t[3]) * uni[0]
    x = x[(y < uni[1]) | (y >= uni[2])]
    assert x.size > 100
    wall = 1.5
    v, g = sp.SplineRep([t], c, wall=wall).value_grad(x)
    for xi, vi, gi in zip(x, v, g[:, 0]):
        xc = min(max(xi, t[3]), t[-4])
        v0, g0 = sp.bspline_value_grad_1d(xc, t, c, 3)
        dx = xi - xc
        assert vi == v0 + g0 * dx + 0.5 * wall * dx * dx and gi == g0 + wall * dx
    # and the same bits as with the closed form switched off for every span
    # (_eval_1d_scalar is for compiled callers only: called through an njit function)
    old = np.array([_scalar(xi, t, c, 3, wall, np.zeros(3)) for xi in x])
    assert np.array_equal(old[:, 0], v) and np.array_equal(old[:, 1], g[:, 0])


def test_no_closed_form_for_other_degrees_or_uneven_knots():
    rng = np.random.default_rng(5)
    t = sp.clamped_knots(-1.0, 1.0, 12)
    assert sp._uniform_spans(t, 3)[2] == 8 and not sp._uniform_spans(sp.clamped_knots(-1.0, 1.0, 12, 2), 2)[2]
    assert not sp._uniform_spans(sp.clamped_knots(-1.0, 1.0, 7), 3)[2]  # 7 break points: no interior span
    u = t.copy()
    u[8] += 1e-9  # one break point moved: Cox-de Boor everywhere
    assert not sp._uniform_spans(u, 3)[2]
    c = rng.normal(size=sp.n_basis(u, 3))
    x = np.linspace(-1.0, 1.0, 301)
    v, g = sp.SplineRep([u], c).value_grad(x)
    s = BSpline(u, c, 3)
    assert np.abs(v - s(x)).max() <= 1e-12 and np.abs(g[:, 0] - s.derivative()(x)).max() <= 1e-11
