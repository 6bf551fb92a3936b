"""Same-process A/B of two engine changes of stop 40 (issue 15): ratios, not absolute times.

1. Normals: the kernels' ziggurat (bayescg.kernels.rng.fill_normal) against the Box-Muller it replaced (a copy
   below, as rng.py had it up to 87fffb1), 2e7 draws through a length-1 array each, alternated 5 times.
2. Coupled maps (bayescg.bias._coupled_lanes): the kick tables side by side in one (nk, 2) array against the two
   separate tables of e58a19a (its source from git, so this part needs the repository), 16 walkers x 2.5e6 steps,
   320,000 kicks, alternated 8 times, white and with three moving-average taps; also checks that both give the same
   sums.

    python benchmarks/bench_rng.py [--out benchmarks/RESULTS_RNG.md]
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import time
from pathlib import Path

import numpy as np
from numba import njit

from bayescg import bias as B
from bayescg.kernels.loops import spread
from bayescg.kernels.rng import fill_normal, next_u64, normal_pair, seed_states
from bayescg.kernels.state import LANES

ROOT = Path(__file__).resolve().parents[1]


@njit
def _box_muller_fill(s, z):  # the replaced scheme: a pair per call, the second value dropped for len(z) == 1
    n = z.shape[0]
    i = 0
    while i < n:
        u1 = (np.float64(next_u64(s) >> np.uint64(11)) + 1.0) / 9007199254740992.0
        u2 = (np.float64(next_u64(s) >> np.uint64(11)) + 1.0) / 9007199254740992.0
        r = np.sqrt(-2.0 * np.log(u1))
        z[i] = r * np.cos(2.0 * np.pi * u2)
        if i + 1 < n:
            z[i + 1] = r * np.sin(2.0 * np.pi * u2)
        i += 2


def _drawer(fill):
    """A numba loop of n draws through ``fill`` (a length-1 array each, as the white-kick kernels draw)."""
    @njit
    def draw(s, n):
        z = np.empty(1)
        acc = 0.0
        for _ in range(n):
            fill(s, z)
            acc += z[0]
        return acc
    return draw


_draw_bm, _draw_zig = _drawer(_box_muller_fill), _drawer(fill_normal)


def normals(n=20_000_000, rounds=5):
    st = seed_states(1, 1)[0]
    _draw_bm(st, 10), _draw_zig(st, 10)
    T = {"box_muller": [], "ziggurat": []}
    for _ in range(rounds):
        for name, f in (("box_muller", _draw_bm), ("ziggurat", _draw_zig)):
            t = time.perf_counter()
            f(st, n)
            T[name].append((time.perf_counter() - t) / n * 1e9)
    return {k: float(np.median(v)) for k, v in T.items()} | {"unit": "ns per normal (median)"}


def coupled(rounds=8, taps_on=False):
    src = subprocess.run(["git", "show", "e58a19a:bayescg/bias.py"], capture_output=True, text=True, cwd=ROOT,
                         check=True).stdout
    code = src[src.index("@njit(nogil=True, cache=True)\ndef _coupled_lanes"):src.index("\ndef kick_shape_shift")]
    ns = {"njit": njit, "np": np, "math": math, "next_u64": next_u64, "normal_pair": normal_pair, "LANES": LANES,
          "_BATCHES": B._BATCHES}
    exec(code.replace("cache=True", "cache=False"), ns)
    rng = np.random.default_rng(0)
    r = np.sort(rng.uniform(-1, 1, 320_000) * 0.9)
    g = np.sort(rng.standard_normal(320_000) * r.std())
    xs = np.linspace(-12, 12, 20001)
    taps = np.array([0.99, 0.1, 0.05]) / np.linalg.norm([0.99, 0.1, 0.05]) if taps_on else np.ones(1)
    both = np.ascontiguousarray(np.stack([r, g], 1))

    def run(which, seed, n=2_500_000):
        W = 16
        hw, mom = np.zeros((W, 2, 200)), np.zeros((2, W, 20, 2))
        head = (xs[0], 1 / (xs[1] - xs[0]), xs * 0.9, 0.5, 1.0, math.exp(-0.05))
        tail = (taps, n, n // 10, seed_states(seed, W), -6.0, 6.0, hw, mom)
        f, mid = (ns["_coupled_lanes"], (r, g)) if which == "two tables" else (B._coupled_lanes, (both,))
        t = time.perf_counter()
        spread(f, W // LANES, head + mid + tail)
        return time.perf_counter() - t, float(hw.sum()), float(mom.sum())

    run("two tables", 1, 1000), run("one table", 1, 1000)
    T, same = {"two tables": [], "one table": []}, True
    for k in range(rounds):
        res = {}
        for which in (("two tables", "one table") if k % 2 == 0 else ("one table", "two tables")):
            res[which] = run(which, 1 + k)
            T[which].append(res[which][0])
        same &= res["two tables"][1:] == res["one table"][1:]
    med = {k: float(np.median(v)) for k, v in T.items()}
    return med | {"ratio": med["one table"] / med["two tables"], "same_sums": bool(same), "unit": "s per call (median)"}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_RNG.md"))
    a = ap.parse_args(argv)
    load0 = os.getloadavg()
    nm = normals()
    cw = coupled()
    ct = coupled(taps_on=True)
    load1 = os.getloadavg()
    lines = ["# Normals and kick tables (stop 40, issue 15)", "",
             f"`python benchmarks/bench_rng.py`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load "
             f"{load0[0]:.2f} -> {load1[0]:.2f}.  Same process, alternated; ratios are what compares.", "",
             "| what | baseline | new | new / baseline |", "|---|---|---|---|",
             f"| normal (ns each, one core) | Box-Muller {nm['box_muller']:.1f} | ziggurat {nm['ziggurat']:.1f} | "
             f"{nm['ziggurat'] / nm['box_muller']:.2f} |",
             f"| coupled maps, white (s per call) | two tables {cw['two tables']:.3f} | one table {cw['one table']:.3f} | "
             f"{cw['ratio']:.2f} (same sums: {cw['same_sums']}) |",
             f"| coupled maps, 3 taps (s per call) | two tables {ct['two tables']:.3f} | one table {ct['one table']:.3f} | "
             f"{ct['ratio']:.2f} (same sums: {ct['same_sums']}) |", ""]
    Path(a.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
