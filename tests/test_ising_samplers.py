"""The Ising samplers against the exact posterior: NUTS on the marginal posterior (nutpie on the cached
numba kernel; PyMC on the marginal model), the numba data-augmentation Gibbs sampler, and Laplace.

Truth: posterior moments of (theta_c, theta_cf) by quadrature on a grid, with the likelihood written here by
enumerating all 2^n_c coarse configurations (independent of the transfer-matrix code under test).
Tolerances: 4 Monte Carlo standard errors (ArviZ mcse of the mean and of the sd) plus the grid's error."""
import itertools

import numpy as np
import pytest

from bayescg.ising.bayes import compare_laplace_nuts, diagnostics, fit_laplace, sample_gibbs, sample_nuts
from bayescg.ising.coarse import CoarseModel
from bayescg.ising.fine import FineModel
from bayescg.ising.kernel import MarginalDensity


@pytest.fixture(scope="module")
def small():
    fm = FineModel(8, 1.0, 0.4, (0.7,), True)
    x = fm.sample(25, np.random.default_rng(6))
    cm = CoarseModel(8, 2, "110", beta=1.0, mu_c=0.4, periodic=True)  # n_c = 4, theta_c = (lin, pair1)
    return cm, x


def enumeration_posterior(cm, x, prior_sd=2.0):
    """Posterior mean and sd of (lin, pair1, theta_cf) by quadrature: p(x_i | theta) summed over all coarse
    configurations, p_c by direct sums on the ring, Normal(0, prior_sd) x Uniform(0.5, 1) prior."""
    n = cm.n_c
    Xs = np.array(list(itertools.product([-1, 1], repeat=n)), float)  # (16, n_c)
    up = np.repeat(Xs, cm.level, axis=1)                                # (16, n_f)
    a = (x[:, None, :] * up[None] > 0).sum(-1)                           # (N, 16) agreeing fine spins
    mag = Xs.sum(1)
    pair = sum(Xs[:, i] * Xs[:, (i + 1) % n] for i in range(n))
    lin = np.linspace(-6.0, 10.0, 97)
    pr = np.linspace(-4.5, 7.5, 97)
    tf = np.linspace(0.5, 1.0, 151)[1:-1]
    L, P = np.meshgrid(lin, pr, indexing="ij")
    lw = cm.beta * ((L[..., None] / 2 + cm.mu_c) * mag + P[..., None] * pair)  # (lin, pr, 16)
    lw -= lw.max(-1, keepdims=True)
    pc = np.exp(lw)
    pc /= pc.sum(-1, keepdims=True)
    pc = pc.reshape(-1, len(Xs))
    loglik = np.empty((len(lin), len(pr), len(tf)))
    for k, t in enumerate(tf):
        em = t ** a * (1 - t) ** (cm.n_f - a)                               # (N, 16)
        loglik[:, :, k] = np.log(pc @ em.T).sum(-1).reshape(len(lin), len(pr))
    logp = loglik - 0.5 * (L ** 2 + P ** 2)[..., None] / prior_sd ** 2
    w = np.exp(logp - logp.max())
    w /= w.sum()
    # the box holds the posterior: almost no mass on its faces
    assert w[[0, -1]].sum() + w[:, [0, -1]].sum() + w[:, :, [0, -1]].sum() < 1e-4
    grids = np.broadcast_arrays(L[..., None], P[..., None], tf[None, None, :])
    mean = np.array([(w * g).sum() for g in grids])
    sd = np.sqrt(np.array([(w * (g - m) ** 2).sum() for g, m in zip(grids, mean)]))
    return mean, sd


@pytest.fixture(scope="module")
def exact(small):
    return enumeration_posterior(*small)


def _check_against_exact(idata, exact, label):
    """Mean and sd of each parameter within 4 Monte Carlo standard errors (+1 % of the sd for the grid):
    mcse(mean) = sd / sqrt(ESS(v)), mcse(sd) = sd((v - m)^2) / sqrt(ESS((v - m)^2)) / (2 sd) (delta method)."""
    import arviz as az

    mean, sd = exact
    post = idata.posterior
    tc = post.theta_c.values
    cols = [tc[..., 0], tc[..., 1], post.theta_cf.values]  # (chain, draw) each
    for j, (k, v) in enumerate(zip(("lin", "pair1", "theta_cf"), cols)):
        m, s = v.mean(), v.std(ddof=1)
        sq = (v - m) ** 2
        se_m = s / np.sqrt(az.ess(v, method="mean"))
        se_s = sq.std() / np.sqrt(az.ess(sq, method="mean")) / (2 * s)
        assert abs(m - mean[j]) < 4 * se_m + 0.01 * sd[j], (label, k, m, mean[j], se_m)
        assert abs(s - sd[j]) < 4 * se_s + 0.01 * sd[j], (label, k, s, sd[j], se_s)


