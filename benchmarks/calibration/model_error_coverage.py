"""Does the kick-shape step's size predict how far the corrected 1D band falls short of U_k?  (issue 11)

    python benchmarks/calibration/model_error_coverage.py --case test1-d0.5 --seeds 16 --steps 4e6 [--out F]

kicks_at_truth.py measured the corrected U's model error at the truth (what is left when U_0 is put into the
complete noise model: L_delta[V] - L_kicks[U_0], Monte Carlo part removed) against the size of the kick-shape
step there (L_kicks - L_gauss): ratio c = 0.48 (Test 1 delta 0.5), 0.55 (double well delta 0.25), 0.39 (double
well delta 0.3), taking the step's per-seed RMS (what one run sees).  If the model error is about c x the run's own
kick-shape shift, pointwise, the corrected band's coverage of U_k is predicted as the mean over the mass region of
P(|N(0, 1) + c s |shift(q)| / sd(q)| < Z94) (sd: the band's half-width / Z94, s the correction's factor).  This
script runs learn's correction on replicate seeds (replicates.py's cases and _correct, i.e. what learn does),
records each seed's pointwise shift, and compares that prediction (c = 0.39 and 0.55) with the measured coverage of
U_0.  U_0 is used only for the measured coverage.  Output: model_error_coverage-<case>-<steps>.json.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats as st

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from replicates import CASES, _correct, catalogue, reference  # noqa: E402

import bayescg.bias as bias  # noqa: E402
from bayescg.bias import Z94  # noqa: E402
from bayescg.fit import fit_effective_potential, mass_region_cells  # noqa: E402
from bayescg.simulate import simulate  # noqa: E402

RATIOS = (0.39, 0.55)


def predicted_coverage(shift_u, sd, reg, c):
    """Mean over the region of P(|Z + c |shift| / sd| < Z94)."""
    b = c * np.abs(shift_u[reg]) / sd[reg]
    return float(np.mean(st.norm.cdf(Z94 - b) - st.norm.cdf(-Z94 - b)))


def one_seed(spec, s):
    pot = catalogue(spec["pot"])
    truth = reference(spec["pot"])
    kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"], gamma=spec["gamma"])
    sim = simulate(pot, spec["delta"], seed=int(s), **kw)
    f = fit_effective_potential(sim, knots=spec["knots"], method="map", draws=400, seed=int(s))
    got = {}
    orig = bias.apply_kick_shape

    def spy(corr, target, sim_, kicks, **k):
        before = np.asarray(corr.correction, float).copy()
        orig(corr, target, sim_, kicks, **k)
        got["shift_u"] = np.asarray(corr.correction, float) - before   # -s x shift, aligned: U-space step
        got["grid"] = np.asarray(corr.grid, float)

    bias.apply_kick_shape = spy
    try:
        fc, info = _correct(sim, f, kw, spec, s, pot)
    finally:
        bias.apply_kick_shape = orig
    if fc is None or "shift_u" not in got:
        return None
    x = np.asarray(fc.grid, float)[:, 0]
    w = np.clip(np.asarray(fc.grid_weights, float), 0, None)
    w = w / w.sum()
    reg = np.asarray(fc.mass_region, bool)
    u0 = np.asarray(truth.V(x), float).ravel()
    u0 = u0 - w @ u0
    um = np.asarray(fc.U_mean, float)
    off = w @ um
    lo, hi, um = np.asarray(fc.U_lower) - off, np.asarray(fc.U_upper) - off, um - off
    sd = 0.5 * (hi - lo) / Z94
    sh = np.interp(x, got["grid"], got["shift_u"])
    row = {"seed": int(s), "coverage_truth": float(np.mean((lo[reg] <= u0[reg]) & (u0[reg] <= hi[reg]))),
           "rmse": float(np.sqrt(np.mean((um[reg] - u0[reg]) ** 2))),
           "sd_rms": float(np.sqrt(np.mean(sd[reg] ** 2))), "shift_rms": float(np.sqrt(np.mean(sh[reg] ** 2))),
           "predicted": {str(c): predicted_coverage(sh, sd, reg, c) for c in RATIOS}}
    return row


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="test1-d0.5")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--steps", type=float, default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    spec = dict(CASES[a.case])
    if a.steps:
        spec["steps"] = int(a.steps)
    rows, t0 = [], time.time()
    for s in range(a.first_seed, a.first_seed + a.seeds):
        r = one_seed(spec, s)
        if r is None:
            print(f"seed {s}: no kick-shape step", flush=True)
            continue
        rows.append(r)
        print(f"seed {s}: coverage {r['coverage_truth']:.3f} predicted "
              + " / ".join(f"{v:.3f}" for v in r["predicted"].values())
              + f"  rmse {r['rmse']:.4f} sd {r['sd_rms']:.4f} shift {r['shift_rms']:.4f}", flush=True)
    cov = np.array([r["coverage_truth"] for r in rows])
    summ = {"n": len(rows), "coverage_truth": float(cov.mean()), "coverage_truth_se": float(cov.std(ddof=1) / math.sqrt(len(cov))),
            "predicted": {str(c): float(np.mean([r["predicted"][str(c)] for r in rows])) for c in RATIOS},
            "sd_rms": float(np.mean([r["sd_rms"] for r in rows])), "shift_rms": float(np.mean([r["shift_rms"] for r in rows])),
            "rmse": float(np.mean([r["rmse"] for r in rows])), "seconds": time.time() - t0}
    print(json.dumps(summ), flush=True)
    out = Path(a.out) if a.out else HERE / f"model_error_coverage-{a.case}-{spec['steps']:.0e}.json"
    out.write_text(json.dumps({"case": a.case, "spec": {k: v for k, v in spec.items() if k != "Z"}, "ratios": RATIOS,
                               "summary": summ, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
