"""Bit-identity check of simulate() / run_trajectories() outputs between two checkouts (the lane loops
block_1d / block_2d and the generic loop), for changes that must not move any result.

    PYTHONPATH=/work/main python benchmarks/lane_bits.py dump /tmp/main.npz
    PYTHONPATH=/work/wt/perf python benchmarks/lane_bits.py dump /tmp/perf.npz
    python benchmarks/lane_bits.py compare /tmp/main.npz /tmp/perf.npz

(one process per checkout: bayescg is imported from PYTHONPATH).  'compare' prints every array whose
bytes differ and exits 1 if any does.  Optional trailing arguments of both select cases by name prefix
(e.g. ``lanes white trap``: only the lane loops, which need only the two lane drivers compiled).
"""
import dataclasses
import sys

import numpy as np

NAMES = ["hist_counts", "hist_count_var", "p_moment_batches", "second_moment_batches", "momentum_covariance",
         "momentum_mean", "final_q", "final_p", "samples_q", "samples_p", "hist_outside", "trapped_at",
         "trapped_fraction", "walker_hist_counts", "walker_second_moments", "q_iat_steps_per_dim", "beta_hat",
         "hist_edges", "steps"]


def cases():
    from bayescg.potentials import Potential, catalogue
    from bayescg.simulate import EngineOptions

    A2 = np.array([[1.5, 0.3], [0.3, 0.8]])
    lib = lambda p: dataclasses.replace(p, grad_lanes=None)  # noqa: E731  array kernel in the lane loop
    quad1 = lambda: Potential.from_expression("x**2/2", ["x"])  # noqa: E731
    quad2 = lambda: Potential.from_expression("(x**2 + 2*y**2)/2", ["x", "y"])  # noqa: E731
    return {
        # Test 1 (1D) and Test 5 (2D) as in bench_integrators, small
        "lanes1d": (lambda: catalogue("test1"), 0.5, dict(steps=16 * 40000, walkers=16)),
        "lanes1d-chunks": (lambda: catalogue("test1"), 0.5, dict(steps=13 * 40000, walkers=13, chunk_steps=3001)),
        "lanes1d-narrow": (lambda: catalogue("test1"), 0.5, dict(steps=9 * 30000, walkers=9, hist_range=[(-0.5, 0.5)], bins=37)),
        "lanes2d-test5": (lambda: catalogue("test5"), 0.05163, dict(steps=16 * 30000, walkers=16, gamma=0.014,
                                                                 init_mean=[-0.05, 0.47], init_sd=0.05)),
        "lanes2d-chunks": (lambda: catalogue("test5"), 0.05163, dict(steps=10 * 30000, walkers=10, gamma=0.014,
                                                                  init_mean=[-0.05, 0.47], init_sd=0.05, chunk_steps=2999)),
        # Test 4 with a full mass matrix (non-diagonal 2D lane path)
        "lanes2d-mass": (lambda: catalogue("test4"), 0.05, dict(steps=11 * 20000, walkers=11, mass=A2, init_sd=0.5, bins=40)),
        "lanes2d-narrow": (lambda: catalogue("test4"), 0.05, dict(steps=11 * 20000, walkers=11, init_sd=0.5, bins=23,
                                                               hist_range=[(-0.6, 0.6), (-0.5, 0.7)])),
        # the white kick
        "white1d": (lambda: catalogue("test1"), 0.3, dict(steps=9 * 20000, walkers=9, integrator="damped_white", kick_noise=0.05)),
        "white2d": (lambda: catalogue("test4"), 0.05, dict(steps=9 * 20000, walkers=9, integrator="damped_white",
                                                        kick_noise=0.05 * np.eye(2), init_sd=0.5)),
        "white2d-full": (lambda: catalogue("test4"), 0.05, dict(steps=9 * 20000, walkers=9, integrator="damped_white", mass=A2,
                                                             kick_noise=np.array([[0.05, 0.01], [0.01, 0.03]]), init_sd=0.5)),
        # trapping (damped map on a quadratic well: p -> 0 at the minimum)
        "trap1d": (quad1, 0.1, dict(steps=8 * 20000, walkers=8, gamma=1.0)),
        "trap2d": (quad2, 0.1, dict(steps=8 * 20000, walkers=8, gamma=1.0, bins=30)),
        # array kernels in the lane loops; the generic loop
        "libm1d": (lambda: lib(catalogue("test1")), 0.5, dict(steps=10 * 20000, walkers=10)),
        "libm2d": (lambda: catalogue("test4"), 0.05, dict(steps=10 * 20000, walkers=10, options=EngineOptions(lanes=False), init_sd=0.5)),
        "langevin1d": (lambda: catalogue("test1"), 0.3, dict(steps=5 * 20000, walkers=5, integrator="langevin")),
        "langevin3d": (lambda: Potential.from_expression("(x**2 + 2*y**2 + z**2)/2", ["x", "y", "z"]), 0.1,
                       dict(steps=4 * 20000, walkers=4, integrator="langevin", bins=12)),
        "hamiltonian2d": (lambda: catalogue("test4"), 0.02, dict(steps=4 * 10000, walkers=4, integrator="hamiltonian", init_sd=0.5)),
    }


def _chosen(name, only):
    return not only or any(name.startswith(o) for o in only)


def dump(out, only=()):
    from bayescg.potentials import catalogue
    from bayescg.simulate import run_trajectories, simulate

    res = {}
    for k, (mk, delta, kw) in cases().items():
        if not _chosen(k, only):
            continue
        kw = dict(kw)
        g = kw.pop("gamma", 0.1)
        r = simulate(mk(), delta, g, seed=3, max_samples=5000, **kw)
        for n in NAMES:
            v = getattr(r, n, None)
            if v is not None:
                res[f"{k}/{n}"] = np.asarray(v)
    rng = np.random.default_rng(5)
    for integ, kw in [("damped", {}), ("damped_white", dict(kick_noise=0.05 * np.eye(2))), ("langevin", {})]:
        if not _chosen("record-" + integ, only):
            continue
        t = run_trajectories(catalogue("test4"), 0.02, 20.0, rng.normal(0, 0.5, (6, 2)), rng.normal(0, 0.5, (6, 2)),
                             integrator=integ, seed=4, **kw)
        for n, v in zip(("times", "q", "p"), t):
            res[f"record-{integ}/{n}"] = np.asarray(v)
    np.savez(out, **res)
    print("wrote", out, len(res), "arrays")


def compare(fa, fb, only=()):
    a, b = np.load(fa), np.load(fb)
    bad = 0
    keys = sorted(k for k in set(a.files) | set(b.files) if _chosen(k, only))
    for k in keys:
        if k not in a.files or k not in b.files:
            print("MISSING", k)
            bad += 1
            continue
        x, y = np.atleast_1d(a[k]), np.atleast_1d(b[k])
        if not (x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()):
            bad += 1
            d = np.nanmax(np.abs(x.astype(float) - y.astype(float))) if x.shape == y.shape else "shape"
            print("DIFF", k, d, x.dtype, y.dtype)
    print("compared", len(keys), "arrays; differences", bad)
    return bad


if __name__ == "__main__":
    if sys.argv[1] == "dump":
        dump(sys.argv[2], sys.argv[3:])
    else:
        sys.exit(1 if compare(sys.argv[2], sys.argv[3], sys.argv[4:]) else 0)
