"""Longer end-to-end checks (run with -m slow)."""
import numpy as np
import pytest

from bayescg.config import model_from_dict

pytestmark = pytest.mark.slow


def _raw(methods):
    return {"name": "slow", "fine": {"sites": 12, "field": 0.3, "coupling": 0.8, "interaction_length": 2,
                                     "exponent": 1.0, "boundary": "open"},
            "data": {"samples": 40, "seed": 5}, "coarse": {"level": 2, "model": "111"},
            "inference": {"methods": methods, "draws": 300, "tune": 300, "chains": 2, "em_iterations": 60,
                          "coarse_samples": 100, "posterior_samples": 20, "prediction_samples": 2000,
                          "seed": 4, "sampler": "pymc"}}


def test_all_methods_end_to_end():
    from bayescg.ising.pipeline import run_model

    class Ctl:
        ticks = []

        def tick(self, done, note=""):
            self.ticks.append((done, note))

        def check(self):
            pass

    ctl = Ctl()
    res = run_model(model_from_dict(_raw(["exact_em", "em", "laplace", "nuts", "gibbs", "relent"])), control=ctl)
    d = res.to_dict()
    assert set(d["methods"]) == {"exact_em", "em", "laplace", "nuts", "gibbs", "relent"}
    for k in ("nuts", "gibbs"):
        dg = d["methods"][k]["diagnostics"]
        assert dg["r_hat_max"] < 1.1 and dg["ess_bulk_min"] > 50
    assert set(d["laplace_vs_nuts"]) >= {"kl", "max_mean_shift_sd", "sd_ratio"}
    assert ctl.ticks[-1][0] == pytest.approx(1.0)
    # nuts and gibbs target the same posterior
    a, b = d["methods"]["nuts"], d["methods"]["gibbs"]
    for name in a["theta_c"]:
        assert abs(a["theta_c"][name] - b["theta_c"][name]) < 0.5 * a["theta_c_sd"][name] + 0.05
    res.to_inference_data()
    res.figures()


def test_graph_likelihood_gives_the_same_posterior_mode():
    from bayescg.ising.bayes import marginal_model
    from bayescg.ising.coarse import CoarseModel
    from bayescg.ising.fine import FineModel

    fm = FineModel(8, 1.0, 0.3, (0.8,), True)
    x = fm.sample(20, np.random.default_rng(1))
    cm = CoarseModel(8, 2, "110", 1.0, 0.3, True)
    pts = []
    for lik in ("op", "graph"):
        m = marginal_model(cm, x, likelihood=lik)
        f = m.compile_logp()
        g = m.compile_dlogp()
        ip = m.initial_point()
        ip["theta_c"] = np.array([0.2, 0.6])
        pts.append((f(ip), g(ip)))
    assert pts[0][0] == pytest.approx(pts[1][0], abs=1e-8)
    np.testing.assert_allclose(pts[0][1], pts[1][1], atol=1e-6)


def test_sweep_default_process_pool():
    from bayescg.ising.pipeline import run_model

    raw = _raw(["exact_em", "relent"])
    raw["sweep"] = {"key": "coarse.level", "values": [2, 4]}
    raw["coarse"]["model"] = "110"
    d = run_model(model_from_dict(raw)).to_dict()
    assert d["sweep"]["values"] == [2, 4]
    assert len(d["runs"]) == 2


def test_slides_laplace_too_narrow_on_long_range_data_full_laplace_right():
    """Issue 12.3: on the long-range chain the slides' Laplace (complete-data information, theta_c
    fixed) gives theta_cf about 20 % too narrow an sd against the exact posterior; the full Laplace
    is within 10 %.  Measured 0.80 and 0.99 (S_f = 100, mu = 0.6)."""
    from bayescg.config import InferenceSection
    from bayescg.ising.coarse import CoarseModel
    from bayescg.ising.experiments import long_range
    from bayescg.ising.pipeline import run_methods

    fine = long_range(0.6)
    cm = CoarseModel(32, 2, "110", fine.beta, fine.mu, True)
    x = fine.sample(100, np.random.default_rng(1))
    r = run_methods(fine, cm, x, InferenceSection(methods=["laplace", "laplace_slides"], draws=1000, chains=1))
    pc = r.to_dict()["posterior_check"]
    assert pc["exact"]["edge_mass"] < 1e-3
    assert pc["methods"]["laplace_slides"]["theta_cf"]["sd_ratio"] < 0.9
    assert abs(pc["methods"]["laplace"]["theta_cf"]["sd_ratio"] - 1) < 0.1
    assert any(w.startswith("laplace_slides") and "too narrow" in w for w in r.warnings)
