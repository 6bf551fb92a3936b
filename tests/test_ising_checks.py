"""Issue 12: interval kinds, Laplace vs NUTS on predictions, identifiability and MC-EM convergence,
the slides' Laplace against the exact posterior, ArviZ schema, predictive checks and stacking.
Truth comes from enumeration written here (small chains), not from the code under test."""
import itertools

import numpy as np
import pytest

from bayescg.config import InferenceSection
from bayescg.ising.checks import (LR95, grid_posterior, identifiability, prediction_shift, predictive_check,
                                  stacking)
from bayescg.ising.coarse import CoarseModel
from bayescg.ising.em import exact_em, mc_converged, mc_em
from bayescg.ising.fine import FineModel
from bayescg.ising.kernel import FastLoglik
from bayescg.ising.predict import interval_containing_mean, posterior_predictive


def coarse_enum(cm, theta_c):
    """All coarse configurations X (2^n_c, n_c) and p_c(X | theta_c) by direct sums (periodic ring, n_c > 2)."""
    n = cm.n_c
    Xs = np.array(list(itertools.product([-1, 1], repeat=n)), float)
    v = dict(zip(cm.names, theta_c))
    lw = (v.get("lin", 0.0) / 2 + cm.mu_c) * Xs.sum(1)
    for k in range(1, cm.pair_length + 1):
        lw = lw + v[f"pair{k}"] * sum(Xs[:, i] * Xs[:, (i + k) % n] for i in range(n))
    lw = cm.beta * lw
    p = np.exp(lw - lw.max())
    return Xs, p / p.sum()


def enum_m(cm, theta_c, theta_cf):
    """E[m | theta] = (2 theta_cf - 1) <mean X> by enumeration."""
    Xs, p = coarse_enum(cm, theta_c)
    return (2 * theta_cf - 1) * float(p @ Xs.mean(1))


def enum_loglik(cm, x, theta_c, theta_cf):
    Xs, p = coarse_enum(cm, theta_c)
    up = np.repeat(Xs, cm.level, axis=1)
    out = 0.0
    for xi in x:
        a = (up * xi > 0).sum(1)
        out += np.log(p @ (theta_cf ** a * (1 - theta_cf) ** (cm.n_f - a)))
    return out


@pytest.fixture(scope="module")
def small():
    fm = FineModel(8, 1.0, 0.3, (0.8,), True)
    x = fm.sample(40, np.random.default_rng(4))
    cm = CoarseModel(8, 2, "110", beta=1.0, mu_c=0.3, periodic=True)  # n_c = 4
    return fm, cm, x


# --- 1. interval kinds ---------------------------------------------------------------------------
def test_interval_contains_mean_even_for_skewed_draws():
    rng = np.random.default_rng(0)
    v = np.concatenate([rng.normal(0.97, 0.005, 980), -np.ones(20)])  # 2 % of draws at the wrong sign
    lo, hi = np.quantile(v, [0.03, 0.97])
    assert not lo <= v.mean() <= hi  # the equal-tailed interval excludes the mean (the Laplace case)
    mean, lower, upper, shifted = interval_containing_mean(v)
    assert shifted and lower <= mean <= upper and mean == pytest.approx(v.mean())
    assert np.mean((v >= lower) & (v <= upper)) == pytest.approx(0.94, abs=0.011)
    m2 = interval_containing_mean(rng.normal(size=500))
    assert not m2[3] and m2[1] <= m2[0] <= m2[2]


