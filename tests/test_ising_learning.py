"""Marginal likelihood, EM, relent, Laplace, NUTS vs Gibbs, predictions, bad input, pipeline."""
import warnings
import itertools

import numpy as np
import pytest

from bayescg.config import model_from_dict
from bayescg.errors import InputError, ModelFileError
from bayescg.ising.bayes import compare_laplace_nuts, fit_laplace, gaussian_kl, log_posterior
from bayescg.ising.coarse import CoarseModel, sample_observables
from bayescg.ising.em import FastLoglik, exact_em, gradient, map_exact, marginal_loglik, mc_em
from bayescg.ising.fine import FineModel, check_configurations, load_configurations
from bayescg.ising.predict import errors, posterior_predictive
from bayescg.ising.relent import relent_fit


def brute_marginal(cm, x, theta_c, theta_cf):
    """log p(x | theta) = log sum_X p_c(X) prod_{r,s} p_cf(x_rs | X_r) by enumeration of X."""
    Xs = np.array(list(itertools.product([-1, 1], repeat=cm.n_c)), float)
    lw = cm.term_sums(Xs) @ cm.coef(theta_c)
    logpc = lw - (np.log(np.exp(lw - lw.max()).sum()) + lw.max())
    out = []
    for xi in x:
        up = np.repeat(Xs, cm.level, axis=1)
        agree = (up * xi[None, :] > 0).sum(1)
        lp = logpc + agree * np.log(theta_cf) + (cm.n_f - agree) * np.log(1 - theta_cf)
        out.append(np.log(np.exp(lp - lp.max()).sum()) + lp.max())
    return np.array(out)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("code", ["110", "021", "101"])
def test_exact_marginal_likelihood_vs_brute_force(periodic, code):
    cm = CoarseModel(12, 2, code, beta=0.9, mu_c=0.3, periodic=periodic)
    rng = np.random.default_rng(0)
    x = np.where(rng.random((4, 12)) < 0.6, 1, -1)
    x = np.vstack([x, x[:2]])  # repeated configurations (FastLoglik evaluates unique ones once)
    th = rng.normal(size=cm.K) * 0.4
    ref = brute_marginal(cm, x, th, 0.83)
    np.testing.assert_allclose(marginal_loglik(cm, x, th, 0.83), ref, atol=1e-10)
    fast = FastLoglik(cm, x)
    np.testing.assert_allclose(fast.pointwise(th, 0.83), ref, atol=1e-10)
    ll, g = fast(th, 0.83)
    assert ll == pytest.approx(ref.sum(), abs=1e-9)
    # gradient (E2) against central differences of the brute-force sum
    eps = 1e-6
    for k in range(cm.K):
        e = np.zeros(cm.K)
        e[k] = eps
        fd = (brute_marginal(cm, x, th + e, 0.83).sum() - brute_marginal(cm, x, th - e, 0.83).sum()) / (2 * eps)
        assert g[k] == pytest.approx(fd, rel=1e-5, abs=1e-6)
    fd = (brute_marginal(cm, x, th, 0.83 + eps).sum() - brute_marginal(cm, x, th, 0.83 - eps).sum()) / (2 * eps)
    assert g[-1] == pytest.approx(fd, rel=1e-5)


def test_pytensor_graph_matches_numpy():
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt

    from bayescg.ising.bayes import pointwise_loglik_graph

    cm = CoarseModel(8, 2, "110", beta=1.0, mu_c=0.2, periodic=True)
    rng = np.random.default_rng(1)
    x = np.where(rng.random((3, 8)) < 0.6, 1, -1)
    tc, tf = pt.dvector("tc"), pt.dscalar("tf")
    with warnings.catch_warnings():  # issue 17: no deprecated pytensor op (batched_dot) in the graph
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        g = pointwise_loglik_graph(cm, cm.agree_counts(x), tc, tf)
    f = pytensor.function([tc, tf], g, mode="FAST_COMPILE")
    th = np.array([0.2, 0.5])
    np.testing.assert_allclose(f(th, 0.8), brute_marginal(cm, x, th, 0.8), atol=1e-10)


