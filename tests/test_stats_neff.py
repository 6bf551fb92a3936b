"""n_eff of the histogram likelihood: which IAT estimate is used (bayescg.stats.effective_iat_steps)."""
import types

import numpy as np
import pytest

from bayescg import stats


def ar1_walkers(walkers, n, phi, rng):
    """(walkers, n) stationary AR(1) paths with unit variance: IAT of q (1+phi)/(1-phi), of q^2 (1+phi^2)/(1-phi^2)."""
    x = np.empty((walkers, n))
    x[:, 0] = rng.normal(size=walkers)
    e = rng.normal(size=(walkers, n)) * np.sqrt(1 - phi ** 2)
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + e[:, t]
    return x


def batch_means_iat(x, batches=32):
    """IAT in steps of each walker's series x (walkers, n) by batch means pooled over walkers."""
    w, n = x.shape
    m = x[:, : n - n % batches].reshape(w, batches, -1).mean(axis=2)
    return float(m.var(ddof=1) * (n // batches) / x.var())


def sim_from(x, stride, **extra):
    w, n = x.shape
    qs = x[:, ::stride]
    return types.SimpleNamespace(samples_q=qs.reshape(-1, 1), samples_p=np.random.default_rng(0).normal(size=(qs.size, 1)),
                                 sample_walker=np.repeat(np.arange(w), qs.shape[1]), sample_stride=stride,
                                 beta_hat=1.0, beta_hat_se=0.01, hist_counts=np.full(10, x.size / 10),
                                 accumulated_steps=x.size, **extra)


@pytest.fixture(scope="module")
def ar1():
    return ar1_walkers(8, 40000, 0.95, np.random.default_rng(5))


def test_streaming_q_and_q2_beat_the_stride_cap(ar1):
    tau_true = (1 + 0.95) / (1 - 0.95)  # 39 steps
    q_iat, q2_iat = batch_means_iat(ar1), batch_means_iat(ar1 ** 2)
    assert q2_iat == pytest.approx((1 + 0.95 ** 2) / (1 - 0.95 ** 2), rel=0.25)
    # stride 100 >> IAT: the stored samples look independent; without an even-moment IAT the cap stays
    s = stats.equilibrium_summary(sim_from(ar1, 100, q_iat_steps=q_iat))
    assert s.iat < 2 and "stored cap" in s.n_eff_method
    assert s.n_eff == pytest.approx(ar1.size / 100, rel=0.3)
    # with q and q^2 streaming IATs: n_eff = steps / tau, ~2.5x more than the cap and close to the truth
    s = stats.equilibrium_summary(sim_from(ar1, 100, q_iat_steps=q_iat, q2_iat_steps=q2_iat))
    assert s.n_eff_method.endswith("streaming q")
    assert s.n_eff == pytest.approx(ar1.size / tau_true, rel=0.25)
    assert s.n_eff_factor == pytest.approx(s.n_eff / ar1.size)


def test_resolved_stored_estimate_guards_a_too_small_streaming_iat(ar1):
    # stride 5 resolves the autocorrelation (tau ~ 8 stored samples): an implausibly small streaming IAT
    # (what an oscillating q gives) does not shrink the bands
    s = stats.equilibrium_summary(sim_from(ar1, 5, q_iat_steps=0.4, q2_iat_steps=0.5))
    assert s.iat >= stats.RESOLVED_IAT and s.n_eff_method.endswith("stored")
    assert s.iat_steps == pytest.approx(39.0, rel=0.25)


def test_effective_iat_steps_rules():
    f = stats.effective_iat_steps
    assert f(None, 1000, 1.2, 50) == (60.0, "stored")               # old results / dicts
    assert f(float("nan"), 1000, 1.2, 50)[1] == "stored"
    it, how = f(0.4, 1000, 1.0, 50)                                  # q only, stored unresolved: cap
    assert it == 50 and "stored cap" in how
    it, how = f(0.4, 1000, 1.0, 50, q2_iat_steps=9.9)               # q^2 known: use it
    assert it == pytest.approx(9.9) and how.endswith("streaming q^2")
    it, how = f(120.0, 1000, 1.0, 50, q2_iat_steps=9.9)             # slow odd mode (wells) dominates
    assert it == 120.0 and how.endswith("streaming q")
    assert f(0.2, 1000, 1.0, 1, q2_iat_steps=0.3)[0] == 1.0          # never below one step
