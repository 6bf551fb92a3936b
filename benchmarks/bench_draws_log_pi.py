"""Same-process A/B of fit._draws_log_pi, the per-draw log pi_J of the pointwise log-likelihood (branch logpi):
the compiled per-draw kernels (tensor layout in 2D, node design otherwise) against the function they replaced
(copied below: per draw node_log_mass, numpy's max / exp / log / sum, exp, normalise, log again, threaded the same
way).  Reads pickles of {"basis", "A", "cells"} as fit._arviz_extras passes them (capture: wrap fit._draws_log_pi
and run ``bayescg learn models/test4-2d-quadratic.toml --set simulation.steps=2e6``); alternates old and new
(order flipped every round) after one warm-up call of each; prints the max |difference|, median and range of wall
and process CPU (time.process_time: all threads) per call, their ratios and the load average.

    python benchmarks/bench_draws_log_pi.py /tmp/logpi/t4.pkl [/tmp/logpi/t1.pkl] [--rounds 7]
"""
import argparse
import math
import pickle
import time

import numpy as np

from bayescg.bayes.effective import active_probabilities
from bayescg.fit import _draws_log_pi
from bayescg.kernels.effective import node_log_mass
from bayescg.kernels.loops import spread


def _old_active_log_probabilities(basis, a):
    idx, val, logw = basis.nodes
    g = basis.quad ** basis.dim
    eta, L = np.empty(len(logw)), np.empty(len(logw) // g)
    node_log_mass(np.ascontiguousarray(a, dtype=float), idx, val, logw, g, eta, L)
    mx = L.max()
    return L - mx - math.log(np.exp(L - mx).sum())


def _old_active_pi(basis, a):
    if basis.dim == 1:
        return active_probabilities(basis, a)
    p = np.exp(_old_active_log_probabilities(basis, a))
    return p / p.sum()


def old_draws_log_pi(basis, A, cells):
    """fit._draws_log_pi before (lead a0a2693)."""
    logpi = np.empty((A.shape[0], len(cells)))

    def part(lo, hi):
        for s in range(lo, hi):
            with np.errstate(divide="ignore"):
                logpi[s] = np.log(_old_active_pi(basis, A[s]))[cells]

    spread(part, A.shape[0], ())
    return logpi


def ab(path, rounds):
    with open(path, "rb") as f:
        d = pickle.load(f)
    basis, A, cells = d["basis"], d["A"], d["cells"]
    basis.nodes   # cached on the basis: built once per fit, outside both timings
    fns = {"old": old_draws_log_pi, "new": _draws_log_pi}
    out = {k: f(basis, A, cells) for k, f in fns.items()}     # warm-up (compilation / cache load)
    diff = float(np.max(np.abs(out["new"] - out["old"])))
    same_inf = bool(np.array_equal(np.isinf(out["new"]), np.isinf(out["old"])))
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    load0 = open("/proc/loadavg").read().split()[:3]
    for r in range(rounds):
        for k in (("old", "new") if r % 2 == 0 else ("new", "old")):
            t, c = time.perf_counter(), time.process_time()
            fns[k](basis, A, cells)
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
    load1 = open("/proc/loadavg").read().split()[:3]
    print(f"{path}: d = {basis.dim}, {A.shape[0]} draws x {A.shape[1]} coefficients, {int(basis.active.sum())} active "
          f"cells, {len(cells)} cells gathered; max |new - old| = {diff:.2e}, same -inf cells: {same_inf}")
    for name, t in (("wall", wall), ("CPU", cpu)):
        for k in fns:
            print(f"  {name:4s} {k}: median {np.median(t[k]):.3f} s (range {min(t[k]):.3f}-{max(t[k]):.3f}; "
                  f"{', '.join(f'{v:.3f}' for v in t[k])})")
        ratios = np.array(t["old"]) / np.array(t["new"])
        print(f"  {name:4s} old / new: median of medians {np.median(t['old']) / np.median(t['new']):.2f}x, "
              f"per round {ratios.min():.2f}-{ratios.max():.2f}x")
    print(f"  load average {' '.join(load0)} -> {' '.join(load1)}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("pickles", nargs="+")
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    for path in args.pickles:
        ab(path, args.rounds)


if __name__ == "__main__":
    main()
