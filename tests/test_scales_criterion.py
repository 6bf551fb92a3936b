"""The scale criterion: shape effects of p with batch-means errors against independent truth, verdict logic,
verdict stability under a 10x larger sample, and a real scan."""
import math

import numpy as np
import pytest
from scipy.signal import lfilter

from bayescg.config import model_from_dict
from bayescg.potentials import Potential
from bayescg.report import Report
from bayescg.scales import ShapeTolerance, classify, classify_rows, scale_estimate, scan_scales, shape_row
from bayescg.simulate import simulate
from bayescg.stats import mardia_kurtosis_effect, moment_batches, shape_effects


def _effects(x, walkers):
    wid = np.repeat(np.arange(walkers), x.shape[0] // walkers)
    return shape_effects(*moment_batches(x, wid))


def test_moment_batches_are_per_walker_batch_means():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2 * 103, 2))
    wid = np.repeat([0, 1], 103)
    M, counts = moment_batches(x, wid, n_batches=4)
    assert M.shape == (2, 4, 2, 4) and np.all(counts == 25)
    xs = x[103:][3:]  # walker 1, the 3 oldest samples dropped
    assert np.allclose(M[1, 2, :, 2], (xs[50:75] ** 3).mean(axis=0))


def test_ar1_gaussian_kurtosis_zero_with_the_right_se():
    # Gaussian AR(1), rho_t = phi^t: var(sample kurtosis) -> 24/N sum_t rho_t^4, var(skewness) -> 6/N sum_t rho_t^3
    phi, W, n, reps = 0.8, 16, 12_000, 20
    N = W * n
    se_k = math.sqrt(24 / N * (1 + phi ** 4) / (1 - phi ** 4))
    se_s = math.sqrt(6 / N * (1 + phi ** 3) / (1 - phi ** 3))
    rng = np.random.default_rng(7)
    k, ks, s, ss = [], [], [], []
    for _ in range(reps):
        x = lfilter([1.0], [1.0, -phi], rng.standard_normal((W, n + 200)), axis=1)[:, 200:]
        e = _effects(x.ravel(), W)
        k.append(e["excess_kurtosis"][0]), ks.append(e["excess_kurtosis_se"][0])
        s.append(e["skewness"][0]), ss.append(e["skewness_se"][0])
    assert np.mean(ks) == pytest.approx(se_k, rel=0.2)
    assert np.mean(ss) == pytest.approx(se_s, rel=0.2)
    assert abs(np.mean(k)) < 4 * se_k / math.sqrt(reps) and abs(np.mean(s)) < 4 * se_s / math.sqrt(reps)
    assert 0.6 < np.std(k, ddof=1) / se_k < 1.5 and 0.6 < np.std(s, ddof=1) / se_s < 1.5
    # ignoring the correlation (i.i.d. formula) would be ~2.1x too small: the batch means see it
    assert np.mean(ks) > 1.5 * math.sqrt(24 / N)


@pytest.mark.parametrize("law, skew, kurt", [("laplace", 0.0, 3.0), ("uniform", 0.0, -1.2),
                                             ("exponential", 2.0, 6.0)])
def test_iid_laws_exact_skewness_and_kurtosis(law, skew, kurt):
    rng = np.random.default_rng(11)
    draw = {"laplace": lambda n: rng.laplace(size=n), "uniform": lambda n: rng.uniform(size=n),
            "exponential": lambda n: rng.exponential(size=n)}[law]
    est = [_effects(draw(160_000), 16) for _ in range(8)]
    k = np.array([e["excess_kurtosis"][0] for e in est])
    s = np.array([e["skewness"][0] for e in est])
    se_k = np.mean([e["excess_kurtosis_se"][0] for e in est])
    se_s = np.mean([e["skewness_se"][0] for e in est])
    assert abs(k.mean() - kurt) < 4 * se_k / math.sqrt(8) + 0.02 * abs(kurt)
    assert abs(s.mean() - skew) < 4 * se_s / math.sqrt(8) + 0.02 * abs(skew)
    assert 0.4 < k.std(ddof=1) / se_k < 2.0 and 0.4 < s.std(ddof=1) / se_s < 2.0


