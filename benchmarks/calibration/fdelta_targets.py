"""The finite-delta correction's three targets of issue 11 (item 2), measured, with the white-noise diagnostic.

    python benchmarks/calibration/fdelta_targets.py [--only test1,test3,test2] [--correction-steps-factor 1]
        [--out fdelta_targets.json]

Each target: `learn` of the model file (MAP fit) with the fixed-point correction (bayescg.bias, B4), the raw and
corrected RMSE / coverage against the reference, the correction's Monte Carlo error and the residual-kick
autocorrelation (bayescg.bias.residual_kick_correlation) of the raw and of the corrected U_c on a short recorded
stretch of the V-run.  Settings are the issue's; nothing here reads the reference except the scoring.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bayescg.config import load_model
from bayescg.pipeline import learn_model, potential_from_model

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent.parent / "models"
TARGETS = {
    "test1": ("test1-quadratic.toml", {"simulation.steps": 2e7}, 0.01),
    "test3": ("test3-cosine-series.toml", {"simulation.steps": 2e7}, 0.3),
    "test2": ("test2-double-well.toml", {"simulation.steps": 4e6, "simulation.delta": 0.3}, 0.01),
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="test1,test3,test2")
    ap.add_argument("--correction-steps-factor", type=float, default=1.0)
    ap.add_argument("--iterations", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "fdelta_targets.json"))
    a = ap.parse_args(argv)
    for key in a.only.split(","):
        fname, over, target = TARGETS[key]
        over = dict(over, **{"fit.method": "map", "simulation.seed": a.seed,
                             "fit.correction_iterations": a.iterations})
        over["fit.correction_steps"] = int(a.correction_steps_factor * over["simulation.steps"])
        model = load_model(MODELS / fname, over)
        t0 = time.perf_counter()
        res = learn_model(model)
        wall = time.perf_counter() - t0
        raw, fit, corr = res.raw_fit, res.fit, res.correction
        row = {"target": key, "model": fname, "overrides": over, "rmse_target": target, "wall_s": wall,
               "rmse_raw": raw.reference_rmse, "rmse_corrected": fit.reference_rmse,
               "coverage_raw": raw.reference_coverage, "coverage_corrected": fit.reference_coverage,
               "correction": corr.to_dict() if corr is not None else None, "note": res.correction_note,
               "warnings": res.warnings, "diagnostic": corr.white_noise_check if corr is not None else None}
        print(json.dumps({k: row[k] for k in ("target", "rmse_raw", "rmse_corrected", "coverage_raw",
                                              "coverage_corrected", "wall_s", "diagnostic")}), flush=True)
        if corr is not None:
            print(json.dumps(corr.history), flush=True)
        old = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else []
        Path(a.out).write_text(json.dumps(old + [row], indent=1, default=float))


if __name__ == "__main__":
    main()
