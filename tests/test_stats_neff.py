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


def test_p2_iat_from_the_se_of_beta_hat(ar1):
    # Gaussian AR(1) momenta: the IAT of p^2 is (1 + phi^2) / (1 - phi^2) = 19.5 steps
    w, n = ar1.shape
    p = 0.5 * ar1  # beta = 4
    b, se = stats.beta_from_momenta(p.reshape(-1), np.repeat(np.arange(w), n), n_batches=w * 32)
    tau = stats.p2_iat_steps(b, se, np.array([[p.var()]]), p.size)
    assert tau == pytest.approx((1 + 0.95 ** 2) / (1 - 0.95 ** 2), rel=0.25)
    assert stats.p2_iat_steps(b, float("nan"), np.array([[p.var()]]), p.size) is None
    # in equilibrium_summary it is an even-moment estimate: with it the stride cap is lifted
    sim = sim_from(ar1, 100, q_iat_steps=0.4)
    sim.beta_hat, sim.beta_hat_se, sim.momentum_covariance = b, se, np.array([[p.var()]])
    s = stats.equilibrium_summary(sim)
    assert s.n_eff_method.endswith("|p|^2") and s.iat_steps == pytest.approx(tau)


def test_test1_bands_from_the_streaming_iat_are_honest_and_narrower():
    # (the fallback rule: with per-walker counts n_eff comes from the histogram's count variance, test_calibration)
    # Test 1 (4.5) at delta 0.5: the storage stride (90 steps) exceeds every IAT, so the stored-sample n_eff is
    # the number of stored samples.  With the |p|^2 IAT (~20 steps) the band of U_0 (beta fixed to the
    # configurational temperature of U_0, which removes the finite-delta bias) is ~2x narrower and still
    # covers q^2/2 over the 98 % mass region (measured at 1e7 steps, 6 seeds: 0.98 vs 1.0; width 0.039 vs 0.077)
    from bayescg.fit import fit_effective_potential
    from bayescg.potentials import Potential
    from bayescg.simulate import simulate

    pot = Potential.from_expression("q**2/2 + 0.05*sin(q/0.05) + 0.001*sin(q/0.001)", ["q"])
    cover, ratio = [], []
    for seed in (1, 2, 3):
        sim = simulate(pot, 0.5, 0.1, steps=4_000_000, walkers=16, seed=seed, bins=120)
        sim.walker_hist_counts = sim.hist_count_var = None  # the IAT fallback (no count variance)
        eq = stats.equilibrium_summary(sim)
        assert eq.n_eff_method.endswith("|p|^2") and 10 < eq.iat_steps < 40
        old = stats.equilibrium_summary(types.SimpleNamespace(
            **{k: getattr(sim, k) for k in ("samples_q", "samples_p", "sample_walker", "sample_stride", "hist_counts")}))
        assert old.n_eff_method == "stored" and eq.n_eff > 2 * old.n_eff
        q = stats.thin_samples(sim.samples_q, sim.sample_walker, eq.stride)
        bconf, _ = stats.configurational_beta(q, lambda x: x, lambda x: np.ones(len(x)))
        widths = []
        for e in (eq, old):
            r = fit_effective_potential(dict(counts=sim.hist_counts, edges=sim.hist_edges, beta=bconf,
                                             n_eff_factor=e.n_eff_factor), knots=20, method="map",
                                        reference=lambda x: np.ravel(x) ** 2 / 2, seed=seed)
            widths.append(np.median((r.U_upper - r.U_lower)[r.mass_region]))
            if e is eq:
                cover.append(r.reference_coverage)
        ratio.append(widths[1] / widths[0])
    assert np.mean(cover) > 0.85
    assert 1.5 < np.mean(ratio) < 2.6