def test_mardia_kurtosis_effect_truth_and_affine_invariance():
    rng = np.random.default_rng(5)
    n, wid = 192_000, np.repeat(np.arange(16), 12_000)
    A = np.array([[1.0, 0.5], [0.0, 2.0]])
    lap = rng.laplace(size=(n, 2))
    m1 = mardia_kurtosis_effect(lap, wid)
    m2 = mardia_kurtosis_effect(lap @ A.T + 3.0, wid)
    # independent coordinates: b2 - d(d+2) = sum kappa_i, so 3 (b2/8 - 1) = 3 * 6 / 8
    assert m1["kurtosis_effect"] == pytest.approx(2.25, abs=4 * m1["kurtosis_effect_se"])
    assert m2["kurtosis_effect"] == pytest.approx(m1["kurtosis_effect"], rel=1e-8)
    # isotropic variance mixture p = sqrt(T) z, T ~ U(0.5, 1.5): 3 CV(T)^2 = 3 / 12
    mix = rng.standard_normal((n, 2)) * np.sqrt(rng.uniform(0.5, 1.5, size=(n, 1)))
    mm = mardia_kurtosis_effect(mix, wid)
    assert mm["kurtosis_effect"] == pytest.approx(0.25, abs=4 * mm["kurtosis_effect_se"])
    g = mardia_kurtosis_effect(rng.standard_normal((n, 2)) @ A.T, wid)
    assert abs(g["kurtosis_effect"]) < 4 * g["kurtosis_effect_se"] and g["kurtosis_effect_se"] < 0.02


def _row(k, k_se, slope=None, slope_se=0.01, trapped=0.0):
    return {"delta": 0.3, "trapped_fraction": trapped, "beta_hat": 1.0, "excess_kurtosis": [k],
            "excess_kurtosis_se": [k_se], "skewness": [0.0], "skewness_se": [0.005],
            "noise_power_slope": slope, "noise_power_slope_se": slope_se}


def test_verdicts_from_intervals():
    tol = ShapeTolerance()
    assert classify(_row(0.02, 0.01), tol)[0] == "accepted"
    v, why = classify(_row(0.3, 0.01), tol)
    assert v == "rejected" and "excess kurtosis" in why
    v, why = classify(_row(0.09, 0.01), tol)
    assert v == "undetermined" and "run longer" in why
    assert classify(_row(0.02, 0.01, slope=0.8), tol)[0] == "rejected"   # a scale is being crossed
    assert classify(_row(0.02, 0.01, slope=0.45, slope_se=0.05), tol)[0] == "undetermined"
    assert classify(_row(0.02, 0.01, trapped=0.75), tol)[0] == "rejected"
    r = _row(0.02, 0.01, slope=0.1)
    classify(r, tol)
    # Bonferroni over three effects at 95 %: z = Phi^-1(1 - 0.05 / 6)
    assert r["z"] == pytest.approx(2.394, abs=1e-3)
    assert r["intervals"]["excess kurtosis"] == pytest.approx([0.02 - r["z"] * 0.01, 0.02 + r["z"] * 0.01])


def test_scale_estimate_from_the_flip():
    rows = [{"delta": d, "verdict": v} for d, v in
            [(0.8, "rejected"), (0.6, "undetermined"), (0.5, "accepted"), (0.4, "accepted"), (0.2, "rejected"),
             (0.1, "accepted")]]
    est = scale_estimate(rows)
    assert est["epsilon"] == 0.5 and est["bracket"] == [0.5, 0.8] and est["undetermined"] == [0.6]
    assert [r["epsilon"] for r in est["runs"]] == [0.5, 0.1] and est["runs"][1]["bracket"] == [0.1, 0.2]
    assert scale_estimate([{"delta": 0.5, "verdict": "rejected"}])["epsilon"] is None


def _cheap_run(gamma, steps):
    # V = q^2/2 + e sin(q/e), e << delta: independent kicks -delta cos(q/e), arcsine law (excess kurtosis -3/2);
    # p ~ AR(1) sum of kicks with a = exp(-gamma delta): excess kurtosis -3/2 (1 - a^2) / (1 + a^2)
    pot = Potential.from_expression("q**2/2 + 0.0001*sin(q/0.0001)", ["q"])
    sim = simulate(pot, 0.2, gamma, steps=steps, walkers=16, seed=3, bins=40, hist_range=[(-6, 6)],
                   max_samples=1_000_000)
    row = {"delta": 0.2, "trapped_fraction": sim.trapped_fraction, "beta_hat": sim.beta_hat, **shape_row(sim)}
    row["verdict"], row["reason"] = classify(row)
    return row


def test_verdict_stable_at_10x_samples_on_a_real_run():
    # (stored samples are capped at 1e6: the 10x run keeps every 10th step, so its se shrinks by less than sqrt(10))
    for gamma, steps, expect in ((0.05, 2_000_000, "accepted"), (5.0, 200_000, "rejected")):
        small, big = _cheap_run(gamma, steps), _cheap_run(gamma, 10 * steps)
        assert small["verdict"] == big["verdict"] == expect, (small["reason"], big["reason"])
        a2 = math.exp(-2 * gamma * 0.2)
        theory = -1.5 * (1 - a2) / (1 + a2)
        assert big["excess_kurtosis"][0] == pytest.approx(theory, abs=max(0.1 * abs(theory), 0.03))
        assert big["excess_kurtosis_se"][0] < small["excess_kurtosis_se"][0]


