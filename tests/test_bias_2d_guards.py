"""The 2D finite-delta correction's pieces for multi-well runs (issue 11, (4.9) Mueller-Brown): the local kick
covariance (bayescg.bias.kick_covariance), the confining continuation with its stability refusal
(bayescg.bias.stable_continuation_2d) and the fixed point's backtracking on a blown-up white run."""
import numpy as np
import pytest

from bayescg.bias import kick_covariance


def _two_well_kicks(n=200_000, seed=3, delta=0.05):
    """Positions from two wells and kicks = a smooth non-polynomial misfit -delta grad f(q) + white N(0, delta Z):
    what the residual kicks about a raw U look like on a multi-well run."""
    rng = np.random.default_rng(seed)
    Z = np.array([[0.05, -0.02], [-0.02, 0.03]])
    c = np.where(rng.random(n)[:, None] < 0.5, [-1.0, 0.0], [1.0, 0.5])
    q = c + 0.3 * rng.standard_normal((n, 2))
    # misfit gradient: sharp Gaussian bumps at the wells (what a cubic in q cannot follow), amplitude >> noise
    g = np.zeros((n, 2))
    for m, a in (([-1.0, 0.0], 1.0), ([1.0, 0.5], -0.8)):
        dq = q - np.array(m)
        g += a * (-2.0 * dq / 0.2) * np.exp(-np.sum(dq * dq, axis=1) / 0.2)[:, None]
    r = -delta * g + rng.standard_normal((n, 2)) @ np.linalg.cholesky(delta * Z).T
    return q, r, Z, delta


def test_kick_covariance_recovers_z_on_a_two_well_run_where_a_global_cubic_does_not():
    q, r, Z, delta = _two_well_kicks()
    out = kick_covariance(q, r, delta=delta)
    # the cell rule: >= 100 samples per parameter (3 in 2D) on average over the occupied cells
    assert out["n"] / out["occupied"] >= 300 * 0.9
    Zl = np.asarray(out["Z"])
    np.testing.assert_allclose(Zl, Z, atol=0.03 * Z[0, 0])
    # the global cubic regression (the estimator before): its residual keeps the misfit, 1.7x too large here
    X = (q - q.mean(0)) / q.std(0)
    cols = [np.ones(len(X)), X[:, 0], X[:, 1], X[:, 0] ** 2, X[:, 0] * X[:, 1], X[:, 1] ** 2,
            X[:, 0] ** 3, X[:, 0] ** 2 * X[:, 1], X[:, 0] * X[:, 1] ** 2, X[:, 1] ** 3]
    D = np.column_stack(cols)
    e = r - D @ np.linalg.lstsq(D, r, rcond=None)[0]
    Zc = e.T @ e / (len(e) * delta)
    assert Zc[1, 1] > 1.5 * Z[1, 1]


