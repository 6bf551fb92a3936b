"""Same-session A/B of simulate()'s one-thread speed (CPU time, so other jobs on the machine do not count).

    PYTHONPATH=<checkout> nice -n 10 python benchmarks/lane_ab.py LABEL [12] [REPS]

Runs simulate() on Test 1 (1D, 16 walkers, 8e6 steps) and/or Test 5 (2D, 16 walkers, 2.4e6 steps) as in
bench_integrators.py, one numba thread, after a warm-up call (compilation), and prints the median of REPS
(default 7) rates in M steps/s summed over walkers, with the load average.  Run one process per checkout,
alternating, to compare them.
"""
import os
import statistics
import sys
import time

import numba

numba.set_num_threads(1)

from bayescg.potentials import catalogue  # noqa: E402
from bayescg.simulate import simulate  # noqa: E402

T5 = dict(init_mean=[-0.05, 0.47], init_sd=0.05)


def main():
    label = sys.argv[1]
    which = sys.argv[2] if len(sys.argv) > 2 else "12"
    reps = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    p1, p5 = catalogue("test1"), catalogue("test5")
    simulate(p1, 0.5, 0.1, steps=16000, walkers=16)
    simulate(p5, 0.05163, 0.014, steps=16000, walkers=16, **T5)
    r1, r2 = [], []
    for _ in range(reps):
        if "1" in which:
            t = time.process_time()
            a = simulate(p1, 0.5, 0.1, steps=16 * 500_000, walkers=16, seed=1)
            r1.append(a.steps / (time.process_time() - t) / 1e6)
        if "2" in which:
            t = time.process_time()
            b = simulate(p5, 0.05163, 0.014, steps=16 * 150_000, walkers=16, seed=1, **T5)
            r2.append(b.steps / (time.process_time() - t) / 1e6)
    med = lambda r: statistics.median(r) if r else float("nan")  # noqa: E731
    print(f"{label} CPU-time M steps/s, median of {reps}: 1d {med(r1):.1f}  2d {med(r2):.1f}   "
          f"(1d {[round(x, 1) for x in r1]} 2d {[round(x, 1) for x in r2]}) load {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
