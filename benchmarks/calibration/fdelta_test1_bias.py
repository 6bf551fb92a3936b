"""Test 1 (delta 0.5, 2e7 steps): where the corrected U's error comes from, per seed (branch fdelta1d).

    python benchmarks/calibration/fdelta_test1_bias.py --seeds 1,2,3 [--no-kick-shape] [--kick-shape-twice]

For each seed: `learn` (MAP, 6 white runs at most) and the corrected U's error against q^2/2 on the report grid
(aligned by the count weights over the mass region), its coverage, the mean band half-width and its parts, and a
least-squares quadratic a + b q + c q^2 fitted to the error (c: half the curvature error).  Then the seed-mean
error and the seed spread.  --no-kick-shape skips bayescg.bias.apply_kick_shape; --kick-shape-twice evaluates the
kick-shape shift a second time at the corrected U and uses it instead (a test of its first-order step).
q^2/2 is used only for scoring.  Output appended to fdelta_test1_bias.json.
"""
from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np

import bayescg.bias as bb
from bayescg.config import load_model
from bayescg.pipeline import learn_model

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--no-kick-shape", action="store_true")
    ap.add_argument("--kick-shape-twice", action="store_true")
    a = ap.parse_args(argv)
    orig = bb.apply_kick_shape
    if a.no_kick_shape:
        bb.apply_kick_shape = lambda *args, **kw: None
    elif a.kick_shape_twice:
        def twice(corr, target, sim, kicks, **kw):
            c0 = copy.deepcopy(corr)
            orig(corr, target, sim, kicks, **kw)
            c1 = copy.deepcopy(corr)
            orig(corr, target, sim, kicks, **kw)
            corr.coef_shift = corr.coef_shift - (c1.coef_shift - c0.coef_shift)
            corr.correction = corr.correction - (c1.correction - c0.correction)
        bb.apply_kick_shape = twice
    rows, errs = [], []
    for seed in [int(s) for s in a.seeds.split(",")]:
        over = {"simulation.steps": 2e7, "simulation.seed": seed, "fit.method": "map",
                "fit.correction_iterations": 6, "fit.correction_steps": int(2e7)}
        res = learn_model(load_model(HERE.parent.parent / "models" / "test1-quadratic.toml", over))
        raw, fit, c = res.raw_fit, res.fit, res.correction
        x = fit.grid[:, 0]
        reg = np.asarray(raw.mass_region, dtype=bool)
        w = np.asarray(raw.grid_weights, dtype=float) * reg
        w = w / w.sum()
        e = (fit.U_mean - w @ fit.U_mean) - (x ** 2 / 2 - w @ (x ** 2 / 2))
        half = (fit.U_upper - fit.U_lower) / 2
        A = np.vstack([np.ones(reg.sum()), x[reg], x[reg] ** 2]).T
        quad = np.linalg.lstsq(A, e[reg], rcond=None)[0]
        rows.append({"seed": seed, "rmse_corrected": fit.reference_rmse, "coverage_corrected": fit.reference_coverage,
                     "rmse_grid": float(np.sqrt(np.mean(e[reg] ** 2))),
                     "coverage_grid": float(np.mean(np.abs(e[reg]) <= half[reg])),
                     "half_width_mean": float(half[reg].mean()),
                     "raw_part_mean": float(c.factor * ((raw.U_upper - raw.U_lower) / 2)[reg].mean()),
                     "mc_part_mean": float(bb.Z94 * np.interp(x, c.grid, c.correction_se)[reg].mean()),
                     "error_quadratic_abc": quad.tolist(),
                     "rms_error_over_band_sd": float(np.sqrt(np.mean((e / half * bb.Z94)[reg] ** 2))),
                     "kick_shape": c.kick_shape, "history": c.history})
        errs.append(e)
        print(json.dumps({k: rows[-1][k] for k in ("seed", "rmse_corrected", "coverage_corrected", "half_width_mean",
                                                   "error_quadratic_abc", "rms_error_over_band_sd")}), flush=True)
    E = np.array(errs)
    summary = {"mode": "no kick shape" if a.no_kick_shape else "kick shape twice" if a.kick_shape_twice else "default",
               "rms_seed_mean_error": float(np.sqrt(np.mean(E.mean(0)[reg] ** 2))),
               "rms_seed_sd": float(np.sqrt(np.mean(E.std(0, ddof=1)[reg] ** 2))) if len(E) > 1 else None,
               "rows": rows}
    print(json.dumps({k: summary[k] for k in ("mode", "rms_seed_mean_error", "rms_seed_sd")}))
    out = HERE / "fdelta_test1_bias.json"
    old = json.loads(out.read_text()) if out.exists() else []
    out.write_text(json.dumps(old + [summary], indent=1, default=float))


if __name__ == "__main__":
    main()