def test_log_posterior_hessian_matches_finite_differences():
    cm = CoarseModel(12, 2, "111", beta=1.0, mu_c=0.1, periodic=False)
    rng = np.random.default_rng(2)
    x = np.where(rng.random((10, 12)) < 0.65, 1, -1)
    u = np.array([0.2, 0.4, -0.1, 0.7])
    v, g, H = log_posterior(cm, x, u)
    eps = 1e-5
    Hn = np.array([(log_posterior(cm, x, u + eps * e)[1] - log_posterior(cm, x, u - eps * e)[1]) / (2 * eps)
                   for e in np.eye(4)])
    np.testing.assert_allclose(H, Hn, rtol=1e-5, atol=1e-5)
    gn = np.array([(log_posterior(cm, x, u + eps * e)[0] - log_posterior(cm, x, u - eps * e)[0]) / (2 * eps)
                   for e in np.eye(4)])
    np.testing.assert_allclose(g, gn, rtol=1e-6, atol=1e-6)


@pytest.fixture(scope="module")
def nn_data():
    fm = FineModel(16, 1.0, 0.3, (0.8,), True)
    x = fm.sample(60, np.random.default_rng(4))
    cm = CoarseModel(16, 2, "110", beta=1.0, mu_c=0.3, periodic=True)
    return fm, cm, x


def test_exact_em_reaches_the_maximum_likelihood(nn_data):
    fm, cm, x = nn_data
    a = exact_em(cm, x)
    b = map_exact(cm, x)
    np.testing.assert_allclose(a.theta_c, b.theta_c, atol=2e-3)
    assert a.theta_cf == pytest.approx(b.theta_cf, abs=1e-4)
    _, g, _, _ = gradient(cm, x, b.theta_c, b.theta_cf)
    assert np.max(np.abs(g[:-1])) < 1e-3
    assert abs(g[-1]) / (len(x) * cm.n_f) < 1e-5  # theta_cf's gradient scales with S_f n_f


def test_mc_em_close_to_exact(nn_data):
    fm, cm, x = nn_data
    a = exact_em(cm, x)
    c = mc_em(cm, x, iterations=150, S_q=50, S_c=400, seed=3)
    # Monte Carlo EM estimate within a few Monte Carlo / statistical widths of the exact optimum
    np.testing.assert_allclose(c.theta_c, a.theta_c, atol=0.15)
    assert c.theta_cf == pytest.approx(a.theta_cf, abs=0.01)
    assert c.loglik == pytest.approx(a.loglik, abs=1.0)
    c2 = mc_em(cm, x, iterations=150, S_q=50, S_c=400, seed=3)
    np.testing.assert_array_equal(c.theta_c, c2.theta_c)  # reproducible from the seed


def test_relent_recovers_true_couplings_when_coarse_model_is_exact():
    """l_c = 1: the majority map is the identity and model 110 contains the fine model, so the
    relative-entropy optimum with exact statistics is theta_pair1 = J, theta_lin = 0 (mu_c = mu)."""
    for periodic in (True, False):
        fm = FineModel(10, 0.9, 0.4, (0.7,), periodic)
        cm = CoarseModel(10, 1, "110", beta=0.9, mu_c=0.4, periodic=periodic)
        from bayescg.ising.chain import moments

        _, M, _ = moments(fm.structure, fm.coef)  # exact fine statistics [sum x, sum x x+1]
        est = relent_fit(cm, target=M[0])
        np.testing.assert_allclose(est.theta_c, [0.0, 0.7], atol=1e-7)
    # and from finite data it is close
    fm = FineModel(16, 1.0, 0.3, (0.8,), True)
    x = fm.sample(3000, np.random.default_rng(9))
    est = relent_fit(CoarseModel(16, 1, "110", 1.0, 0.3, True), x)
    np.testing.assert_allclose(est.theta_c, [0.0, 0.8], atol=0.06)


def test_predictions_sampled_vs_exact(nn_data):
    fm, cm, x = nn_data
    th, tf = np.array([0.2, 0.7]), 0.9
    lags = [1, 2, 3]
    m_ex, R_ex = cm.exact_predictions(th[None], [tf], lags)
    m_ex, R_ex = float(m_ex[0]), R_ex[0]
    p = posterior_predictive(cm, th[None], tf, 40000, np.random.default_rng(1), lags)
    assert p["magnetization"]["mean"] == pytest.approx(m_ex, abs=0.02)
    np.testing.assert_allclose(p["correlation"]["mean"], R_ex, atol=0.02)
    assert p["magnetization"]["lower"] <= p["magnetization"]["mean"] <= p["magnetization"]["upper"]


