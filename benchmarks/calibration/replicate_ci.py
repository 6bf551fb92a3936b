"""How well the stored replicate studies pin their numbers: 90 % seed-bootstrap intervals of the width ratio, the
coverage of the replicate mean and the coverage of the true U_0 (bayescg.fit.replicate_band_summary with its
bootstrap; replicates.truth_summary), recomputed from the per-seed curves the studies keep (no new runs).

    python benchmarks/calibration/replicate_ci.py      # -> replicate_ci.json + a markdown table on stdout
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bayescg.bias import Z94
from bayescg.fit import replicate_band_summary
from bayescg.potentials import reference
from replicates import truth_summary

HERE = Path(__file__).resolve().parent
STUDIES = [  # label, npz, variant, reference (the studies rerun with the pointwise band calibration, pointwise_ab.py;
    # the one-factor runs they replace stay in raw-test1-d0.5-corrected-100.npz etc.)
    ("Test 1 (4.5) delta 0.5, 4e6 steps, corrected, 100 seeds", "raw-test1-d0.5-corrected-pw-100.npz", "map/corrected",
     "test1"),
    ("double well (4.6) delta 0.25, 4e6, corrected, 50 seeds", "raw-test2-d0.25-corrected-pw-50.npz", "map/corrected",
     "test2"),
    ("Test 1 delta 0.5, 2e7 steps, corrected, 60 seeds", "raw-test1-d0.5@2e+07-corrected-pw-budget-60.npz",
     "map/corrected", "test1"),
    ("double well delta 0.3, 4e6, corrected, 100 seeds (4 V-runs blew up)", "raw-test2-d0.3-corrected-pw-dw03-100.npz",
     "map/corrected", "test2"),
    ("Test 1 delta 0.5, 4e6, raw (calibrated)", "raw-test1-d0.5-corrected-pw-100.npz", "map/calibrated", None),
    ("double well delta 0.25, 4e6, raw (calibrated)", "raw-test2-d0.25-corrected-pw-50.npz", "map/calibrated", None),
]


def fits_1d(npz, variant):
    z = np.load(npz)
    seeds = sorted({int(k.split("|")[1]) for k in z.files if k.startswith(variant + "|")})
    return [{f: z[f"{variant}|{s}|{f}"] for f in ("grid", "U_mean", "U_lower", "U_upper", "weight")} for s in seeds]


def fits_2d_learn(npz):
    """The corrected band `learn` reports on (4.8) (corrected/with_z of replicates.analyse_learn_2d: U_c -/+
    sqrt((k x f x raw half-width)^2 + (Z94 x correction_se)^2), f Z's factor, k = max(s, 1) as learn makes it now;
    s is 0.997-0.998 in the study of 2026-12-04), rebuilt from the compact npz."""
    z = np.load(npz)
    out = []
    for i in range(len(z["seeds"])):
        cm, s = z["corrected_U_mean"][i].astype(float), max(float(z["jacobian_factor"][i]), 1.0)
        f = float(z["z_band_scale"][i])  # learn widens the raw band by Z's part before the correction (since 2026-12-04)
        lo0 = f * (z["raw_U_mean"][i] - z["raw_lower_no_z"][i])
        hi0 = f * (z["raw_upper_no_z"][i] - z["raw_U_mean"][i])
        se = Z94 * z["correction_se"][i]
        out.append({"grid": z["grid"], "weight": z["weight"][i].astype(float), "U_mean": cm,
                    "U_lower": cm - np.hypot(s * lo0, se), "U_upper": cm + np.hypot(s * hi0, se)})
    return out


def row(label, fits, ref, mass_fraction=0.98):
    s = replicate_band_summary(fits, mass_fraction=mass_fraction)
    r = {"study": label, "seeds": s["fits"], "points": s["points"], "width_ratio": s["width_ratio"],
         "width_ratio_ci": s["width_ratio_ci"], "coverage": s["coverage"], "coverage_ci": s["coverage_ci"]}
    if ref:
        t = truth_summary(fits, reference(ref), mass_fraction)
        r.update(coverage_truth=t["coverage_truth"], coverage_truth_ci=t["coverage_truth_ci"],
                 rmse_per_fit_mean=t["rmse_per_fit_mean"], rmse_mean_vs_truth=t["rmse_mean_vs_truth"])
    return r


def main():
    rows = []
    from band_factor_whatif import FACTORS, fits as rebuilt

    for label, npz, variant, ref in STUDIES:
        if (HERE / npz).exists():
            if variant == "map/corrected" and npz in FACTORS:  # the band as learn makes it now (raw part x max(s, 1))
                rows.append(row(label + " [band rebuilt: raw part x max(s, 1)]", rebuilt(npz, "max"), ref))
            else:
                rows.append(row(label, fits_1d(HERE / npz, variant), ref))
    if (HERE / "raw-results-learn-2d.npz").exists():
        # the compact npz holds only the 98 % region already: score all of it
        rows.append(row("(4.8) 2D, learn's corrected band, 2e6 steps", fits_2d_learn(HERE / "raw-results-learn-2d.npz"),
                        "test4", mass_fraction=1.0))
    (HERE / "replicate_ci.json").write_text(json.dumps(rows, indent=1))
    f = lambda v, ci: f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"  # noqa: E731
    print("| study | seeds | width ratio [90 %] | coverage of replicate mean [90 %] | coverage of U_0 [90 %] |")
    print("|---|---|---|---|---|")
    for r in rows:
        t = f(r["coverage_truth"], r["coverage_truth_ci"]) if "coverage_truth" in r else "-"
        print(f"| {r['study']} | {r['seeds']} | {f(r['width_ratio'], r['width_ratio_ci'])} | "
              f"{f(r['coverage'], r['coverage_ci'])} | {t} |")


if __name__ == "__main__":
    main()
