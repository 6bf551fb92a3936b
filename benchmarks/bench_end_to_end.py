"""End-to-end wall times of the issue-15 commands in units of the scalar C reference (same run).

    python benchmarks/bench_end_to_end.py [--out benchmarks/RESULTS_END_TO_END.md] [--skip 2d,ising] [--stages]

Runs as subprocesses: the README main command with cold caches (fresh NUMBA_CACHE_DIR, PyTensor compiledir,
MPLCONFIGDIR, XDG_CACHE_HOME) and again warm; the 2D learn at 2e6 steps, first in this cache (its 2D kernels compile)
and again warm; ``bayescg ising models/ising-nn.toml``, first in this cache (its kernels compile) and again warm.
Each row is held to issue 15's goal (GOALS: the smaller of the two C units).
The C reference (gcc -O3 /work/shared/bench/c_reference.c, ``./a.out 20000000 0.3 0.5``) is compiled and timed
at the start and the end; one C unit is the smaller of the two.  Per-stage times come from the plain progress
lines ("stage: done in x s") that bayescg prints when stderr is not a terminal.  Then, in one process each:
the NUTS fit of the README problem's size through the PyMC model compiled by nutpie (the path before issue 15)
vs the cached kernel, and gradient-evaluation throughput of the kernel vs PyTensor's compiled logp + gradient.
With ``--stages`` the README command runs again, cold then warm, in one process each under ``-X importtime``
with wall and CPU time (all threads) of each stage, of the model parse, the potential's kernels and the engine
drivers (compiled or loaded); CPU times are also given in units of the C reference's CPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
C_SRC = Path("/work/shared/bench/c_reference.c")

RUNS = [
    ("main-cold", "README main command, cold caches", ["learn", "models/test1-quadratic.toml", "--set",
                                                       "simulation.steps=2e7"], True),
    ("main-warm", "the same, warm caches", ["learn", "models/test1-quadratic.toml", "--set", "simulation.steps=2e7"],
     False),
    ("2d-first", "learn models/test4-2d-quadratic.toml --set simulation.steps=2e6 (first 2D run in this cache)",
     ["learn", "models/test4-2d-quadratic.toml", "--set", "simulation.steps=2e6"], False),
    ("2d", "the same, warm caches (second run)",
     ["learn", "models/test4-2d-quadratic.toml", "--set", "simulation.steps=2e6"], False),
    ("ising", "ising models/ising-nn.toml (first run in this cache: its kernels compile)",
     ["ising", "models/ising-nn.toml"], False),
    ("ising-warm", "the same, warm caches (second run)", ["ising", "models/ising-nn.toml"], False),
    # not issue 15's rows: the README command without the finite-delta correction (issue 11's default), so that the
    # correction's share of the README rows is measured in the same run
    ("main-cold-nocorr", "README main command with fit.delta_correction=none, cold caches (for comparison)",
     ["learn", "models/test1-quadratic.toml", "--set", "simulation.steps=2e7", "--set", "fit.delta_correction=none"],
     True),
    ("main-warm-nocorr", "the same, warm caches (for comparison)",
     ["learn", "models/test1-quadratic.toml", "--set", "simulation.steps=2e7", "--set", "fit.delta_correction=none"],
     False),
]

#: a second-run row -> the run that fills the caches it is measured in: when that run is skipped its command runs first,
#: unrecorded, so that a "warm" row is never a first run in fresh caches
PRIMED_BY = {"main-warm": "main-cold", "2d": "2d-first", "ising-warm": "ising",
             "main-warm-nocorr": "main-cold-nocorr"}

FIT_COMPARE = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    from bayescg.bayes.effective import (adaptive_whitening, build_effective_potential_model, effective_basis,
                                         effective_density, map_estimate)
    from bayescg.fit import sample_model
    rng = np.random.default_rng(0)
    edges = [np.linspace(-7, 7, 201)]                      # the README problem's histogram and knots
    counts = np.histogram(rng.standard_normal(10 ** 6) / 0.6, edges[0])[0].astype(float)
    basis = effective_basis(edges, 40, counts=counts)
    b, s, _, Hd = map_estimate(basis, counts, 0.05)
    wh = adaptive_whitening(basis, b, s, Hd)
    mom = {"beta_hat": 0.36, "beta_hat_se": 0.002}
    out = {}
    import nutpie  # imported before either timing: both paths need it
    t0 = time.perf_counter()
    dens = effective_density(counts, basis, wh, momenta_stats=mom, n_eff_factor=0.05, sigma_init=s)
    dens.logp_grad(dens.init_centre)                      # load (or compile) the cached kernel
    import bayescg.kernels.effective                      # and its C callbacks
    t1 = time.perf_counter()
    sample_model(dens, draws=1000, tune=1000, chains=4, seed=1)
    out["kernel"] = {"compile": t1 - t0, "sample": time.perf_counter() - t1}
    t0 = time.perf_counter()
    model = build_effective_potential_model(counts, edges, basis=basis, momenta_stats=mom, n_eff_factor=0.05,
                                            whitening=wh)
    compiled = nutpie.compile_pymc_model(model)
    t1 = time.perf_counter()
    nutpie.sample(compiled, draws=1000, tune=1000, chains=4, seed=1, progress_bar=False, cores=2, target_accept=0.9)
    out["pymc"] = {"compile": t1 - t0, "sample": time.perf_counter() - t1}
    # gradient throughput: kernel vs PyTensor (C backend) logp + dlogp of the same model, 1D and 2D
    def rate(f, x, n):
        f(x)
        t = time.perf_counter()
        for _ in range(n):
            f(x)
        return n / (time.perf_counter() - t)
    thr = {}
    for d in (1, 2):
        if d == 2:
            e2 = [np.linspace(-3, 3, 101)] * 2
            c2 = np.histogram2d(*rng.standard_normal((2, 200000)), e2)[0]
            bs = effective_basis(e2, 25, counts=c2)
            bb, ss, _, HH = map_estimate(bs, c2, 0.1)
            w2 = adaptive_whitening(bs, bb, ss, HH)
            dd = effective_density(c2, bs, w2, momenta_stats=mom, n_eff_factor=0.1, sigma_init=ss)
            mm = build_effective_potential_model(c2, e2, basis=bs, momenta_stats=mom, n_eff_factor=0.1, whitening=w2)
        else:
            dd, mm, bs = dens, model, basis
        x = dd.init_centre
        n = bs.n_coef - 1
        pt = {"z": x[:n], "sigma_rw_log__": x[n], "beta_log__": x[n + 1]}
        fl, fg = mm.compile_logp(), mm.compile_dlogp()
        reps = 3000 if d == 1 else 300
        thr[f"{d}d"] = {"coefficients": int(bs.n_coef), "active_cells": int(bs.active.sum()),
                        "kernel_per_s": rate(dd.logp_grad, x, reps),
                        "pytensor_per_s": rate(lambda p: (fl(p), fg(p)), pt, reps // 3)}
        if d == 2:
            # the kernel the 2D learn runs (sparse form, same posterior of f; the row above is the dense form)
            from bayescg.bayes.effective import map_estimate_sparse, sparse_cholesky, sparse_density
            aw, sw, Hw, rk = map_estimate_sparse(bs, c2, 0.1, marginal_sigma=True)
            sd = sparse_density(c2, bs, aw, sparse_cholesky(Hw), rk, momenta_stats=mom, n_eff_factor=0.1,
                                sigma_init=sw)
            thr["2d sparse (learn's kernel)"] = dict(thr["2d"], kernel_per_s=rate(sd.logp_grad, sd.init_centre,
                                                                                  reps * 3))
    # the other two densities the CLI samples: the Ising chain's marginal posterior (E1, the shipped model's data)
    # against its transfer-matrix PyTensor graph with autodiff, and the noise model (Theorem 3.1, the 2D test4 designs
    # at 2e5 steps) against its PyMC model; each at its own starting point (the cost does not depend on the point)
    from bayescg.config import load_model
    from bayescg.ising.bayes import marginal_model
    from bayescg.ising.kernel import MarginalDensity
    from bayescg.ising.pipeline import build, load_data
    im = load_model("models/ising-nn.toml")
    fine, cm = build(im)
    xi = load_data(im, fine)[0]
    md = MarginalDensity(cm, xi, 2.0)
    u = md.initial_point(1)
    mi = marginal_model(cm, xi, 2.0, likelihood="graph")
    fl, fg = mi.compile_logp(), mi.compile_dlogp()
    pt = {"theta_c": u[:cm.K], "theta_cf_interval__": u[cm.K]}
    thr["ising marginal (ising-nn)"] = {"coefficients": int(md.n_dim), "active_cells": int(np.asarray(xi).shape[0]),
                                        "kernel_per_s": rate(md.logp_grad, u, 3000),
                                        "pytensor_per_s": rate(lambda p: (fl(p), fg(p)), pt, 300)}
    from bayescg.bayes.noise import noise_density, noise_model
    from bayescg.noise import estimate_noise
    from bayescg.sampling import cfunc_logp_grad
    from bayescg.simulate import potential_from_model
    nm = load_model("models/test4-2d-quadratic.toml")
    res = estimate_noise(potential_from_model(nm), nm.simulation.delta, nm.simulation.gamma, steps=200000,
                         calibrated_run=False, bayesian=False)
    nd = noise_density(res.designs, res.moments, res.moment_ses, res.gamma)
    nmod = noise_model(res.designs, res.moments, res.moment_ses, res.gamma)
    fl, fg = nmod.compile_logp(), nmod.compile_dlogp()
    thr["noise model (2D, 3 designs)"] = {"coefficients": int(nd.n_dim), "active_cells": len(res.designs),
                                          "kernel_per_s": rate(lambda v: cfunc_logp_grad(nd.logp, nd.buf, v, nd.n_dim),
                                                               nd.initial_point(1), 20000),
                                          "pytensor_per_s": rate(lambda p: (fl(p), fg(p)), nmod.initial_point(), 2000)}
    out["throughput"] = thr
    print(json.dumps(out))
""")


