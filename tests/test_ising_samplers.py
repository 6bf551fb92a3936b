"""NUTS (X summed out) against data augmentation (FFBS Gibbs for X + NUTS for theta), and
Laplace against NUTS, on a small chain."""
import numpy as np
import pytest

from bayescg.ising.bayes import compare_laplace_nuts, diagnostics, fit_laplace, sample_gibbs, sample_nuts
from bayescg.ising.coarse import CoarseModel
from bayescg.ising.fine import FineModel


@pytest.fixture(scope="module")
def small():
    fm = FineModel(8, 1.0, 0.4, (0.7,), True)
    x = fm.sample(25, np.random.default_rng(6))
    cm = CoarseModel(8, 2, "110", beta=1.0, mu_c=0.4, periodic=True)
    return cm, x


def _summ(idata):
    tc = idata.posterior.theta_c.values.reshape(-1, 2)
    tf = idata.posterior.theta_cf.values.ravel()
    z = np.column_stack([tc, tf])
    return z.mean(0), z.std(0, ddof=1), z


def test_nuts_and_gibbs_agree(small):
    cm, x = small
    a = sample_nuts(cm, x, draws=600, tune=400, chains=2, seed=1, backend="pymc")
    b = sample_gibbs(cm, x, draws=600, tune=400, chains=2, seed=2)
    da, db = diagnostics(a.idata), diagnostics(b.idata)
    assert da["r_hat_max"] < 1.05 and db["r_hat_max"] < 1.05
    ma, sa, _ = _summ(a.idata)
    mb, sb, _ = _summ(b.idata)
    # means within 4 Monte Carlo standard errors (ESS-based), sds within 25 %
    se = np.sqrt(sa ** 2 / da["ess_bulk_min"] + sb ** 2 / db["ess_bulk_min"])
    assert np.all(np.abs(ma - mb) < 4 * se + 1e-3), (ma, mb, se)
    np.testing.assert_allclose(sb, sa, rtol=0.25)
    # Laplace against the NUTS draws: reported metrics are finite and sensible
    lap = fit_laplace(cm, x)
    c = compare_laplace_nuts(lap, a.idata.posterior.theta_c.values.reshape(-1, 2),
                             a.idata.posterior.theta_cf.values.ravel())
    assert c["kl"] >= 0 and np.isfinite(c["kl"])
    assert len(c["sd_ratio"]) == 3
