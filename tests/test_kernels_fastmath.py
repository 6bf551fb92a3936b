"""kernels.fastmath (branch-free exp/sin/cos) and the SIMD lane kernels built on it.

Truth: 50-digit mpmath values (correctly rounded reference), math.* (glibc), the exact array
gradient kernel, and per-walker independence of the lane path (a walker's trajectory must not
depend on which other walkers share its SIMD block).
"""
import dataclasses
import math

import mpmath
import numpy as np
import pytest
from numba import njit, types

from bayescg.kernels import state as K
from bayescg.kernels.fastmath import EXP_LIMIT, TRIG_LIMIT, fcos, fexp, fsin
from bayescg.potentials import Potential, catalogue
from bayescg.simulate import simulate

_SIG = types.void(types.float64[::1], types.float64[::1])


@njit(_SIG, error_model="numpy")
def _vexp(x, out):
    for i in range(x.shape[0]):
        out[i] = fexp(x[i])


@njit(_SIG, error_model="numpy")
def _vsin(x, out):
    for i in range(x.shape[0]):
        out[i] = fsin(x[i])


@njit(_SIG, error_model="numpy")
def _vcos(x, out):
    for i in range(x.shape[0]):
        out[i] = fcos(x[i])


def _apply(f, x):
    x = np.ascontiguousarray(x, dtype=float)
    out = np.empty_like(x)
    f(x, out)
    return out


def _ulps(got, exact_mp):
    """|got - exact| in units of the last place of the exact value (mpmath, 50 digits)."""
    out = []
    for g, e in zip(got, exact_mp):
        ef = float(e)
        out.append(float(abs(mpmath.mpf(g) - e)) / np.spacing(abs(ef)) if ef != 0 else abs(g))
    return np.array(out)


mpmath.mp.dps = 50
RNG = np.random.default_rng(12)
CASES = {
    "exp": (_vexp, mpmath.exp, math.exp, [RNG.uniform(-707.9, 707.9, 1500), RNG.uniform(-40, 5, 1500)]),
    # sin/cos: small arguments and the 1e5-size arguments of the 1e-5 scales of (4.8)/(4.9), up to the limit
    "sin": (_vsin, mpmath.sin, math.sin, [RNG.uniform(-4, 4, 1000), RNG.uniform(-3e5, 3e5, 1000),
                                          RNG.uniform(-9.99e5, 9.99e5, 1000)]),
    "cos": (_vcos, mpmath.cos, math.cos, [RNG.uniform(-4, 4, 1000), RNG.uniform(-3e5, 3e5, 1000),
                                          RNG.uniform(-9.99e5, 9.99e5, 1000)]),
}


#: Documented error bounds in ulps of the exact value (measured maxima over 3e4 random arguments:
#: exp 0.85, sin 1.39, cos 1.42; glibc 0.51).
ULP_BOUND = {"exp": 1.0, "sin": 1.5, "cos": 1.5}


@pytest.mark.parametrize("name", list(CASES))
def test_error_bound_against_mpmath(name):
    f, mp, libm, ranges = CASES[name]
    for x in ranges:
        got = _apply(f, x)
        exact = [mp(mpmath.mpf(float(v))) for v in x]
        u = _ulps(got, exact)
        assert u.max() < ULP_BOUND[name], (name, x[np.argmax(u)], u.max())
        assert u.mean() < 0.35  # mostly correctly rounded, not just bounded
        # and within 2 ulp of glibc (itself within about half an ulp of correctly rounded)
        ref = np.array([libm(v) for v in x])
        assert np.all(np.abs(got - ref) <= 2 * np.spacing(np.abs(ref)))


def test_near_multiples_of_pi_over_2():
    """Arguments next to k pi/2 (catastrophic cancellation in the reduction) keep sin/cos accurate
    in absolute terms (results near 0) and within 1 ulp where the result is not tiny."""
    k = np.arange(1, 600_000, 997, dtype=float)
    x = np.nextafter(k * (np.pi / 2), np.inf)
    for f, mp in ((_vsin, mpmath.sin), (_vcos, mpmath.cos)):
        got = _apply(f, x)
        exact = np.array([float(mp(mpmath.mpf(float(v)))) for v in x])
        assert np.max(np.abs(got - exact)) < 1.2e-16


def test_special_values_and_ranges():
    x = np.array([EXP_LIMIT + 1, -EXP_LIMIT - 1, np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-300, 700.0, -700.0])
    e = _apply(_vexp, x)
    assert np.all(np.isnan(e[:5]))                    # outside the range: NaN (the lane kernels fall back)
    assert e[5] == 1.0 and e[6] == 1.0 and e[7] == 1.0
    assert e[8] == pytest.approx(math.exp(700.0), rel=2.3e-16)
    assert e[9] == pytest.approx(math.exp(-700.0), rel=2.3e-16)
    t = np.array([TRIG_LIMIT, -TRIG_LIMIT * 2, np.nan, np.inf, 0.0, -0.0])
    s = _apply(_vsin, t)
    c = _apply(_vcos, t)
    assert np.all(np.isnan(s[:4])) and np.all(np.isnan(c[:4]))
    assert s[4] == 0.0 and math.copysign(1, s[5]) == -1.0 and c[4] == 1.0 and c[5] == 1.0