def test_posterior_and_monte_carlo_predictions_vs_enumeration(small):
    fm, cm, x = small
    rng = np.random.default_rng(5)
    tc = np.column_stack([rng.normal(0.2, 0.1, 60), rng.normal(0.7, 0.1, 60)])
    tf = rng.uniform(0.85, 0.95, 60)
    p = posterior_predictive(cm, tc, tf, 1000, rng, [1, 2])
    ex = np.array([enum_m(cm, tc[j], tf[j]) for j in range(60)])
    mg = p["magnetization"]
    assert mg["interval_kind"] == p["correlation"]["interval_kind"] == "posterior"
    assert mg["mean"] == pytest.approx(ex.mean(), abs=1e-10)  # same draws as the interval
    assert mg["lower"] == pytest.approx(np.quantile(ex, 0.03), abs=1e-10)
    assert mg["upper"] == pytest.approx(np.quantile(ex, 0.97), abs=1e-10)
    c = p["correlation"]
    assert np.all(c["lower"] <= c["mean"]) and np.all(c["mean"] <= c["upper"])
    # point estimate: Monte Carlo interval, and its mean within 4 standard errors of the exact value
    q = posterior_predictive(cm, tc[:1], tf[0], 20000, np.random.default_rng(1), [1, 2])
    mq = q["magnetization"]
    assert mq["interval_kind"] == "monte_carlo" and mq["lower"] <= mq["mean"] <= mq["upper"]
    se = (mq["upper"] - mq["lower"]) / (2 * 1.8807936)
    assert abs(mq["mean"] - enum_m(cm, tc[0], tf[0])) < 4 * se


def test_data_checks_beside_the_last_methods_are_the_ones_computed_here(small, monkeypatch):
    """The identifiability check and the exact grid posterior run in a forked child beside the methods after laplace
    (here relent): the run's checks are those of the run that computes them itself (the child dead); and the fork
    is used (this process computes them only when the child died)."""
    import os

    from bayescg.ising import pipeline

    fm, cm, x = small
    inf = InferenceSection(methods=["exact_em", "laplace", "relent"], draws=100, chains=2, prediction_samples=800)
    parent, calls = os.getpid(), []
    real = pipeline.data_checks

    def counted(*a, die=False, **k):
        if os.getpid() != parent:
            if die:
                os._exit(3)
        else:
            calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr(pipeline, "data_checks", counted)
    forked = pipeline.run_methods(fm, cm, x, inf).to_dict()
    assert calls == []
    monkeypatch.setattr(pipeline, "data_checks", lambda *a, **k: counted(*a, die=True, **k))
    here = pipeline.run_methods(fm, cm, x, inf).to_dict()
    assert calls == [1]
    for key in ("identifiability", "posterior_check", "predictive_check", "warnings"):
        assert forked[key] == here[key], key
    assert forked["posterior_check"]["exact"]["mean"]


def test_pipeline_states_kinds_and_draws_each_figure_on_its_own(small, tmp_path, capsys):
    from bayescg.ising.pipeline import run_methods
    from bayescg.report import Report

    fm, cm, x = small
    inf = InferenceSection(methods=["exact_em", "laplace", "relent"], draws=100, chains=2, prediction_samples=800)
    r = run_methods(fm, cm, x, inf)
    d = r.to_dict()
    assert isinstance(d["warnings"], list)
    kinds = {k: m["interval_kind"] for k, m in d["methods"].items()}
    assert kinds == {"exact_em": "monte_carlo", "laplace": "posterior", "relent": "monte_carlo"}
    for m in d["methods"].values():
        assert m["magnetization"]["interval_kind"] == m["interval_kind"]
        assert m["magnetization"]["lower"] <= m["magnetization"]["mean"] <= m["magnetization"]["upper"]
    assert "(monte_carlo)" in str(r.summary()) and "(posterior)" in str(r.summary())

    def broken():
        raise ValueError("'yerr' must not contain negative values")

    r._fig_correlations = broken
    figs = r.figures()
    titles = [t for t, _ in figs]
    assert "Magnetization by method" in titles and "Correlations R_l" not in titles
    assert any("Correlations R_l" in w and "yerr" in w for w in r.figure_warnings)
    assert "could not be drawn" in capsys.readouterr().err
    rep = Report("t")
    rep.add_result("PCG", r, inference_data=False)
    html = rep.html()
    assert "could not be drawn" in html and html.count("<figure>") >= 2
    assert any("yerr" in w for w in r.to_dict()["warnings"])


