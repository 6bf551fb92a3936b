"""The sparse 2D kernel's per-cell layout (one gather and one scatter per cell) gives the same log density and
gradient as the per-node layout it replaced (same buffer with the node design stored node by node)."""
import numpy as np

from bayescg.bayes.effective import effective_basis, map_estimate_sparse, sparse_cholesky, sparse_density
from bayescg.kernels.effective import _sparse_offsets, sparse_logp_grad


def test_per_cell_layout_matches_per_node():
    rng = np.random.default_rng(3)
    edges = [np.linspace(-3, 3, 41)] * 2
    counts = np.histogram2d(*rng.standard_normal((2, 20000)), edges)[0]
    basis = effective_basis(edges, 9, counts=counts)
    a, s, H, r = map_estimate_sparse(basis, counts, 0.2)
    dens = sparse_density(counts, basis, a, sparse_cholesky(H), r, momenta_stats={"beta_hat": 0.4,
                          "beta_hat_se": 0.01}, n_eff_factor=0.2, sigma_init=s)
    buf = dens.buf
    assert buf[14] > 0                                   # the per-cell layout is the one packed
    idx, val, _ = basis.nodes
    o = _sparse_offsets(buf)
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