# --- lane kernels ----------------------------------------------------------------------------------
def _lanes(pot, pts):
    """Evaluate pot.grad_lanes on points (n, d), LANES at a time."""
    L = K.LANES
    d = pot.dim
    pot.grad_lanes.compile(K.GRADL_SIG)
    out = np.empty_like(pts)
    for i in range(0, len(pts), L):
        S = np.zeros(2 * d * L)
        chunk = pts[i:i + L]
        for j in range(d):
            S[j * L:j * L + len(chunk)] = chunk[:, j]
            S[j * L + len(chunk):(j + 1) * L] = chunk[0, j]
        pot.grad_lanes(S)
        for j in range(d):
            out[i:i + len(chunk), j] = S[(d + j) * L:(d + j) * L + len(chunk)]
    return out


def test_lane_kernel_matches_exact_gradient_test5():
    pot = catalogue("test5")
    pts = np.array([-0.05, 0.47]) + 0.3 * RNG.standard_normal((4000, 2))
    got = _lanes(pot, pts)
    ref = pot.gradient(pts)
    # each exp/sin/cos within 1 ulp; the gradient sums terms of size <= ~100
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)
    assert np.mean(got == ref) > 0.3  # mostly the same bits


def test_lane_kernel_falls_back_to_libm_outside_the_ranges():
    # sin(q/1e-7) has arguments up to 1e7 > TRIG_LIMIT and exp(q) overflows for q > 709.8:
    # those lanes must equal the exact math.* kernel bit for bit (including inf)
    pot = Potential.from_expression("1e-7*sin(q/1e-7) + exp(q)", ["q"])
    q = np.array([0.5, 0.05, 3.0, 0.01, 800.0, -800.0, 1e-3, 2.0, 0.2, 0.09])[:, None]
    got = _lanes(pot, q)
    ref = pot.gradient(q)
    far = (np.abs(q[:, 0]) / 1e-7 >= TRIG_LIMIT) | (np.abs(q[:, 0]) >= EXP_LIMIT)
    assert far.sum() >= 6
    assert np.array_equal(got[far], ref[far])
    assert np.isinf(got[4, 0])
    np.testing.assert_allclose(got, ref, rtol=1e-15, atol=1e-15)


def test_no_lane_kernel_for_functions_without_fast_form():
    pot = Potential.from_expression("y*log(1 + x**2) + y**2", ["x", "y"])  # dV/dy has math.log
    assert pot.grad_lanes is None and pot.grad_scalar is not None
    assert catalogue("test4").grad_lanes is not None
    assert Potential.from_expression("x**2 + y**2 + z**2", ["x", "y", "z"]).grad_lanes is None


@pytest.mark.parametrize("name,delta,gamma,kw", [
    ("test1", 0.5, 0.1, {}),
    ("test5", 0.05163, 0.014, dict(init_mean=[-0.05, 0.47], init_sd=0.05)),
])
def test_walker_independent_of_its_simd_block(name, delta, gamma, kw):
    """Walker w's trajectory is the same whether its block holds 4 walkers (plus padding) or 8
    (walkers 0..12: blocks 0-7, 8-12): lanes do not interact, padding does not leak."""
    pot = catalogue(name)
    n_per = 3000
    a = simulate(pot, delta, gamma, steps=4 * n_per, walkers=4, seed=5, **kw)
    b = simulate(pot, delta, gamma, steps=13 * n_per, walkers=13, seed=5, **kw)
    assert np.array_equal(a.final_q, b.final_q[:4]) and np.array_equal(a.final_p, b.final_p[:4])


def test_lane_path_statistics_agree_with_libm_path():
    """simulate() on the lane kernel and on the exact libm kernel: the chaotic map makes the
    trajectories differ after a few steps, so compare the statistics within their errors."""
    pot = catalogue("test1")
    exact = dataclasses.replace(pot, grad_lanes=None)
    kw = dict(steps=1_600_000, walkers=16, seed=4)
    a = simulate(pot, 0.5, 0.1, **kw)
    b = simulate(exact, 0.5, 0.1, **kw)
    assert not np.array_equal(a.final_q, b.final_q)  # really two different paths
    se = math.hypot(a.beta_hat_se, b.beta_hat_se)
    assert abs(a.beta_hat - b.beta_hat) < 4 * se
    # and for the first steps the two paths agree to rounding (no systematic difference)
    c = simulate(pot, 0.5, 0.1, steps=16 * 5, walkers=16, seed=4, burn_in=0.0, hist_range=[(-5, 5)])
    d = simulate(exact, 0.5, 0.1, steps=16 * 5, walkers=16, seed=4, burn_in=0.0, hist_range=[(-5, 5)])
    np.testing.assert_allclose(c.final_q, d.final_q, rtol=0, atol=1e-9)
