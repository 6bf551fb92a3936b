"""Learning from the user's own (q, p): bayescg.trajectory and the model file's [trajectory] section."""
import math

import numpy as np
import pytest

from bayescg.cli import main
from bayescg.config import load_model, model_from_dict
from bayescg.errors import InputError, ModelFileError
from bayescg.fit import fit_effective_potential
from bayescg.pipeline import learn_model
from bayescg.potentials import catalogue, reference
from bayescg.simulate import simulate
from bayescg import learn_trajectory
from bayescg.trajectory import check_arrays, trajectory_result

MODEL = """
name = "t1-data"
[potential]
variables = ["q"]
reference = "q**2/2"
domain = [[-7.0, 7.0]]
[trajectory]
path = "traj.npz"
[fit]
method = "map"
knots = 12
"""


@pytest.fixture(scope="module")
def test1_sim():
    """Test 1 (4.5) at delta = 0.5 by bayescg's own simulate; its stored samples are the 'user trajectory'."""
    return simulate(catalogue("test1"), 0.5, 0.1, steps=1_000_000, walkers=4, seed=3, max_samples=60_000,
                    hist_range=[(-7.0, 7.0)], bins=200)


def _per_walker(sim):
    W = sim.walkers
    q = np.stack([sim.samples_q[sim.sample_walker == w] for w in range(W)])
    p = np.stack([sim.samples_p[sim.sample_walker == w] for w in range(W)])
    return q, p


def test_learning_from_saved_trajectory_matches_learning_from_the_simulation(test1_sim, tmp_path):
    sim = test1_sim
    q, p = _per_walker(sim)                                   # (4, n, 1): frames every sample_stride steps
    np.savez(tmp_path / "traj.npz", q=q, p=p, delta=0.5, gamma=0.1)
    (tmp_path / "m.toml").write_text(MODEL)
    res = learn_model(load_model(tmp_path / "m.toml"))
    direct = fit_effective_potential(sim, knots=12, method="map", reference=reference("test1"))
    fd, td = direct, res.raw_fit             # raw U_delta: the finite-delta corrected fit is res.fit
    # temperature (3.5): the data's beta_hat agrees with the simulator's within 4 combined standard errors
    se = math.hypot(sim.beta_hat_se, res.simulation.beta_hat_se)
    assert abs(res.simulation.beta_hat - sim.beta_hat) < 4 * se
    # U on the common grid (same histogram edges): within the two bands at >= 90 % of the mass region
    g1 = {round(x, 9): i for i, x in enumerate(fd.grid[:, 0])}
    pairs = np.array([(g1[round(x, 9)], j) for j, x in enumerate(td.grid[:, 0]) if round(x, 9) in g1])
    i1, i2 = pairs[:, 0], pairs[:, 1]
    m = fd.mass_region[i1]
    diff = fd.U_mean[i1] - td.U_mean[i2]
    diff -= diff[m].mean()
    half = (fd.U_upper - fd.U_lower)[i1] / 2 + (td.U_upper - td.U_lower)[i2] / 2
    assert np.mean(np.abs(diff[m]) <= half[m]) >= 0.9
    assert 0.5 < td.reference_rmse / fd.reference_rmse < 2.0
    # effective sample size from the data's own autocorrelation: at most one per frame, and not absurdly fewer
    frames = q.shape[0] * q.shape[1]
    assert 0.05 * frames < res.equilibrium.n_eff <= frames
    # delta and gamma read from the .npz: the finite-delta correction is applied as for a simulation, and it
    # removes most of the raw curvature bias (raw RMSE ~0.19 against q^2/2 at delta 0.5, see test_bias)
    d = res.to_dict()
    assert d["finite_delta_correction"]["applied"] and d["finite_delta_correction"]["method"].startswith("fixed point")
    assert d["delta"] == 0.5
    assert d["reference_rmse"] < 0.5 * d["reference_rmse_raw"]
    assert d["dimension"] == 1 and d["walkers"] == 4
    import hashlib

    assert d["trajectory"]["sha256"] == hashlib.sha256((tmp_path / "traj.npz").read_bytes()).hexdigest()
    assert d["trajectory"]["frames_per_walker"] == q.shape[1]
    # 4 walkers in the file: the band is checked against their spread (notebook 04 said "no per-walker data")
    assert not any("no per-walker data" in w for w in res.warnings)
    assert "none" not in d["band_calibration"]["method"]


