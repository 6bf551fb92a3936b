"""The finite-delta correction in d = 2 on the paper's 2D experiments (4.8), (4.9) at the paper's delta (issue 11).

For each experiment: ``learn_model`` with fit.delta_correction = "none" (raw U_delta),
then ``pipeline.correct_finite_delta(max_dim=2, potential=V)``: the fixed point (B4) on white-kick runs whose
kick covariance is the V-run's measured one (bayescg.bias.residual_kick_correlation's Z_matrix).  Writes
raw vs corrected RMSE and coverage of the reference (V_0), the correction's history and cost, CPU time and the
load average to run_2d_correction.json.

    python results/effective/run_2d_correction.py [--steps 2e7] [--bins 60] [--only "4.8 scalar friction"]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bayescg.config import load_model
from bayescg.pipeline import correct_finite_delta, learn_model, potential_from_model, reference_from_model, sim_kwargs

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent.parent / "models"
EXPERIMENTS = [
    ("4.8 two-stage", "test4-2d-quadratic.toml", {"fit.knots": 15}),
    ("4.8 scalar friction", "test4-2d-quadratic.toml", {"fit.knots": 15, "noise.calibrate": False}),
    ("4.9 Mueller-Brown", "test5-muller-brown.toml", {"fit.knots": 16}),
]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=float, default=2e7, help="steps of the main run and of each white-kick run")
    ap.add_argument("--method", default="map")
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--bins", type=int, default=0, help="histogram bins per dimension (0: the model file's)")
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=str(HERE / "run_2d_correction.json"))
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    out = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    for eid, fname, over in EXPERIMENTS:
        if only and eid not in only:
            continue
        # learn the raw U (learn corrects d = 2 by default now), then correct it here with its diagnostics
        over = dict(over, **{"simulation.steps": int(args.steps), "fit.method": args.method,
                             "fit.delta_correction": "none"})
        if args.bins:
            over["simulation.bins"] = args.bins
        model = load_model(MODELS / fname, over)
        t0, c0, load0 = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        res = learn_model(model)
        t1, c1 = time.perf_counter(), time.process_time()
        kw = sim_kwargs(model)
        if res.noise is not None:
            kw["friction"], kw["mass"] = np.asarray(res.noise.friction, float), np.eye(2)
        warns: list = []
        fs = model.fit
        fit, raw, corr, note = correct_finite_delta(
            res.simulation, res.fit, kw, mode="fixed_point", knots=fs.knots, mass_fraction=fs.mass_fraction,
            steps=int(args.steps), max_iter=args.iterations, min_iter=1, reference=reference_from_model(model),
            seed=model.simulation.seed, warnings=warns, potential=potential_from_model(model), max_dim=2)
        row = {"id": eid, "overrides": over, "delta": res.simulation.delta, "beta_hat": res.simulation.beta_hat,
               "raw_rmse": res.fit.reference_rmse, "raw_coverage": res.fit.reference_coverage,
               "learn_wall_s": t1 - t0, "learn_cpu_s": c1 - c0, "load_at_start": load0, "note": note,
               "warnings": warns + list(res.warnings)}
        if corr is not None:
            row.update({"corrected_rmse": fit.reference_rmse, "corrected_coverage": fit.reference_coverage,
                        "band_halfwidth_raw": float(np.mean((raw.U_upper - raw.U_lower)[raw.mass_region]) / 2),
                        "band_halfwidth_corrected": float(np.mean((fit.U_upper - fit.U_lower)[fit.mass_region]) / 2),
                        "correction": corr.to_dict()})
        row.update({"correction_wall_s": time.perf_counter() - t1, "correction_cpu_s": time.process_time() - c1,
                    "load_at_end": os.getloadavg()[0]})
        out[eid] = row
        Path(args.out).write_text(json.dumps(out, indent=1, default=float))
        print(eid, {k: row.get(k) for k in ("raw_rmse", "raw_coverage", "corrected_rmse", "corrected_coverage",
                                            "learn_wall_s", "correction_wall_s")}, flush=True)


if __name__ == "__main__":
    main()