def test_backmap_majority_is_consistent():
    cm = CoarseModel(8, 4, "010", periodic=True)
    rng = np.random.default_rng(0)
    X = np.where(rng.random((500, 2)) < 0.5, 1, -1).astype(np.int8)
    x = cm.backmap_majority(X, rng)
    m = x.reshape(500, 2, 4).sum(-1)
    assert np.all((m == 0) | (np.sign(m) == X))
    # block mean of the back-map given X = +1: E[x] = sum over blocks with majority +1 (ties 1/2)
    blocks = np.array(list(itertools.product([-1, 1], repeat=4)))
    s = blocks.sum(1)
    w = np.where(s > 0, 1.0, np.where(s == 0, 0.5, 0.0))
    expect = (w @ blocks.mean(1)) / w.sum()
    got = np.mean(x.reshape(500, 2, 4).mean(-1) * X)
    assert got == pytest.approx(expect, abs=0.03)


def test_errors_zero_field():
    e = errors(0.01, [0.5, 0.2], 0.0, [0.5, 0.25])
    assert e["err_mag"] is None and "zero" in e["err_mag_note"] and e["abs_err_mag"] == pytest.approx(0.01)
    e = errors(0.55, [0.5], 0.5, [0.4])
    assert e["err_mag"] == pytest.approx(0.1) and e["err_corr"] == pytest.approx(0.25)


def test_laplace_kl_tools():
    m, S = np.zeros(2), np.eye(2)
    assert gaussian_kl(m, S, m, S) == pytest.approx(0.0)
    assert gaussian_kl(m, S, m + 1, S) == pytest.approx(1.0)


def test_laplace_close_to_exact_posterior_for_large_data():
    """Large data: the posterior is near Gaussian; Laplace vs a dense independent quadrature
    of the exact posterior (2 parameters + theta_cf: model 010 has K = 1) on a grid."""
    fm = FineModel(16, 1.0, 0.0, (0.8,), True)
    x = fm.sample(400, np.random.default_rng(1))
    cm = CoarseModel(16, 2, "010", beta=1.0, mu_c=0.0, periodic=True)
    lap = fit_laplace(cm, x)
    # grid in unconstrained coordinates around the mode
    sd = np.sqrt(np.diag(lap.cov))
    g0 = lap.mean[0] + sd[0] * np.linspace(-6, 6, 41)
    g1 = lap.mean[1] + sd[1] * np.linspace(-6, 6, 41)
    fast = FastLoglik(cm, x)

    def logpost(a, z):  # independent assembly: exact likelihood + prior + Jacobian of z
        sig = 1 / (1 + np.exp(-z))
        return fast([a], 0.5 + 0.5 * sig)[0] - a * a / 8.0 + np.log(sig * (1 - sig))

    lp = np.array([[logpost(a, b) for b in g1] for a in g0])
    w = np.exp(lp - lp.max())
    w /= w.sum()
    A, B = np.meshgrid(g0, g1, indexing="ij")
    mean = np.array([(w * A).sum(), (w * B).sum()])
    var = np.array([(w * (A - mean[0]) ** 2).sum(), (w * (B - mean[1]) ** 2).sum()])
    assert np.all(np.abs(mean - lap.mean) / np.sqrt(var) < 0.2)
    np.testing.assert_allclose(np.sqrt(var), sd, rtol=0.1)


def test_user_data_errors(tmp_path):
    with pytest.raises(InputError, match="-1 or \\+1"):
        check_configurations([[1, 0, 1, -1]])
    with pytest.raises(InputError, match="NaN"):
        check_configurations(np.array([[1.0, np.nan]]))
    p = tmp_path / "d.txt"
    p.write_text("1 -1 1 1\n-1 -1 1 2\n")
    with pytest.raises(InputError, match="-1 or \\+1"):
        load_configurations(p)
    p.write_text("1 -1 1 1\n-1 -1 1\n")
    with pytest.raises(InputError, match="different numbers"):
        load_configurations(p)
    p.write_text("1 -1 1 1\n-1 -1 1 -1\n")
    assert load_configurations(p, 4).shape == (2, 4)
    with pytest.raises(InputError, match="4 sites, the model has 8"):
        load_configurations(p, 8)
    q = tmp_path / "d.npy"
    np.save(q, np.array([[1, -1, np.nan, 1]]))
    with pytest.raises(InputError, match="NaN"):
        load_configurations(q)
    with pytest.raises(InputError, match="no such"):
        load_configurations(tmp_path / "missing.npy")


