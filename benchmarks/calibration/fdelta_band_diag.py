"""Pointwise diagnosis of the corrected band on Test 1 (issue 11 item 2, branch fdelta1d): where the corrected U
misses q^2/2, is it a bias or a too-narrow band?  Runs `learn` as fdelta_targets.py --only test1 does and saves
the curves (grid, raw / corrected mean and band, reference aligned like the band, correction and its se, the
fixed point's history) to fdelta_band_diag_seed{N}.npz.  The reference is used only for scoring.

    python benchmarks/calibration/fdelta_band_diag.py --seed 2 [--steps 2e7]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bayescg.config import load_model
from bayescg.pipeline import learn_model

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent.parent / "models"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--steps", type=float, default=2e7)
    ap.add_argument("--tag", default="")
    ap.add_argument("--kick-seeds", type=int, default=0,
                    help="if > 0: the kick-shape step with seeds 1..N (per-seed shifts saved) instead of (1, 2)")
    ap.add_argument("--kick-steps-check", type=float, default=0.0,
                    help="if > 0: also evaluate the kick-shape shift at that multiple of its steps (seeds 1, 2; "
                         "saved as kick_shift_more, not applied)")
    a = ap.parse_args(argv)
    per_seed = {}
    if a.kick_steps_check:
        import time

        import bayescg.bias as bias
        orig_shift2 = bias.kick_shape_shift

        def shift2(*args, steps, **kw):
            t0 = time.process_time()
            out = orig_shift2(*args, steps=steps, **kw)
            t1 = time.process_time()
            more = orig_shift2(*args, steps=int(a.kick_steps_check * steps), **kw)
            per_seed.update(grid=out[0], shift=out[1], shift_more=more[1], se_more=more[2],
                            cpu=[t1 - t0, time.process_time() - t1])
            return out
        bias.kick_shape_shift = shift2
    if a.kick_seeds:
        import bayescg.bias as bias
        orig_shift = bias.kick_shape_shift

        def shift(*args, seeds=(1, 2), **kw):
            rows = [orig_shift(*args, seeds=(k,), **kw) for k in range(1, a.kick_seeds + 1)]
            per_seed["grid"] = rows[0][0]
            per_seed["shifts"] = np.array([r[1] for r in rows])
            sh = per_seed["shifts"]
            return rows[0][0], sh.mean(axis=0), sh.std(axis=0, ddof=1) / np.sqrt(len(sh)), rows[0][3]
        bias.kick_shape_shift = shift
    over = {"simulation.steps": a.steps, "fit.method": "map", "simulation.seed": a.seed,
            "fit.correction_iterations": 6, "fit.correction_steps": int(a.steps)}
    res = learn_model(load_model(MODELS / "test1-quadratic.toml", over))
    raw, fit, corr = res.raw_fit, res.fit, res.correction
    out = HERE / f"fdelta_band_diag_seed{a.seed}{a.tag}.npz"
    np.savez(out, grid=fit.grid[:, 0], region=fit.mass_region, w=fit.grid_weights,
             raw_mean=raw.U_mean, raw_lo=raw.U_lower, raw_hi=raw.U_upper,
             mean=fit.U_mean, lo=fit.U_lower, hi=fit.U_upper, ref=fit.reference_grid,
             correction=corr.correction, correction_se=corr.correction_se, factor=corr.factor,
             history=json.dumps(corr.history), kick_shape=json.dumps(corr.kick_shape),
             kick_grid=per_seed.get("grid", np.zeros(0)), kick_shifts=per_seed.get("shifts", np.zeros((0, 0))),
             kick_shift=per_seed.get("shift", np.zeros(0)), kick_shift_more=per_seed.get("shift_more", np.zeros(0)),
             kick_se_more=per_seed.get("se_more", np.zeros(0)), kick_cpu=per_seed.get("cpu", []))
    print(json.dumps({"seed": a.seed, "rmse_raw": raw.reference_rmse, "rmse": fit.reference_rmse,
                      "coverage": fit.reference_coverage, "converged": corr.converged,
                      "kick_shape": corr.kick_shape, "history": corr.history}, default=float))


if __name__ == "__main__":
    main()
