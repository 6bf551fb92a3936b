"""Ising PCG benchmarks: the pipeline end to end in C units, NUTS and Gibbs, exact route vs MC-EM.

    python benchmarks/bench_ising.py [--draws 1000] [--chains 4] [--skip-graph] [--skip-pymc] [--skip-pipeline]
                                     [--out benchmarks/RESULTS_ISING.md]

0. The exact likelihood+gradient kernel (bayescg.ising.kernel) alone: microseconds per call in
   nopython and through Python.
1. NUTS on the exact marginal posterior, n_f = 32, l_c = 2, model 110, S_f = 100 configurations
   (nearest-neighbour chain, J_0 = 1, mu = 0.3), through bayescg.sampling: nutpie on the cached numba
   kernel (MarginalDensity, what ``nuts`` runs), nutpie on the PyMC model with the numba Op (the path
   before issue 15), nutpie on the PyTensor-graph likelihood (``--skip-graph``: compiles for about a
   minute) and pm.sample (``--skip-pymc``).  Compile time, sampling wall and CPU time, gradient
   evaluations per draw, tree depth, diagnostics.  Then the numba data-augmentation Gibbs sampler.
2. Exact route vs MC-EM at equal accuracy on the same data: the reference is the exact maximum
   likelihood theta* (exact EM to 1e-12).  MC-EM (the slides' S_q = 50, S_c = 200, 200
   iterations) ends at error eps = max |theta_mcem - theta*| (theta_c and theta_cf).  The exact
   route's time to the same accuracy is read off the exact-EM history (first iteration with
   error <= eps) and, separately, the time of a direct L-BFGS maximization of the exact marginal
   likelihood.  Reported: the ratios MC-EM time / exact time.
3. ``bayescg ising models/ising-nn.toml`` as a subprocess (warm caches: run once before), wall and CPU
   time (user + sys of the child) in C units; the C reference (gcc -O3 /work/shared/bench/c_reference.c,
   ``20000000 0.3 0.5``) is timed before and after in the same run; per-method wall and CPU seconds from
   ising.json.  Load averages are printed: on the shared machine wall times are load-limited.
Appends a dated section to the output file.
"""
from __future__ import annotations