# --- 2. Laplace vs NUTS on predictions ----------------------------------------------------------
def test_prediction_shift_exact_numbers_and_warning(small):
    from bayescg.ising.bayes import LaplaceFit
    from bayescg.ising.methods import MethodFit
    from bayescg.ising.pipeline import MethodResult, compare_laplace_to_nuts

    fm, cm, x = small
    mn = np.array([0.9, 1.0, 1.1, 1.0])  # sd 0.08165
    Rn = np.array([[0.5, 0.2], [0.6, 0.2], [0.7, 0.4], [0.6, 0.2]])
    ml = np.array([1.0, 1.1, 1.2, -1.0])
    Rl = Rn + 0.05
    s = prediction_shift({"per_draw": (ml, Rl)}, {"per_draw": (mn, Rn)})
    assert s["magnetization_shift_sd"] == pytest.approx(abs(ml.mean() - 1.0) / np.std(mn, ddof=1))
    assert s["correlation_shift_sd"] == pytest.approx(max(0.05 / np.std(Rn[:, 0], ddof=1), 0.05 / np.std(Rn[:, 1], ddof=1)))
    assert s["laplace_wrong_sign_fraction"] == 0.25
    rng = np.random.default_rng(0)
    dc, dcf = rng.normal([0.2, 0.7], 0.05, (1, 400, 2)), rng.uniform(0.85, 0.95, (1, 400))
    fits = {"laplace": MethodFit(gaussian=LaplaceFit(np.array([0.2, 0.7, 1.9]), np.eye(3) * 0.01, [], 0.0))}
    res = {"nuts": MethodResult("nuts", {}, 0.9, {}, {}, {}, 0.0, draws_c=dc, draws_cf=dcf)}
    ws = []
    lv = compare_laplace_to_nuts(fits, res, {"laplace": {"per_draw": (ml, Rl)}, "nuts": {"per_draw": (mn, Rn)}}, cm, ws)
    assert lv["magnetization_shift_sd"] > lv["threshold_sd"] and ws and "laplace vs nuts" in ws[0]
    ws2 = []
    compare_laplace_to_nuts(fits, res, {"laplace": {"per_draw": (mn, Rn)}, "nuts": {"per_draw": (mn, Rn)}}, cm, ws2)
    assert ws2 == []


# --- 4. identifiability, MC-EM convergence -------------------------------------------------------
def test_saturated_data_not_identified_and_well_posed_data_identified(small):
    fm, cm, x = small
    sat = np.ones((30, 8), dtype=np.int8)
    cm_s = CoarseModel(8, 2, "110", beta=1.0, mu_c=0.6, periodic=True)
    # enumeration: the likelihood keeps rising along theta_lin (maximum not attained)
    ll = [enum_loglik(cm_s, sat, [t, 0.5], 0.99) for t in (5.0, 10.0, 20.0)]
    assert ll[0] < ll[1] < ll[2]
    idf = identifiability(cm_s, sat, FastLoglik(cm_s, sat))
    assert not idf["identified"] and "lin" in idf["not_identified"]
    from bayescg.ising.checks import identifiability_warning

    assert "identifiability" in identifiability_warning(idf)
    # 40 configurations of 8 sites do not bound theta_lin from above (the 95 % LR region is open):
    # reported, not hidden; 300 configurations do
    assert not identifiability(cm, x, FastLoglik(cm, x))["identified"]
    x = fm.sample(300, np.random.default_rng(4))
    ok = identifiability(cm, x, FastLoglik(cm, x))
    assert ok["identified"], ok
    # the profile bounds are real: at the ML point plus a step past the bound the enumeration drops > LR95
    u = ok["ml"]
    l0 = enum_loglik(cm, x, [u["lin"], u["pair1"]], 0.5 + 0.5 / (1 + np.exp(-u["z_theta_cf"])))
    assert enum_loglik(cm, x, [u["lin"] + 16.0, u["pair1"]], 0.5 + 0.5 / (1 + np.exp(-u["z_theta_cf"]))) < l0 - LR95