def test_marginal_density_matches_enumeration_likelihood(small):
    """The packed-buffer kernel nutpie samples: log density differences equal the enumeration's."""
    cm, x = small
    n = cm.n_c
    Xs = np.array(list(itertools.product([-1, 1], repeat=n)), float)
    up = np.repeat(Xs, cm.level, axis=1)
    a = (x[:, None, :] * up[None] > 0).sum(-1)
    pair = sum(Xs[:, i] * Xs[:, (i + 1) % n] for i in range(n))

    def enum_logpost(u):  # same coordinates: (lin, pair1, z), theta_cf = 0.5 + 0.5 sigmoid(z), Jacobian incl.
        s = 1 / (1 + np.exp(-u[2]))
        t = 0.5 + 0.5 * s
        lw = cm.beta * ((u[0] / 2 + cm.mu_c) * Xs.sum(1) + u[1] * pair)
        pc = np.exp(lw - lw.max())
        pc /= pc.sum()
        ll = np.log((pc[None] * t ** a * (1 - t) ** (cm.n_f - a)).sum(1)).sum()
        return ll - 0.5 * (u[0] ** 2 + u[1] ** 2) / 4.0 + np.log(0.5 * s * (1 - s))

    dens = MarginalDensity(cm, x, 2.0)
    rng = np.random.default_rng(0)
    us = rng.normal([1.5, 0.5, 2.0], [1.0, 0.5, 1.0], size=(6, 3))
    got = np.array([dens.logp_grad(u)[0] for u in us])
    want = np.array([enum_logpost(u) for u in us])
    np.testing.assert_allclose(got - got[0], want - want[0], atol=1e-9)
    u, h = us[1], 1e-6
    g = dens.logp_grad(u)[1]
    fd = [(enum_logpost(u + h * e) - enum_logpost(u - h * e)) / (2 * h) for e in np.eye(3)]
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-5)


def test_nuts_kernel_posterior_equals_exact(small, exact):
    pytest.importorskip("nutpie")
    cm, x = small
    run = sample_nuts(cm, x, draws=2000, tune=1000, chains=4, seed=1)
    assert run.backend == "nutpie" and run.compile_seconds < 30
    d = diagnostics(run.idata)
    assert d["r_hat_max"] < 1.02 and d["divergences"] == 0 and d["grad_evals_per_draw"] > 1
    _check_against_exact(run.idata, exact, "nuts")


def test_gibbs_posterior_equals_exact_and_is_reproducible(small, exact):
    cm, x = small
    run = sample_gibbs(cm, x, draws=6000, tune=1000, chains=4, seed=2)
    assert run.backend == "numba-gibbs"
    d = diagnostics(run.idata)
    assert d["r_hat_max"] < 1.05 and d["tree_depth_mean"] is None
    _check_against_exact(run.idata, exact, "gibbs")
    # chains run 2 at a time on threads by default; one at a time must give the same draws (per-thread streams)
    again = sample_gibbs(cm, x, draws=6000, tune=1000, chains=4, seed=2, cores=1)
    np.testing.assert_array_equal(again.idata.posterior.theta_c.values, run.idata.posterior.theta_c.values)
    np.testing.assert_array_equal(again.idata.posterior.theta_cf.values, run.idata.posterior.theta_cf.values)


def test_pymc_nuts_posterior_equals_exact_and_laplace_metrics(small, exact):
    cm, x = small
    a = sample_nuts(cm, x, draws=600, tune=400, chains=2, seed=1, backend="pymc")
    assert a.backend == "pymc" and diagnostics(a.idata)["r_hat_max"] < 1.05
    _check_against_exact(a.idata, exact, "pymc")
    # Laplace against the NUTS draws: reported metrics are finite and sensible
    lap = fit_laplace(cm, x)
    c = compare_laplace_nuts(lap, a.idata.posterior.theta_c.values.reshape(-1, 2),
                             a.idata.posterior.theta_cf.values.ravel())
    assert c["kl"] >= 0 and np.isfinite(c["kl"])
    assert len(c["sd_ratio"]) == 3