#: In-process stage timer for the README command (``--stages``): wall and CPU seconds (all threads) of the
#: run's own stages (RunControl), of the model parse, the potential's generated kernels and the engine drivers
#: (compiled or loaded from numba's cache), with the imports done during each stage from ``-X importtime``.
STAGES = textwrap.dedent("""
    import json, sys, time
    W0, C0 = time.perf_counter(), time.process_time()
    from bayescg import cli
    rec = [("import bayescg.cli", time.perf_counter() - W0, time.process_time() - C0)]
    import importlib
    from bayescg import checks, config, potentials, runtime
    from bayescg.kernels import loops
    simulate = importlib.import_module("bayescg.simulate")  # the attribute bayescg.simulate is the function
    inner = {}

    def timed(owner, name, label):
        fn = getattr(owner, name)

        def wrap(*a, **k):
            w, c = time.perf_counter(), time.process_time()
            try:
                return fn(*a, **k)
            finally:
                t = inner.setdefault(label, [0.0, 0.0])
                t[0] += time.perf_counter() - w
                t[1] += time.process_time() - c
        setattr(owner, name, wrap)

    timed(config, "load_model", "model file (TOML parse, validation)")
    timed(checks, "check_model_potential", "model potential check (builds the potential: includes its kernels)")
    timed(potentials, "_compile", "potential kernels (generate + compile or load)")
    timed(simulate, "potential_lane_kernel", "potential kernels (generate + compile or load)")
    timed(loops._Lazy, "compiled", "engine drivers (compile or load)")
    cur = {}
    start = runtime.RunControl._start

    def _start(self, label, total):
        now = (time.perf_counter(), time.process_time())
        if cur:
            rec.append((cur["label"], now[0] - cur["w"], now[1] - cur["c"]))
        cur.update(label=label, w=now[0], c=now[1])
        return start(self, label, total)
    runtime.RunControl._start = _start
    finish = runtime.RunControl.__exit__

    def _exit(self, *exc):
        if cur:
            rec.append((cur.pop("label"), time.perf_counter() - cur["w"], time.process_time() - cur["c"]))
        return finish(self, *exc)
    runtime.RunControl.__exit__ = _exit
    rc = cli.main(sys.argv[2:])
    rec.append(("total in process", time.perf_counter() - W0, time.process_time() - C0))
    json.dump({"rc": rc, "stages": rec, "inner": inner}, open(sys.argv[1], "w"))
""")


