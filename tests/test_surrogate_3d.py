"""3D surrogates (issue 14 item 6): the d = 3 spline potential and its continuation against an analytic anisotropic
quadratic, a surrogate run on the exact U_k reproducing the Gibbs variances per coordinate within their Monte
Carlo error, bad dimension, and the CLI on a tiny 3D learn folder."""
import json

import numpy as np
import pytest

from bayescg.cli import main
from bayescg.config import model_from_dict
from bayescg.errors import InputError
from bayescg.export import LearnedPotential
from bayescg.splines import clamped_knots
from bayescg.surrogate import reference_spline, spline_surrogate_potential, surrogate_model

V0 = "0.5*x**2 + y**2 + 0.25*z**2 + 0.2*x*y"
H0 = np.array([[1.0, 0.2, 0.0], [0.2, 2.0, 0.0], [0.0, 0.0, 0.5]])  # Hessian of V0 (minimum at 0)
DOMAIN = [[-4.5, 4.5], [-3.2, 3.2], [-6.4, 6.4]]


def _model(**sur):
    raw = {"name": "quad3d", "potential": {"variables": ["x", "y", "z"], "expression": V0, "reference": V0,
                                           "domain": DOMAIN},
           "simulation": {"delta": 0.05, "gamma": 0.1, "seed": 3},
           "surrogate": dict({"delta": 0.1, "reference_step": 0.01, "trajectories": 400, "time": 20.0,
                              "gamma": 1.0, "init_q": [0.0, 1.0], "posterior_draws": 0,
                              "phase_trajectories": 2}, **sur)}
    return model_from_dict(raw)


@pytest.mark.slow  # ~21-28 s on the 2026-12-05 host; the default run stays near 10 min
def test_3d_spline_potential_is_V0_inside_and_continued_exactly_outside():
    """A cubic tensor spline holds the quadratic exactly; outside the data box the continuation (linear bases,
    cubic corner term dropped, walls = edge curvatures, cross terms within the clip) is V0 itself."""
    lp = reference_spline(_model())
    assert lp.dim == 3
    U, info = spline_surrogate_potential(lp)
    np.testing.assert_allclose(info["kappa_lo"], np.diag(H0), rtol=1e-5)
    np.testing.assert_allclose(info["kappa_hi"], np.diag(H0), rtol=1e-5)
    np.testing.assert_allclose(info["corner_cross_change"], 0.0, atol=1e-6)  # |0.2| < 0.45 sqrt(1 * 2)
    rng = np.random.default_rng(0)
    lo, hi = np.array(info["box"][0]), np.array(info["box"][1])
    inside = rng.uniform(lo, hi, (200, 3))
    outside = rng.uniform(lo - 3, hi + 3, (400, 3))
    assert np.mean(np.all((outside < lo) | (outside > hi), axis=1)) > 0.05  # some beyond a triple corner
    v = lambda p: 0.5 * np.einsum("ni,ij,nj->n", p, H0, p)  # noqa: E731
    c = U.V(np.zeros((1, 3)))[0]
    for p in (inside, outside):
        np.testing.assert_allclose(U.gradient(p), p @ H0, atol=1e-6)
        np.testing.assert_allclose(U.V(p) - c, v(p), atol=1e-6)


def test_3d_spline_continuation_confines_a_steep_corner():
    """A cross term far beyond the clip (U = x^2 + y^2 + z^2 + 3 (x y + y z + x z), indefinite) is clipped beyond
    the corners, so U grows along every ray out of the box (the continuation's form there is positive definite)."""
    raw = {"name": "steep", "potential": {"variables": ["x", "y", "z"], "expression": "x**2 + y**2 + z**2",
                                          "reference": "x**2 + y**2 + z**2 + 3*(x*y + y*z + x*z)",
                                          "domain": [[-1, 1], [-1, 1], [-1, 1]]},
           "simulation": {"delta": 0.05}}
    lp = reference_spline(model_from_dict(raw), energy_cut=1e9, knots=5)
    U, info = spline_surrogate_potential(lp)
    assert np.max(np.abs(info["corner_cross_change"])) > 1.0
    u = np.random.default_rng(1).normal(size=(200, 3))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    r = np.array([4.0, 8.0, 16.0])
    vals = np.array([U.V(rr * u) for rr in r])  # (3, 200)
    assert np.all(np.diff(vals, axis=0) > 0)


