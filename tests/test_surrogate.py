"""Surrogate dynamics: spline evaluation against scipy, separability of the draw stack, and a
surrogate built from an exactly known U reproducing the full model and analytic results."""
import math

import numpy as np
import pytest
from scipy.interpolate import CubicSpline
from scipy.integrate import solve_ivp

from bayescg.config import model_from_dict
from bayescg.errors import InputError
from bayescg.surrogate import (LearnedCurves, initial_conditions, interpolated_potential, learned_curves,
                               stacked_potential, surrogate_model)


def _u(x):
    return np.cos(2 * x) + 0.3 * x ** 2


@pytest.mark.parametrize("uniform", [True, False])
def test_interpolated_potential_matches_scipy_inside_and_continues_quadratically(uniform):
    g = np.linspace(-3, 3, 61) if uniform else np.sort(np.r_[-3, 3, np.random.default_rng(0).uniform(-3, 3, 58)])
    pot, info = interpolated_potential(g, _u(g))
    cs = CubicSpline(g, _u(g), bc_type="not-a-knot")
    x = np.linspace(-3, 3, 1237)
    np.testing.assert_allclose(pot.V(x), cs(x), rtol=0, atol=1e-12)
    np.testing.assert_allclose(pot.gradient(x)[:, 0], cs(x, 1), rtol=0, atol=1e-10)
    # outside: U(b) + U'(b) dx + kappa dx^2 / 2 with kappa = mean curvature over the outer 10 %
    k = int(round(0.1 * (g.size - 1)))
    klo = max((cs(g[k], 1) - cs(g[0], 1)) / (g[k] - g[0]), 0.0)
    khi = max((cs(g[-1], 1) - cs(g[-1 - k], 1)) / (g[-1] - g[-1 - k]), 0.0)
    assert info["kappa_lo"] == pytest.approx(klo) and info["kappa_hi"] == pytest.approx(khi)
    for b, kap, dx in ((g[0], klo, -np.linspace(0.01, 4, 7)), (g[-1], khi, np.linspace(0.01, 4, 7))):
        xs = b + dx
        np.testing.assert_allclose(pot.V(xs), cs(b) + cs(b, 1) * dx + 0.5 * kap * dx ** 2, atol=1e-10)
        np.testing.assert_allclose(pot.gradient(xs)[:, 0], cs(b, 1) + kap * dx, atol=1e-10)


def test_quadratic_U_is_continued_exactly():
    g = np.linspace(-1.5, 1.5, 31)
    pot, info = interpolated_potential(g, 0.5 * g ** 2)
    x = np.linspace(-6, 6, 101)
    np.testing.assert_allclose(pot.gradient(x)[:, 0], x, atol=1e-9)
    assert info["kappa_lo"] == pytest.approx(1.0) and info["kappa_hi"] == pytest.approx(1.0)
    assert not info["warnings"]


def test_stacked_potential_is_the_separable_sum():
    g = np.linspace(-2, 2, 41)
    draws = np.stack([_u(g), 0.5 * g ** 2, g ** 4 / 4])
    P = stacked_potential(g, draws)
    assert P.dim == 3
    pts = np.random.default_rng(1).uniform(-3, 3, (50, 3))
    grads = P.gradient(pts)
    vals = P.V(pts)
    ref_v = np.zeros(50)
    for j in range(3):
        pj, _ = interpolated_potential(g, draws[j])
        np.testing.assert_allclose(grads[:, j], pj.gradient(pts[:, j])[:, 0], atol=1e-12)
        ref_v += pj.V(pts[:, j])
    np.testing.assert_allclose(vals, ref_v, atol=1e-12)


def test_learned_curves_from_dict_and_posterior(tmp_path):
    import arviz as az

    g = np.linspace(-2, 2, 21)
    U = g ** 2
    draws = U[None, None] + np.random.default_rng(2).normal(0, 0.01, (2, 5, 21))
    path = tmp_path / "posterior.nc"
    az.from_dict(posterior={"U": draws}, dims={"U": ["grid_point"]}).to_netcdf(str(path))
    c = learned_curves({"grid": [[x] for x in g], "U_mean": U.tolist(), "beta_hat": 2.0}, posterior=path)
    assert c.beta_hat == 2.0 and c.draws.shape == (10, 21)
    np.testing.assert_allclose(c.grid, g)
    c2 = learned_curves({"grid": g.tolist(), "U_mean": U.tolist()})
    assert c2.draws is None
    with pytest.raises(InputError):
        learned_curves({"grid": [[0, 1], [1, 2], [2, 3], [3, 4]], "U_mean": [0, 1, 2, 3]})
    with pytest.raises(InputError):
        learned_curves({"grid": [0, 2, 1, 3], "U_mean": [0, 1, 2, 3]})
    with pytest.raises(InputError):
        learned_curves({"U_mean": [0, 1]})


