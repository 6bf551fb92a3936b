"""The likelihood grid of the effective-potential fit (bayescg.bayes.effective): rebinned cells with Gauss
quadrature, the active region (normaliser over the cells with data) and the removal of coefficients without
data, checked against brute-force integration, the full-grid fit and exact Gibbs samples."""
import numpy as np
import pytest
from scipy.interpolate import BSpline

from bayescg.bayes.effective import (build_effective_potential_model, cell_log_mass, effective_basis,
                                     map_estimate)
from bayescg.errors import InputError
from bayescg.fit import fit_effective_potential
from bayescg.splines import tensor_penalty

# V_0 of (4.8): (2x+y-1)^2/4 + (x-y-1)^2 = (q - mu)^T K (q - mu) / 2 with
K48 = np.array([[4.0, -1.0], [-1.0, 2.5]])
MU48 = np.array([2.0 / 3.0, -1.0 / 3.0])
EDGES48 = [np.linspace(-1.5, 3.0, 201), np.linspace(-2.5, 2.0, 201)]  # the model file's domain, 200 bins


def v0_48(x):
    x = np.atleast_2d(np.asarray(x, dtype=float))
    return (2 * x[:, 0] + x[:, 1] - 1) ** 2 / 4 + (x[:, 0] - x[:, 1] - 1) ** 2


def gibbs_48(n, seed):
    """Exact samples of exp(-V_0) (beta = 1) and their 200 x 200 histogram on the (4.8) domain."""
    q = np.random.default_rng(seed).multivariate_normal(MU48, np.linalg.inv(K48), size=n)
    counts, _, _ = np.histogram2d(q[:, 0], q[:, 1], EDGES48)
    return counts


def _f_bruteforce(basis, a_full, x, y):
    """f(x, y) = sum_ab C_ab B_a(x) B_b(y) with scipy's BSpline (independent of the module's designs)."""
    tx, ty = basis.knots
    C = a_full.reshape(basis.shape)
    bx = np.stack([BSpline(tx, np.eye(C.shape[0])[i], 3, extrapolate=False)(x) for i in range(C.shape[0])], axis=1)
    by = np.stack([BSpline(ty, np.eye(C.shape[1])[j], 3, extrapolate=False)(y) for j in range(C.shape[1])], axis=1)
    return np.nan_to_num(bx) @ C @ np.nan_to_num(by).T


