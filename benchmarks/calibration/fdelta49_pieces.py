"""(4.9) Mueller-Brown: the 2D finite-delta correction with its pieces switched on one at a time, on one V-run.

    python benchmarks/calibration/fdelta49_pieces.py --steps 4e6 [--seed 1] [--variants A,B,C,D]

One learn (two-stage calibration, MAP, no correction), then bias.fixed_point_correction on white-kick runs of as
many steps, 6 runs, for each variant:
  A: minimum-curvature continuation (min_curvature_continuation_2d), no refusal, kick shape = global-cubic residual (the code before)
  B: as A with the local kick covariance (bias.kick_covariance)
  C: stable continuation (bias.stable_continuation_2d) + refusal + local kick covariance
  D: C with the calibrated Z as the kick shape (the default of pipeline.correct_finite_delta for two-stage runs)
Backtracking on a blown-up run is on in all (the fixed point's code); a failed start is reported.  The reference
(V_0) is read only for the scores.  Output: fdelta49_pieces.json (appended).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bayescg.bias import (corrected_fit, damped_white_learner, fixed_point_correction,
                          white_noise_check)
from bayescg.config import load_model
from bayescg.errors import InputError, SimulationError
from bayescg.pipeline import learn_model
from bayescg.simulate import potential_from_model, reference_from_model, sim_kwargs

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent.parent / "models"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=float, default=4e6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--variants", default="A,B,C,D")
    a = ap.parse_args()
    over = {"fit.knots": 16, "simulation.steps": int(a.steps), "simulation.seed": a.seed, "fit.method": "map",
            "fit.delta_correction": "none", "noise.z_draws": 0}
    model = load_model(MODELS / "test5-muller-brown.toml", over)
    res = learn_model(model)
    sim, fit = res.simulation, res.fit
    pot, ref = potential_from_model(model), reference_from_model(model)
    kw = sim_kwargs(model)
    kw["friction"], kw["mass"] = np.asarray(res.noise.friction, float), np.eye(2)
    chk = white_noise_check(pot, sim, fit.knots, fit.coef_mean, fit.coef_mean)[0]["raw"]
    shapes = {"cubic": np.asarray(chk["Z_matrix_cubic"]), "local": np.asarray(chk["Z_matrix"]),
              "calibrated": np.asarray(res.noise.noise_covariance)}
    variants = {"A": ("min_curvature", False, "cubic"), "B": ("min_curvature", False, "local"),
                "C": ("stable", True, "local"), "D": ("stable", True, "calibrated")}
    base = {"steps": a.steps, "seed": a.seed, "rmse_raw": fit.reference_rmse, "coverage_raw": fit.reference_coverage,
            "shapes": {k: v.tolist() for k, v in shapes.items()}, "Z_cells": chk.get("Z_matrix_cells")}
    print(json.dumps(base), flush=True)
    for v in a.variants.split(","):
        cont, refuse, sh = variants[v]
        learn = damped_white_learner(sim, kw, knots=16, steps=int(a.steps), seed=a.seed + 1)
        t0 = time.time()
        row = dict(base, variant=v, continuation=cont, refuse=refuse, shape=sh)
        try:
            corr = fixed_point_correction(fit.knots, fit.coef_mean, learn, grid=fit.grid, weights=fit.grid_weights,
                                          region=fit.mass_region, var_p=1.0 / sim.beta_hat, delta=sim.delta,
                                          gamma=sim.gamma, mass=sim.mass, friction=sim.friction, max_iter=6,
                                          noise_shape=shapes[sh], continuation=cont, refuse_unstable=refuse)
            out = corrected_fit(fit, corr, ref, rng_seed=a.seed)
            row.update(rmse=out.reference_rmse, coverage=out.reference_coverage, converged=corr.converged,
                       history=corr.history)
        except (InputError, SimulationError) as exc:
            row.update(error=f"{exc.__class__.__name__}: {exc}")
        row["seconds"] = time.time() - t0
        print(json.dumps({k: row.get(k) for k in ("variant", "rmse_raw", "rmse", "coverage", "converged", "error",
                                                  "seconds")}), flush=True)
        print(json.dumps(row.get("history"), default=float), flush=True)
        f = HERE / "fdelta49_pieces.json"
        rows = json.loads(f.read_text()) if f.exists() else []
        rows.append(row)
        f.write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