def test_initial_conditions_follow_the_section():
    from bayescg.config import SurrogateSection

    q, p = initial_conditions(SurrogateSection(init="uniform", init_q=[-0.12, 0.88], init_p=[-0.5, 0.5]), 5000, 1, 3)
    assert q.min() >= -0.12 and q.max() <= 0.88 and abs(q.mean() - 0.38) < 0.02
    assert p.min() >= -0.5 and p.max() <= 0.5
    q, p = initial_conditions(SurrogateSection(), 5000, 1, 3)
    assert abs(q.mean() + 2) < 0.05 and abs(q.std() - 1) < 0.05 and abs(p.std() - 1) < 0.05


def _mean_path_ode(t, gamma, q0, p0):
    """E[q(t)] of linear kinetic Langevin with U = q^2/2: q'' + gamma q' + q = 0 (noise has mean 0)."""
    sol = solve_ivp(lambda s, y: [y[1], -y[0] - gamma * y[1]], (0, t[-1]), [q0, p0], t_eval=t,
                    rtol=1e-10, atol=1e-12)
    return sol.y[0]


def test_surrogate_from_exact_U_reproduces_full_model_and_analytics():
    """U = q^2/2 given exactly on a grid narrower than the initial spread (so trajectories leave it),
    V = U + a resolved micro-scale of amplitude 0.01.  Checks against analytic truth, not the code:
    equilibrium N(0, 1) at beta = 1 (beta_hat = 2 is given and must not rescale U), mean path of
    q'' + gamma q' + q = 0, and the surrogate-vs-full errors at the level of the sampling noise."""
    gamma = 0.5
    expr = "q**2/2 + 0.01*sin(q/0.01)"
    raw = {"name": "quad", "potential": {"expression": expr, "reference": "q**2/2"},
           "simulation": {"delta": 0.5, "gamma": gamma, "seed": 7},
           "surrogate": {"delta": 0.1, "reference_step": 2e-3, "trajectories": 400, "time": 10.0,
                         "posterior_draws": 4, "phase_trajectories": 2, "compare_expression": expr}}
    model = model_from_dict(raw)
    g = np.linspace(-3, 3, 61)
    rng = np.random.default_rng(0)
    draws = 0.5 * g ** 2 * (1 + 0.02 * rng.standard_normal((30, 1)))
    res = surrogate_model(model, LearnedCurves(g, 0.5 * g ** 2, draws, 2.0, "exact q^2/2"))
    d = res.to_dict()
    lg, hm = d["langevin"], d["hamiltonian"]
    c = res.curves
    M = 400
    # analytic mean path (4.3): initial means are the sample means of the shared initial conditions;
    # sd(q) <= ~1.2 over the run, so 4 standard errors are < 5 / sqrt(M)
    q0, p0 = initial_conditions(model.surrogate, M, 1, 7)
    ode = _mean_path_ode(c["t_surrogate"], gamma, q0.mean(), p0.mean())
    assert np.max(np.abs(c["mean_surrogate"] - ode)) < 5 / math.sqrt(M)
    ode_f = _mean_path_ode(c["t_full"], gamma, q0.mean(), p0.mean())
    assert np.max(np.abs(c["mean_full"] - ode_f)) < 5 / math.sqrt(M)
    # equilibrium: late q is ~ N(0, 1) for both (beta = 1, U not scaled by beta_hat = 2)
    mid = 0.5 * (c["density_edges"][1:] + c["density_edges"][:-1])
    for key in ("density_surrogate", "density_full"):
        var = np.sum(mid ** 2 * c[key] * np.diff(c["density_edges"]))
        assert 0.75 < var < 1.3, (key, var)
    # surrogate vs full: within a few noise floors (two independent surrogate ensembles)
    nf = lg["noise_floor"]
    assert lg["equilibrium_w1"] < 3 * nf["equilibrium_w1"] + 0.03
    assert lg["mean_path_max_error"] < 3 * nf["mean_path_max_error"] + 0.03
    assert lg["acf_l2_error"] < 3 * nf["acf_l2_error"] + 0.02
    assert lg["speedup"] > 1 and hm["speedup"] > 1
    # Hamiltonian orbits of U and V differ by the micro-scale only (amplitude 0.01 in energy)
    assert hm["phase_portrait_error"] < 0.02
    # trajectories started outside the grid [-3, 3] and are reported
    assert lg["left_grid_fraction"] > 0 and any("left the learned grid" in w for w in res.warnings)
    # posterior bands: 4 draws, bands ordered, sensible widths
    post = lg["posterior"]
    assert post["draws"] == 4
    b = post["bands"]
    assert len(b["mean_path_lower"]) == len(b["times"]) == len(c["t_surrogate"])
    assert np.all(np.array(b["mean_path_lower"]) <= np.array(b["mean_path_upper"]))
    assert post["equilibrium_w1"]["lower"] <= post["equilibrium_w1"]["upper"]
    # compare_expression = V itself, same step, seed and initial conditions: identical, zero errors
    cl = d["compare"]["langevin"]
    assert cl["equilibrium_w1"] == 0 and cl["mean_path_max_error"] == 0 and cl["acf_l2_error"] == 0
    assert d["compare"]["hamiltonian"]["phase_portrait_error"] == 0
    # outputs
    import json

    json.dumps(d)
    assert set(res.summary()) >= {"Langevin W1 (equilibrium)", "Hamiltonian speedup"}
    titles = [t for t, _ in res.figures()]
    assert len(titles) == 5


