"""simulate(): contract, accumulators, checkpoint/resume, blow-up, trap detection, input validation."""
import json
import math

import numpy as np
import pytest

from bayescg.config import load_model
from bayescg.errors import InputError, Interrupted, SimulationError
from bayescg.potentials import Potential, catalogue
from bayescg.simulate import SimulationResult, run_trajectories, simulate, simulate_model

SPEC_FIELDS = ("steps", "walkers", "seconds", "steps_per_second", "beta_hat", "momentum_covariance",
               "trapped_fraction")


@pytest.fixture(scope="module")
def test1():
    return catalogue("test1")


@pytest.fixture(scope="module")
def quad2():
    return Potential.from_expression("(2*x + y - 1)**2/4 + (x - y - 1)**2 + 1e-3*(sin(x/1e-3) + sin((x + y)/1e-3))",
                                     ["x", "y"])


def test_result_fields_and_accounting(test1):
    r = simulate(test1, 0.5, 0.1, steps=100_001, walkers=4, seed=2, bins=50, max_samples=1000)
    assert isinstance(r, SimulationResult)
    n_per = math.ceil(100_001 / 4)
    assert r.steps == 4 * n_per and r.steps_per_walker == n_per
    burn = int(0.1 * n_per)
    assert r.burn_in_steps == burn and r.accumulated_steps == 4 * (n_per - burn)
    # every post-burn-in step is either on the grid or counted outside
    assert r.hist_counts.sum() + r.hist_outside == r.accumulated_steps
    assert r.hist_counts.shape == (50,) and len(r.hist_edges) == 1 and r.hist_edges[0].shape == (51,)
    # the pilot range covers nearly all mass
    assert r.hist_outside < 0.01 * r.accumulated_steps
    # samples: evenly spread over walkers and over time
    assert r.samples_q.shape == r.samples_p.shape == (1000, 1)
    assert np.bincount(r.sample_walker).tolist() == [250] * 4
    assert r.sample_stride == (n_per - burn) // 250
    assert r.momentum_mean.shape == (1,) and r.momentum_covariance.shape == (1, 1)
    assert r.second_moment_batches.shape == (32, 1, 1)
    # batch means average to the pooled second moment
    assert np.isclose(r.second_moment_batches.mean(), r.momentum_covariance[0, 0] + r.momentum_mean[0] ** 2,
                      rtol=1e-3)
    assert r.beta_hat == pytest.approx(1 / r.momentum_covariance[0, 0])
    # the pooled variance agrees with the stored samples (an independent estimate)
    assert abs(r.samples_p[:, 0].var() / r.momentum_covariance[0, 0] - 1) < 0.15
    d = r.to_dict()
    for k in SPEC_FIELDS:
        assert k in d
    assert json.loads(r.to_json())["steps"] == r.steps
    assert r.steps_per_second > 0 and r.seconds > 0


def test_2d_histogram_and_matrices(quad2):
    r = simulate(quad2, 0.05, 0.1, steps=200_000, walkers=4, seed=1, bins=30,
                 hist_range=[(-2.0, 3.0), (-3.0, 2.0)])
    assert r.hist_counts.shape == (30, 30)
    assert np.allclose(r.hist_edges[0][[0, -1]], [-2, 3]) and np.allclose(r.hist_edges[1][[0, -1]], [-3, 2])
    assert r.hist_counts.sum() + r.hist_outside == r.accumulated_steps
    assert np.allclose(r.mass, np.eye(2)) and np.allclose(r.friction, 0.1 * np.eye(2))
    cov = r.momentum_covariance
    assert np.allclose(cov, cov.T) and np.all(np.linalg.eigvalsh(cov) > 0)
    assert r.beta_hat == pytest.approx(2 / np.trace(cov))
    # histogram marginal mean of x agrees with the samples
    cx = 0.5 * (r.hist_edges[0][1:] + r.hist_edges[0][:-1])
    hx = r.hist_counts.sum(axis=1)
    assert abs((hx * cx).sum() / hx.sum() - r.samples_q[:, 0].mean()) < 0.05