@pytest.mark.slow  # ~21-28 s on the 2026-12-05 host; the default run stays near 10 min
def test_3d_surrogate_on_exact_V0_reproduces_the_gibbs_variances():
    """Langevin (4.2) at beta = 1 on U = V0 (BAOAB samples a quadratic's configurational law exactly): late-time
    variance per coordinate = diag(H0^-1) within 4 Monte Carlo standard errors (from independent trajectories),
    for the surrogate and for the full model at h."""
    res = surrogate_model(_model(), "reference")
    var = np.diag(np.linalg.inv(H0))
    lv = res.langevin["late_variance_per_coordinate"]
    for key in ("surrogate", "full"):
        err = np.abs(np.array(lv[key]["value"]) - var)
        np.testing.assert_array_less(err, 4 * np.array(lv[key]["standard_error"]) + 1e-3 * var)
        assert np.all(np.array(lv[key]["standard_error"]) < 0.1 * var)  # the check has teeth
    lg, hm = res.langevin, res.hamiltonian
    assert res.settings["dimension"] == 3
    assert len(lg["equilibrium_w1_per_coordinate"]) == 3 and len(lg["acf_l2_error_per_coordinate"]) == 3
    assert len(lg["mean_path_max_error_per_coordinate"]) == 3 and len(hm["phase_portrait_error_per_coordinate"]) == 3
    assert lg["equilibrium_w1"] < 3 * lg["noise_floor"]["equilibrium_w1"] + 0.02
    d = json.loads(json.dumps(res.to_dict()))
    assert d["langevin"]["speedup"] > 0 and d["hamiltonian"]["speedup"] > 0
    figs = res.figures()
    assert len(figs) == 5 and "z = " in figs[-1][1].axes[0].get_title()


def test_4d_is_refused_in_one_line(tmp_path, capsys):
    raw = {"name": "q4", "potential": {"expression": "x**2 + y**2 + z**2 + w**2", "variables": ["x", "y", "z", "w"],
                                       "reference": "x**2 + y**2 + z**2 + w**2", "domain": [[-1, 1]] * 4},
           "simulation": {"delta": 0.5}}
    with pytest.raises(InputError, match="1 to 3 variables"):  # the model file is refused before any run
        surrogate_model(model_from_dict(raw), "reference")
    # a 4D spline handed to the surrogate directly (built here: a 3D reference_spline would compile V's kernel and
    # the design matrix only to be refused)
    t = clamped_knots(-1.0, 1.0, 5)
    lp4 = LearnedPotential([t] * 4, np.zeros((len(t) - 4) ** 4), None, ["x", "y", "z", "w"],
                           np.array([[-0.5] * 4, [0.5] * 4]))
    with pytest.raises(InputError, match="d = 1, 2, 3"):
        spline_surrogate_potential(lp4)
    m = tmp_path / "q4.toml"
    m.write_text('name = "q4"\n[potential]\nvariables = ["x", "y", "z", "w"]\nexpression = "x**2 + y**2 + z**2 + w**2"\n'
                 '[simulation]\ndelta = 0.5\n[surrogate]\ntrajectories = 4\n')
    assert main(["surrogate", str(m), "--out", str(tmp_path / "S"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "got 4" in err


@pytest.mark.slow
def test_cli_3d_surrogate_from_a_small_learn(tmp_path):
    """`bayescg surrogate --from` a 3D learn folder (test-3d-anisotropic.toml at a small budget, MAP)."""
    out_l, out_s = tmp_path / "L", tmp_path / "S"
    sets = ["--set", "simulation.steps=400000", "--set", "noise.calibrate=false", "--set", "fit.method=map",
            "--set", "fit.draws=40", "--set", "fit.knots=6", "--set", "surrogate.trajectories=60",
            "--set", "surrogate.time=4.0", "--set", "surrogate.reference_step=0.01", "--set", "surrogate.delta=0.05",
            "--set", "surrogate.posterior_draws=3", "--set", "surrogate.phase_trajectories=1"]
    assert main(["learn", "models/test-3d-anisotropic.toml", "--out", str(out_l), "--quiet", *sets]) == 0
    assert main(["surrogate", "models/test-3d-anisotropic.toml", "--from", str(out_l), "--out", str(out_s),
                 "--quiet", *sets]) == 0
    d = json.loads((out_s / "surrogate.json").read_text())
    assert d["settings"]["dimension"] == 3 and d["langevin"]["posterior"]["draws"] == 3
    assert len(d["langevin"]["equilibrium_w1_per_coordinate"]) == 3
    assert (out_s / "report-surrogate.html").stat().st_size > 10_000
