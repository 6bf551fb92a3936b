"""2D surrogates: the metrics against independent truth, the spline potential and its continuation against
the analytic V_0 of (4.8), a surrogate run on the exact U_k reproducing the Gibbs law, and the CLI."""
import json
import math

import numpy as np
import pytest
from scipy import stats

from bayescg import metrics as mt
from bayescg.cli import main
from bayescg.config import model_from_dict
from bayescg.errors import InputError
from bayescg.surrogate import (compare_dynamics_nd, initial_conditions_nd, reference_spline,
                               spline_surrogate_potential, surrogate_model, _friction_nd, _learned_nd)

V0 = "(2*x + y - 1)**2/4 + (x - y - 1)**2"
H0 = np.array([[4.0, -1.0], [-1.0, 2.5]])       # Hessian of V0
Q0 = np.array([2.0 / 3.0, -1.0 / 3.0])          # its minimum (2x + y = 1, x - y = 1)


def _v0(p):
    x, y = p[..., 0], p[..., 1]
    return (2 * x + y - 1) ** 2 / 4 + (x - y - 1) ** 2


def test_sliced_w1_of_two_centred_gaussians_matches_the_circle_integral():
    """b = c a with a ~ N(0, S): along a unit u the laws are N(0, s^2) and N(0, c^2 s^2), s^2 = u'Su, at
    W1 = (c - 1) s sqrt(2/pi); the sliced W1 is its mean over the circle (quadrature here, random
    directions in the code).  Per coordinate: scipy on the same samples and the closed form."""
    S, c = np.array([[1.0, 0.3], [0.3, 0.5]]), 1.5
    th = np.linspace(0, np.pi, 4001)
    u = np.c_[np.cos(th), np.sin(th)]
    s = np.sqrt(np.einsum("ij,jk,ik->i", u, S, u))
    exact = (c - 1) * np.trapezoid(s, th) / np.pi * math.sqrt(2 / np.pi)
    a = np.random.default_rng(5).multivariate_normal([0, 0], S, 5000)
    b = c * a
    assert mt.sliced_wasserstein1(a, b, n_directions=1000, seed=1) == pytest.approx(exact, rel=0.05)
    w = mt.equilibrium_w1(a, b)
    for i in range(2):
        assert w["per_coordinate"][i] == pytest.approx(stats.wasserstein_distance(a[:, i], b[:, i]), rel=1e-12)
        assert w["per_coordinate"][i] == pytest.approx((c - 1) * math.sqrt(S[i, i] * 2 / np.pi), rel=0.05)


def test_compare_dynamics_nd_per_coordinate_against_plain_numpy():
    rng = np.random.default_rng(2)
    t = np.linspace(0, 5, 51)
    qa = rng.normal(size=(51, 30, 2)).cumsum(axis=0) * 0.1
    qb = qa + np.array([0.2, -0.5]) + rng.normal(0, 0.05, qa.shape)
    out = compare_dynamics_nd(t, qa, t, qb, eq_fraction=0.5)
    late = t >= 2.5
    for i in range(2):
        assert out["equilibrium_w1_per_coordinate"][i] == pytest.approx(
            stats.wasserstein_distance(qa[late, :, i].ravel(), qb[late, :, i].ravel()), rel=1e-12)
        assert out["mean_path_max_error_per_coordinate"][i] == pytest.approx(
            np.max(np.abs(qa[:, :, i].mean(1) - qb[:, :, i].mean(1))), rel=1e-12)
    assert out["mean_path_max_error"] == pytest.approx(max(out["mean_path_max_error_per_coordinate"]))
    # the joint ACF error integrates the coordinate-mean squared difference: sqrt(mean_i err_i^2)
    assert out["acf_l2_error"] == pytest.approx(np.mean(np.square(out["acf_l2_error_per_coordinate"])) ** 0.5,
                                                rel=1e-10)


def _model(**sur):
    raw = {"name": "quad2d", "potential": {"variables": ["x", "y"], "expression": V0, "reference": V0,
                                           "domain": [[-1.5, 3.0], [-2.5, 2.0]]},
           "simulation": {"delta": 0.05, "gamma": 0.1, "seed": 4},
           "surrogate": dict({"delta": 0.05, "reference_step": 0.01, "trajectories": 400, "time": 20.0,
                              "gamma": 1.0, "init_q": [0.3, 0.4], "posterior_draws": 0,
                              "phase_trajectories": 2}, **sur)}
    return model_from_dict(raw)


def test_spline_potential_is_V0_inside_and_continued_exactly_outside():
    lp = reference_spline(_model())
    U, info = spline_surrogate_potential(lp)
    np.testing.assert_allclose(info["kappa_lo"], [4.0, 2.5], rtol=1e-6)
    np.testing.assert_allclose(info["kappa_hi"], [4.0, 2.5], rtol=1e-6)
    rng = np.random.default_rng(0)
    inside = np.c_[rng.uniform(-1.5, 3, 300), rng.uniform(-2.5, 2, 300)]
    outside = np.c_[rng.uniform(-5, 6, 300), rng.uniform(-6, 5, 300)]
    for p in (inside, outside):
        g = np.array([H0 @ (x - Q0) for x in p])  # grad V0 = H0 (q - q*)
        np.testing.assert_allclose(U.gradient(p), g, atol=1e-7)
        np.testing.assert_allclose(U.V(p) - _v0(p), (U.V(Q0[None]) - _v0(Q0[None]))[0], atol=1e-7)


