"""Tests of bayescg.stats against analytic results (AR(1), Gaussian laws) and independent formulas."""
import math
import types

import numpy as np
import pytest
from scipy import stats as st

from bayescg import stats
from bayescg.errors import InputError


def ar1(n, phi, rng, sd=1.0):
    """AR(1) with stationary sd; IAT = (1 + phi) / (1 - phi)."""
    x = np.empty(n)
    e = rng.normal(0, sd * math.sqrt(1 - phi ** 2), n)
    x[0] = rng.normal(0, sd)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_iat_ar1(phi):
    rng = np.random.default_rng(3)
    chains = [ar1(20000, phi, rng) for _ in range(4)]
    tau = stats.integrated_autocorrelation_time(chains)
    true = (1 + phi) / (1 - phi)
    assert abs(tau - true) / true < 0.12


def test_iat_thinning_and_pooled():
    rng = np.random.default_rng(4)
    x = np.concatenate([ar1(5000, 0.8, rng) for _ in range(3)])
    walker = np.repeat(np.arange(3), 5000)
    tau = stats.pooled_iat(np.column_stack([x, rng.normal(size=x.size)]), walker)
    assert 7 < tau < 11  # true 9, max over columns
    assert stats.thinning_stride(tau) == math.ceil(tau)
    with pytest.raises(InputError):
        stats.thinning_stride(float("nan"))


def test_batch_means_se_matches_iat():
    # se of the mean of AR(1): sd * sqrt(tau / n)
    rng = np.random.default_rng(5)
    phi, n = 0.7, 200000
    x = ar1(n, phi, rng)
    mean, se = stats.batch_means_se(stats.batch_means(x, 40))
    true = math.sqrt((1 + phi) / (1 - phi) / n)
    assert abs(se - true) / true < 0.3
    assert abs(mean) < 4 * true
    with pytest.raises(InputError):
        stats.batch_means(np.ones(5), 20)


def test_beta_from_momenta():
    rng = np.random.default_rng(6)
    beta = 2.5
    p = rng.normal(0, 1 / math.sqrt(beta), size=(40000, 2))
    b, se = stats.beta_from_momenta(p)
    assert abs(b - beta) < 4 * se
    # the se is the iid delta-method value beta * sqrt(2 / (n d)) up to sampling noise
    assert abs(se - beta * math.sqrt(2 / (40000 * 2))) / se < 0.4
    # second-moment batches give the same estimate
    batches = np.stack([np.einsum("ni,nj->ij", c, c) / len(c) for c in np.array_split(p, 20)])
    b2, se2 = stats.beta_from_second_moments(batches, p.mean(axis=0))
    assert abs(b2 - b) < 0.02 * b and 0.5 < se2 / se < 2


def test_mardia_reduces_to_skew_kurtosis_in_1d():
    rng = np.random.default_rng(7)
    x = rng.gamma(3.0, size=500)
    r = stats.mardia_test(x[:, None])
    assert r["skewness"] == pytest.approx(st.skew(x) ** 2, rel=1e-10)
    assert r["kurtosis"] == pytest.approx(st.kurtosis(x, fisher=False), rel=1e-10)


def test_henze_zirkler_statistic_is_weighted_cf_distance():
    # HZ = n * E_{t ~ N(0, b^2 I)} |psi_n(t) - exp(-|t|^2/2)|^2, psi_n the empirical cf of the
    # standardized data (MLE covariance).  Monte Carlo over t is independent of the closed form.
    rng = np.random.default_rng(8)
    n, d = 60, 2
    x = rng.standard_t(4, size=(n, d)) @ np.array([[1.0, 0.3], [0.0, 0.7]])
    hz, _ = stats.henze_zirkler_test(x)
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n
    y = np.linalg.solve(np.linalg.cholesky(s), xc.T).T
    b = ((2 * d + 1) * n / 4) ** (1 / (d + 4)) / math.sqrt(2)
    t = rng.normal(0, b, size=(400000, d))
    ph = t @ y.T
    psi_re, psi_im = np.cos(ph).mean(axis=1), np.sin(ph).mean(axis=1)
    mc = n * np.mean((psi_re - np.exp(-0.5 * (t * t).sum(axis=1))) ** 2 + psi_im ** 2)
    assert hz == pytest.approx(mc, rel=0.02)


