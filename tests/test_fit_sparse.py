"""The sparse form of the effective-potential fit (d >= 2, issue 15 item 2; issue 14 item 3).

Checked against the dense form (sum-to-zero coordinates, adaptive whitening, multinomial), an independent
implementation of the same posterior: equal MAP, equal log density up to a constant with the constant
direction profiled, and equal posterior mean / sd of U on the report grid within Monte Carlo error.
"""
import numpy as np
import pytest

from bayescg.bayes.effective import (adaptive_whitening, cell_log_mass, effective_basis, effective_density,
                                     map_estimate, map_estimate_sparse, momenta_likelihood_params, sparse_cholesky,
                                     sparse_density)


def _problem_2d(seed=0, n=30000):
    rng = np.random.default_rng(seed)
    edges = [np.linspace(-4, 4, 41), np.linspace(-3, 3, 31)]
    x = rng.standard_normal((n, 2)) * [1.0, 0.7]
    x[:, 1] += 0.3 * x[:, 0] ** 2 - 0.3
    counts = np.histogram2d(x[:, 0], x[:, 1], edges)[0]
    return edges, counts


def test_sparse_map_equals_dense_map_2d():
    edges, counts = _problem_2d()
    basis = effective_basis(edges, 8, counts=counts)
    b, s, _, _ = map_estimate(basis, counts, 0.3)
    a, s2, H, rank = map_estimate_sparse(basis, counts, 0.3)
    assert abs(s2 - s) < 1e-6 * s
    # the shape (a up to its free constant) is the dense form's Q b
    np.testing.assert_allclose(a - a.mean(), basis.Q @ b, atol=1e-7 * np.abs(b).max())
    ch = sparse_cholesky(H)
    LLt = (ch.L @ ch.L.T).toarray()
    np.testing.assert_allclose(LLt, H.toarray()[np.ix_(ch.perm, ch.perm)], atol=1e-10 * abs(H).max())


def test_newton_terms_on_the_fixed_pattern_equal_scipys_products():
    """The sparse MAP's V and H from the precomputed pattern (bayes.effective._NewtonPattern) against the plain
    scipy construction (COO -> CSR, V^T diag(mu) V + P / sigma^2 + I / ridge^2, symmetrised), on a 2D basis whose
    cells straddle knot lines and with coefficients removed (explicit zero entries in the node design)."""
    from scipy import sparse

    from bayescg.bayes.effective import _NewtonPattern, _node_entries, node_cell_design

    edges, counts = _problem_2d()
    basis = effective_basis(edges, 7, counts=counts)
    assert not basis.keep.all()  # removed coefficients: the node design has explicit zeros at column 0
    P = sparse.csr_matrix(basis.P)
    pat = _NewtonPattern(basis, P)
    a = np.random.default_rng(4).normal(0, 0.3, basis.n_coef)
    L, V0 = node_cell_design(basis, a)
    L1, ent = _node_entries(basis, a)
    V1 = pat.V(ent)
    np.testing.assert_array_equal(L, L1)
    np.testing.assert_allclose(V1.toarray(), V0.toarray(), rtol=1e-13, atol=1e-15)
    mu = np.exp(L)
    H0 = 0.3 * (V0.T @ sparse.diags(mu) @ V0) + P / 0.2 ** 2 + sparse.identity(basis.n_coef) / 100.0 ** 2
    H1 = pat.H(V1, mu, 0.3, 0.2, 100.0)
    assert sparse.isspmatrix_csc(H1) and H1.has_sorted_indices
    np.testing.assert_allclose(H1.toarray(), 0.5 * (H0 + H0.T).toarray(), rtol=1e-12, atol=1e-12 * abs(H0).max())
    np.testing.assert_array_equal(H1.toarray(), H1.toarray().T)


