"""Profile of the 2D effective-potential fit: dense form (sum-to-zero coordinates, sigma-adaptive eigen-whitening,
O(m^2) per gradient) against the sparse form (kept coefficients, Poisson with a free constant, sparse Cholesky
whitening, linear in the occupied cells).  benchmarks/RESULTS_D3.md has the numbers.

    python benchmarks/d3_profile_2d.py SIM.pkl [--knots 25] [--chains 2 --tune 300 --draws 200] [--forms dense,sparse]

SIM.pkl: a pickled SimulationResult (e.g. the calibrated main run of models/test4-2d-quadratic.toml at 2e6 steps).
CPU times (time.process_time, this process and its sampler threads) next to wall times: the machine is shared.
"""
import argparse
import json
import os
import pickle
import time

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("sim")
    ap.add_argument("--knots", type=int, default=25)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--tune", type=int, default=300)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--forms", default="dense,sparse")
    ap.add_argument("--low-rank", action="store_true", help="also nutpie's low-rank mass matrix (sparse form)")
    args = ap.parse_args()
    from bayescg.bayes.effective import (adaptive_whitening, effective_basis, effective_density, map_estimate,
                                         map_estimate_sparse, sparse_cholesky, sparse_density)
    from bayescg.fit import histogram_inputs
    import nutpie

    sim = pickle.load(open(args.sim, "rb"))
    counts, edges, bh, bse, factor, n_eff, _ = histogram_inputs(sim)
    mom = {"beta_hat": bh, "beta_hat_se": bse}
    basis = effective_basis(edges, args.knots, counts=counts)
    out = {"load_average_start": os.getloadavg(), "knots": args.knots, "coefficients_kept": basis.n_coef,
           "active_cells": int(basis.active.sum()), "gauss_points": basis.quad ** 2,
           "nuts": f"{args.chains} chains x ({args.tune} tune + {args.draws} draws)"}
    runs = [(f, False) for f in args.forms.split(",")] + ([("sparse", True)] if args.low_rank else [])
    for form, low_rank in runs:
        row = {}
        c0, w0 = time.process_time(), time.perf_counter()
        if form == "dense":
            b, s, H, Hd = map_estimate(basis, counts, factor)
            row["map_cpu_s"] = time.process_time() - c0
            dens = effective_density(counts, basis, adaptive_whitening(basis, b, s, Hd), momenta_stats=mom,
                                     n_eff_factor=factor, sigma_init=s)
        else:
            a, s, H, rank = map_estimate_sparse(basis, counts, factor)
            row["map_cpu_s"] = time.process_time() - c0
            dens = sparse_density(counts, basis, a, sparse_cholesky(H), rank, momenta_stats=mom, n_eff_factor=factor,
                                  sigma_init=s)
        row["setup_cpu_s"] = time.process_time() - c0 - row["map_cpu_s"]
        x = dens.initial_point(0)
        dens.logp_grad(x)
        n = 300
        c1 = time.process_time()
        for _ in range(n):
            dens.logp_grad(x)
        row["grad_cpu_ms"] = (time.process_time() - c1) / n * 1e3
        c2, w2 = time.process_time(), time.perf_counter()
        kw = dict(draws=args.draws, tune=args.tune, chains=args.chains, seed=1, progress_bar=False, cores=1,
                  target_accept=0.95)
        if low_rank:
            kw["low_rank_modified_mass_matrix"] = True
        idata = nutpie.sample(dens.callbacks().to_nutpie(), **kw)
        row["nuts_cpu_s"] = time.process_time() - c2
        row["nuts_wall_s"] = time.perf_counter() - w2
        ss = idata.sample_stats
        row["tree_depth_mean"] = float(ss["depth"].mean())
        row["grad_evals_per_draw"] = float(ss["n_steps"].mean())
        row["step_size"] = float(ss["step_size"].mean())
        row["divergences"] = int(ss["diverging"].sum())
        row["total_cpu_s"] = time.process_time() - c0
        row["total_wall_s"] = time.perf_counter() - w0
        out[form + ("+low_rank" if low_rank else "")] = row
        print(json.dumps({form: row}), flush=True)
    out["load_average_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
