"""Metrics against answers known in closed form or by brute force."""
import math

import numpy as np
import pytest

from bayescg import metrics as mt
from bayescg.errors import InputError


def test_w1_shift_is_the_shift():
    x = np.random.default_rng(0).standard_normal(5000)
    assert mt.wasserstein1(x, x + 0.37) == pytest.approx(0.37, abs=1e-12)
    r = mt.equilibrium_w1(x, x - 0.2)
    assert r["w1"] == pytest.approx(0.2, abs=1e-12)


def test_w1_two_point_laws_brute_force():
    # W1 between point masses: |mean of sorted differences| with equal sizes
    a = np.array([0.0, 1.0, 5.0])
    b = np.array([2.0, 2.0, 2.0])
    assert mt.wasserstein1(a, b) == pytest.approx((2 + 1 + 3) / 3)


def test_sliced_w1_of_a_shift_in_2d():
    # a shift s gives W1(a.u, b.u) = |s.u|; mean over uniform directions on the circle = 2|s|/pi
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 2))
    s = np.array([0.3, -0.4])
    got = mt.sliced_wasserstein1(x, x + s, n_directions=4000, seed=3)
    assert got == pytest.approx(2 * 0.5 / math.pi, rel=0.03)
    r = mt.equilibrium_w1(x, x + s)
    assert r["per_coordinate"] == pytest.approx([0.3, 0.4], abs=1e-12)


def test_late_samples_picks_the_last_fraction():
    t = np.linspace(0, 10, 11)
    q = np.broadcast_to(t[:, None, None], (11, 4, 1)).copy()
    x = mt.late_samples(t, q, fraction=0.3)
    assert set(np.unique(x)) == {7.0, 8.0, 9.0, 10.0}
    assert x.shape == (16, 1)


def test_mean_path_and_zero_error_for_identical_inputs():
    rng = np.random.default_rng(2)
    q = rng.standard_normal((50, 30, 2))
    t = np.linspace(0, 5, 50)
    m = mt.mean_path(q)
    np.testing.assert_allclose(m, q.mean(axis=1))
    assert mt.mean_path_max_error(t, m, t, m) == 0.0


def test_mean_path_error_interpolates_across_grids():
    # path_b = sin on a fine grid, path_a = sin + 0.1 on a coarse grid: error 0.1 up to interpolation
    tb = np.linspace(0, 10, 2001)
    ta = np.arange(0, 10.0001, 0.1309)
    err = mt.mean_path_max_error(ta, np.sin(ta)[:, None] + 0.1, tb, np.sin(tb)[:, None])
    assert err == pytest.approx(0.1, abs=2e-5)


def test_interpolate_refuses_extrapolation():
    with pytest.raises(InputError):
        mt.interpolate_path([0, 1], [[0], [1]], [1.5])


def test_acf_matches_brute_force_formula():
    rng = np.random.default_rng(3)
    q = np.cumsum(rng.standard_normal((40, 7, 1)), axis=0) * 0.1 + 2.0
    got = mt.normalized_acf(q, max_lag=15)
    x = q[:, :, 0]
    var = x.var()
    for k in range(16):
        a, b = x[: 40 - k], x[k:]
        ref = ((a * b).mean() - a.mean() * b.mean()) / var
        if k == 0:
            ref = 1.0
        assert got[k, 0] == pytest.approx(ref, abs=1e-12)


def test_acf_of_ar1_is_exponential():
    # exact stationary OU sampled at spacing dt: AR(1) with phi = exp(-dt/tau), ACF = exp(-t/tau)
    rng = np.random.default_rng(4)
    tau, dt, n, M = 2.0, 0.1, 400, 2000
    phi = math.exp(-dt / tau)
    x = np.empty((n, M))
    x[0] = rng.standard_normal(M)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + math.sqrt(1 - phi * phi) * rng.standard_normal(M)
    acf = mt.normalized_acf(x, max_lag=100)[:, 0]
    lags = dt * np.arange(101)
    np.testing.assert_allclose(acf, np.exp(-lags / tau), atol=0.02)
    # and the L2 error metric against the analytic curve is small, against a wrong tau it is not
    assert mt.acf_l2_error(lags, acf, lags, np.exp(-lags / tau)) < 0.01
    assert mt.acf_l2_error(lags, acf, lags, np.exp(-lags / (2 * tau))) > 0.1


def test_acf_l2_error_of_a_constant_offset():
    lags = np.linspace(0, 5, 51)
    assert mt.acf_l2_error(lags, np.cos(lags) + 0.05, lags, np.cos(lags)) == pytest.approx(0.05, rel=1e-12)
    # interpolation onto the first grid
    fine = np.linspace(0, 5, 5001)
    assert mt.acf_l2_error(lags, np.cos(lags), fine, np.cos(fine)) < 1e-6


def test_point_to_curve_distance_brute_force():
    rng = np.random.default_rng(5)
    curve = rng.standard_normal((6, 2))
    pts = rng.standard_normal((20, 2))
    got = mt.point_to_curve_distances(pts, curve)
    # brute force: dense sampling of each segment
    s = np.linspace(0, 1, 20001)[:, None]
    dense = np.concatenate([curve[i] + s * (curve[i + 1] - curve[i]) for i in range(5)])
    ref = np.min(np.linalg.norm(pts[:, None, :] - dense[None], axis=2), axis=1)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_phase_portrait_distance_of_concentric_circles():
    # orbits of H = (q^2 + p^2)/2 at radii 1 and 1.1, sampled with different densities
    ta = np.linspace(0, 2 * np.pi, 4001)
    tb = np.linspace(0, 2 * np.pi, 157)
    a = np.c_[np.cos(ta), np.sin(ta)]
    b = 1.1 * np.c_[np.cos(tb), np.sin(tb)]
    r = mt.phase_portrait_distance(a, b)
    assert r["mean"] == pytest.approx(0.1, abs=2e-3)   # chord error of the coarse polygon ~ 1e-3
    assert r["hausdorff"] == pytest.approx(0.1, abs=1e-5)  # vertex-to-fine-polygon: 0.1 + O(chord^2)
    same = mt.phase_portrait_distance(a, a[::-1])
    assert same["mean"] == 0.0


def test_density_on_bins_integrates_to_inside_fraction():
    x = np.array([0.1, 0.2, 0.6, 5.0])
    edges = np.linspace(0, 1, 11)
    d = mt.density_on_bins(x, edges)
    assert (d * np.diff(edges)).sum() == pytest.approx(0.75)