def test_3d_joint_and_4d_marginal_histograms():
    # d = 3 counts the joint bins^3 histogram (3D learning); d > 3 falls back to per-coordinate marginals
    pot = Potential.from_expression("(x**2 + y**2 + z**2)/2", ["x", "y", "z"])
    r = simulate(pot, 0.1, integrator="langevin", steps=30_000, walkers=3, bins=20)
    assert not r.hist_marginal and r.hist_counts.shape == (20, 20, 20)
    assert r.hist_counts.sum() + r.hist_outside == r.accumulated_steps
    pot4 = Potential.from_expression("(w**2 + x**2 + y**2 + z**2)/2", ["w", "x", "y", "z"])
    r4 = simulate(pot4, 0.1, integrator="langevin", steps=30_000, walkers=3, bins=20)
    assert r4.hist_marginal and r4.hist_counts.shape == (4, 20)
    assert np.all(r4.hist_counts.sum(axis=1) + r4.hist_outside == r4.accumulated_steps)


class StopAfter:
    """A RunControl stand-in that raises Interrupted at the n-th tick."""

    def __init__(self, n):
        self.n = n
        self.ticks = []

    def tick(self, done, note=""):
        self.ticks.append(done)
        if len(self.ticks) == self.n:
            raise Interrupted("stop")


@pytest.mark.parametrize("integrator", ["damped", "langevin"])
def test_checkpoint_resume_is_bit_identical(tmp_path, test1, integrator):
    kw = dict(steps=120_000, walkers=3, seed=9, chunk_steps=3_000, max_samples=300, integrator=integrator)
    full = simulate(test1, 0.5, 0.1, **kw)
    ck = tmp_path / "ck.npz"
    ctl = StopAfter(1)  # interrupted inside the burn-in (first chunk ends at 3000 < 4000)...
    with pytest.raises(Interrupted):
        simulate(test1, 0.5, 0.1, checkpoint=ck, control=ctl, **kw)
    assert ck.exists()
    with pytest.raises(Interrupted):  # ...then again after it
        simulate(test1, 0.5, 0.1, checkpoint=ck, resume=True, control=StopAfter(4), **kw)
    ctl = StopAfter(10 ** 6)
    res = simulate(test1, 0.5, 0.1, checkpoint=ck, resume=True, control=ctl, **kw)
    assert ctl.ticks[-1] == 1.0
    for name in ("final_q", "final_p", "hist_counts", "samples_q", "samples_p", "second_moment_batches",
                 "momentum_covariance", "trapped_at"):
        assert np.array_equal(getattr(full, name), getattr(res, name)), name
    assert full.beta_hat == res.beta_hat and full.hist_outside == res.hist_outside
    # a chunk size different from the uninterrupted run gives the same result too
    other = simulate(test1, 0.5, 0.1, **{**kw, "chunk_steps": 7_777})
    assert np.array_equal(other.final_q, full.final_q) and other.beta_hat == full.beta_hat
    with pytest.raises(InputError, match="different settings"):
        simulate(test1, 0.5, 0.2, checkpoint=ck, resume=True, **kw)
    with pytest.raises(InputError):
        simulate(test1, 0.5, 0.1, checkpoint=tmp_path / "none.npz", resume=True, **kw)


def test_blow_up_names_walker_and_step():
    pot = Potential.from_expression("q**4", ["q"])
    with pytest.raises(SimulationError, match=r"walker \d+ blew up at step \d+ .*reduce delta"):
        simulate(pot, 0.5, 0.1, steps=10_000, walkers=4, init_sd=3.0)
    with pytest.raises(SimulationError, match="blew up"):
        run_trajectories(pot, 0.5, 10.0, [[3.0]], [[3.0]], integrator="hamiltonian")