def import_totals(stderr: str, top: int = 8):
    """Top-level packages by cumulative import time (s) from ``-X importtime`` output, largest first."""
    tot: dict = {}
    for m in re.finditer(r"^import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)$", stderr, re.M):
        if not m.group(2):  # imported by the program itself (deeper imports are inside these)
            pkg = m.group(3).split(".")[0]
            tot[pkg] = tot.get(pkg, 0.0) + int(m.group(1)) * 1e-6
    return sorted(tot.items(), key=lambda kv: -kv[1])[:top], sum(tot.values())


def run_stages(args, env, out: Path, tmp: Path):
    """The command in one process under STAGES and ``-X importtime``: (parent wall, parent CPU, record)."""
    js = tmp / "stages.json"
    r0 = os.times()
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-X", "importtime", "-c", STAGES, str(js), *args, "--out", str(out), "--force",
                        "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    r1 = os.times()
    cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    rec = json.loads(js.read_text()) if js.exists() else {"rc": p.returncode, "stages": [], "inner": {},
                                                           "error": p.stderr[-600:]}
    rec["imports"], rec["imports_total"] = import_totals(p.stderr)
    return wall, cpu, rec


def stage_table(title, wall, cpu, rec, unit) -> list:
    """Markdown rows of one run_stages record."""
    cu = min(C_CPU) if C_CPU else unit
    lines = [f"### {title}", "", f"Process wall {wall:.1f} s ({wall / unit:.1f} C units), CPU {cpu:.1f} s "
             f"({cpu / cu:.1f} C CPU units: the C reference's best CPU time {cu:.2f} s); exit {rec['rc']}.", "",
             "| stage | wall s | CPU s |", "|---|---|---|"]
    inproc = dict((n, (w, c)) for n, w, c in rec["stages"]).get("total in process", (0.0, 0.0))
    lines.append(f"| interpreter start-up + exit (process minus in-process) | {wall - inproc[0]:.2f} | "
                 f"{cpu - inproc[1]:.2f} |")
    for name, w, c in rec["stages"]:
        lines.append(f"| {name} | {w:.2f} | {c:.2f} |")
    lines += ["", "Inside those stages:", "", "| part | wall s | CPU s |", "|---|---|---|"]
    for name, (w, c) in rec["inner"].items():
        lines.append(f"| {name} | {w:.2f} | {c:.2f} |")
    imp = ", ".join(f"{k} {v:.2f}" for k, v in rec["imports"])
    lines += ["", f"Imports (`-X importtime`, wall, all stages): {rec['imports_total']:.2f} s; largest: {imp}.", ""]
    if rec.get("error"):
        lines += [f"error: `{rec['error'].strip().splitlines()[-1]}`", ""]
    return lines


