"""The sparse 2D kernel's layouts give the same log density and gradient: the per-cell layout (one gather and one
scatter per cell) and the per-node layout it replaced (same buffer with the node design stored node by node), and
the tensor layout (2D default: per cell the outer product of two 1D blocks, the Cholesky factor by rows)."""
import numpy as np
import pytest

from bayescg.bayes.effective import effective_basis, map_estimate_sparse, sparse_cholesky, sparse_density
from bayescg.kernels.effective import sparse_a, sparse_offsets, sparse_logp_grad


def test_per_cell_layout_matches_per_node():
    rng = np.random.default_rng(3)
    edges = [np.linspace(-3, 3, 41)] * 2
    counts = np.histogram2d(*rng.standard_normal((2, 20000)), edges)[0]
    basis = effective_basis(edges, 9, counts=counts)
    a, s, H, r = map_estimate_sparse(basis, counts, 0.2)
    dens = sparse_density(counts, basis, a, sparse_cholesky(H), r, momenta_stats={"beta_hat": 0.4,
                          "beta_hat_se": 0.01}, n_eff_factor=0.2, sigma_init=s, layout="cell")
    buf = dens.buf
    assert buf[14] > 0                                   # the per-cell layout is the one packed
    idx, val, _ = basis.nodes
    o = sparse_offsets(buf)
    old = np.concatenate([buf[:o[8]], idx.ravel().astype(float), val.ravel(), buf[o[10]:]])
    old[0], old[14] = len(old), 0
    m = basis.n_coef
    for t in range(3):
        x = dens.init_centre.copy()
        x[:m] = 0.5 * rng.standard_normal(m)
        x[m] += 0.3 * t
        g1, g2 = np.empty_like(x), np.empty_like(x)
        l1, l2 = sparse_logp_grad(x, buf, g1), sparse_logp_grad(x, old, g2)
        assert np.isfinite(l1) and abs(l1 - l2) <= 1e-10 * abs(l2)
        np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-9 * np.abs(g2).max())


def test_tensor_layout_matches_per_cell_and_per_node():
    rng = np.random.default_rng(5)
    edges = [np.linspace(-3, 3, 61), np.linspace(-2, 4, 61)]
    counts = np.histogram2d(rng.standard_normal(30000), 1 + 1.3 * rng.standard_normal(30000), edges)[0]
    basis = effective_basis(edges, 11, counts=counts)          # cells straddle knots: 1D blocks of width 4 and 5
    a, s, H, r = map_estimate_sparse(basis, counts, 0.3)
    chol = sparse_cholesky(H)
    kw = dict(momenta_stats={"beta_hat": 0.4, "beta_hat_se": 0.01}, n_eff_factor=0.3, sigma_init=s)
    dens = {lay: sparse_density(counts, basis, a, chol, r, layout=lay, **kw) for lay in ("tensor", "cell", "node")}
    assert sparse_density(counts, basis, a, chol, r, **kw).buf[14] == -1      # the 2D default
    m = basis.n_coef
    for t in range(4):
        x = dens["cell"].init_centre.copy()
        x[:m] = 0.7 * rng.standard_normal(m)
        x[m] += 0.4 * (t - 1)
        x[m + 1] += 0.05 * t
        ref, gref = dens["cell"].logp_grad(x)
        for lay in ("tensor", "node"):
            lp, gr = dens[lay].logp_grad(x)
            assert np.isfinite(lp) and abs(lp - ref) <= 1e-11 * abs(ref)
            np.testing.assert_allclose(gr, gref, rtol=1e-9, atol=1e-10 * np.abs(gref).max())
        a1, a2, tmp = np.empty(m), np.empty(m), np.empty(m)     # the expand step (draws -> coefficients)
        sparse_a(x, dens["tensor"].buf, a1, tmp)
        sparse_a(x, dens["cell"].buf, a2, tmp)
        np.testing.assert_allclose(a1, a2, rtol=1e-12, atol=1e-12 * np.abs(a2).max())


