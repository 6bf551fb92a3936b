"""Same-process A/B of the white-kick lane loop (stop 44, issue 15): ratios, not absolute times.

The finite-delta correction's white-kick runs (integrator "damped_white" on a spline U, 1D lane loop) draw one normal
per walker per step.  Up to stop 43 the 1D lane loop drew them lane by lane, passing a row view ``rng[w]`` of the
walkers' state table to ``fill_normal`` for every draw; since stop 44 it holds the block's states transposed and draws
for its lanes together (kernels.rng.lanes_normal: the uint64s and the ziggurat's fast accept test for all lanes, the
0.7 % rejected lanes finished one by one), the same draws.  This script loads the engine's loops.py and kernels/rng.py
of a git revision (default 44e326e, before both changes; compiled here without numba's cache, so the baseline costs
one ~12 s compile) beside the current ones, runs the same white-kick simulation through each (simulate's driver
swapped), alternated, and checks that both give the same histogram and temperature.  Needs the repository (git show).

    python benchmarks/bench_white_kick.py [--rev 44e326e] [--rounds 5] [--steps 2e7]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

import bayescg.kernels.loops as current
import bayescg.simulate as simulate_module
from bayescg.simulate import simulate
from bayescg.splines import clamped_knots, n_basis, spline_potential

ROOT = Path(__file__).resolve().parents[1]


def _module_at(rev: str, name: str, replace=()) -> types.ModuleType:
    """bayescg/kernels/<name>.py of git revision ``rev`` as a module of the package (relative imports resolve to
    today's sibling kernels unless ``replace`` rewrites them), without numba's disk cache."""
    src = subprocess.run(["git", "show", f"{rev}:bayescg/kernels/{name}.py"], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    for a, b in replace:
        src = src.replace(a, b)
    mod = types.ModuleType(f"bayescg.kernels._{name}_baseline")
    mod.__package__ = "bayescg.kernels"
    mod.__file__ = str(ROOT / "bayescg" / "kernels" / f"_{name}_{rev}.py")
    sys.modules[mod.__name__] = mod
    exec(compile(src.replace("cache=True", "cache=False"), mod.__file__, "exec"), mod.__dict__)
    return mod


def loops_at(rev: str) -> types.ModuleType:
    """The engine loops of revision ``rev`` with that revision's kernels.rng (the rest of the kernels today's)."""
    _module_at(rev, "rng")
    return _module_at(rev, "loops", replace=[("from .rng import", "from ._rng_baseline import")])


def run(loops, U, steps: int):
    simulate_module.loops = loops
    try:
        t = time.perf_counter()
        r = simulate(U, 0.5, 0.1, integrator="damped_white", kick_noise=0.5, steps=steps, walkers=16, seed=3,
                     bins=200, hist_range=[(-7.0, 7.0)])
        return time.perf_counter() - t, np.asarray(r.hist_counts).copy(), float(r.beta_hat)
    finally:
        simulate_module.loops = current


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rev", default="44e326e")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=float, default=2e7)
    a = ap.parse_args(argv)
    t = [clamped_knots(-7.0, 7.0, 40)]
    xs = np.linspace(-7.0, 7.0, n_basis(t[0], 3))
    U = spline_potential(t, 0.5 * xs ** 2 + 0.1 * np.cos(xs))  # a learned-U-like spline
    base = loops_at(a.rev)
    load0 = os.getloadavg()
    run(base, U, 100_000), run(current, U, 100_000)  # compile both drivers
    T = {"baseline": [], "current": []}
    same = True
    for k in range(a.rounds):
        order = (("baseline", base), ("current", current)) if k % 2 == 0 else (("current", current), ("baseline", base))
        out = {}
        for name, loops in order:
            out[name] = run(loops, U, int(a.steps))
            T[name].append(out[name][0])
        same &= bool(np.array_equal(out["baseline"][1], out["current"][1]) and out["baseline"][2] == out["current"][2])
    load1 = os.getloadavg()
    med = {k: float(np.median(v)) for k, v in T.items()}
    print(f"white-kick run, 1D spline, 16 walkers, {a.steps:.3g} steps, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load {load0[0]:.2f} -> {load1[0]:.2f}, {a.rounds} alternated rounds")
    print(f"  loops.py, rng.py at {a.rev} (lane by lane, a row view per draw): median {med['baseline']:.3f} s  "
          f"(all: {', '.join(f'{x:.3f}' for x in T['baseline'])})")
    print(f"  current (the lanes drawn together):                     median {med['current']:.3f} s  "
          f"(all: {', '.join(f'{x:.3f}' for x in T['current'])})")
    print(f"  current / baseline = {med['current'] / med['baseline']:.2f}; same histogram and beta_hat: {same}")


if __name__ == "__main__":
    main()
