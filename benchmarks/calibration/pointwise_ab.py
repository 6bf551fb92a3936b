"""The pointwise band calibration (bayescg.fit._calibrate_band, 1D) against the one-factor calibration it replaced, on
the same seeds: the stored studies (one factor; the corrected band rebuilt as learn made it, raw part x max(s, 1),
band_factor_whatif.fits) and their reruns with the pointwise calibration (replicates.py, same commands, same seeds,
results-corrected-pw-*.json).  The raw U's are identical; the corrected U's may differ (the white fits' bands enter
the fixed point's stop rule).  Per study and band: width ratio [90 % seed bootstrap], coverage of the replicate mean,
coverage of U_0 [90 %], and per |q| bin the coverage of U_0 and seed sd / band sd -- what a one-factor band got wrong.

    python benchmarks/calibration/pointwise_ab.py    # -> pointwise_ab.json + markdown on stdout
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bayescg.fit import mass_region_cells, on_common_grid, replicate_band_summary
from bayescg.potentials import reference
from replicate_ci import fits_1d
from replicates import truth_summary

HERE = Path(__file__).resolve().parent
PAIRS = [  # label, old npz, new npz, reference, bins of |q|
    ("Test 1 delta 0.5, 4e6, 100 seeds", "raw-test1-d0.5-corrected-100.npz", "raw-test1-d0.5-corrected-pw-100.npz",
     "test1", [0, 1, 2, 3, 9]),
    ("double well delta 0.25, 4e6, 50 seeds", "raw-test2-d0.25-corrected-50.npz", "raw-test2-d0.25-corrected-pw-50.npz",
     "test2", [0, 0.75, 1.25, 1.6, 9]),
    ("Test 1 delta 0.5, 2e7, 60 seeds", "raw-test1-d0.5@2e+07-corrected-budget-60.npz",
     "raw-test1-d0.5@2e+07-corrected-pw-budget-60.npz", "test1", [0, 1, 2, 3, 9]),
    ("double well delta 0.3, 4e6, 100 seeds", "raw-test2-d0.3-corrected-dw03-100.npz",
     "raw-test2-d0.3-corrected-pw-dw03-100.npz", "test2", [0, 0.75, 1.25, 1.6, 9]),
]


def _bins(fits, truth, edges):
    common, U, lo, hi, wt = on_common_grid(fits)
    w = wt.sum(axis=0)
    reg = mass_region_cells(w, 0.98)
    w = w / w.sum()
    x = np.asarray(common, float)[:, 0]
    u0 = np.asarray(truth.V(x), float)
    u0 = u0 - w @ u0
    c = U @ w
    U, lo, hi = U - c[:, None], lo - c[:, None], hi - c[:, None]
    cov = ((lo <= u0) & (u0 <= hi)).mean(axis=0)
    sd = U.std(axis=0, ddof=1)
    bsd = np.sqrt(np.mean((0.5 * (hi - lo)) ** 2, axis=0)) / 1.88
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        m = reg & (np.abs(x) >= a) & (np.abs(x) < b)
        if m.any():
            out.append({"q": [a, b], "points": int(m.sum()), "coverage_U0": float(cov[m].mean()),
                        "sd_over_band_sd": float(np.sqrt(np.mean(sd[m] ** 2) / np.mean(bsd[m] ** 2)))})
    return out


def main():
    from band_factor_whatif import FACTORS, fits as rebuilt

    res, md = {}, []
    for label, old, new, ref, edges in PAIRS:
        truth = reference(ref)
        for band, npz, variant in (("raw, one factor", old, "map/calibrated"), ("raw, pointwise", new, "map/calibrated"),
                                   ("corrected, one factor", old, "map/corrected"),
                                   ("corrected, pointwise", new, "map/corrected")):
            if not (HERE / npz).exists():
                continue
            fits = rebuilt(old, "max") if (band == "corrected, one factor" and old in FACTORS) else fits_1d(HERE / npz, variant)
            s = replicate_band_summary(fits)
            t = truth_summary(fits, truth)
            b = _bins(fits, truth, edges)
            res.setdefault(label, {})[band] = {"fits": s["fits"], "width_ratio": s["width_ratio"],
                                               "width_ratio_ci": s["width_ratio_ci"], "coverage_mean": s["coverage"],
                                               "coverage_U0": t["coverage_truth"],
                                               "coverage_U0_ci": t["coverage_truth_ci"],
                                               "rmse_per_fit": t["rmse_per_fit_mean"], "bins": b}
            md.append(f"| {label} | {band} | {s['width_ratio']:.3f} [{s['width_ratio_ci'][0]:.3f}, "
                      f"{s['width_ratio_ci'][1]:.3f}] | {s['coverage']:.3f} | {t['coverage_truth']:.3f} | "
                      + ", ".join(f"{x['coverage_U0']:.2f} / {x['sd_over_band_sd']:.2f}" for x in b) + " |")
    (HERE / "pointwise_ab.json").write_text(json.dumps(res, indent=1))
    print("| study | band | width ratio [90 %] | coverage of replicate mean | coverage of U_0 | per |q| bin: "
          "coverage of U_0 / seed sd over band sd |")
    print("|---|---|---|---|---|---|")
    print("\n".join(md))


if __name__ == "__main__":
    main()