@pytest.mark.slow  # ~21-28 s on the 2026-12-05 host; the default run stays near 10 min
def test_tensor_layout_samples_the_same_posterior_of_U():
    """NUTS at the same seed on the tensor and per-cell layouts: the gradients differ in round-off only, so the
    chains agree for a while and then decorrelate; posterior means and sds of U on the grid agree within Monte
    Carlo error."""
    from bayescg.bayes.effective import f_cells
    from bayescg.sampling import sample

    rng = np.random.default_rng(11)
    edges = [np.linspace(-3, 3, 41)] * 2
    counts = np.histogram2d(*(rng.standard_normal((2, 40000)) * [[1.0], [0.7]]), edges)[0]
    basis = effective_basis(edges, 8, counts=counts)
    a, s, H, r = map_estimate_sparse(basis, counts, 0.3)
    aw, sw, Hw, _ = map_estimate_sparse(basis, counts, 0.3, marginal_sigma=True, start=(a, s))
    chol = sparse_cholesky(Hw)
    kw = dict(momenta_stats={"beta_hat": 1.0, "beta_hat_se": 0.02}, n_eff_factor=0.3, sigma_init=sw)
    U = {}
    for lay in ("tensor", "cell"):
        post = sample(sparse_density(counts, basis, aw, chol, r, layout=lay, **kw), draws=500, tune=500, chains=4,
                      seed=5).posterior
        A = post["a"].values.reshape(-1, basis.n_coef)
        beta = post["beta"].values.ravel()
        act = np.repeat(np.repeat(basis.active, basis.coarsen[0], 0), basis.coarsen[1], 1)
        u = np.array([f_cells(basis, A[i])[act] / beta[i] for i in range(0, len(A), 2)])
        U[lay] = u - u.mean(axis=1, keepdims=True)
    sd = U["cell"].std(axis=0)
    # 1000 draws (ESS several hundred): the difference of means has sd ~0.06 posterior sds
    assert np.quantile(np.abs(U["tensor"].mean(axis=0) - U["cell"].mean(axis=0)) / sd, 0.95) < 0.25
    assert np.abs(np.median(U["tensor"].std(axis=0) / sd) - 1) < 0.1


@pytest.mark.parametrize("coarsen,quad", [(1, 1), (2, 2), (3, 4), (1, 3), (2, 3)])
def test_tensor_layout_other_gauss_rules(coarsen, quad):
    rng = np.random.default_rng(2)
    edges = [np.linspace(-3, 3, 37), np.linspace(-2, 4, 37)]
    counts = np.histogram2d(rng.standard_normal(20000), 1 + rng.standard_normal(20000), edges)[0]
    basis = effective_basis(edges, 7, counts=counts, coarsen=coarsen, quad=quad)
    a, s, H, r = map_estimate_sparse(basis, counts, 0.3)
    chol = sparse_cholesky(H)
    kw = dict(momenta_stats={"beta_hat": 0.4, "beta_hat_se": 0.01}, n_eff_factor=0.3, sigma_init=s)
    dt = sparse_density(counts, basis, a, chol, r, layout="tensor", **kw)
    dc = sparse_density(counts, basis, a, chol, r, layout="cell", **kw)
    m = basis.n_coef
    x = dc.init_centre.copy()
    x[:m] = 0.5 * rng.standard_normal(m)
    (l1, g1), (l2, g2) = dt.logp_grad(x), dc.logp_grad(x)
    assert abs(l1 - l2) <= 1e-11 * abs(l2)
    np.testing.assert_allclose(g1, g2, rtol=1e-9, atol=1e-10 * np.abs(g2).max())


def test_vectorizable_exp_matches_libm():
    """The kernel's own exp (a loop over it vectorizes; the 3 x 3-node path's node weights): within 1 ulp of
    math.exp on the range the weights use, 0 / inf past its documented cut-offs, NaN through."""
    import math

    from numba import njit

    from bayescg.kernels.effective import _exp

    @njit
    def both(y, o1, o2):
        for i in range(len(y)):
            o1[i] = _exp(y[i])
            o2[i] = math.exp(y[i])

    y = np.concatenate([np.linspace(-708, 709, 200001), -np.random.default_rng(0).random(10000) * 40,
                        [0.0, -0.0, 1e-300, -1e-300]])
    o1, o2 = np.empty_like(y), np.empty_like(y)
    both(y, o1, o2)
    assert np.all(np.abs(o1 - o2) <= np.spacing(o2))
    e = np.array([-708.5, -745.0, -np.inf, 709.5, np.inf, np.nan])
    o1, o2 = np.empty_like(e), np.empty_like(e)
    both(e, o1, o2)
    assert o1[:3].tolist() == [0.0, 0.0, 0.0] and o1[3:5].tolist() == [np.inf, np.inf] and np.isnan(o1[5])