def test_cell_masses_match_brute_force_integration():
    edges = [np.linspace(-1.0, 1.0, 41), np.linspace(0.0, 3.0, 61)]
    basis = effective_basis(edges, [6, 8], coarsen=[4, 5], quad=3, trim=False)
    assert basis.lik_shape == (10, 12) and basis.quad == 3
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1.5, basis.n_coef)
    L = cell_log_mass(basis, a)
    # brute force: 1200 x 1200 midpoint sub-grid of exp(-f)
    nx, ny = 1200, 1200
    xs = edges[0][0] + (np.arange(nx) + 0.5) * 2.0 / nx
    ys = edges[1][0] + (np.arange(ny) + 0.5) * 3.0 / ny
    w = np.exp(-_f_bruteforce(basis, basis.expand(a), xs, ys)) * (2.0 / nx) * (3.0 / ny)
    mass = w.reshape(10, nx // 10, 12, ny // 12).sum(axis=(1, 3))
    err3 = np.abs(L - np.log(mass)).max()
    assert err3 < 1e-2  # f varies by several kT across a cell here (random coefficients, cells across knots)
    # more Gauss points converge to the integral
    b6 = effective_basis(edges, [6, 8], coarsen=[4, 5], quad=6, trim=False)
    assert np.abs(cell_log_mass(b6, a) - np.log(mass)).max() < err3 / 10
    # quad = 1 without coarsening is the midpoint rule on the fine cells: L = -f(centre) + log(volume)
    b1 = effective_basis(edges, [6, 8], coarsen=1, quad=1, trim=False)
    cx, cy = (0.5 * (e[1:] + e[:-1]) for e in edges)
    np.testing.assert_allclose(cell_log_mass(b1, a), -_f_bruteforce(b1, b1.expand(a), cx, cy) + b1.log_volume,
                               atol=1e-10)


def test_trim_keeps_every_coefficient_that_reaches_the_data():
    counts = gibbs_48(20000, 1)
    b = effective_basis(EDGES48, 12, counts=counts)
    assert b.coarsen == (8, 8) and b.quad == 3  # half a knot spacing is 9.1 bins; 8 is the largest divisor of 200 below
    assert b.active.sum() < b.active.size and b.keep.sum() < b.keep.size
    agg = b.aggregate(counts)
    assert agg.sum() == counts.sum() and np.all(agg[~b.active] == 0)  # every count is in the active region
    # removed basis functions vanish on the active cells (scipy evaluation at random points inside them)
    rng = np.random.default_rng(2)
    ix, iy = np.nonzero(b.active)
    pick = rng.integers(0, len(ix), 400)
    ex, ey = b.lik_edges
    x = ex[ix[pick]] + rng.uniform(size=400) * np.diff(ex)[ix[pick]]
    y = ey[iy[pick]] + rng.uniform(size=400) * np.diff(ey)[iy[pick]]
    for j in np.flatnonzero(~b.keep)[:60]:
        e = np.zeros(b.keep.size)
        e[j] = 1.0
        vals = np.diag(_f_bruteforce(b, e, x, y))
        assert np.all(vals == 0.0)
    # without removal the kept-coefficient penalty is the usual tensor P-spline penalty
    full = effective_basis(EDGES48, 12, trim=False, coarsen=5)
    np.testing.assert_allclose(full.P, tensor_penalty(*full.shape))
    assert full.keep.all() and full.active.all()


def test_numpy_map_is_the_mode_of_the_rebinned_pymc_model():
    # the Newton/Fisher MAP (numpy) and the PyTensor log density are independent implementations
    counts = gibbs_48(20000, 3)
    basis = effective_basis(EDGES48, 8, counts=counts)
    b, sigma, H, _ = map_estimate(basis, counts, 0.3)
    model = build_effective_potential_model(counts, EDGES48, basis=basis, beta=1.0, n_eff_factor=0.3)
    g = model.compile_dlogp(vars=[model["b"]])({"b": b, "sigma_rw_log__": np.log(sigma)})
    assert np.abs(g).max() < 1e-5 * max(1.0, np.abs(H).max())


def test_rebinned_fit_agrees_with_full_grid_fit_on_example_48():
    counts = gibbs_48(100000, 4)
    data = dict(counts=counts, edges=EDGES48, beta_hat=1.0, beta_hat_se=0.005, n_eff_factor=0.2)
    full = fit_effective_potential(data, knots=12, method="map", reference=v0_48, coarsen=1, quad=1, trim=False)
    reb = fit_effective_potential(data, knots=12, method="map", reference=v0_48)
    assert reb.likelihood["active_cells"] < full.likelihood["active_cells"] == 40000
    d = reb.to_dict()
    assert d["method"] == "map" and "Laplace" in d["sampler"] and "active cells" in d["likelihood"]["normaliser"]
    assert full.reference_rmse < 0.1 and reb.reference_rmse < 0.1
    # common report points; U is defined up to a constant: align by the mean difference
    key = lambda g: {tuple(np.round(p, 9)): i for i, p in enumerate(g)}  # noqa: E731
    kf, kr = key(full.grid), key(reb.grid)
    common = sorted(set(kf) & set(kr))
    assert len(common) > 0.8 * len(kr)
    i_f, i_r = [kf[c] for c in common], [kr[c] for c in common]
    diff = reb.U_mean[i_r] - full.U_mean[i_f]
    diff -= diff.mean()
    half = 0.5 * (full.U_upper - full.U_lower)[i_f]
    assert np.mean(np.abs(diff) <= half) > 0.95


def test_rebinned_2d_band_coverage_over_repetitions():
    cover = []
    for seed in range(5):
        counts = gibbs_48(20000, 10 + seed)
        r = fit_effective_potential(dict(counts=counts, edges=EDGES48, beta=1.0), knots=10, method="map",
                                    reference=v0_48, seed=seed)
        cover.append(r.reference_coverage)
    assert 0.8 < np.mean(cover) <= 1.0


def test_bad_likelihood_grid_input():
    with pytest.raises(InputError, match="divisor"):
        effective_basis(EDGES48, 10, coarsen=7)
    with pytest.raises(InputError, match="quad"):
        effective_basis(EDGES48, 10, coarsen=5, quad=0)
    with pytest.raises(InputError, match="trim"):
        effective_basis(EDGES48, 10, trim=True)


@pytest.mark.slow
def test_mueller_brown_nuts_finishes_in_minutes():
    # (4.9) through the whole pipeline (calibration, 1e8 steps, NUTS 4 x 1000); measured: fit 142 s, r_hat 1.005,
    # 0-3 divergences in 4000 draws, RMSE 0.36 against V_0 (MAP: 0.54)
    from bayescg.config import load_model
    from bayescg.pipeline import learn_model

    m = load_model("models/test5-muller-brown.toml", ["fit.knots=16", "fit.method=nuts"])
    d = learn_model(m).to_dict()
    assert d["method"] == "nuts" and d["noise"]["calibrated"] is True
    assert d["diagnostics"]["r_hat_max"] < 1.01 and d["diagnostics"]["divergences"] < 40  # < 1 % (measured 0-3)
    assert (d["diagnostics"]["divergences"] > 0) == any("divergent" in w for w in d["warnings"])
    assert d["seconds"] - d["simulation_seconds"] < 900
    assert d["reference_rmse"] < 0.5
