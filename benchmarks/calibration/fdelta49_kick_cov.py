"""Kick covariance of the V-run about its raw learned U: the global cubic residual (the old Z_matrix) against the
local estimate bias.kick_covariance (cell count by its fixed rule, and that count x 0.5 and x 1.5 per axis).

    python benchmarks/calibration/fdelta49_kick_cov.py --model 4.9 --steps 4e6 [--seed 1]

The V-run is learn_model's (two-stage calibration, MAP fit, no correction); the kicks come from white_noise_check's
fresh stretch of it (16 walkers x 20000 steps from the run's final states).  The known Z (micro-scales:
delta E[g g^T]) is printed for scoring only; nothing is chosen from it.  Output: fdelta49_kick_cov.json (appended).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bayescg.bias import kick_covariance, residual_kick_correlation
from bayescg.config import load_model
from bayescg.pipeline import learn_model

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent.parent / "models"
# model file, overrides, known Z from the micro-scales (grad of e sin(a.q/e) has covariance a a^T / 2)
CASES = {
    "4.9": ("test5-muller-brown.toml", {"fit.knots": 16},
            0.05163 * np.array([[1.0, -0.5], [-0.5, 0.5]])),
    "4.8": ("test4-2d-quadratic.toml", {"fit.knots": 15},
            0.05 * np.array([[1.0, 0.5], [0.5, 0.5]])),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="4.9")
    ap.add_argument("--steps", type=float, default=4e6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scalar", action="store_true", help="noise.calibrate = false (scalar friction)")
    a = ap.parse_args()
    fname, over, Zk = CASES[a.model]
    over = dict(over, **{"simulation.steps": int(a.steps), "simulation.seed": a.seed, "fit.method": "map",
                         "fit.delta_correction": "none", "noise.z_draws": 0, "noise.calibrate": not a.scalar})
    t0 = time.time()
    res = learn_model(load_model(MODELS / fname, over))
    sim, fit = res.simulation, res.fit
    from scipy.linalg import expm

    from bayescg.simulate import run_trajectories
    from bayescg.splines import SplineRep
    A, G = np.asarray(sim.mass, float), np.asarray(sim.friction, float)
    E = expm(-G @ A * sim.delta)
    idx = np.flatnonzero(np.all(np.isfinite(sim.final_q), axis=1))[:16]
    from bayescg.simulate import potential_from_model
    pot = potential_from_model(load_model(MODELS / fname, over))
    _, q, p = run_trajectories(pot, sim.delta, 20000 * sim.delta, sim.final_q[idx], sim.final_p[idx],
                               integrator="damped", friction=G, mass=A, seed=7, record_every=sim.delta)
    rep = SplineRep(fit.knots, fit.coef_mean)
    old = np.asarray(residual_kick_correlation(q, p, rep.gradient, delta=sim.delta, A=A, E=E)["Z_matrix_cubic"])
    r = residual_kick_correlation(q, p, rep.gradient, delta=sim.delta, A=A, E=E, return_kicks=True)
    qh = q[:-1] + 0.5 * sim.delta * np.einsum("ij,nwj->nwi", A, p[:-1])
    qh, r = qh.reshape(-1, 2), r.reshape(-1, 2)
    out = {"model": a.model, "steps": a.steps, "seed": a.seed, "scalar": a.scalar, "Z_known": Zk.tolist(),
           "Z_calibrated": None if res.noise is None else np.asarray(res.noise.noise_covariance).tolist(),
           "Z_cubic": old.tolist()}
    base = kick_covariance(qh, r, delta=sim.delta)
    k = base["cells"]
    out["rule_cells"] = k
    for name, kk, loc in (("rule", None, "linear"), ("x0.5", max(1, round(0.5 * k)), "linear"),
                          ("x1.5", round(1.5 * k), "linear"), ("rule_mean", None, "mean")):
        kc = kick_covariance(qh, r, delta=sim.delta, cells=kk, local=loc)
        out[name] = {"Z": np.asarray(kc["Z"]).tolist(), "cells": kc["cells"], "occupied": kc["occupied"]}
    out["seconds"] = time.time() - t0
    for key in ("Z_known", "Z_calibrated", "Z_cubic"):
        print(key, out[key])
    for name in ("rule", "x0.5", "x1.5", "rule_mean"):
        print(name, out[name])
    f = HERE / "fdelta49_kick_cov.json"
    rows = json.loads(f.read_text()) if f.exists() else []
    rows.append(out)
    f.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