import argparse
import datetime as dt
import platform
import time
from pathlib import Path

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--skip-pymc", action="store_true")
    ap.add_argument("--skip-graph", action="store_true")
    ap.add_argument("--skip-pipeline", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS_ISING.md")))
    args = ap.parse_args(argv)

    from bayescg.ising.bayes import diagnostics
    from bayescg.ising.coarse import CoarseModel
    from bayescg.ising.em import exact_em, map_exact, mc_em
    from bayescg.ising.fine import FineModel

    fm = FineModel(32, 1.0, 0.3, (1.0,), True)
    x = fm.sample(100, np.random.default_rng(np.random.SeedSequence([1, 7919])))
    cm = CoarseModel(32, 2, "110", 1.0, 0.3, True)
    lines = [f"\n## {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()} "
             f"(load average {', '.join(f'{v:.1f}' for v in __import__('os').getloadavg())})\n"]

    # 0. kernel alone
    import numba

    from bayescg.ising.kernel import FastLoglik

    fast = FastLoglik(cm, x)
    fn = fast.numba_function()

    @numba.njit
    def loop(th, tf, n):
        s = 0.0
        for i in range(n):
            th[0] += 1e-12  # no loop-invariant hoisting
            s += fn(th, tf)[0][()]
        return s

    th, tf = np.array([0.3, 0.8]), np.array(0.9)
    loop(th, tf, 1)
    reps = 20000
    t = time.perf_counter()
    loop(th, tf, reps)
    us_nopython = (time.perf_counter() - t) / reps * 1e6
    fast(th, float(tf))
    t = time.perf_counter()
    for _ in range(2000):
        fast(th, float(tf))
    us_python = (time.perf_counter() - t) / 2000 * 1e6
    lines.append(f"### Likelihood + gradient kernel: {len(fast.counts)} symmetry-distinct patterns of "
                 f"{len(x)} configurations\n")
    lines.append(f"{us_nopython:.1f} us per call in nopython (as nutpie calls it), {us_python:.1f} us through "
                 "Python.\n")
    print(lines[-1], flush=True)

    # 1. NUTS timing
    from bayescg.ising.bayes import marginal_model, sample_gibbs
    from bayescg.ising.kernel import MarginalDensity
    from bayescg.sampling import diagnostics as sdiag
    from bayescg.sampling import sample

    lines.append(f"### NUTS, n_f = 32, l_c = 2, model 110, S_f = 100, {args.chains} chains x "
                 f"({args.tune} tune + {args.draws} draws), 2 chains at a time\n")
    lines.append("| sampler | density | compile s | sampling s (wall) | sampling CPU s | grad evals / draw | "
                 "tree depth mean | r_hat max | ess bulk min | divergences |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|")
    runs = [("nutpie", "cached numba kernel (C callbacks)", lambda: MarginalDensity(cm, x, 2.0)),
            ("nutpie", "PyMC model, numba Op (before)", lambda: marginal_model(cm, x, 2.0, "op"))]
    if not args.skip_graph:
        runs.append(("nutpie", "PyMC model, PyTensor graph", lambda: marginal_model(cm, x, 2.0, "graph")))
    if not args.skip_pymc:
        runs.append(("pymc", "PyMC model, numba Op (Python perform)", lambda: marginal_model(cm, x, 2.0, "op")))
    for be, label, build in runs:
        idata = sample(build(), draws=args.draws, tune=args.tune, chains=args.chains, seed=1, nuts_sampler=be)
        at = idata.posterior.attrs
        d = sdiag(idata, ["theta_c", "theta_cf"])
        lines.append(f"| {be} | {label} | {at['compile_seconds']:.2f} | {at['sampling_seconds']:.2f} | "
                     f"{at['sampling_cpu_seconds']:.2f} | {d['grad_evals_per_draw']:.1f} | {d['tree_depth_mean']:.2f} | "
                     f"{d['r_hat_max']:.3f} | {d['ess_bulk_min']:.0f} | {d['divergences']} |")
        print(lines[-1], flush=True)
    g = sample_gibbs(cm, x, draws=args.draws, tune=args.tune, chains=args.chains, seed=1)
    d = diagnostics(g.idata)
    lines.append(f"\nGibbs (numba data augmentation, {args.chains} chains x ({args.tune} + {args.draws}) sweeps, "
                 f"chains one after another): load {g.compile_seconds:.2f} s, sampling {g.seconds:.2f} s wall, "
                 f"{g.cpu_seconds:.2f} s CPU; r_hat max {d['r_hat_max']:.3f}, ess bulk min {d['ess_bulk_min']:.0f}.\n")
    print(lines[-1], flush=True)

    # 2. exact route vs MC-EM
    ref = exact_em(cm, x, tol=1e-13, max_iter=2000)
    star = np.append(ref.theta_c, ref.theta_cf)
    t = time.perf_counter()
    mc = mc_em(cm, x, iterations=200, S_q=50, S_c=200, seed=1)
    t_mc = time.perf_counter() - t
    eps = float(np.max(np.abs(np.append(mc.theta_c, mc.theta_cf) - star)))
    t = time.perf_counter()
    ex = exact_em(cm, x, tol=1e-13, max_iter=2000)
    hist = np.array(ex.history)
    err = np.max(np.abs(hist[:, 1:] - star), axis=1)
    hit = np.nonzero(err <= eps)[0]
    t_ex = float(hist[hit[0], 0]) if len(hit) else float("nan")
    t = time.perf_counter()
    mp = map_exact(cm, x)
    t_map = time.perf_counter() - t
    eps_map = float(np.max(np.abs(np.append(mp.theta_c, mp.theta_cf) - star)))
    lines.append("\n### Exact marginal route vs Monte Carlo EM (same data, same model)\n")
    lines.append("| route | seconds | max abs error vs exact ML | ratio MC-EM / route |")
    lines.append("|---|---|---|---|")
    lines.append(f"| MC-EM (S_q 50, S_c 200, 200 it.) | {t_mc:.2f} | {eps:.3g} | 1 |")
    lines.append(f"| exact EM to the same error | {t_ex:.3f} | <= {eps:.3g} | {t_mc / t_ex:.0f} |")
    lines.append(f"| exact EM to 1e-13 (full) | {ex.seconds:.3f} | 0 (reference) | {t_mc / ex.seconds:.0f} |")
    lines.append(f"| L-BFGS on exact marginal likelihood | {t_map:.3f} | {eps_map:.2g} | {t_mc / t_map:.0f} |")
    if not args.skip_pipeline:
        lines += pipeline_section()
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    if not out.exists():
        out.write_text("# Ising PCG benchmarks (benchmarks/bench_ising.py)\n", encoding="utf-8")
    with out.open("a", encoding="utf-8") as fh:
        fh.write(text)


def _c_unit(exe: Path) -> tuple[float, float]:
    """(wall s, CPU s) of the C reference, best of 3."""
    import resource
    import subprocess

    best = (float("inf"), float("inf"))
    for _ in range(3):
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run([str(exe), "20000000", "0.3", "0.5"], check=True, capture_output=True)
        w = time.perf_counter() - t
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        c = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        best = (min(best[0], w), min(best[1], c))
    return best


def pipeline_section() -> list:
    """``bayescg ising models/ising-nn.toml`` in C units (wall and CPU), per-method times from ising.json."""
    import json
    import os
    import resource
    import subprocess
    import sys
    import tempfile

    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="bench-ising-"))
    exe = tmp / "cref"
    subprocess.run(["gcc", "-O3", "-o", str(exe), "/work/shared/bench/c_reference.c", "-lm"], check=True)
    cmd = [sys.executable, "-m", "bayescg.cli", "ising", str(root / "models" / "ising-nn.toml"), "--force"]
    env = dict(os.environ, PYTHONPATH=str(root))
    subprocess.run(cmd + ["--out", str(tmp / "warm")], check=True, capture_output=True, env=env)  # warm caches
    u0 = _c_unit(exe)
    load0 = os.getloadavg()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd + ["--out", str(tmp / "run")], check=True, capture_output=True, env=env)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    load1 = os.getloadavg()
    u1 = _c_unit(exe)
    d = json.loads((tmp / "run" / "ising.json").read_text())
    uw, uc = min(u0[0], u1[0]), min(u0[1], u1[1])
    out = ["\n### `bayescg ising models/ising-nn.toml` end to end (warm caches)\n",
           f"C reference (2e7 steps, best of 3): {u0[0]:.2f} s wall / {u0[1]:.2f} s CPU before, {u1[0]:.2f} / "
           f"{u1[1]:.2f} after; load average (1, 5, 15 min) {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f} before, "
           f"{load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f} after.  Wall times are load-limited (2 cores shared by "
           "several sessions); CPU time is the steadier figure.\n",
           "| run | wall s | CPU s (user + sys) | wall C units | CPU C units |", "|---|---|---|---|---|",
           f"| ising models/ising-nn.toml | {wall:.1f} | {cpu:.1f} | {wall / uw:.1f} | {cpu / uc:.1f} |", "",
           "| method | wall s | CPU s | sampling wall s | sampling CPU s | compile s |", "|---|---|---|---|---|---|"]
    for k, m in d["methods"].items():
        f = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
        out.append(f"| {k} | {f(m.get('seconds'))} | {f(m.get('cpu_seconds'))} | {f(m.get('sampling_seconds'))} | "
                   f"{f(m.get('sampling_cpu_seconds'))} | {f(m.get('compile_seconds'))} |")
    out.append(f"\nrun_methods total (methods + checks) {d['seconds']:.1f} s wall; the rest of the command is "
               "start-up imports, writing ising.json / posterior*.nc and the report's figures.\n")
    print("\n".join(out), flush=True)
    return out


if __name__ == "__main__":
    main()
