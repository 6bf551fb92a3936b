"""How much of U's band comes from the noise covariance Z (issue 11, item 3): one calibrated 2D learn run.

``bayescg learn``'s pipeline on (4.8) (models/test4-2d-quadratic.toml) at a small budget: stage 1 with the
Bayesian Z, stage 2, the main run and fit (MAP + Laplace, walker sandwich), then ``noise.z_draws`` posterior
draws of Z re-run and re-fitted (bayescg.pipeline.noise_part_of_band).  Writes the numbers to z_part.json.

    nice python benchmarks/calibration/z_part.py
"""
import json
import time
from pathlib import Path

from bayescg.config import load_model
from bayescg.pipeline import learn_model

HERE = Path(__file__).parent
OVERRIDES = {"simulation.steps": 8_000_000, "simulation.bins": 60, "noise.steps": 2_000_000, "noise.z_draws": 4,
             "fit.method": "map", "fit.knots": 15}

if __name__ == "__main__":
    t0 = time.time()
    model = load_model(HERE.parents[1] / "models" / "test4-2d-quadratic.toml", OVERRIDES)
    res = learn_model(model)
    d = res.to_dict()
    out = {"overrides": OVERRIDES, "wall_seconds": time.time() - t0,
           "noise_covariance": d["noise_covariance"], "noise_covariance_sd": d["noise"]["noise_covariance_sd"],
           "noise_part_of_band": d.get("noise_part_of_band"), "band_calibration": d.get("band_calibration"),
           "reference_rmse": d.get("reference_rmse"), "reference_coverage": d.get("reference_coverage"),
           "warnings": d["warnings"]}
    (HERE / "z_part.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))