def test_surrogate_rejects_bad_input():
    raw = {"name": "q2", "potential": {"expression": "x**2 + y**2", "variables": ["x", "y"]},
           "simulation": {"delta": 0.5}}
    with pytest.raises(InputError):
        surrogate_model(model_from_dict(raw), "reference")
    raw = {"name": "q1", "potential": {"expression": "q**2"}, "simulation": {"delta": 0.5}}
    with pytest.raises(InputError):
        surrogate_model(model_from_dict(raw), "reference")  # no potential.reference
    with pytest.raises(InputError):
        surrogate_model(model_from_dict(raw), "something")


@pytest.mark.slow
def test_paper_size_test1_with_exact_U0():
    """(4.5) at the paper's size (M = 4000, T = 50, delta = 0.1 vs h = 5e-4) with U_0 = q^2/2 given
    exactly: the equilibrium law and the Hamiltonian orbits match, and the surrogate is > 50x faster.
    (Mean path and ACF differ beyond sampling noise: the micro-scales damp the full model more.)"""
    from pathlib import Path

    from bayescg.config import load_model

    model = load_model(Path(__file__).resolve().parents[1] / "models" / "test1-quadratic.toml")
    d = surrogate_model(model, "reference").to_dict()
    assert d["langevin"]["equilibrium_w1"] < 0.03
    assert d["hamiltonian"]["phase_portrait_error"] < 0.05
    assert d["langevin"]["speedup"] > 50


def test_surrogate_gamma_overrides_the_learning_friction():
    """[surrogate] gamma sets the friction of the compared Langevin runs (the learning run's gamma
    only sets its temperature): the mean path follows q'' + 1.5 q' + q = 0, not the gamma = 0.3 one."""
    expr = "q**2/2 + 0.01*sin(q/0.01)"
    raw = {"name": "quad", "potential": {"expression": expr, "reference": "q**2/2"},
           "simulation": {"delta": 0.5, "gamma": 0.3, "seed": 3},
           "surrogate": {"delta": 0.1, "reference_step": 5e-3, "trajectories": 400, "time": 8.0,
                         "posterior_draws": 0, "phase_trajectories": 1, "gamma": 1.5}}
    model = model_from_dict(raw)
    g = np.linspace(-5, 5, 101)
    res = surrogate_model(model, LearnedCurves(g, 0.5 * g ** 2, None, 1.0, "exact q^2/2"))
    assert res.to_dict()["settings"]["gamma"] == 1.5
    c = res.curves
    q0, p0 = initial_conditions(model.surrogate, 400, 1, 3)
    err = {gm: np.max(np.abs(c["mean_surrogate"] - _mean_path_ode(c["t_surrogate"], gm, q0.mean(), p0.mean())))
           for gm in (1.5, 0.3)}
    assert err[1.5] < 5 / math.sqrt(400) < err[0.3], err


def test_surrogate_takes_the_corrected_draws_of_a_posterior():
    """posterior.nc holds the raw U and, when the learn stage corrected it, U_corrected: the surrogate's
    draws are the corrected ones (they go with the corrected U_mean of result.json)."""
    import arviz as az

    g = np.linspace(-3, 3, 31)
    raw = np.stack([1.1 * g ** 2 / 2] * 4)[None]
    cor = np.stack([g ** 2 / 2] * 4)[None]
    idata = az.from_dict(posterior={"U": raw, "U_corrected": cor},
                         dims={"U": ["grid_point"], "U_corrected": ["grid_point"]})
    c = learned_curves({"grid": g.tolist(), "U_mean": (g ** 2 / 2).tolist(), "beta_hat": 0.4}, idata)
    assert np.allclose(c.draws, g ** 2 / 2)
    del idata.posterior["U_corrected"]
    assert np.allclose(learned_curves({"grid": g.tolist(), "U_mean": (g ** 2 / 2).tolist()}, idata).draws,
                       1.1 * g ** 2 / 2)