def test_mc_em_convergence_test_and_estimate(small):
    rng = np.random.default_rng(0)
    flat = 1.0 + 0.01 * rng.normal(size=(60, 2))
    assert mc_converged(flat, 25, 0.02)[0]
    drift = flat + np.linspace(0, 0.5, 60)[:, None]
    assert not mc_converged(drift, 25, 0.02)[0]
    noisy = 1.0 + 0.5 * rng.normal(size=(60, 2))  # no drift, but Monte Carlo error too large
    assert not mc_converged(noisy, 25, 0.02)[0]
    fm = FineModel(16, 1.0, 0.3, (0.8,), True)
    x = fm.sample(60, np.random.default_rng(4))
    cm = CoarseModel(16, 2, "110", beta=1.0, mu_c=0.3, periodic=True)
    a = exact_em(cm, x)
    c = mc_em(cm, x, iterations=400, S_q=50, S_c=400, seed=3)
    assert c.converged and c.iterations < 400 and c.mc_se is not None
    np.testing.assert_allclose(c.theta_c, a.theta_c, atol=0.15)
    assert c.theta_cf == pytest.approx(a.theta_cf, abs=0.01)
    assert c.loglik == pytest.approx(a.loglik, abs=1.0)
    assert not mc_em(cm, x, iterations=20, S_q=5, S_c=20, seed=3).converged


# --- 3. the slides' Laplace and the exact posterior ----------------------------------------------
def _ring_k1():
    """(cm, x): 25 samples of an 8-site periodic chain and its K = 1 coarse model (pair1, theta_cf)."""
    x = FineModel(8, 1.0, 0.0, (0.6,), True).sample(25, np.random.default_rng(2))
    return CoarseModel(8, 2, "010", beta=1.0, mu_c=0.0, periodic=True), x


def test_slides_laplace_and_grid_posterior_vs_enumeration():
    from bayescg.ising.bayes import slides_laplace

    cm, x = _ring_k1()
    sl = slides_laplace(cm, x, prior_sd=2.0)
    # complete-data information by enumeration of q(X | x, theta_MAP)
    Xs, p = coarse_enum(cm, sl.theta_c)
    up = np.repeat(Xs, cm.level, axis=1)
    na = nd = 0.0
    for xi in x:
        a = (up * xi > 0).sum(1)
        q = p * sl.theta_cf ** a * (1 - sl.theta_cf) ** (8 - a)
        q /= q.sum()
        na += q @ a
        nd += q @ (8 - a)
    ic = na / sl.theta_cf ** 2 + nd / (1 - sl.theta_cf) ** 2
    assert sl.info_complete == pytest.approx(ic, rel=1e-8)
    assert sl.sd_cf == pytest.approx(1 / np.sqrt(ic), rel=1e-8)
    assert sl.info_complete >= sl.info_observed  # missing information >= 0
    dc, df = sl.draws(500, np.random.default_rng(0))
    assert np.all(dc == sl.theta_c) and np.all((df > 0.5) & (df < 1))
    # exact posterior moments by quadrature in (pair1, theta_cf) with the enumerated likelihood
    g1, g2 = np.linspace(-1.5, 2.5, 81), np.linspace(0.5005, 0.9995, 200)
    lp = np.array([[enum_loglik(cm, x, [a], b) - a * a / 8 for b in g2] for a in g1])
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean_cf = (w.sum(0) @ g2)
    sd_cf = np.sqrt(w.sum(0) @ (g2 - mean_cf) ** 2)
    from bayescg.ising.bayes import fit_laplace

    lap = fit_laplace(cm, x, 2.0)
    ex = grid_posterior(cm, FastLoglik(cm, x), 2.0, lap.mean, 8 * np.sqrt(np.diag(lap.cov)))
    assert ex["mean"]["theta_cf"] == pytest.approx(mean_cf, abs=2e-3)
    assert ex["sd"]["theta_cf"] == pytest.approx(sd_cf, rel=0.03)
    assert ex["edge_mass"] < 1e-3