def test_trap_detection_test1_delta_0065(test1):
    """At delta = 0.065 some walkers fall into stable fixed points of (3.2): critical points of V."""
    r = simulate(test1, 0.065, 0.1, steps=1_600_000, walkers=16, seed=1)
    trapped = r.trapped
    assert 0 < trapped.sum() < 16 and r.trapped_fraction == trapped.mean()
    assert np.all(r.trapped_at[trapped] >= 0) and np.all(r.trapped_at[~trapped] == -1)
    # independent check: trapped walkers either sit at zeros of V' with p = 0 (fixed points of the map),
    # or are frozen (momentum collapsed far below the ensemble's, not yet at rest); the others move
    g = np.abs(test1.gradient(r.final_q[trapped])[:, 0])
    at_rest = (g < 1e-6) & (np.abs(r.final_p[trapped][:, 0]) < 1e-9)
    assert at_rest.sum() >= 1
    rms_live = math.sqrt(r.momentum_covariance[0, 0])
    assert np.all(np.abs(r.final_p[trapped][~at_rest, 0]) < rms_live)
    assert np.all(np.abs(r.final_p[~trapped]) + np.abs(test1.gradient(r.final_q[~trapped])[:, 0]) > 1e-6)
    # statistics come from the untrapped walkers only
    assert set(np.unique(r.sample_walker)) == set(np.flatnonzero(~trapped))
    assert r.accumulated_steps == (~trapped).sum() * (r.steps_per_walker - r.burn_in_steps)
    assert r.hist_counts.sum() + r.hist_outside == r.accumulated_steps
    assert 3 < r.beta_hat < 30


def test_all_trapped_gives_nan_statistics():
    pot = Potential.from_expression("q**2/2", ["q"])  # no small scale: every walker comes to rest
    r = simulate(pot, 0.1, 1.0, steps=40_000, walkers=4)
    assert r.trapped_fraction == 1.0 and r.trapped.all()
    assert math.isnan(r.beta_hat) and np.isnan(r.momentum_covariance).all()
    assert r.samples_q.shape == (0, 1) and r.hist_counts.sum() == 0
    d = r.to_dict()
    assert d["beta_hat"] is None and d["trapped_fraction"] == 1.0
    json.loads(r.to_json())


@pytest.mark.parametrize("kw, fragment", [
    (dict(delta=0.0), "delta"), (dict(delta=-1.0), "delta"), (dict(delta=float("nan")), "delta"),
    (dict(gamma=0.0), "gamma"), (dict(steps=0), "steps"), (dict(steps=2.5), "steps"),
    (dict(walkers=0), "walkers"), (dict(mass=[[1.0, 0], [0, 1]]), "mass"), (dict(mass=[[-1.0]]), "mass"),
    (dict(friction=[[1.0, 2.0], [2.0, 1.0]]), "friction"), (dict(integrator="euler"), "integrator"),
    (dict(burn_in=1.0), "burn_in"), (dict(init_mean=[0.0, 1.0]), "init_mean"),
    (dict(hist_range=[(1.0, 0.0)]), "hist_range"), (dict(beta=0.0), "beta"), (dict(seed=-1), "seed"),
    (dict(bins=0), "bins"), (dict(init_sd=0.0), "init_sd"),
])
def test_bad_input(test1, kw, fragment):
    args = dict(delta=0.5, gamma=0.1, steps=1000, walkers=2)
    args.update(kw)
    delta, gamma = args.pop("delta"), args.pop("gamma")
    with pytest.raises(InputError, match=fragment):
        simulate(test1, delta, gamma, **args)


def test_bad_potential_and_friction_shape(test1):
    with pytest.raises(InputError):
        simulate("q**2", 0.1, steps=10)
    with pytest.raises(InputError, match="friction"):
        simulate(test1, 0.1, friction=np.eye(2), steps=10)


def test_simulate_model(tmp_path):
    m = load_model("models/test1-quadratic.toml", ["simulation.steps=80000", "simulation.walkers=4"])
    r = simulate_model(m)
    assert r.steps == 80_000 and r.walkers == 4 and r.delta == 0.5
    assert np.allclose(r.hist_edges[0][[0, -1]], m.potential.domain[0])  # the model's domain is the grid


