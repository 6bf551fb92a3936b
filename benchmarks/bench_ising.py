"""Ising PCG benchmarks: NUTS wall time, and the exact-marginal route against Monte Carlo EM.

    python benchmarks/bench_ising.py [--draws 1000] [--chains 4] [--out benchmarks/RESULTS_ISING.md]

0. The exact likelihood+gradient kernel (bayescg.ising.kernel) alone: microseconds per call in
   nopython (what nutpie calls per gradient) and through Python.
1. NUTS on the exact marginal posterior, n_f = 32, l_c = 2, model 110, S_f = 100 configurations
   (nearest-neighbour chain, J_0 = 1, mu = 0.3): compile time and sampling time (tune + draws)
   for nutpie (if importable) with the numba-Op likelihood and the PyTensor-graph likelihood
   (``--skip-graph`` leaves the latter out: it compiles for about a minute), and pm.sample.
2. Exact route vs MC-EM at equal accuracy on the same data: the reference is the exact maximum
   likelihood theta* (exact EM to 1e-12).  MC-EM (the slides' S_q = 50, S_c = 200, 200
   iterations) ends at error eps = max |theta_mcem - theta*| (theta_c and theta_cf).  The exact
   route's time to the same accuracy is read off the exact-EM history (first iteration with
   error <= eps) and, separately, the time of a direct L-BFGS maximization of the exact marginal
   likelihood.  Reported: the ratios MC-EM time / exact time.
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
    ap.add_argument("--out", default=str(Path(__file__).with_name("RESULTS_ISING.md")))
    args = ap.parse_args(argv)

    from bayescg.ising.bayes import diagnostics, sample_nuts
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
    lines.append(f"### NUTS, n_f = 32, l_c = 2, model 110, S_f = 100, {args.chains} chains x "
                 f"({args.tune} tune + {args.draws} draws)\n")
    lines.append("| backend | likelihood | compile s | sampling s (wall) | sampling CPU s | gradient evals | r_hat max | "
                 "ess bulk min | divergences |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    backends = [("auto", "op")] + ([] if args.skip_graph else [("auto", "graph")]) + \
        ([] if args.skip_pymc else [("pymc", "op")])
    for be, lik in backends:
        run = sample_nuts(cm, x, draws=args.draws, tune=args.tune, chains=args.chains, seed=1, backend=be,
                          likelihood=lik)
        d = diagnostics(run.idata)
        ss = run.idata.sample_stats
        key = "n_steps" if "n_steps" in ss else "tree_size"
        nsteps = int(ss[key].values.sum()) if key in ss else -1  # draws only (warm-up not kept)
        lines.append(f"| {run.backend} | {lik} | {run.compile_seconds:.1f} | {run.seconds:.1f} | {run.cpu_seconds:.1f} | "
                     f"{nsteps} (draws) | {d['r_hat_max']:.3f} | {d['ess_bulk_min']:.0f} | {d['divergences']} |")
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
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    if not out.exists():
        out.write_text("# Ising PCG benchmarks (benchmarks/bench_ising.py)\n", encoding="utf-8")
    with out.open("a", encoding="utf-8") as fh:
        fh.write(text)


if __name__ == "__main__":
    main()