def test_the_exact_grid_depends_on_the_data_not_on_the_clock(monkeypatch):
    """grid_posterior's points per axis come from a cost model (evaluations x the likelihood's pattern-blocks,
    checks.GRID_COST_BUDGET), not from timing a call: a machine that looks 10 s per call slow gives the same grid
    and numbers (a timed budget returned None there), and larger data shrink the grid by the model's own
    arithmetic, evaluating exactly n^D points."""
    import time as _time

    from bayescg.ising.bayes import fit_laplace
    from bayescg.ising.checks import GRID_COST_BUDGET

    cm, x = _ring_k1()
    lap = fit_laplace(cm, x, 2.0)
    args = (cm, FastLoglik(cm, x), 2.0, lap.mean, 8 * np.sqrt(np.diag(lap.cov)))
    ref = grid_posterior(*args)
    assert ref["points_per_axis"] == 81
    clock = iter(np.arange(0.0, 1e9, 10.0))
    monkeypatch.setattr(_time, "perf_counter", lambda: float(next(clock)))
    assert grid_posterior(*args) == ref
    monkeypatch.undo()

    class Big:  # the same likelihood, as if the data had 1e5 pattern-blocks
        def __init__(self, fast):
            self.fast, self.counts, self.calls = fast, np.zeros((12500, 8), np.int64), 0

        def logliks(self, theta_c, theta_cf):
            self.calls += len(theta_cf)
            return self.fast.logliks(theta_c, theta_cf)
    big = Big(args[1])
    ex = grid_posterior(cm, big, *args[2:])
    n = int((GRID_COST_BUDGET / 1e5) ** 0.5)
    assert ex["points_per_axis"] == n == 63 and big.calls == n ** 2
    assert ex["mean"]["theta_cf"] == pytest.approx(ref["mean"]["theta_cf"], abs=2e-3)
    huge = Big(args[1])
    huge.counts = np.zeros((10 ** 6, 8), np.int64)  # 8e6 pattern-blocks: 7 points per axis < 15
    assert grid_posterior(cm, huge, *args[2:]) is None and huge.calls == 0


# --- 7. ArviZ schema ------------------------------------------------------------------------------
STANDARD = {"posterior", "posterior_predictive", "predictions", "log_likelihood", "sample_stats", "observed_data",
            "constant_data", "predictions_constant_data", "prior", "prior_predictive", "sample_stats_prior",
            "warmup_posterior", "warmup_sample_stats", "unconstrained_posterior"}


def test_inference_data_uses_standard_groups_with_named_coordinates(small, tmp_path):
    from bayescg.io import write_netcdf
    from bayescg.ising.pipeline import run_methods

    fm, cm, x = small
    inf = InferenceSection(methods=["exact_em", "laplace", "relent"], draws=100, chains=2, prediction_samples=800)
    r = run_methods(fm, cm, x, inf)
    idata = r.to_inference_data()
    assert set(idata.groups()) <= STANDARD
    assert {"posterior", "posterior_predictive", "observed_data"} <= set(idata.groups())
    assert idata.posterior.attrs["method"] == "laplace"
    for g in idata.groups():
        ds = idata[g]
        for dim in ds.dims:
            assert dim in ds.coords, (g, dim)
    others = r.method_inference_data()
    assert set(others) == {"exact_em", "relent"}
    for name, o in others.items():
        assert set(o.groups()) <= STANDARD and o.posterior.attrs["method"] == name
        write_netcdf(tmp_path / f"posterior-{name}.nc", o)
    write_netcdf(tmp_path / "posterior.nc", idata)
    # a sampler's pointwise log-likelihood (log_likelihood group) has coordinates on every dimension
    from bayescg.ising.pipeline import psis_loo

    rng = np.random.default_rng(0)
    ll = psis_loo(FastLoglik(cm, x), rng.normal([0.2, 0.7], 0.05, (10, 2)), rng.uniform(0.85, 0.95, 10), (2, 5))
    ds = ll["_groups"]["log_likelihood"]
    assert ds.x.dims == ("chain", "draw", "configuration") and all(d in ds.coords for d in ds.dims)