def test_scan_on_a_real_small_run_reports_verdicts_plateau_and_trapping(tmp_path):
    raw = {"potential": {"variables": ["q"], "expression": "q**2/2 + 0.0001*sin(q/0.0001)"},
           "simulation": {"delta": 0.3, "gamma": 0.05, "steps": 1_000_000, "walkers": 16, "bins": 40,
                          "max_samples": 200_000}}
    m = model_from_dict(raw)
    res = scan_scales(m, [0.4, 0.3, 0.2])
    d = res.to_dict()
    for r in d["rows"]:
        # (3.4)-(3.5): E g^2 = 1/2, so G2 = 2 gamma / (delta beta_hat) = 1/2 whatever delta (beta_hat = 4 gamma / delta)
        assert r["noise_power"] == pytest.approx(0.5, rel=0.1)
        assert r["noise_power_slope"] is None or abs(r["noise_power_slope"]) < 0.3
        assert r["verdict"] in ("accepted", "undetermined") and r["scale_found"] == (r["verdict"] == "accepted")
        assert {"delta", "beta_hat", "normality_pvalue", "trapped_fraction", "scale_found"} <= set(r)
    assert d["scale_estimate"]["epsilon"] in (None, 0.4, 0.3, 0.2)
    assert d["tolerance"]["kurtosis"] == 0.1
    rows = [dict(r) for r in d["rows"]]
    rows[0]["trapped_fraction"], rows[0]["trapped_walkers"], rows[0]["walkers"] = 0.25, 4, 16
    classify_rows(rows)
    res.rows = rows
    assert any("trapped walkers" in w and "delta 0.4: 4/16" in w for w in res.warnings)
    rep = Report("scales")
    rep.add_result("Scale scan", res)
    html = rep.html()
    assert "delta 0.4: 4/16" in html and "verdict" in html and "kurtosis [CI]" in html


def test_report_cells_flag_verdicts_not_skewness():
    from bayescg.report import cell_class

    assert cell_class("verdict", "accepted") == "good" and cell_class("verdict", "rejected") == "bad"
    # "skewness" and "excess kurtosis" contain "ess" but are not effective sample sizes
    assert cell_class("skewness", 0.01) == "" and cell_class("excess kurtosis", 0.05) == ""
    assert cell_class("ess_bulk", 50) == "bad" and cell_class("ess_bulk_min", 50) == "bad"


def test_streamed_moment_batches_are_used_when_present():
    """With ``p_moment_batches`` (W, B, d, 4) (CONTRACTS item 4) the effects come from the streamed moments of the
    untrapped walkers; the stored-sample path gives the same numbers on the same data."""
    from types import SimpleNamespace

    from bayescg.scales import momentum_moment_batches

    rng = np.random.default_rng(2)
    W, B, n = 6, 8, 800
    p = rng.laplace(size=(W * n, 1))
    wid = np.repeat(np.arange(W), n)
    M, _ = moment_batches(p, wid, n_batches=B)
    M_all = np.concatenate([M, np.full((1, B, 1, 4), 1e6)])  # a trapped walker's garbage row, must be ignored
    streamed = SimpleNamespace(p_moment_batches=M_all, trapped=np.array([False] * W + [True]),
                               steps_per_walker=n + 100, burn_in_steps=100, samples_p=p)
    stored = SimpleNamespace(samples_p=p, sample_walker=wid, sample_stride=1)
    Ms, cs, src = momentum_moment_batches(streamed)
    assert Ms.shape == (W, B, 1, 4) and "streamed" in src
    a, b = shape_row(streamed), shape_row(stored)
    assert a["excess_kurtosis"] == pytest.approx(b["excess_kurtosis"], rel=1e-12)
    assert a["excess_kurtosis"][0] == pytest.approx(3.0, abs=0.6)


def test_streamed_moments_of_a_real_run_weight_batches_by_their_length():
    """The simulator's p_moment_batches with the batch lengths used here give exactly the moments of every
    post-burn-in step (all steps stored at stride 1; the last batch is longer than the others)."""
    from bayescg.scales import momentum_moment_batches

    pot = Potential.from_expression("q**2/2 + 0.0001*sin(q/0.0001)", ["q"])
    sim = simulate(pot, 0.2, 0.5, steps=90_000, walkers=4, seed=3, bins=40, hist_range=[(-6, 6)], max_samples=90_000)
    assert sim.sample_stride == 1 and sim.samples_p.shape[0] == sim.accumulated_steps
    M, counts, src = momentum_moment_batches(sim)
    assert "streamed" in src and len(set(counts[0])) == 2  # 20250 steps in 32 batches: the last one is longer
    pooled = np.einsum("wb,wbdk->dk", counts, M) / counts.sum()
    exact = np.stack([(sim.samples_p ** k).mean(axis=0) for k in (1, 2, 3, 4)], axis=-1)
    assert np.allclose(pooled, exact, rtol=1e-10, atol=1e-14)
    row = shape_row(sim)
    assert row["moments_from"].startswith("streamed") and row["moment_batches"] == 4 * 32