def test_kick_covariance_pure_noise_and_cell_count_insensitivity():
    rng = np.random.default_rng(5)
    n, delta = 100_000, 0.1
    Z = np.array([[0.2, 0.05], [0.05, 0.1]])
    q = rng.standard_normal((n, 2))
    r = rng.standard_normal((n, 2)) @ np.linalg.cholesky(delta * Z).T
    base = kick_covariance(q, r, delta=delta)
    for k in (max(1, base["cells"] // 2), int(1.5 * base["cells"])):
        np.testing.assert_allclose(kick_covariance(q, r, delta=delta, cells=k)["Z"], Z, atol=0.03 * Z[0, 0])
    np.testing.assert_allclose(kick_covariance(q, r, delta=delta, local="mean")["Z"], Z, atol=0.03 * Z[0, 0])
    # 1D input works too
    z1 = kick_covariance(q[:, 0], r[:, 0], delta=delta)["Z"]
    assert abs(z1[0, 0] - Z[0, 0]) < 0.03 * Z[0, 0]
    with pytest.raises(Exception):
        kick_covariance(q, r, delta=delta, local="cubic")


def test_kicks_at_one_point_give_no_kick_covariance_and_say_why():
    """Walkers trapped at a point (seen on a tiny 1D learn's check frames): no cell allows a local fit.  Before, the
    pooled covariance divided by 0 degrees of freedom and returned NaN with a RuntimeWarning; now kick_covariance
    raises one clear line and residual_kick_correlation keeps its other statistics with Z_matrix None and the reason."""
    from bayescg.bias import residual_kick_correlation
    from bayescg.errors import InputError

    rng = np.random.default_rng(1)
    q = np.full((5000, 1), 0.7)
    with pytest.raises(InputError, match="allows a local fit"):
        kick_covariance(q, 0.1 * rng.standard_normal((5000, 1)), delta=0.5)
    n, W = 2000, 4
    qf = np.full((n, W, 1), -0.66)  # positions fixed, momenta noisy: the kicks exist, their positions do not spread
    pf = 0.05 * rng.standard_normal((n, W, 1))
    with np.errstate(all="raise"):
        out = residual_kick_correlation(qf, pf, lambda x: 0 * x, delta=0.5, A=np.zeros((1, 1)), E=np.eye(1))
    assert out["Z_matrix"] is None and "allows a local fit" in out["Z_matrix_error"]
    assert out["n"] == (n - 1) * W and np.all(np.isfinite(out["rho"]))


def _rule_by_counting(q, min_per, npar):
    """kick_covariance's cell-count rule written out plainly: count the occupied cells for every k."""
    lo, hi = q.min(axis=0), q.max(axis=0)
    k_best = 1
    for k in range(2, 257):
        ij = np.clip(((q - lo) / np.where(hi > lo, hi - lo, 1.0) * k).astype(np.int64), 0, k - 1)
        occ = np.unique(ij @ k ** np.arange(q.shape[1])).size
        if len(q) / occ >= min_per * npar:
            k_best = k
    return k_best


@pytest.mark.parametrize("d, n, clustered", [(1, 60_000, False), (1, 20_000, True), (2, 20_000, True)])
def test_kick_covariance_cell_rule_equals_counting_every_k(d, n, clustered):
    """The rule skips counting while k^d cells could not break it; the cells chosen must be those of counting at
    every k (positions spread or clustered in a few blobs, 1D and 2D)."""
    rng = np.random.default_rng(d * 10 + clustered)
    q = rng.standard_normal((n, d))
    if clustered:
        q = np.concatenate([q[: n // 2] * 0.05 - 2.0, q[n // 2:] * 0.2 + 1.0])
    r = rng.standard_normal((n, d))
    assert kick_covariance(q, r, delta=0.1)["cells"] == _rule_by_counting(q, 100, 1 + d)


def _grid_2d(lo=-3.0, hi=3.0, n_knots=10, data=1.2, n=25):
    from bayescg.splines import clamped_knots

    knots = [clamped_knots(lo, hi, n_knots), clamped_knots(lo, hi, n_knots)]
    xs = np.linspace(lo, hi, n)
    P = np.stack(np.meshgrid(xs, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    w = np.where(np.all(np.abs(P) <= data, axis=1), np.exp(-0.5 * np.sum(P * P, axis=1)), 0.0)
    return knots, P, w / w.sum()


def test_stable_continuation_confines_where_min_curvature_falls_outwards():
    """A U that falls outwards along x at the data's edge (a saddle ridge): the minimum-curvature continuation keeps
    falling, the continuation towards the data's Gaussian turns up; on the data both leave U as it is."""
    from bayescg.bias import (min_curvature_continuation_2d, data_coefficients_2d, data_gaussian_2d, quadratic_coef_2d,
                              stable_continuation_2d)
    from bayescg.splines import SplineRep

    knots, P, w = _grid_2d()
    coef = quadratic_coef_2d(knots, [0.0, 0.0], np.diag([-0.8, 2.0]))  # falls outwards along x
    inside = data_coefficients_2d(knots, P, w)
    assert (~inside).any()
    shape = (len(knots[0]) - 4, len(knots[1]) - 4)
    mu, K = data_gaussian_2d(P, w, 1.0)
    assert np.all(np.linalg.eigvalsh(K) > 0)
    mc = SplineRep(knots, min_curvature_continuation_2d(coef, inside, shape))
    st = SplineRep(knots, stable_continuation_2d(coef, inside, shape, knots, mu, K))
    on = P[w > 0]
    np.testing.assert_allclose(st.value(on), SplineRep(knots, coef).value(on), atol=1e-8)
    edge, far = np.array([[1.2, 0.0], [-1.2, 0.0]]), np.array([[2.95, 0.0], [-2.95, 0.0]])
    assert np.all(mc.value(far) < mc.value(edge))  # the old continuation keeps falling
    assert np.all(st.value(far) > st.value(edge))  # the new one confines


def _fake_fit(coef, knots, P, w, var_p=1.0, fail=None):
    from types import SimpleNamespace

    from bayescg.splines import SplineRep

    rng = np.random.default_rng(0)
    U = SplineRep(knots, coef).value(P)
    return SimpleNamespace(beta={"beta_hat": 1.0 / var_p}, coef_mean=np.asarray(coef), knots=knots, grid=P,
                           U_upper=U + 0.01, U_lower=U - 0.01, band_calibration={"scale": 1.0},
                           arviz_extras={"coef_draws": np.asarray(coef) + 1e-3 * rng.standard_normal((50, len(coef)))})


def test_fixed_point_backtracks_on_a_blown_up_white_run_and_refuses_an_unstable_start():
    from bayescg.bias import fixed_point_correction, quadratic_coef_2d
    from bayescg.errors import InputError, SimulationError

    knots, P, w = _grid_2d()
    ct = quadratic_coef_2d(knots, [0.0, 0.0], np.diag([1.0, 2.0]))
    calls = []

    def learn(coef, Z):  # L[U] = 1.05 U (a curvature bias), and the second white run blows up
        calls.append(np.array(coef))
        if len(calls) == 2:
            raise SimulationError("walker 7 blew up at step 2142 (q = [nan, nan]); reduce delta")
        return _fake_fit(1.05 * np.asarray(coef), knots, P, w)

    kw = dict(grid=P, weights=w, region=w > 0, var_p=1.0, delta=0.1, gamma=0.5, max_iter=4)
    corr = fixed_point_correction(knots, ct, learn, **kw)
    h = corr.history
    assert "blew up" in h[1]["failed"] and h[1]["backtrack_to"] == 1
    assert h[2]["alpha"] == 0.5  # the next run is the best iterate + half the step
    assert np.allclose(calls[2], calls[0] + 0.5 * (calls[1] - calls[0]), atol=1e-6)
    # a start whose curvature exceeds the map's stability limit (2 (1 + E) / delta^2 ~ 760 here) is refused
    steep = quadratic_coef_2d(knots, [0.0, 0.0], np.diag([1.0, 3000.0]))
    with pytest.raises(InputError, match="refused"):
        fixed_point_correction(knots, steep, lambda c, Z: _fake_fit(c, knots, P, w), **kw)


def test_quadratic_coef_2d_reproduces_the_quadratic():
    """The tensor spline with quadratic_coef_2d's coefficients is (q - mu)^T K (q - mu) / 2 on the knots' box, for a
    non-diagonal K and unequal knot ranges (the separable construction must put each 1D factor on its own axis)."""
    from bayescg.bias import quadratic_coef_2d
    from bayescg.splines import clamped_knots, design_matrix

    knots = [clamped_knots(-1.5, 3.0, 11), clamped_knots(-2.5, 2.0, 7)]
    mu, K = np.array([0.3, -0.2]), np.array([[1.2, 0.4], [0.4, 2.5]])
    P = np.random.default_rng(0).uniform([-1.5, -2.5], [3.0, 2.0], (400, 2))
    v = 0.5 * np.einsum("ni,ij,nj->n", P - mu, K, P - mu)
    np.testing.assert_allclose(design_matrix(P, knots) @ quadratic_coef_2d(knots, mu, K), v, atol=1e-10)


def test_kick_covariance_cell_rule_reads_positions_only_and_matches_a_plain_count():
    """The cell rule (largest k with >= 100 samples per parameter per occupied cell, the search stopping once the
    occupied cells are 4x past it) against a plain re-count with Python sets of cell tuples; it depends on the
    positions only, so the second candidate of the white-noise check may pass the first's ``cells``: same result."""
    q, r, _, delta = _two_well_kicks(n=30_000, seed=4)
    out = kick_covariance(q, r, delta=delta)
    lo, hi = q.min(axis=0), q.max(axis=0)
    k_plain = 1
    for kk in range(2, 257):
        cells = {tuple(min(int((x - l) / (h - l) * kk), kk - 1) for x, l, h in zip(row, lo, hi)) for row in q}
        if len(q) / len(cells) >= 300:
            k_plain = kk
        elif len(cells) > len(q) / 300 * 4:
            break
    assert out["cells"] == k_plain > 2
    other = kick_covariance(q, 0.5 * r[::-1], delta=delta)  # other kicks, same positions: the same cells
    assert other["cells"] == out["cells"]
    again = kick_covariance(q, r, delta=delta, cells=out["cells"])
    assert np.array_equal(again.pop("Z"), out.pop("Z")) and again == out
