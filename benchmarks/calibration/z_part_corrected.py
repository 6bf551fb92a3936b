"""Does the finite-delta corrected U depend on Z as much as the raw U does? (issue 11, item 3 with the 2D correction)

One seed of ``bayescg learn`` on (4.8) (models/test4-2d-quadratic.toml, the settings of the 2D corrected replicate
study: 2e6 steps, 60 x 60 bins, 15 knots, MAP): stage 1 once, then the main run, its MAP fit and learn's
finite-delta correction (pipeline.correct_finite_delta, as learn calls it) are repeated at several frictions
Gamma = Z / 2:
  * Z_hat (stage 1's estimate, what learn uses),
  * the posterior draws of Z that ``pipeline.noise_part_of_band`` picks (same rng, ``z_draws`` of them),
  * the same draws pushed AMP times further from Z_hat (Z_hat + AMP (Z_k - Z_hat)): the Z-driven change of U grows
    AMP-fold while each run's own sampling noise does not, so the sensitivity of U to Z is measured above the noise.
For the raw and the corrected U it writes the RMS over the mass region of U(Z) - U(Z_hat) (count-weighted
alignment as noise_part_of_band), each run's own band variance (the 'within' of noise_part_of_band), and the
between-draw variance minus within for the unamplified draws (noise_part_of_band's estimator).  -> z_part_corrected.json

    nice python benchmarks/calibration/z_part_corrected.py [--seed 1] [--amp 3]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bayescg.bias import Z94
from bayescg.config import FitSection, NoiseSection, load_model
from bayescg.fit import fit_effective_potential, grid_weights
from bayescg.noise import calibrate
from bayescg.pipeline import (correct_finite_delta, estimate_noise_model, potential_from_model,
                              reference_from_model, sim_kwargs)
from bayescg.simulate import simulate

HERE = Path(__file__).parent
MODEL = HERE.parents[1] / "models" / "test4-2d-quadratic.toml"
OVERRIDES = {"simulation.steps": 2_000_000, "simulation.bins": 60, "fit.knots": 15, "fit.method": "map"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--amp", type=float, default=3.0)
    ap.add_argument("--out", default=str(HERE / "z_part_corrected.json"))
    a = ap.parse_args()
    t00, load0 = time.time(), os.getloadavg()[0]
    model = load_model(MODEL, dict(OVERRIDES, **{"simulation.seed": a.seed}))
    s, fs, ns = model.simulation, model.fit or FitSection(), model.noise or NoiseSection()
    pot, ref = potential_from_model(model), reference_from_model(model)
    seed = fs.seed if fs.seed is not None else s.seed
    t = time.time()
    noise = estimate_noise_model(model)
    print(f"stage 1: {time.time() - t:.0f} s, Z = {np.asarray(noise.noise_covariance).tolist()}", flush=True)
    zs = noise.idata.posterior["Z"].values.reshape(-1, 2, 2)
    pick = np.random.default_rng(seed).choice(len(zs), size=min(ns.z_draws, len(zs)), replace=False)
    z_hat = np.asarray(noise.noise_covariance, float)
    runs = [("Z_hat", z_hat, np.asarray(noise.friction, float))]
    for i, k in enumerate(pick):
        runs.append((f"draw{i}", zs[k], calibrate(zs[k])[1]))
    for i, k in enumerate(pick):
        za = z_hat + a.amp * (zs[k] - z_hat)
        runs.append((f"draw{i}x{a.amp:g}", za, calibrate(za)[1]))
    base = None
    rows = []
    for name, Z, G in runs:
        t = time.time()
        kw = dict(sim_kwargs(model), friction=G, mass=np.eye(2))
        sim = simulate(pot, s.delta, **kw)
        fit = fit_effective_potential(sim, knots=fs.knots, method="map", seed=seed, reference=ref,
                                      mass_fraction=fs.mass_fraction)
        raw_within = float(np.var(fit.U_draws, axis=0, ddof=1)[fit.mass_region].mean())
        warns: list = []
        fc, raw, corr, note = correct_finite_delta(
            sim, fit, kw, mode=fs.delta_correction, knots=fs.knots, mass_fraction=fs.mass_fraction,
            steps=fs.correction_steps or s.steps, max_iter=fs.correction_iterations,
            min_iter=fs.correction_min_iterations, reference=ref, seed=seed,
            warnings=warns, potential=pot)
        if base is None:
            base = fit
            w = grid_weights(fit)
            w = w / w.sum()
            reg = fit.mass_region
        ur = fit.spline().value(base.grid)
        uc = fc.spline().value(base.grid)
        hw_c = 0.5 * (fc.U_upper - fc.U_lower)
        row = {"name": name, "Z": np.asarray(Z).tolist(), "friction": np.asarray(G).tolist(),
               "raw": (ur - w @ ur), "corrected": (uc - w @ uc),
               "raw_within_var": raw_within,  # the main band's draws' variance (noise_part_of_band's var_band)
               "raw_sandwich_var": float(fit.band_calibration.get("sandwich_var_mean", np.nan)),
               "corrected_within_var": float(np.mean((hw_c[fc.mass_region] / Z94) ** 2)),
               "correction_se_var": float(np.mean(np.asarray(corr.correction_se)[fc.mass_region] ** 2))
               if corr is not None else None,
               "jacobian_factor": float(corr.factor) if corr is not None else None,
               "converged": bool(corr.converged) if corr is not None else None,
               "iterations": int(corr.iterations) if corr is not None else None,
               "raw_rmse_V0": fit.reference_rmse, "corrected_rmse_V0": fc.reference_rmse,
               "beta_hat": float(sim.beta_hat), "note": note, "warnings": warns, "seconds": time.time() - t}
        rows.append(row)
        print(f"{name}: {row['seconds']:.0f} s, raw rmse {fit.reference_rmse:.4f}, corrected "
              f"{fc.reference_rmse:.4f}, converged {row['converged']}", flush=True)
    U = {k: np.array([r[k] for r in rows]) for k in ("raw", "corrected")}
    out = {"settings": dict(OVERRIDES, seed=a.seed, amp=a.amp, z_draws=int(ns.z_draws)),
           "noise_covariance": z_hat.tolist(), "noise_covariance_sd": np.asarray(noise.noise_covariance_sd).tolist()
           if getattr(noise, "noise_covariance_sd", None) is not None else None,
           "load_start": load0, "load_end": os.getloadavg()[0], "wall_seconds": time.time() - t00,
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    nd = len(pick)
    for k in ("raw", "corrected"):
        u = U[k][:, reg]
        within = np.mean([r[f"{k}_within_var"] for r in rows[: nd + 1]])
        between = float(u[1: nd + 1].var(axis=0, ddof=1).mean())  # the draws only, as noise_part_of_band
        out[k] = {"rms_change_per_draw": [float(np.sqrt(np.mean((u[i] - u[0]) ** 2))) for i in range(1, len(rows))],
                  "names": [r["name"] for r in rows[1:]],
                  "between_draw_var": between, "within_var_mean": float(within),
                  "z_var_estimate": max(0.0, between - within),
                  # sensitivity from the amplified draws: the mean square change per unit of (Z_k - Z_hat),
                  # minus the two runs' own noise (2 x within), divided by amp^2 -> the variance Z's draws cause
                  "z_var_from_amplified": float(max(0.0, np.mean([np.mean((u[i] - u[0]) ** 2)
                                                                   for i in range(nd + 1, len(rows))]) - 2 * within)
                                                / a.amp ** 2)}
    out["runs"] = [{k: v for k, v in r.items() if k not in ("raw", "corrected")} for r in rows]
    Path(a.out).write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps({k: out[k] for k in ("raw", "corrected")}, indent=1))


if __name__ == "__main__":
    main()
