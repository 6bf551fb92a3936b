"""simulate()'s cost split into a fixed part per call and a marginal part per walker-step (one numba
thread, CPU time), for a same-session A/B of two checkouts:

    PYTHONPATH=<checkout> python benchmarks/engine_overhead.py LABEL [REPS]

For Test 1 (1D, delta 0.5) and Test 5 (2D Mueller-Brown, delta 0.05163), 16 walkers, the default 200 bins
per axis, it times simulate() at a short and a long run (best of REPS, default 3) and fits
cost = fixed + marginal x walker-steps through the two points.  The fixed part is set-up, the per-walker
histogram state (16 x 200^2 cells in 2D: ~20 MB of cell accumulators, allocated zeroed; since the block-packed
layout, kernels/state.py LAYOUT 2, only the pages of visited 16-cell blocks are touched) and the result stage
(which reads only those blocks); the marginal part is the integrator loop with all its statistics.  bench_integrators.py's
simulate() column mixes the two at one run length (2.4e6 steps in 2D, where the fixed part is a large share).
"""
import sys
import time

import numba

numba.set_num_threads(1)

from bayescg.potentials import catalogue  # noqa: E402
from bayescg.simulate import simulate  # noqa: E402

CASES = {
    "1d": dict(pot="test1", delta=0.5, gamma=0.1, kw={}, short=2_000, long=2_000_000),
    "2d": dict(pot="test5", delta=0.05163, gamma=0.014, kw=dict(init_mean=[-0.05, 0.47], init_sd=0.05),
               short=2_000, long=600_000),
}


def cost(pot, c, n, reps):
    best = float("inf")
    for _ in range(reps):
        t = time.process_time()
        simulate(pot, c["delta"], c["gamma"], steps=16 * n, walkers=16, seed=1, **c["kw"])
        best = min(best, time.process_time() - t)
    return best


def main():
    label = sys.argv[1]
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    out = []
    for name, c in CASES.items():
        pot = catalogue(c["pot"])
        simulate(pot, c["delta"], c["gamma"], steps=16_000, walkers=16, **c["kw"])  # compile
        t0, t1 = cost(pot, c, c["short"], reps), cost(pot, c, c["long"], reps)
        marg = (t1 - t0) / (16 * (c["long"] - c["short"]))
        fixed = t0 - marg * 16 * c["short"]
        out.append(f"{name}: fixed {1e3 * fixed:.1f} ms/call, marginal {1e9 * marg:.2f} ns/walker-step "
                   f"({1e-6 / marg:.1f} M steps/s)")
    import os
    print(label, " | ".join(out), "| load", tuple(round(x, 2) for x in os.getloadavg()))


if __name__ == "__main__":
    main()