@pytest.mark.parametrize("d", [1, 2, 3])
def test_trajectory_result_keeps_per_walker_counts_and_momenta(d):
    """The walker-clustered band check (bayescg.fit.walker_data) needs the counts and E[p p^T] of every walker;
    against plain numpy per walker (joint counts for d <= 3, as simulate stores them)."""
    rng = np.random.default_rng(d)
    W, n = 5, 600
    q = rng.normal(size=(W, n, d)) + np.arange(W)[:, None, None] * 0.1
    p = rng.normal(size=(W, n, d)) * (1 + 0.1 * np.arange(W))[:, None, None]
    res = trajectory_result(q, p, burn_in=0.1, bins=12)
    qb, pb = q[:, 60:], p[:, 60:]
    np.testing.assert_allclose(res.walker_second_moments, np.einsum("wni,wnj->wij", pb, pb) / pb.shape[1], rtol=1e-10)
    wc = res.walker_hist_counts
    assert wc.shape == (W,) + res.hist_counts.shape
    np.testing.assert_array_equal(wc.sum(axis=0), res.hist_counts)
    assert res.hist_counts.shape == (12,) * d and not res.hist_marginal
    for w in range(W):
        np.testing.assert_array_equal(wc[w], np.histogramdd(qb[w], bins=res.hist_edges)[0])


def test_effective_sample_size_and_beta_of_an_ar1_series():
    """AR(1) q_t = phi q_{t-1} + e_t: IAT(q) = (1 + phi) / (1 - phi) = 19, IAT(q^2) = (1 + phi^2) / (1 - phi^2);
    iid p ~ N(0, 1/beta): beta_hat -> beta with se = beta sqrt(2 / n) (1D).  n_eff = frames / 19."""
    rng = np.random.default_rng(7)
    W, n, phi, beta = 8, 50_000, 0.9, 2.0
    e = rng.standard_normal((W, n)) * math.sqrt(1 - phi ** 2)
    q = np.empty((W, n))
    q[:, 0] = rng.standard_normal(W)
    for t in range(1, n):
        q[:, t] = phi * q[:, t - 1] + e[:, t]
    p = rng.standard_normal((W, n)) / math.sqrt(beta)
    sim = trajectory_result(q[..., None], p[..., None], bins=60)
    assert sim.q_iat_steps == pytest.approx((1 + phi) / (1 - phi), rel=0.3)
    assert sim.q2_iat_steps == pytest.approx((1 + phi ** 2) / (1 - phi ** 2), rel=0.3)
    assert abs(sim.beta_hat - beta) < 4 * beta * math.sqrt(2 / (W * n))
    assert sim.beta_hat_se == pytest.approx(beta * math.sqrt(2 / (W * n)), rel=0.3)
    from bayescg.stats import equilibrium_summary

    # several walkers: n_eff = frames / tau_hist from the walker-to-walker variance of the cell counts (the rule
    # simulate's results follow too, stats.equilibrium_summary); the cell indicators decorrelate faster than q
    # (tau_hist ~1.9 measured with 400 such walkers, plain numpy), so 1 <= tau_hist < IAT(q)
    eq = equilibrium_summary(sim)
    assert eq.n_eff_method.startswith("histogram: walker-to-walker")
    assert W * n / ((1 + phi) / (1 - phi)) < eq.n_eff <= W * n
    # one walker (no walker spread): n_eff = frames / IAT(q) from the data's own autocorrelation
    one = trajectory_result(q.reshape(-1, 1), p.reshape(-1, 1), bins=60)
    assert equilibrium_summary(one).n_eff == pytest.approx(W * n / ((1 + phi) / (1 - phi)), rel=0.3)


def test_api_with_arrays_learns_a_known_potential():
    """iid samples of exp(-U), U = 2 (q^2 - 1)^2 (inverse-CDF sampling on a fine grid), p ~ N(0, 1)."""
    rng = np.random.default_rng(0)
    x = np.linspace(-2.2, 2.2, 20001)
    U = 2 * (x ** 2 - 1) ** 2
    cdf = np.cumsum(np.exp(-U))
    q = np.interp(rng.random(40_000), cdf / cdf[-1], x)
    p = rng.standard_normal(40_000)
    res = learn_trajectory(q, p, knots=16, method="map", bins=100,
                           reference=lambda pts: 2 * (np.asarray(pts).ravel() ** 2 - 1) ** 2)
    assert res.fit.reference_rmse < 0.1
    assert res.fit.beta["mean"] == pytest.approx(1.0, abs=0.05)
    fdc = res.to_dict()["finite_delta_correction"]  # no delta, gamma: no correction, and it says why
    assert not fdc["applied"] and "delta and gamma" in fdc["reason"]