def c_unit(build: Path) -> float:
    exe = build / "c_ref"
    subprocess.run(["gcc", "-O3", str(C_SRC), "-lm", "-o", str(exe)], check=True)
    best = float("inf")
    for _ in range(3):
        t, r0 = time.perf_counter(), os.times()
        subprocess.run([str(exe), "20000000", "0.3", "0.5"], check=True, capture_output=True)
        best = min(best, time.perf_counter() - t)
        r1 = os.times()
        C_CPU.append((r1.children_user - r0.children_user) + (r1.children_system - r0.children_system))
    return best


#: issue 15's goals in C units (the README rows by cache state; the 2D and Ising rows as the issue measured them:
#: the 2D row on warm caches, the Ising row as a first run, its warm rerun held to the same goal)
GOALS = {"main-cold": 12, "main-warm": 6, "2d": 40, "ising": 15, "ising-warm": 15}


#: CPU seconds of every C reference run: the unit for CPU times (less sensitive to the load than wall time)
C_CPU: list = []


def wipe(caches: dict) -> None:
    """Empty the run's cache directories (numba, PyTensor, matplotlib, XDG): the next run starts cold."""
    for c in caches.values():
        shutil.rmtree(c, ignore_errors=True)


def run_cli(args, env, out: Path):
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "bayescg.cli", *args, "--out", str(out), "--force"], cwd=ROOT,
                       env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    stages = [(m.group(1), float(m.group(2))) for m in re.finditer(r"^(.*): done in ([0-9.]+) s$", p.stderr, re.M)]
    return wall, p.returncode, stages, p.stderr[-600:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_END_TO_END.md"))
    ap.add_argument("--skip", default="", help="comma-separated run keys to skip ("
                    + ", ".join([key for key, *_ in RUNS] + ["fit"]) + ")")
    ap.add_argument("--stages", action="store_true",
                    help="also time the stages of the README command, cold then warm caches, one process each")
    a = ap.parse_args(argv)
    skip = set(filter(None, a.skip.split(",")))
    tmp = Path(tempfile.mkdtemp(prefix="bayescg-bench-"))
    load0 = os.getloadavg()
    unit0 = c_unit(tmp)
    caches = {k: tmp / k for k in ("numba", "pytensor", "mpl", "xdg")}
    env = dict(os.environ, NUMBA_CACHE_DIR=str(caches["numba"]), PYTENSOR_FLAGS=f"compiledir={caches['pytensor']}",
               MPLCONFIGDIR=str(caches["mpl"]), XDG_CACHE_HOME=str(caches["xdg"]),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    env.pop("BAYESCG_PROGRESS", None)
    rows = []
    fit = None
    for key, title, args, cold in RUNS:
        if key in skip:
            continue
        if cold:
            wipe(caches)
        first = PRIMED_BY.get(key)
        if first in skip:
            _, _, first_args, first_cold = next(r for r in RUNS if r[0] == first)
            if first_cold:
                wipe(caches)
            print(f"running {first} unrecorded (fills the caches {key} is measured in) ...", file=sys.stderr, flush=True)
            run_cli(first_args, env, tmp / f"out-{first}")
        print(f"running {key} ...", file=sys.stderr, flush=True)
        rows.append((key, title) + run_cli(args, env, tmp / f"out-{key}"))
        if key == "main-warm" and "fit" not in skip:
            import json

            print("running fit comparison ...", file=sys.stderr, flush=True)
            p = subprocess.run([sys.executable, "-c", FIT_COMPARE], cwd=ROOT, env=env, capture_output=True, text=True)
            fit = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {"error": p.stderr[-600:]}
        write(a.out, rows, fit, unit0, None, load0, os.getloadavg())
    staged = []
    if a.stages:
        for cold in (True, False):
            if cold:
                wipe(caches)
            print(f"running stages ({'cold' if cold else 'warm'}) ...", file=sys.stderr, flush=True)
            title = f"README main command, {'cold' if cold else 'warm'} caches"
            staged.append((title,) + run_stages(RUNS[0][2], env, tmp / "out-stages", tmp))
            write(a.out, rows, fit, unit0, None, load0, os.getloadavg(), staged)
    unit1 = c_unit(tmp)
    print(write(a.out, rows, fit, unit0, unit1, load0, os.getloadavg(), staged))
    shutil.rmtree(tmp, ignore_errors=True)


def write(path, rows, fit, unit0, unit1, load0, load1, staged=()) -> str:
    """Render the results file (partial while the benchmark runs: unit1 None)."""
    unit = unit0 if unit1 is None else min(unit0, unit1)
    end = "not yet (partial results)" if unit1 is None else f"{unit1:.2f} s at the end"
    lines = ["# End-to-end benchmark (issue 15)", "",
             f"Command: `python benchmarks/bench_end_to_end.py`; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
             f"{os.cpu_count()} cores.", "",
             f"C unit = {unit:.2f} s (C reference 2e7 steps, best of 3: {unit0:.2f} s at the start, {end}). Load average (1, 5, 15 min): start {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}, end "
             f"{load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}. The machine is shared: absolute figures are inflated "
             "by the load; compare rows of the same run.", "",
             "C units are given with the unit measured at the start and at the end (the load changes during a run).",
             "", "| run | wall s | C units (start unit) | C units (end unit) | goal | met | exit | stages (s) |",
             "|---|---|---|---|---|---|---|---|"]
    u1 = unit0 if unit1 is None else unit1
    for key, title, wall, rc, stages, err in rows:
        st = "; ".join(f"{n} {s:.1f}" for n, s in stages)
        g = GOALS.get(key)
        met = "" if g is None else ("yes" if wall / min(unit0, u1) <= g else "no")
        lines.append(f"| {title} | {wall:.1f} | {wall / unit0:.1f} | {wall / u1:.1f} | {'' if g is None else f'<= {g}'} | "
                     f"{met} | {rc} | {st} |")
    cu = min(C_CPU) if C_CPU else unit
    for title, wall, cpu, rec in staged:
        lines.append(f"| {title} (`--stages` run: --quiet, -X importtime; CPU {cpu:.1f} s = {cpu / cu:.1f} C CPU units) | "
                     f"{wall:.1f} | {wall / unit0:.1f} | {wall / u1:.1f} | | | {rec['rc']} | see below |")
    if fit is not None:
        lines += ["", "## NUTS fit of the README problem (40 knots, 200 cells, 4 x (1000 + 1000)), one process", ""]
        if "error" in fit:
            lines.append(f"failed: `{fit['error']}`")
        else:
            k, p = fit["kernel"], fit["pymc"]
            lines += ["| path | compile / load s | sample s | total C units |", "|---|---|---|---|",
                      f"| PyMC model, nutpie.compile_pymc_model (before) | {p['compile']:.1f} | {p['sample']:.1f} | "
                      f"{(p['compile'] + p['sample']) / unit:.1f} |",
                      f"| cached numba kernel (now) | {k['compile']:.2f} | {k['sample']:.1f} | "
                      f"{(k['compile'] + k['sample']) / unit:.1f} |", "",
                      f"Fit speed-up: {(p['compile'] + p['sample']) / (k['compile'] + k['sample']):.1f}x.", "",
                      "Gradient evaluations (log density + gradient) per second, same model and point:", "",
                      "| model | coefficients (parameters) | active cells (data: samples, designs) | kernel /s | "
                      "PyTensor C logp+dlogp /s | ratio |",
                      "|---|---|---|---|---|---|"]
            for name, t in fit["throughput"].items():
                lines.append(f"| {name} | {t['coefficients']} | {t['active_cells']} | {t['kernel_per_s']:.0f} | "
                             f"{t['pytensor_per_s']:.0f} | {t['kernel_per_s'] / t['pytensor_per_s']:.1f} |")
    if staged:
        lines += ["", "## Stages of the README command (one process each, `--stages`)", ""]
        for title, wall, cpu, rec in staged:
            lines += stage_table(title, wall, cpu, rec, unit)
    failed = [r for r in rows if r[3] != 0]
    for key, title, wall, rc, stages, err in failed:
        lines += ["", f"{title} exited {rc}: `{err.strip().splitlines()[-1] if err.strip() else ''}`"]
    Path(path).write_text("\n".join(lines) + "\n")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
