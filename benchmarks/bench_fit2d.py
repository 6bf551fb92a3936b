"""The 2D learn of issue 15 (``bayescg learn models/test4-2d-quadratic.toml --set simulation.steps=2e6``): CPU by
stage, NUTS tree depth and gradient evaluations per draw, and the gradient-evaluation throughput of the sparse 2D
kernel's layouts against a plain PyMC/PyTensor evaluation of the same posterior, all in one run.

    python benchmarks/bench_fit2d.py [--out benchmarks/RESULTS_FIT2D.md] [--skip-learn] [--rounds 8]

1. The C reference (as bench_end_to_end.py: gcc -O3 /work/shared/bench/c_reference.c, 2e7 steps) gives the unit.
2. The learn runs in one process under bench_end_to_end's stage harness (wall and CPU seconds of each stage of
   the run, this process's threads; the noise design's worker processes count in the process CPU only).
3. Its data (the same simulation: the learn's calibrated friction from its result.json, same seed) give the sparse
   density; logp + gradient per evaluation (CPU, median of interleaved rounds) of
     * the kernel's tensor layout (the 2D default), the per-cell layout (before) and the per-node layout;
     * PyTensor's compiled logp and dlogp (C backend) of ``build_effective_potential_model``: the same posterior of
       f in the dense form (sum-to-zero coefficients, eigen-whitening: the PyMC model the kernels are checked
       against; there is no PyMC model of the sparse parametrisation).
The machine is shared: the load average at the start and end is written with the results.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_end_to_end as e2e  # noqa: E402

LEARN = ["learn", "models/test4-2d-quadratic.toml", "--set", "simulation.steps=2e6"]

THROUGHPUT = textwrap.dedent("""
    import json, pickle, sys, time
    import numpy as np
    from bayescg.bayes.effective import (adaptive_whitening, build_effective_potential_model, effective_basis,
                                         map_estimate, map_estimate_sparse, sparse_cholesky, sparse_density)
    from bayescg.config import load_model
    from bayescg.fit import histogram_inputs
    from bayescg.simulate import potential_from_model, sim_kwargs, simulate
    from bayescg.runtime import pytensor_blas_flags
    friction, rounds = json.loads(sys.argv[1]), int(sys.argv[2])
    m = load_model("models/test4-2d-quadratic.toml", {"simulation.steps": 2000000})
    kw = sim_kwargs(m)
    if friction is not None:                      # the learn's calibrated friction: the learn's data exactly
        kw["friction"], kw["mass"] = np.asarray(friction), np.eye(2)
    sim = simulate(potential_from_model(m), m.simulation.delta, **kw)
    counts, edges, bh, bse, factor, n_eff, _ = histogram_inputs(sim)
    mom = {"beta_hat": bh, "beta_hat_se": bse}
    basis = effective_basis(edges, 25, counts=counts)
    a, s, H, r = map_estimate_sparse(basis, counts, factor)
    aw, sw, Hw, _ = map_estimate_sparse(basis, counts, factor, marginal_sigma=True, start=(a, s))
    chol = sparse_cholesky(Hw)
    dens = {lay: sparse_density(counts, basis, aw, chol, r, momenta_stats=mom, n_eff_factor=factor, sigma_init=sw,
                                layout=lay) for lay in ("tensor", "cell", "node")}
    # the PyMC model of the same posterior (dense form), its logp and dlogp compiled by PyTensor's C backend
    pytensor_blas_flags()
    b, sd, _, Hd = map_estimate(basis, counts, factor)
    model = build_effective_potential_model(counts, edges, basis=basis, momenta_stats=mom, n_eff_factor=factor,
                                            whitening=adaptive_whitening(basis, b, sd, Hd))
    fl, fg = model.compile_logp(), model.compile_dlogp()
    n = basis.n_coef - 1
    pt = {"z": np.zeros(n), "sigma_rw_log__": np.log(sd), "beta_log__": np.log(bh)}
    rng = np.random.default_rng(0)
    x = dens["tensor"].init_centre.copy()
    x[:basis.n_coef] = 0.3 * rng.standard_normal(basis.n_coef)
    ref = dens["cell"].logp_grad(x)
    check = {}
    for lay in ("tensor", "node"):
        lp, g = dens[lay].logp_grad(x)
        check[lay] = {"logp_diff": float(lp - ref[0]),
                      "grad_max_rel_diff": float(np.abs(g - ref[1]).max() / np.abs(ref[1]).max())}
    fns = {"kernel, tensor layout (now)": (lambda: dens["tensor"].logp_grad(x), 300),
           "kernel, per-cell layout (before)": (lambda: dens["cell"].logp_grad(x), 300),
           "kernel, per-node layout": (lambda: dens["node"].logp_grad(x), 200),
           "PyTensor logp + dlogp (PyMC model, dense form)": (lambda: (fl(pt), fg(pt)), 40)}
    times = {k: [] for k in fns}
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1, user_api="blas"):   # no BLAS threads spinning after PyTensor's round
        for _ in range(rounds):                   # interleaved: the load changes during the run
            for k, (f, reps) in fns.items():
                f()
                c = time.thread_time()            # this thread's CPU only
                for _ in range(reps):
                    f()
                times[k].append((time.thread_time() - c) / reps)
    out = {"coefficients": int(basis.n_coef), "active_cells": int(basis.active.sum()),
           "gauss_nodes_per_cell": int(basis.quad ** 2), "nnz_L": int(chol.L.nnz), "layout_check": check,
           "cpu_s_per_eval": {k: sorted(v)[len(v) // 2] for k, v in times.items()},
           "cpu_s_per_eval_min": {k: min(v) for k, v in times.items()}}
    print(json.dumps(out))
""")


def learn_numbers(out_dir: Path) -> dict:
    res = json.loads((out_dir / "result.json").read_text())
    noise = res.get("noise") or {}
    return {"fit_diagnostics": res.get("diagnostics"), "noise_diagnostics": noise.get("diagnostics"),
            "friction": noise.get("friction"), "reference_rmse": res.get("reference_rmse"),
            "posterior_nc_mb": (out_dir / "posterior.nc").stat().st_size / 1e6}


def main(argv=None):
    global ROOT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "RESULTS_FIT2D.md"))
    ap.add_argument("--skip-learn", action="store_true", help="only the throughput part (friction of --result)")
    ap.add_argument("--result", help="a learn's result.json whose calibrated friction the throughput data use")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--root", help="the checkout whose bayescg the learn runs (default: this one; e.g. main, for a "
                    "before/after of the learn; the throughput part needs this checkout's layouts)")
    a = ap.parse_args(argv)
    if a.root:
        ROOT = Path(a.root).resolve()
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    load0 = os.getloadavg()
    start = datetime.now(timezone.utc)
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        unit0 = e2e.c_unit(tmp)
        learn = None
        friction = None
        if a.result:
            friction = json.loads(Path(a.result).read_text())["noise"]["friction"]
        if not a.skip_learn:
            print("learn (stages) ...", file=sys.stderr, flush=True)
            e2e.ROOT = ROOT
            wall, cpu, rec = e2e.run_stages(LEARN, env, tmp / "out-2d", tmp)
            learn = (wall, cpu, rec, learn_numbers(tmp / "out-2d") if rec["rc"] == 0 else {})
            friction = learn[3].get("friction", friction)
        thr = None
        if not a.skip_throughput:
            print("throughput ...", file=sys.stderr, flush=True)
            p = subprocess.run([sys.executable, "-c", THROUGHPUT, json.dumps(friction), str(a.rounds)], cwd=ROOT,
                               env=env, capture_output=True, text=True)
            if p.returncode:
                sys.exit(p.stderr[-2000:])
            thr = json.loads(p.stdout.strip().splitlines()[-1])
        unit1 = e2e.c_unit(tmp)
    load1 = os.getloadavg()
    unit = min(unit0, unit1)
    cu = min(e2e.C_CPU)
    L = [f"# 2D learn: CPU by stage and kernel throughput (`benchmarks/bench_fit2d.py`)", "",
         f"Checkout: `{ROOT}` ({subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}).", "",
         f"{start:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores; load average (1, 5, 15 min) start "
         f"{' '.join(f'{v:.1f}' for v in load0)}, end {' '.join(f'{v:.1f}' for v in load1)}.  C unit {unit:.2f} s wall "
         f"(start {unit0:.2f}, end {unit1:.2f}), C CPU unit {cu:.2f} s.  The machine is shared: compare CPU, and rows "
         "of the same run.", ""]
    if learn:
        wall, cpu, rec, nums = learn
        L += e2e.stage_table(f"`bayescg {' '.join(LEARN)}`", wall, cpu, rec, unit)
        fd, nd = nums.get("fit_diagnostics") or {}, nums.get("noise_diagnostics") or {}
        L += ["| NUTS | tree depth (mean) | gradient evaluations per draw | r_hat max | ess bulk min | divergences |",
              "|---|---|---|---|---|---|"]
        for name, dg in (("effective potential (sparse 2D)", fd), ("noise model Z", nd)):
            L.append(f"| {name} | {dg.get('tree_depth_mean', float('nan')):.2f} | "
                     f"{dg.get('grad_evals_per_draw', float('nan')):.1f} | {dg.get('r_hat_max', float('nan')):.3f} | "
                     f"{dg.get('ess_bulk_min', float('nan')):.0f} | {dg.get('divergences')} |")
        L += ["", f"reference RMSE {nums.get('reference_rmse')}; posterior.nc {nums.get('posterior_nc_mb', 0):.1f} MB.",
              ""]
    if thr is not None:
        L += throughput_lines(thr)
    text = "\n".join(L)
    Path(a.out).write_text(text)
    print(text)


def throughput_lines(thr) -> list:
    L = ["### logp + gradient of the 2D posterior, CPU per evaluation (this thread's CPU, BLAS on one thread; median of interleaved rounds)", "",
          f"{thr['coefficients']} kept coefficients, {thr['active_cells']} active cells x "
          f"{thr['gauss_nodes_per_cell']} Gauss nodes, nnz(L) = {thr['nnz_L']}.", "",
          "| evaluation | CPU us / eval | evals / CPU s | vs tensor layout |", "|---|---|---|---|"]
    ref = thr["cpu_s_per_eval"]["kernel, tensor layout (now)"]
    for k, v in thr["cpu_s_per_eval"].items():
        L.append(f"| {k} | {1e6 * v:.0f} | {1 / v:.0f} | {v / ref:.2f}x slower |" if v != ref else
                 f"| {k} | {1e6 * v:.0f} | {1 / v:.0f} | 1 |")
    L += ["", "Layouts against the per-cell layout at one point: " + "; ".join(
        f"{k}: logp diff {c['logp_diff']:.1e}, gradient max rel diff {c['grad_max_rel_diff']:.1e}"
        for k, c in thr["layout_check"].items()) + ".", ""]
    return L


if __name__ == "__main__":
    main()