def test_api_bad_input():
    with pytest.raises(InputError, match="not divisible"):
        CoarseModel(10, 4, "110")
    with pytest.raises(InputError, match="unknown coarse model"):
        CoarseModel(8, 2, "1a0")
    with pytest.raises(InputError, match="unknown coarse model"):
        CoarseModel(8, 2, "000")
    with pytest.raises(InputError, match="longer than the coarse chain"):
        CoarseModel(8, 2, "140")
    with pytest.raises(InputError, match="longer than the chain"):
        FineModel(8, 1.0, 0.0, tuple([1.0] * 8))


def _raw(**over):
    raw = {"name": "t", "fine": {"sites": 8, "field": 0.5, "coupling": 0.8},
           "data": {"samples": 30, "seed": 2}, "coarse": {"level": 2, "model": "110"},
           "inference": {"methods": ["exact_em", "relent", "laplace"], "draws": 100, "chains": 2,
                         "prediction_samples": 400, "seed": 3}}
    for k, v in over.items():
        s, key = k.split("__")
        raw.setdefault(s, {})[key] = v
    return raw


def test_pipeline_layout_and_reproducibility(tmp_path):
    from bayescg.io import dumps
    from bayescg.ising.pipeline import run_model

    model = model_from_dict(_raw())
    r1 = run_model(model)
    d = r1.to_dict()
    assert set(d["truth"]) >= {"magnetization", "correlation", "method"}
    for name in ("exact_em", "relent", "laplace"):
        md = d["methods"][name]
        for key in ("theta_c", "theta_cf", "magnetization", "correlation", "err_mag", "err_corr", "seconds"):
            assert key in md
        assert set(md["magnetization"]) == {"mean", "lower", "upper", "interval_kind", "shifted"}
    assert d["methods"]["relent"]["theta_cf"] is None
    assert d["laplace_vs_nuts"] is None
    dumps(d)  # JSON-able
    r2 = run_model(model)
    assert r2.to_dict()["methods"]["laplace"]["magnetization"] == d["methods"]["laplace"]["magnetization"]
    idata = r1.to_inference_data()
    assert "posterior" in idata.groups() and not any(g.startswith("posterior_") and g != "posterior_predictive"
                                                     for g in idata.groups())
    assert "relent" in r1.method_inference_data()
    figs = r1.figures()
    assert figs and all(hasattr(f, "savefig") for _, f in figs)


def test_pipeline_user_data_file_and_bad_file(tmp_path):
    from bayescg.ising.pipeline import run_model

    fm = FineModel(8, 1.0, 0.5, (0.8,), True)
    x = fm.sample(20, np.random.default_rng(0))
    np.save(tmp_path / "x.npy", x)
    res = run_model(model_from_dict(_raw(data__file=str(tmp_path / "x.npy"))))
    assert res.to_dict()["data"]["samples"] == 20
    bad = x.astype(float)
    bad[3, 2] = 0.5
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(InputError, match="configuration 3, site 2"):
        run_model(model_from_dict(_raw(data__file=str(tmp_path / "bad.npy"))))


def test_sweep_with_executor():
    from bayescg.executor import SerialExecutor
    from bayescg.ising.pipeline import run_model

    raw = _raw(inference__methods=["exact_em", "relent"])
    raw["sweep"] = {"key": "fine.field", "values": [-0.5, 0.5]}
    res = run_model(model_from_dict(raw), executor=SerialExecutor())
    d = res.to_dict()
    assert d["sweep"]["values"] == [-0.5, 0.5]
    m = d["truth"]["magnetization"]
    assert m[0] == pytest.approx(-m[1])  # symmetry of the exact truth
    assert len(d["methods"]["exact_em"]["magnetization"]["mean"]) == 2
    res.figures()
    raw["sweep"] = {"key": "fine.nonsense", "values": [1]}
    with pytest.raises(ModelFileError):
        run_model(model_from_dict(raw), executor=SerialExecutor())