def test_sparse_density_is_the_dense_posterior_and_gradient_exact():
    """log p of the sparse kernel = an independent numpy evaluation of the Poisson form; its gradient =
    central differences; and, profiled over the free constant, the dense form's multinomial log density."""
    edges, counts = _problem_2d(1)
    basis = effective_basis(edges, 7, counts=counts)
    a0, s0, H, rank = map_estimate_sparse(basis, counts, 0.4)
    ch = sparse_cholesky(H)
    mom = {"beta_hat": 2.0, "beta_hat_se": 0.05}
    dens = sparse_density(counts, basis, a0, ch, rank, momenta_stats=mom, n_eff_factor=0.4, sigma_init=s0)
    m = basis.n_coef
    c = basis.active_counts(counts)
    nu, S = momenta_likelihood_params(2.0, 0.05)
    vals = []
    for seed in range(3):
        x = dens.initial_point(seed)
        lp, g = dens.logp_grad(x)
        a = ch.draws(a0, x[None, :m])[0]
        L = cell_log_mass(basis, a)[basis.active]
        sig, beta = np.exp(x[m]), np.exp(x[m + 1])
        ac = a - a.mean()
        ref = (0.4 * (c @ L - np.exp(L).sum()) - 0.5 * ac @ ac / 1e4 - 0.5 * a @ basis.P @ a / sig ** 2
               - rank * np.log(sig) - 0.5 * sig ** 2 + np.log(sig) + 0.5 * nu * np.log(beta) - 0.5 * beta * S
               - 1e-3 * beta + np.log(beta))
        assert abs(lp - ref) < 1e-9 * abs(ref)
        # profile the constant: at the best constant the Poisson term is the multinomial + a function of N only
        Lc = L - np.log(np.exp(L).sum() / c.sum())
        mult = 0.4 * (c @ (L - np.log(np.exp(L).sum())))
        assert abs(0.4 * (c @ Lc - np.exp(Lc).sum()) - (mult + 0.4 * (c.sum() * np.log(c.sum()) - c.sum()))) < 1e-6
        vals.append(lp)
        for i in (0, m // 2, m, m + 1):
            e = np.zeros_like(x)
            e[i] = 1e-6
            fd = (dens.logp_grad(x + e)[0] - dens.logp_grad(x - e)[0]) / 2e-6
            assert abs(fd - g[i]) < 1e-4 * max(1.0, abs(g[i])), (i, fd, g[i])


def _aligned_U(basis, A, beta, pts_idx, counts):
    """U draws (S, G) on the fine cells pts_idx, aligned to the count-weighted mean (as fit.py aligns them)."""
    from bayescg.bayes.effective import f_cells

    w = counts.ravel()[pts_idx]
    w = w / w.sum()
    U = np.array([f_cells(basis, a).ravel()[pts_idx] for a in A]) / beta[:, None]
    return U - (U @ w)[:, None]


def test_sparse_nuts_posterior_of_U_equals_dense_form():
    """Posterior mean and sd of U on a grid of the data region: sparse form (this fit) vs the dense form
    (adaptive whitening, multinomial) sampled by the same NUTS, within 5 Monte Carlo standard errors."""
    import arviz as az

    from bayescg.fit import sample_model

    edges, counts = _problem_2d(2, 20000)
    basis = effective_basis(edges, 6, counts=counts)
    mom = {"beta_hat": 2.0, "beta_hat_se": 0.05}
    b, s, _, Hd = map_estimate(basis, counts, 0.3)
    dense = effective_density(counts, basis, adaptive_whitening(basis, b, s, Hd), momenta_stats=mom,
                              n_eff_factor=0.3, sigma_init=s)
    a0, s2, H, rank = map_estimate_sparse(basis, counts, 0.3)
    sp = sparse_density(counts, basis, a0, sparse_cholesky(H), rank, momenta_stats=mom, n_eff_factor=0.3,
                        sigma_init=s2)
    kw = dict(draws=1000, tune=600, chains=2, seed=4)
    i_d, i_s = sample_model(dense, **kw), sample_model(sp, **kw)
    wh = adaptive_whitening(basis, b, s, Hd)
    A_d = wh.b_of(i_d.posterior["z"].values.reshape(-1, basis.n_coef - 1),
                  i_d.posterior["sigma_rw"].values.ravel()) @ basis.Q.T
    A_s = i_s.posterior["a"].values.reshape(-1, basis.n_coef)
    cells = np.flatnonzero(counts.ravel() >= 20)[::3]
    U_d = _aligned_U(basis, A_d, i_d.posterior["beta"].values.ravel(), cells, counts)
    U_s = _aligned_U(basis, A_s, i_s.posterior["beta"].values.ravel(), cells, counts)

    def mc(U, nchain):
        arr = U.reshape(nchain, -1, U.shape[1])
        ess = np.array([az.ess(arr[:, :, j]) for j in range(0, U.shape[1], 7)]).min()
        return U.mean(0), U.std(0), ess

    md, sd_d, ess_d = mc(U_d, 2)
    ms, sd_s, ess_s = mc(U_s, 2)
    se_mean = np.sqrt(sd_d ** 2 / ess_d + sd_s ** 2 / ess_s)
    assert np.all(np.abs(md - ms) < 5 * se_mean + 1e-12)
    # sd of a near-Gaussian draw set: relative se ~ 1 / sqrt(2 ess)
    rel = np.abs(sd_s / sd_d - 1)
    assert np.median(rel) < 3 * np.sqrt(0.5 / ess_d + 0.5 / ess_s), (np.median(rel), ess_d, ess_s)
    # beta and sigma_rw: same posterior means
    for v in ("beta", "sigma_rw"):
        xd, xs = i_d.posterior[v].values.ravel(), i_s.posterior[v].values.ravel()
        se = np.hypot(float(az.mcse(i_d, var_names=[v])[v]), float(az.mcse(i_s, var_names=[v])[v]))
        assert abs(xd.mean() - xs.mean()) < 5 * se, (v, xd.mean(), xs.mean(), se)


def test_marginal_sigma_whitening_samples_the_same_posterior_of_U():
    """The NUTS set-up of d >= 2 (issue 15 item 2): whitening centred at the Laplace-marginal sigma_rw, sampled at
    target_accept 0.9, against the previous set-up (joint-MAP whitening, 0.95) on the same data: equal posterior
    mean and sd of U on a grid of the data region, beta and sigma_rw within 5 Monte Carlo se; the marginal
    sigma_rw is nearer the posterior mean of sigma_rw than the joint MAP's."""
    import arviz as az

    from bayescg.fit import sample_model
    from bayescg.sampling import diagnostics

    edges, counts = _problem_2d(3, 20000)
    basis = effective_basis(edges, 7, counts=counts)
    mom = {"beta_hat": 2.0, "beta_hat_se": 0.05}
    a0, s0, H0, rank = map_estimate_sparse(basis, counts, 0.3)
    a1, s1, H1, _ = map_estimate_sparse(basis, counts, 0.3, marginal_sigma=True, start=(a0, s0))
    old = sparse_density(counts, basis, a0, sparse_cholesky(H0), rank, momenta_stats=mom, n_eff_factor=0.3,
                         sigma_init=s0)
    new = sparse_density(counts, basis, a1, sparse_cholesky(H1), rank, momenta_stats=mom, n_eff_factor=0.3,
                         sigma_init=s1)
    i_o = sample_model(old, draws=800, tune=500, chains=2, seed=5, target_accept=0.95)
    i_n = sample_model(new, draws=800, tune=500, chains=2, seed=6, target_accept=0.9)
    cells = np.flatnonzero(counts.ravel() >= 20)[::3]
    U = {}
    for k, i in (("old", i_o), ("new", i_n)):
        A = i.posterior["a"].values.reshape(-1, basis.n_coef)
        U[k] = _aligned_U(basis, A, i.posterior["beta"].values.ravel(), cells, counts).reshape(2, -1, len(cells))
    ess = min(np.array([az.ess(U[k][:, :, j]) for j in range(0, len(cells), 5)]).min() for k in U)
    mo, mn = U["old"].mean((0, 1)), U["new"].mean((0, 1))
    so, sn = U["old"].std((0, 1)), U["new"].std((0, 1))
    assert np.all(np.abs(mo - mn) < 5 * np.sqrt((so ** 2 + sn ** 2) / ess) + 1e-12)
    assert np.median(np.abs(sn / so - 1)) < 3 * np.sqrt(1.0 / ess), (np.median(np.abs(sn / so - 1)), ess)
    for v in ("beta", "sigma_rw"):
        xo, xn = i_o.posterior[v].values.ravel(), i_n.posterior[v].values.ravel()
        se = np.hypot(float(az.mcse(i_o, var_names=[v])[v]), float(az.mcse(i_n, var_names=[v])[v]))
        assert abs(xo.mean() - xn.mean()) < 5 * se, (v, xo.mean(), xn.mean(), se)
    sig_post = i_n.posterior["sigma_rw"].values.mean()
    assert abs(s1 - sig_post) < abs(s0 - sig_post), (s0, s1, sig_post)
    dn, do = diagnostics(i_n), diagnostics(i_o)
    assert dn["divergences"] == 0
    print("grad evals per draw old", do["grad_evals_per_draw"], "new", dn["grad_evals_per_draw"])


def test_trace_of_penalty_times_inverse_precision_exact_and_hutchinson():
    """tr(P H^-1) of the marginal sigma_rw: the sparse-LU value equals a dense numpy inverse; Hutchinson's
    64-probe estimate (used above 1000 coefficients) is within 10 % of it."""
    from scipy import sparse

    from bayescg.bayes.effective import trace_p_hinv

    edges, counts = _problem_2d(4)
    basis = effective_basis(edges, 10, counts=counts)
    _, _, H, _ = map_estimate_sparse(basis, counts, 0.3)
    P = sparse.csr_matrix(basis.P)
    ref = float(np.trace(np.linalg.inv(H.toarray()) @ basis.P))
    assert abs(trace_p_hinv(P, H) - ref) < 1e-8 * abs(ref)
    assert abs(trace_p_hinv(P, H, exact_up_to=0) - ref) < 0.1 * abs(ref)