def test_multivariate_normality_tests_size_and_power():
    rng = np.random.default_rng(9)
    cov = np.array([[2.0, 0.8], [0.8, 1.0]])
    ph, pm = [], []
    for _ in range(200):
        x = rng.multivariate_normal([1, -1], cov, size=150)
        ph.append(stats.henze_zirkler_test(x)[1])
        pm.append(stats.mardia_test(x)["pvalue"])
    # size at the 5 % level (binomial sd of the rate over 200 draws is 1.5 %)
    assert 0.01 < np.mean(np.array(ph) < 0.05) < 0.10
    assert np.mean(np.array(pm) < 0.05) < 0.10
    # power: uniform and bimodal laws are rejected
    u = rng.uniform(-1, 1, size=(500, 2))
    assert stats.henze_zirkler_test(u)[1] < 1e-3
    assert stats.mardia_test(u)["pvalue"] < 1e-3
    mix = np.concatenate([rng.normal(-2, 0.5, (250, 2)), rng.normal(2, 0.5, (250, 2))])
    assert stats.henze_zirkler_test(mix)[1] < 1e-6


def test_normality_test_dispatch():
    rng = np.random.default_rng(10)
    r1 = stats.normality_test(rng.normal(size=3000))
    assert r1["test"] == "dagostino-pearson" and r1["pvalue"] > 1e-3
    r2 = stats.normality_test(rng.laplace(size=3000))
    assert r2["pvalue"] < 1e-6
    r3 = stats.normality_test(rng.normal(size=(5000, 2)))
    assert r3["test"] == "henze-zirkler" and r3["n"] == 2000
    with pytest.raises(InputError):
        stats.normality_test(np.ones(5))


def test_configurational_beta_gibbs_double_well():
    # exact samples of exp(-beta U), U = (q^2 - 1)^2 / 4, by inverse CDF on a fine grid
    rng = np.random.default_rng(11)
    beta = 3.0
    grid = np.linspace(-3, 3, 200001)
    w = np.exp(-beta * (grid ** 2 - 1) ** 2 / 4)
    cdf = np.cumsum(w)
    cdf /= cdf[-1]
    q = np.interp(rng.uniform(size=40000), cdf, grid)
    grad = lambda x: x ** 3 - x  # noqa: E731
    b, se = stats.configurational_beta(q, grad)
    assert abs(b - beta) < 4 * se and se < 0.1
    b2, _ = stats.configurational_beta(q, grad, laplacian=lambda x: (3 * x ** 2 - 1).ravel())
    assert b2 == pytest.approx(b, rel=1e-6)


def test_equilibrium_summary_duck_typed():
    rng = np.random.default_rng(12)
    walkers, n = 4, 3000
    q = np.concatenate([ar1(n, 0.9, rng) for _ in range(walkers)])
    p = np.concatenate([ar1(n, 0.5, rng, sd=0.5) for _ in range(walkers)])
    sim = types.SimpleNamespace(samples_q=q[:, None], samples_p=p[:, None],
                                sample_walker=np.repeat(np.arange(walkers), n), sample_stride=10,
                                beta_hat=None, beta_hat_se=None, hist_counts=np.full(100, 1200.0))
    s = stats.equilibrium_summary(sim)
    assert 14 < s.iat < 24  # q has tau = 19
    assert s.stride == math.ceil(s.iat)
    assert s.n_eff == pytest.approx(walkers * n / s.iat)
    assert s.n_eff_factor == pytest.approx(s.n_eff / 120000)
    assert abs(s.beta_hat - 4.0) < 4 * s.beta_hat_se
    assert s.normality["pvalue"] > 1e-3
    assert set(s.to_dict()) >= {"beta_hat", "beta_hat_se", "normality", "iat", "n_eff"}
