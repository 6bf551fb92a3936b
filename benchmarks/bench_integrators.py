"""Throughput of the damped map (3.2): numba kernels against scalar C and NumPy.

    python benchmarks/bench_integrators.py            # full run, writes benchmarks/RESULTS.md
    python benchmarks/bench_integrators.py --quick    # seconds; checks C == numba, no timings kept

Problems: Test 1 (4.5) in 1D (delta 0.5, gamma 0.1) and Test 5 (4.9) in 2D (delta 0.05163,
gamma 0.014), 16 walkers.  Measured (steps per second, summed over walkers):

* numba, production kernel: blocks of 8 walkers whose gradients are one call of the potential's
  SIMD lane kernel (Potential.grad_lanes, exp/sin/cos from bayescg.kernels.fastmath), passed as a
  first-class function (one compiled driver for every potential), 1 thread and all threads;
* numba, specialized kernel (the driver recompiled for this gradient, so LLVM can inline it);
* simulate() end to end (all accumulators, trap detection, histograms, samples), on the lane
  kernels like every d = 1, 2 damped run of an expression potential;
* scalar C of the same map with glibc's exp/sin/cos, one walker at a time ("C 1 core", the
  reference of all ratios; timed in CPU time, like every one-thread column) and with 4 walkers interleaved ("C 4 lanes"), and C with the fast
  functions ported from bayescg.kernels.fastmath, 8 walkers interleaved ("C fast fns 8 lanes";
  gcc may or may not vectorize it) (damped_map.c, gradient generated from the same sympy expression,
  ``gcc -O3 -march=native -ffp-contract=off -fno-tree-slp-vectorize -lm``), run in a subprocess,
  one core.  The two extra flags keep the rounding equal to numba's, which never fuses
  multiply-adds: gcc 12's SLP vectorizer emits vfmaddsub for pairs like 1.4 x + 0.6 y even under
  -ffp-contract=off, and on the chaotic 2D map those last-bit changes grow into different
  trajectories that leave the Mueller-Brown basin and overflow (NaN arithmetic then made C look
  several times faster than it is).  With them C and numba agree bit for bit (glibc C against
  numba's libm path, fast-function C against the lane kernels);
* NumPy, vectorized over walkers (16 walkers, and 4096 walkers as its best case).

Ratios are against C on one core.  The projected time of the paper's 5e9-step 1D budget uses
simulate() on all threads.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numba  # noqa: E402

from bayescg.kernels.loops import specialized  # noqa: E402
from bayescg.kernels.state import consts  # noqa: E402
from bayescg.potentials import catalogue  # noqa: E402
from bayescg.simulate import EngineOptions, potential_lane_kernel, simulate  # noqa: E402

from bare_kernels import _damped_bare_1d, _damped_bare_2d, damped_bare, damped_bare_1d, damped_bare_2d  # noqa: E402

PROBLEMS = {
    "1d": dict(name="test1", eq="(4.5)", delta=0.5, gamma=0.1),
    "2d": dict(name="test5", eq="(4.9)", delta=0.05163, gamma=0.014),
}
WALKERS = 16


# --- code generation for C and NumPy from the same sympy expression ---------------------------
def _cse(pot):
    import sympy

    syms = [sympy.Symbol(v, real=True) for v in pot.variables]
    grads = [sympy.diff(pot.sympy_expr, s) for s in syms]
    return syms, sympy.cse(grads, symbols=sympy.numbered_symbols("_g"), optimizations="basic")


#: C port of bayescg.kernels.fastmath, operation for operation (no FMA: -ffp-contract=off).
C_FASTMATH = r"""
#include <string.h>
static inline double f_b2f_(long long i) { double d; memcpy(&d, &i, 8); return d; }
static inline long long f_f2b_(double d) { long long i; memcpy(&i, &d, 8); return i; }
static const double F_MAGIC = 6755399441055744.0;
static inline double f_exp(double x) {
    double t = x * 1.4426950408889634 + F_MAGIC, k = t - F_MAGIC;
    double hi = x - k * 6.93147180369123816490e-01, lo = k * 1.90821492927058770002e-10;
    double r = hi - lo, z = r * r;
    double c = r - z * (1.66666666666666019037e-01 + z * (-2.77777777770155933842e-03 + z * (6.61375632143793436117e-05
               + z * (-1.65339022054652515390e-06 + z * 4.13813679705723846039e-08))));
    double y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    y = y * f_b2f_((f_f2b_(t) - f_f2b_(F_MAGIC) + 1023) << 52);
    return fabs(x) < 708.0 ? y : NAN;
}
static inline void f_reduce_(double x, double *y0, double *y1, double *n) {
    double t = x * 6.36619772367581382433e-01 + F_MAGIC, fn = t - F_MAGIC;
    double r = x - fn * 1.57079632673412561417e+00, w = fn * 6.07710050650619224932e-11, t2;
    t2 = r; w = fn * 6.07710050630396597660e-11; r = t2 - w; w = fn * 2.02226624879595063154e-21 - ((t2 - r) - w);
    t2 = r; w = fn * 2.02226624871116645580e-21; r = t2 - w; w = fn * 8.47842766036889956997e-32 - ((t2 - r) - w);
    *y0 = r - w; *y1 = (r - *y0) - w; *n = fn - 4.0 * floor(fn * 0.25);
}
static inline double f_ksin_(double x, double y) {
    double z = x * x, w = z * z;
    double r = 8.33333333332248946124e-03 + z * (-1.98412698298579493134e-04 + z * 2.75573137070700676789e-06)
               + z * w * (-2.50507602534068634195e-08 + z * 1.58969099521155010221e-10);
    double v = z * x;
    return x - ((z * (0.5 * y - v * r) - y) - v * -1.66666666666666324348e-01);
}
static inline double f_kcos_(double x, double y) {
    double z = x * x, w = z * z;
    double r = z * (4.16666666666666019037e-02 + z * (-1.38888888888741095749e-03 + z * 2.48015872894767294178e-05))
               + w * w * (-2.75573143513906633035e-07 + z * (2.08757232129817482790e-09 + z * -1.13596475577881948265e-11));
    double hz = 0.5 * z;
    w = 1.0 - hz;
    return w + (((1.0 - w) - hz) + (z * r - x * y));
}
static inline double f_sin(double x) {
    double y0, y1, n; f_reduce_(x, &y0, &y1, &n);
    double s = f_ksin_(y0, y1), c = f_kcos_(y0, y1);
    double v = (n == 1.0 || n == 3.0) ? c : s;
    v = n >= 2.0 ? -v : v;
    return fabs(x) < 1.0e6 ? v : NAN;
}
static inline double f_cos(double x) {
    double y0, y1, n; f_reduce_(x, &y0, &y1, &n);
    double s = f_ksin_(y0, y1), c = f_kcos_(y0, y1);
    double v = (n == 1.0 || n == 3.0) ? s : c;
    v = (n == 1.0 || n == 2.0) ? -v : v;
    return fabs(x) < 1.0e6 ? v : NAN;
}
"""


def c_header(pot, fast: bool = False) -> str:
    """grad.h: the gradient as C, same common subexpressions as bayescg's generated Python.

    fast=True: the lane kernel's arithmetic per walker (bayescg.kernels.fastmath's exp/sin/cos,
    ported above, and the exact libm gradient for any point where they give a non-finite result)."""
    import re

    from sympy.printing.c import C99CodePrinter

    class Printer(C99CodePrinter):
        def _print_Float(self, expr):  # the same doubles as bayescg's generated Python
            return repr(float(expr))

    printer = Printer()
    syms, (repl, reduced) = _cse(pot)

    def body(name, sub):
        lines = [f"static inline void {name}(const double *qv_, double *out) {{"]
        lines += [f"    const double {v} = qv_[{i}];" for i, v in enumerate(pot.variables)]
        lines += [f"    const double {printer.doprint(s)} = {sub(printer.doprint(e))};" for s, e in repl]
        lines += [f"    out[{i}] = {sub(printer.doprint(g))};" for i, g in enumerate(reduced)]
        return lines + ["}"]

    lines = [f"#define DIM {pot.dim}"]
    if not fast:
        lines += body("grad", lambda t: t)
    else:
        lines += [C_FASTMATH]
        lines += body("grad_exact_", lambda t: t)
        lines += body("grad_fast_", lambda t: re.sub(r"\b(exp|sin|cos)\(", r"f_\1(", t))
        lines += ["static inline void grad(const double *qv_, double *out) {",
                  "    grad_fast_(qv_, out);",
                  "    int ok = 1;",
                  "    for (int i = 0; i < DIM; i++) ok &= fabs(out[i]) < INFINITY;",
                  "    if (!ok) grad_exact_(qv_, out);",
                  "}"]
    return "\n".join(lines) + "\n"


def numpy_grad(pot):
    import sympy

    syms, _ = _cse(pot)
    grads = [sympy.diff(pot.sympy_expr, s) for s in syms]
    f = sympy.lambdify(syms, grads, "numpy")

    def grad(q):  # q: (W, d) -> (W, d)
        out = f(*q.T)
        return np.stack([np.broadcast_to(np.asarray(o, float), q.shape[:1]) for o in out], axis=1)

    return grad


def compile_c(pot, build: Path, lanes: int = 1, fast: bool = False) -> Path:
    inc = build / ("fast" if fast else "libm")
    inc.mkdir(parents=True, exist_ok=True)
    (inc / "grad.h").write_text(c_header(pot, fast))
    exe = build / f"damped_map_l{lanes}{'_fast' if fast else ''}"
    cmd = ["gcc", "-O3", "-march=native", "-ffp-contract=off", "-fno-tree-slp-vectorize", f"-DLANES={lanes}", "-I", str(inc),
           str(HERE / "damped_map.c"), "-o", str(exe), "-lm"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f"gcc failed:\n{res.stderr}")
    return exe


def run_c(exe: Path, q, p, delta, a, e, nsteps, build: Path):
    """Run the C map; returns final (q, p) and the loop's seconds.  Non-finite states abort:
    NaN arithmetic is fast, so a blown-up run would time the wrong thing."""
    inp, out = build / "in.bin", build / "out.bin"
    np.concatenate([q.ravel(), p.ravel()]).astype(np.float64).tofile(inp)
    res = subprocess.run([str(exe), str(q.shape[0]), str(nsteps), repr(delta), repr(a), repr(e), str(inp), str(out)],
                         check=True, capture_output=True, text=True)
    sec = float(res.stdout.strip())
    z = np.fromfile(out, dtype=np.float64)
    if not np.all(np.isfinite(z)):
        raise SystemExit(f"{exe.name}: a walker blew up after {nsteps} steps; the timing would be meaningless")
    n = q.size
    return z[:n].reshape(q.shape), z[n:].reshape(p.shape), sec


def cpu_or_wall():
    """The clock of a timing: process CPU time when numba runs one thread (the per-core figures: other
    jobs on a shared machine do not count, though a busy sibling hyperthread still slows the core),
    wall time with more threads (the speed-up is what they measure)."""
    return time.process_time if numba.get_num_threads() == 1 else time.perf_counter


def numpy_run(grad, q, p, delta, a, e, nsteps):
    q, p = q.copy(), p.copy()
    h = 0.5 * delta
    t0 = time.process_time()
    for _ in range(nsteps):
        q += h * a * p
        p = e * p - delta * grad(q)
        q += h * a * p
    sec = time.process_time() - t0
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(p))):
        raise SystemExit("NumPy: a walker blew up; the timing would be meaningless")
    return q, p, sec


def numba_run(kernel, grad, q, p, delta, a, e, nsteps):
    """kernel: {"1d": f(grad, q (W,), p (W,), a, e, delta, n), "2d": f(grad, q, p, A, E, delta, diag, n),
    "nd": f(grad, q, p, consts, n)} (benchmarks/bare_kernels.py)."""
    q, p = np.array(q), np.array(p)
    d = q.shape[1]
    clock = cpu_or_wall()
    t0 = clock()
    if d == 1 and "1d" in kernel:
        qq, pp = np.ascontiguousarray(q[:, 0]), np.ascontiguousarray(p[:, 0])
        kernel["1d"](grad, qq, pp, a, e, delta, nsteps)
        q[:, 0], p[:, 0] = qq, pp
    elif d == 2 and "2d" in kernel:
        kernel["2d"](grad, q, p, a * np.eye(d), e * np.eye(d), delta, True, nsteps)
    else:
        kernel["nd"](grad, q, p, consts(a * np.eye(d), e * np.eye(d), np.zeros((d, d)), delta, True), nsteps)
    sec = clock() - t0
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(p))):
        raise SystemExit("numba: a walker blew up; the timing would be meaningless")
    return q, p, sec


def initial(pot, W, seed=0):
    rng = np.random.default_rng(seed)
    if pot.dim == 1:
        return rng.normal(size=(W, 1)), rng.normal(size=(W, 1))
    return np.array([-0.05, 0.47]) + 0.05 * rng.normal(size=(W, 2)), 0.05 * rng.normal(size=(W, 2))


CORES_SEEN: dict = {}


def with_threads(n, fn, *args):
    """fn(*args) on n numba threads; records the CPU cores the process actually obtained
    (process CPU time / wall time), which is what limits scaling on a shared machine."""
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        return fn(*args)
    finally:
        wall = time.perf_counter() - t0
        if wall > 0:
            CORES_SEEN.setdefault(n, []).append((time.process_time() - c0) / wall)
        numba.set_num_threads(old)


def best(fn, reps):
    """Best of ``reps`` timings (the machine may be shared); fn returns (..., seconds)."""
    out = [fn() for _ in range(reps)]
    return min(out, key=lambda r: r[-1])


def machine_load():
    try:
        return os.getloadavg()
    except OSError:  # pragma: no cover
        return (float("nan"),) * 3


def bench(quick: bool, out_md: Path | None):
    build = Path(tempfile.mkdtemp(prefix="bayescg-bench-"))
    ncores = numba.config.NUMBA_NUM_THREADS
    # production: the lane kernels (SIMD gradients of LANES walkers), as simulate() runs them;
    # exact: the one-walker-at-a-time loop on the math.* (libm) gradient, bit-identical to plain C
    prod = {"1d": damped_bare_1d, "2d": damped_bare_2d}
    spec = {"1d": specialized(_damped_bare_1d), "2d": specialized(_damped_bare_2d)}
    exact = {"nd": damped_bare}
    rows = []
    checks = []
    load_before = machine_load()
    try:
        for key, prob in PROBLEMS.items():
            pot = catalogue(prob["name"])
            a, e = 1.0, float(np.exp(-prob["gamma"] * prob["delta"]))
            delta = prob["delta"]
            W = 4 if quick else WALKERS
            n = 200 if quick else (2_000_000 if key == "1d" else 600_000)
            reps = 1 if quick else 3
            q0, p0 = initial(pot, W)
            gl = potential_lane_kernel(pot, EngineOptions())
            exe = compile_c(pot, build / key)
            exe4 = compile_c(pot, build / key, lanes=4)
            exe_f = compile_c(pot, build / key, lanes=1, fast=True)
            exe_f8 = compile_c(pot, build / key, lanes=8, fast=True)
            # correctness: the same map gives the same final state, bit for bit.  The 2D map amplifies a
            # one-ulp difference ~ delta^2 / eps = 270x per step (eps = 1e-5), so this is a sharp test.
            nchk = 200 if quick else 2000
            qc, pc, _ = run_c(exe, q0, p0, delta, a, e, nchk, build / key)
            qc4, pc4, _ = run_c(exe4, q0, p0, delta, a, e, nchk, build / key)
            if not (np.array_equal(qc, qc4) and np.array_equal(pc, pc4)):
                raise SystemExit(f"{key}: the interleaved C loop changed the results")
            qe, pe, _ = numba_run(exact, pot.grad, q0, p0, delta, a, e, nchk)
            # the lane kernels against C with the same exp/sin/cos (ported operation for operation)
            qf, pf, _ = run_c(exe_f, q0, p0, delta, a, e, nchk, build / key)
            qf8, pf8, _ = run_c(exe_f8, q0, p0, delta, a, e, nchk, build / key)
            qn, pn, _ = numba_run(prod, gl, q0, p0, delta, a, e, nchk)
            qs, ps, _ = numba_run(spec, gl, q0, p0, delta, a, e, nchk)

            def mdiff(q1, p1, q2, p2):
                return float(max(np.abs(q1 - q2).max(), np.abs(p1 - p2).max()))
            diff = mdiff(qc, pc, qe, pe)
            diff_f = mdiff(qf, pf, qn, pn)
            diff_s = mdiff(qs, ps, qn, pn)
            diff_f8 = mdiff(qf, pf, qf8, pf8)
            checks.append((key, diff, diff_f, diff_s, diff_f8))
            if not (diff == 0 and diff_f == 0 and diff_s == 0 and diff_f8 == 0):
                raise SystemExit(f"{key}: C and numba maps disagree after {nchk} steps (libm: {diff:.3g}, "
                                 f"fast functions: {diff_f:.3g}, specialized {diff_s:.3g}, C 8 lanes {diff_f8:.3g})")
            numba_run(prod, gl, q0, p0, delta, a, e, 10)  # warm up (compiles, loads caches)
            total = W * n
            c_sec = best(lambda: run_c(exe, q0, p0, delta, a, e, n, build / key), reps)[-1]
            c_rate = total / c_sec
            c4_sec = best(lambda: run_c(exe4, q0, p0, delta, a, e, n, build / key), reps)[-1]
            cf8_sec = best(lambda: run_c(exe_f8, q0, p0, delta, a, e, n, build / key), reps)[-1]
            r = {"problem": f"{prob['name']} {prob['eq']} {key.upper()}", "walkers": W, "steps": total,
                 "c": c_rate, "c4": total / c4_sec, "cf8": total / cf8_sec}
            for label, kern in (("numba", prod), ("numba_spec", spec)):
                for nt in sorted({1, ncores}):
                    sec = best(lambda: with_threads(nt, numba_run, kern, gl, q0, p0, delta, a, e, n), reps)[-1]
                    r[f"{label}_{nt}"] = total / sec
            # simulate() end to end (lane kernels)
            sim_steps = total if not quick else 4000
            def timed_simulate():
                clock = cpu_or_wall()
                t0 = clock()
                res = simulate(pot, delta, prob["gamma"], steps=sim_steps, walkers=W, seed=1,
                               init_mean=[-0.05, 0.47] if key == "2d" else None, init_sd=0.05 if key == "2d" else 1.0)
                return res, clock() - t0
            for nt in sorted({1, ncores}):
                res, sec = with_threads(nt, lambda: best(timed_simulate, reps))
                r[f"simulate_{nt}"] = res.steps / sec
            npg = numpy_grad(pot)
            n_np = max(20, n // 50)
            r["numpy_16"] = W * n_np / best(lambda: numpy_run(npg, q0, p0, delta, a, e, n_np), reps)[-1]
            qb, pb = initial(pot, 4096, seed=1)
            n_big = 20 if quick else 400
            r["numpy_4096"] = 4096 * n_big / best(lambda: numpy_run(npg, qb, pb, delta, a, e, n_big), reps)[-1]
            r["ncores"] = ncores
            rows.append(r)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    load_after = machine_load()
    report = render(rows, checks, ncores, load_before, load_after, quick)
    print(report)
    if out_md is not None:
        # the hand-written history below the marker is kept; only the measured part above it is rewritten
        marker = "History and context (added by hand"
        old = out_md.read_text() if out_md.exists() else ""
        tail = old[old.index(marker):] if marker in old else ""
        out_md.write_text(report.rstrip() + "\n\n" + tail if tail else report)
    return rows, checks


def render(rows, checks, ncores, load_before, load_after, quick) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    lines = [
        "# Damped-map throughput (benchmarks/bench_integrators.py)", "",
        f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
        f"- machine: {cpu}, {os.cpu_count()} logical CPUs, numba threads {ncores}; Python {platform.python_version()}, "
        f"numba {numba.__version__}, numpy {np.__version__}",
        f"- load average before / after: {load_before[0]:.2f} / {load_after[0]:.2f} "
        + ("(machine shared with other jobs: absolute numbers are pessimistic and noisy)"
           if max(load_before[0], load_after[0]) > 0.5 else "(machine idle)"),
        f"- mode: {'quick (tiny sizes, one timing each, not meaningful)' if quick else 'full, best of 3 timings each'}", "",
        "Steps per second (millions, summed over walkers); ratio = rate / scalar C on one core.  Clocks: C, NumPy and "
        "the one-thread numba / simulate() columns are CPU time (CLOCK_PROCESS_CPUTIME_ID, time.process_time), so "
        "their ratios are per-core figures that other jobs do not dilute (a busy sibling hyperthread still slows "
        f"the core); the {ncores}-thread columns are wall time and limited by the cores the process obtained.", "",
        "| problem | walkers | C 1 core | C 4 lanes | C fast fns 8 lanes | numba 1 | numba " + f"{ncores}"
        + " | numba spec. 1 | numba spec. " + f"{ncores}" + " | simulate() 1 | simulate() " + f"{ncores}"
        + " | NumPy 16 w. | NumPy 4096 w. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        c = r["c"]

        def cell(k):
            return f"{r[k] / 1e6:.2f} ({r[k] / c:.2f}x)"

        lines.append(f"| {r['problem']} | {r['walkers']} | {c / 1e6:.2f} | {cell('c4')} | {cell('cf8')} | {cell('numba_1')} | {cell(f'numba_{ncores}')} | "
                     f"{cell('numba_spec_1')} | {cell(f'numba_spec_{ncores}')} | {cell('simulate_1')} | "
                     f"{cell(f'simulate_{ncores}')} | {cell('numpy_16')} | {cell('numpy_4096')} |")
    seen = {n: float(np.median(v)) for n, v in CORES_SEEN.items()}
    lines += ["", "Scaling from 1 to all threads (wall rate with all threads / CPU-time rate with one; CPU cores the "
              "process actually obtained, median of the "
              "multi-thread runs: " + ", ".join(f"{n} threads -> {c:.2f} cores" for n, c in sorted(seen.items()))
              + "; with other jobs on the machine the threads share cores and the speed-up cannot show):", ""]
    for r in rows:
        lines.append(f"- {r['problem']}: numba {r[f'numba_{ncores}'] / r['numba_1']:.2f}x, "
                     f"specialized {r[f'numba_spec_{ncores}'] / r['numba_spec_1']:.2f}x, "
                     f"simulate() {r[f'simulate_{ncores}'] / r['simulate_1']:.2f}x")
    r1 = rows[0]
    proj = 5e9 / r1[f"simulate_{ncores}"]
    proj_bare = 5e9 / r1[f"numba_{ncores}"]
    proj_ideal = 5e9 / (ncores * r1["simulate_1"])
    lines += ["", f"Projected wall time of the paper's 5e9-step 1D budget (Test 1) on {ncores} threads: "
              f"{proj:.0f} s with simulate() (all statistics) at the measured {ncores}-thread rate, "
              f"{proj_bare:.0f} s for the bare map; {proj_ideal:.0f} s if {ncores} cores are free "
              f"({ncores} x the one-thread simulate() rate; walkers are independent).", "",
              "Correctness (C and numba from the same initial states, 2000 steps; the 2D map amplifies a one-ulp "
              "difference about 270x per step, so agreement there is a sharp test).  'libm': the scalar C loop "
              "against numba's one-walker loop on the math.* gradient (both call glibc); 'fast functions': C with "
              "bayescg.kernels.fastmath's exp/sin/cos ported operation for operation (one walker at a time) "
              "against the production lane kernels (SIMD over 8 walkers):", ""]
    for key, diff, diff_f, diff_s, diff_f8 in checks:
        lines.append(f"- {key}: libm max |C - numba| = {diff:.3g}; fast functions max |C - numba| = {diff_f:.3g}; "
                     f"max |specialized - production| = {diff_s:.3g}; max |C 8 lanes - C 1 lane| = {diff_f8:.3g}"
                     + (" (all bit-identical)" if max(diff, diff_f, diff_s, diff_f8) == 0 else ""))
    lines += ["", "Notes:", "",
              "- The gradients of these potentials are dominated by exp/sin/cos: Test 5's gradient is four exp and "
              "two cos of 1e5-size arguments.  numba's math.* calls glibc, one walker at a time (no SVML here); a "
              "tight loop of the same gradient takes the same time in numba and in C (about 87 ns per point), so "
              "with libm calls numba can only match scalar C.  The production path (simulate() and the 'numba' "
              "columns) instead evaluates the gradients of 8 walkers in one call of a generated lane kernel "
              "(Potential.grad_lanes) whose loop over walkers LLVM compiles to AVX-512 (or AVX2) code, with "
              "branch-free exp/sin/cos from bayescg.kernels.fastmath (at most 1.5 ulp from correctly rounded, "
              "tested against mpmath; a lane whose argument leaves the fast range, |x| >= 708 for exp or >= 1e6 for "
              "sin/cos, is recomputed with glibc).  That is where the ratio over scalar C comes from; "
              "'C fast fns 8 lanes' is C with the same functions, for comparison.",
              "- simulate() pays for its statistics (batch moments of p and q, histogram, trap and blow-up checks, "
              "samples) per walker and step in scalar code; that is the gap between the 'numba' and 'simulate()' "
              "columns.",
              "- The production drivers take the gradient as a first-class function (indirect call) so that they "
              "are compiled once and cached on disk; the 'specialized' columns show the cost of that choice.",
              "- Walkers are independent (no shared state, no synchronization inside a chunk), so the parallel "
              "speed-up is limited by the cores the machine gives the process; see the cores-obtained figures.",
              ""]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes; check C == numba; do not write RESULTS.md")
    ap.add_argument("--out", default=None, help="where to write the markdown table (default benchmarks/RESULTS.md)")
    args = ap.parse_args(argv)
    out = Path(args.out) if args.out else (None if args.quick else HERE / "RESULTS.md")
    bench(args.quick, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