def test_run_trajectories_shapes_and_validation(test1):
    t, q, p = run_trajectories(test1, 0.01, 1.0, np.zeros(5), np.ones(5), integrator="langevin",
                               record_every=0.25, seed=2)
    assert t.shape == (5,) and q.shape == p.shape == (5, 5, 1)
    assert np.allclose(t, [0, 0.25, 0.5, 0.75, 1.0])
    assert np.all(q[0] == 0) and np.all(p[0] == 1)
    t2, q2, p2 = run_trajectories(test1, 0.01, 1.0, np.zeros(5), np.ones(5), integrator="langevin",
                                  record_every=0.25, seed=2)
    assert np.array_equal(q, q2)
    assert not np.array_equal(q[-1, 0], q[-1, 1])  # independent noise per trajectory
    with pytest.raises(InputError):
        run_trajectories(test1, 0.01, 1.0, np.zeros((5, 2)), np.ones((5, 2)))
    with pytest.raises(InputError):
        run_trajectories(test1, -0.01, 1.0, np.zeros(5), np.ones(5))


def test_specialized_driver_gives_identical_results(test1):
    """Long 1D damped runs of array gradient kernels use the driver specialized on the gradient; it must
    not change any result."""
    import dataclasses

    from numba import njit, types

    from bayescg.kernels import loops, state
    from bayescg.simulate import EngineOptions
    pot = dataclasses.replace(test1, grad_lanes=None)  # the specialized driver serves array kernels
    # what an earlier 1D run on a lane kernel leaves in this process: the lane blocks compiled for the lane
    # kernels' first-class function type.  The specialized driver used to share them and then failed with
    # numba's "Signature mismatch" (typing rated that overload by compiling the array kernel as g(S)).
    njit(types.void(state.GRADL_TYPE, state.WALKERS_T, state.STATS_T, state.CONSTS_T, types.boolean, state.PLAN_T,
                    state.GRID_T, types.int64, types.int64))(loops.lanes_chunk1)
    for delta in (0.5,):
        base = simulate(pot, delta, 0.1, steps=40_000, walkers=3, seed=8, max_samples=300)
        spec = simulate(pot, delta, 0.1, steps=40_000, walkers=3, seed=8, max_samples=300,
                        options=EngineOptions(specialize_steps=1))
        for name in ("final_q", "final_p", "hist_counts", "hist_count_var", "samples_q", "second_moment_batches",
                     "p_moment_batches"):
            assert np.array_equal(getattr(base, name), getattr(spec, name)), name


@pytest.mark.parametrize("dim", [1, 2])
def test_momenta_whose_squares_overflow_are_a_blow_up_not_a_traceback(dim):
    """States that stay finite while their second moments overflow (white kicks of variance 1e158 on a harmonic
    well: |p| ~ 1e79) are reported as a blow-up (SimulationError), as a non-finite state is; the statistics used
    to raise OverflowError (tr_cov^2 in beta's se), which escaped the correction's blow-up backtracking."""
    names = ["x", "y"][:dim] if dim == 2 else ["q"]
    pot = Potential.from_expression(" + ".join(f"{v}**2/2" for v in names), names)
    kick = 1e158 if dim == 1 else 1e158 * np.eye(2)
    with pytest.raises(SimulationError, match=r"walker \d+ blew up \(momentum variance .*\); reduce delta"):
        simulate(pot, 0.1, 0.5, steps=4_000, walkers=2, integrator="damped_white", kick_noise=kick, bins=10,
                 hist_range=[(-1e90, 1e90)] * dim)
    # an ordinary run is untouched
    r = simulate(pot, 0.1, 0.5, steps=4_000, walkers=2, integrator="damped_white", kick_noise=kick * 1e-158,
                 bins=10, hist_range=[(-10, 10)] * dim)
    assert np.isfinite(r.beta_hat) and np.isfinite(r.beta_hat_se)