@pytest.mark.slow  # ~21-28 s on the 2026-12-05 host; the default run stays near 10 min
def test_2d_surrogate_on_exact_V0_reproduces_the_gibbs_law():
    """Langevin (4.2) at beta = 1 on U = V0: late samples have mean q* and covariance H0^-1 (Gibbs), within
    bounds that hold for any time correlation (pooled time averages have at most a single sample's variance)."""
    res = surrogate_model(_model(), "reference")
    x = res.curves["eq_surrogate"]
    M = res.settings["trajectories"]
    C = np.linalg.inv(H0)
    sd = np.sqrt(np.diag(C))
    np.testing.assert_array_less(np.abs(x.mean(0) - Q0), 4 * sd / math.sqrt(M))
    np.testing.assert_array_less(np.abs(x.var(0) - np.diag(C)), 4 * np.diag(C) * math.sqrt(2 / M))
    lg = res.langevin
    assert lg["left_grid_fraction"] < 0.2  # the box is V0 <= 20 inside the domain: rare excursions
    # the full model on the same V0 agrees to the noise floor of two surrogate ensembles
    assert lg["equilibrium_w1"] < 3 * lg["noise_floor"]["equilibrium_w1"] + 0.02
    assert len(lg["equilibrium_w1_per_coordinate"]) == 2 and len(res.hamiltonian["phase_portrait_error_per_coordinate"]) == 2
    assert res.settings["friction"] == [[1.0, 0.0], [0.0, 1.0]]
    d = json.loads(json.dumps(res.to_dict()))
    assert d["hamiltonian"]["speedup"] > 0 and d["langevin"]["speedup"] > 0
    assert len(res.figures()) == 5
    s = res.summary()
    assert [k for k in s if "speedup" in k] and all(s.text(k).endswith("x") for k in s if "speedup" in k)


def test_initial_conditions_around_centres_and_friction_choice():
    sec = _model(init_centres=[[0.0, 1.0], [2.0, -1.0], [5.0, 5.0]], init_q=[0.0, 0.0]).surrogate
    q0, p0 = initial_conditions_nd(sec, 7, 2, 1)
    np.testing.assert_allclose(q0, np.array([[0, 1], [2, -1], [5, 5]] * 3)[:7])
    with pytest.raises(InputError):
        initial_conditions_nd(_model(init_centres=[[0.0, 1.0, 2.0]]).surrogate, 4, 2, 1)
    m = _model()
    G = np.array([[0.3, 0.1], [0.1, 0.2]])
    assert _friction_nd(m.surrogate, m.simulation, G, 2)[0][0, 0] == 1.0  # surrogate.gamma wins
    sec0 = _model(gamma=None).surrogate
    np.testing.assert_array_equal(_friction_nd(sec0, m.simulation, G, 2)[0], G)
    np.testing.assert_array_equal(_friction_nd(sec0, m.simulation, None, 2)[0], 0.1 * np.eye(2))


def test_2d_rejections():
    with pytest.raises(InputError):  # a dict without the spline (posterior.nc)
        _learned_nd({"grid": [[0, 0]], "U_mean": [0.0]})
    raw = {"name": "q3", "potential": {"expression": "x**2 + y**2 + z**2", "variables": ["x", "y", "z"]},
           "simulation": {"delta": 0.5}}
    with pytest.raises(InputError):
        surrogate_model(model_from_dict(raw), "reference")


def test_cli_2d_surrogate_from_a_tiny_learn(tmp_path):
    model = tmp_path / "q.toml"
    # the micro-scale term of (4.8) makes the damped map (3.2) noisy (without it every walker collapses)
    full = V0 + " + 1e-5*(sin(x/1e-5) + sin((x + y)/1e-5))"
    model.write_text(f'name = "q"\n[potential]\nvariables = ["x", "y"]\nexpression = "{full}"\nreference = "{V0}"\n'
                     'domain = [[-1.5, 3.0], [-2.5, 2.0]]\n[simulation]\ndelta = 0.05\ngamma = 0.1\nsteps = 200000\n'
                     'walkers = 4\nbins = 40\n[noise]\ncalibrate = false\n'
                     '[fit]\nmethod = "map"\ndraws = 40\nknots = 8\n'
                     '[surrogate]\ntrajectories = 40\ntime = 2.0\nreference_step = 0.01\ndelta = 0.05\n'
                     'posterior_draws = 3\ninit_q = [0.3, 0.3]\nphase_trajectories = 1\n')
    assert main(["learn", str(model), "--out", str(tmp_path / "L"), "--quiet"]) == 0
    assert main(["surrogate", str(model), "--from", str(tmp_path / "L"), "--out", str(tmp_path / "S"), "--quiet"]) == 0
    d = json.loads((tmp_path / "S" / "surrogate.json").read_text())
    assert d["settings"]["dimension"] == 2 and d["langevin"]["posterior"]["draws"] == 3
    assert len(d["langevin"]["equilibrium_w1_per_coordinate"]) == 2
    assert (tmp_path / "S" / "report-surrogate.html").stat().st_size > 10_000