# --- 5. model error -------------------------------------------------------------------------------
def test_predictive_check_and_stacking_see_model_error():
    rng = np.random.default_rng(3)
    cm = CoarseModel(16, 2, "110", beta=1.0, mu_c=0.0, periodic=True)
    # data from the PCG model itself (coarse chain + map): the check passes and 110 wins over 100
    X = cm.sample_coarse(np.array([0.3, 0.9]), 150, rng)
    x = cm.sample_fine(X, 0.9, rng)
    st = stacking(dict(n_f=16, level=2, beta=1.0, mu_c=0.0, periodic=True), x, ["110", "100"], [1, 2, 3], rng,
                  draws=300)
    assert st["weights"]["110"] > 0.9 and not st["misfit"]["110"] and not st["none_fits"]
    assert st["misfit"]["100"]  # no coupling: the data's correlations are out of reach
    # a fine chain with strong next-nearest couplings seen through model 100: flagged
    fm = FineModel(16, 1.0, 0.0, (0.2, 1.0), True)
    y = fm.sample(300, rng)
    cm0 = CoarseModel(16, 2, "100", beta=1.0, mu_c=0.0, periodic=True)
    dc = np.zeros((50, 1))
    df = np.full(50, 0.8)
    ppc = predictive_check(cm0, y, dc, df, [1, 2], rng)
    assert ppc["misfit"] and ppc["p_min"] < 0.01


# --- registry (issue 13) and the sweep's labels -------------------------------------------------
def test_methods_registry_matches_config_and_order():
    from bayescg.config import model_from_dict
    from bayescg.errors import ModelFileError
    from bayescg.ising.methods import METHODS, ORDER, IsingMethod

    assert set(ORDER) == set(METHODS) and len({m.id for m in METHODS.values()}) == len(METHODS)
    assert all(isinstance(m, IsingMethod) and m.name == k for k, m in METHODS.items())
    raw = {"name": "r", "fine": {"sites": 8}, "inference": {"methods": list(ORDER)}}
    assert model_from_dict(raw).inference.methods == list(ORDER)  # the model file accepts every registered name
    with pytest.raises(ModelFileError):
        model_from_dict({**raw, "inference": {"methods": ["nope"]}})


def test_sweep_axis_says_mu_and_intervals_their_kind():
    from bayescg.executor import SerialExecutor
    from bayescg.config import model_from_dict
    from bayescg.ising.pipeline import run_model
    from bayescg.report import structured_tables

    raw = {"name": "s", "fine": {"sites": 8, "beta": 1.0, "field": 0.3, "coupling": 0.8},
           "data": {"samples": 300, "seed": 1}, "coarse": {"level": 2, "model": "110"},
           "inference": {"methods": ["exact_em", "laplace"], "draws": 100, "chains": 2, "prediction_samples": 400},
           "sweep": {"key": "fine.field", "values": [-0.3, 0.3]}}
    res = run_model(model_from_dict(raw), executor=SerialExecutor())
    d = res.to_dict()
    assert d["sweep"]["label"].startswith("mu") and isinstance(d["warnings"], list)
    assert d["methods"]["exact_em"]["interval_kind"] == "monte_carlo"
    _, tables = structured_tables(d)
    cols = tables[0][1][0].keys()
    assert any(c.startswith("μ") for c in cols) and "laplace 94% posterior" in cols
    assert "exact_em 94% Monte Carlo" in cols
    figs = res.figures()
    assert figs[0][1].axes[0].get_xlabel().startswith("μ")
