"""Which part of the corrected band is short of the seed spread: the corrected band's two parts against what they
stand for, from the per-seed curves the replicate studies keep (no new runs).

The corrected band (bayescg.bias.corrected_fit) is the raw band x max(s, 1) (s the Jacobian factor), combined in quadrature
with Z94 x the correction's Monte Carlo se.  For each study this prints the width ratio (mean half-width / (1.88 x
seed-to-seed sd), with the 90 % seed-bootstrap interval of bayescg.fit.replicate_band_summary) of

* the raw band against the raw U's seed spread (the calibrated band of the paper's U_delta),
* Z94 x correction_se against the seed spread of the correction C itself (its claimed Monte Carlo error; C's spread
  over seeds also holds the part of C that follows the raw fit, (s - 1) x its noise, small: s = 0.91 on Test 1),
* the corrected band against the corrected U's seed spread (the headline figure of RESULTS.md).

    python benchmarks/calibration/band_parts.py     # -> band_parts.json + a markdown table on stdout
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bayescg.bias import Z94
from bayescg.fit import replicate_band_summary

HERE = Path(__file__).resolve().parent
STUDIES = [  # label, npz of replicates.py --corrected (the pointwise band calibration's reruns, pointwise_ab.py)
    ("Test 1 delta 0.5, 4e6 steps, 100 seeds", "raw-test1-d0.5-corrected-pw-100.npz"),
    ("Test 1 delta 0.5, 2e7 steps, 60 seeds", "raw-test1-d0.5@2e+07-corrected-pw-budget-60.npz"),
    ("double well delta 0.3, 4e6 steps, 96 fits", "raw-test2-d0.3-corrected-pw-dw03-100.npz"),
]


def _fits(z, variant, seeds):
    return [{f: z[f"{variant}|{s}|{f}"] for f in ("grid", "U_mean", "U_lower", "U_upper", "weight")} for s in seeds]


def _correction_fits(z, seeds):
    """The correction C of each seed as a 'fit' whose band is +- Z94 x its claimed se (weights of the corrected fit)."""
    out = []
    for s in seeds:
        c, se = z[f"correction|{s}|correction"], z[f"correction|{s}|correction_se"]
        grid, w = z[f"map/corrected|{s}|grid"], z[f"map/corrected|{s}|weight"]
        g = np.asarray(z[f"correction|{s}|grid"], dtype=float).reshape(-1)
        if g.size != len(grid) or not np.allclose(g, grid[:, 0]):
            raise ValueError(f"seed {s}: the correction's grid is not the fit's")
        out.append({"grid": grid, "U_mean": c, "U_lower": c - Z94 * se, "U_upper": c + Z94 * se, "weight": w})
    return out


def main():
    rows, table = {}, []
    for label, npz in STUDIES:
        z = np.load(HERE / npz)
        seeds = sorted({int(k.split("|")[1]) for k in z.files if k.startswith("correction|")})
        parts = {"raw band vs raw U's spread": _fits(z, "map/calibrated", seeds),
                 "Z94 x correction_se vs the correction's spread": _correction_fits(z, seeds),
                 "corrected band vs corrected U's spread": _fits(z, "map/corrected", seeds)}
        rows[label] = {}
        for name, fits in parts.items():
            r = replicate_band_summary(fits)
            rows[label][name] = {k: r[k] for k in ("fits", "points", "width_ratio", "width_ratio_ci", "coverage",
                                                   "coverage_ci")}
            lo, hi = r["width_ratio_ci"]
            table.append(f"| {label} | {name} | {r['fits']} | {r['width_ratio']:.3f} [{lo:.3f}, {hi:.3f}] | "
                         f"{r['coverage']:.3f} |")
    (HERE / "band_parts.json").write_text(json.dumps(rows, indent=1))
    print("| study | band part | fits | width ratio [90 %] | coverage of the replicate mean |")
    print("|---|---|---|---|---|")
    print("\n".join(table))


if __name__ == "__main__":
    main()