def test_api_with_3d_arrays_learns_an_anisotropic_quadratic():
    """d = 3 from the user's arrays: iid q ~ N(0, K^-1) for U = 0.5 x^2 + y^2 + 0.25 z^2 + 0.3 x z (exact Gaussian
    samples, numpy), p ~ N(0, 1): the learned U (MAP, tensor splines) against U on the data's bulk."""
    rng = np.random.default_rng(5)
    K = np.array([[1.0, 0.0, 0.3], [0.0, 2.0, 0.0], [0.3, 0.0, 0.5]])
    n = 200_000
    q = rng.multivariate_normal(np.zeros(3), np.linalg.inv(K), size=n)
    p = rng.standard_normal((n, 3))
    ref = lambda pts: 0.5 * np.einsum("ni,ij,nj->n", np.atleast_2d(pts), K, np.atleast_2d(pts))  # noqa: E731
    res = learn_trajectory(q, p, variables=["x", "y", "z"], knots=6, method="map", bins=16, reference=ref)
    assert res.simulation.dim == 3 and res.simulation.hist_counts.shape == (16, 16, 16)
    assert res.fit.beta["mean"] == pytest.approx(1.0, abs=0.03)
    assert res.fit.reference_rmse < 0.15  # U spans ~0-8 over the fitted region
    d = res.to_dict()
    assert d["dimension"] == 3 and np.asarray(d["grid"]).shape[-1] == 3


def test_3d_trajectory_histogram_too_large_is_one_clear_error():
    q = np.random.default_rng(1).normal(size=(2000, 3))
    with pytest.raises(InputError, match="fewer bins") as exc:
        trajectory_result(q, q, bins=1000)
    assert "\n" not in str(exc.value)


GOODQ = np.linspace(-1, 1, 400)
GOODP = np.sin(np.arange(400.0))


@pytest.mark.parametrize("q, p, msg", [
    (np.where(np.arange(400) == 5, np.nan, GOODQ), GOODP, "non-finite"),
    (GOODQ, np.where(np.arange(400) == 9, np.inf, GOODP), "non-finite"),
    (GOODQ.reshape(1, 1, 1, 400), GOODP.reshape(1, 1, 1, 400), "must have shape"),
    (GOODQ, GOODP[:399], "different shapes"),
    (GOODQ[:50], GOODP[:50], "at least 128"),
    (GOODQ, np.ones(400), "p is constant"),
    (np.ones(400), GOODP, "q is constant"),
    (np.zeros((400, 4)), np.zeros((400, 4)), "1 to 3"),
    (["a"] * 400, GOODP, "not a numeric array"),
])
def test_bad_data_one_clear_error(q, p, msg):
    with pytest.raises(InputError, match=msg) as exc:
        check_arrays(q, p)
    assert "\n" not in str(exc.value)


def test_bad_files_and_model_sections(tmp_path):
    (tmp_path / "m.toml").write_text(MODEL)
    m = load_model(tmp_path / "m.toml")
    with pytest.raises(InputError, match="no such trajectory file"):
        learn_model(m)
    np.savez(tmp_path / "traj.npz", q=GOODQ)
    with pytest.raises(InputError, match="missing p"):
        learn_model(m)
    np.savez(tmp_path / "traj.npz", q=np.stack([GOODQ, GOODQ], axis=1), p=np.stack([GOODP, GOODP], axis=1))
    with pytest.raises(InputError, match="d = 2 coordinates but potential.variables names 1"):
        learn_model(m)
    (tmp_path / "traj.npz").write_text("not a zip")
    assert main(["learn", str(tmp_path / "m.toml"), "--out", str(tmp_path / "o")]) == 2
    base = {"potential": {"variables": ["q"]}, "trajectory": {"path": "x.npz"}}
    with pytest.raises(ModelFileError, match="not both"):
        model_from_dict(dict(base, simulation={"delta": 0.1}))
    with pytest.raises(ModelFileError, match="needs expression or module"):
        model_from_dict({"potential": {"variables": ["q"]}, "simulation": {"delta": 0.1}})
    with pytest.raises(ModelFileError, match="not both"):
        model_from_dict({"potential": {"variables": ["q"], "expression": "q**2", "module": "a.py"}})
    with pytest.raises(ModelFileError, match="trajectory.mass"):
        model_from_dict({"potential": {"variables": ["q"]}, "trajectory": {"path": "x.npz", "mass": [[-1.0]]}})
