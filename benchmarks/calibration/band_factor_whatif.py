"""The corrected band's raw part: the raw deviations x s (learn until 2026-12-04) or x max(s, 1) (learn now)?  (issue 11)

corrected_fit's band is U_c -/+ sqrt((k x raw half-width)^2 + (Z94 x correction_se)^2).  s (< 1 in 1D) is the response
of U_c to a curvature-like (long-wavelength) change of the raw learned U.  Regressing each seed's correction deviation
on its raw deviation (pointwise, over seeds) measures the response to the raw noise actually present: it came out
between s and 1, so learn now uses k = max(s, 1).  This script rebuilds every stored study's corrected band from its
per-seed arrays (the U's do not change) with k = s (a check: it reproduces the stored bands' figures exactly) and with
k = max(s, 1), and scores both like replicate_ci.py.  No new runs; replicate_ci.py and band_parts.py use the same
rebuild (:func:`fits`) for these studies.

    python benchmarks/calibration/band_factor_whatif.py      # -> band_factor_whatif.json + a table
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bayescg.bias import Z94
HERE = Path(__file__).resolve().parent
STUDIES = [  # label, npz, results json (per-seed Jacobian factors), case key, reference
    ("Test 1 delta 0.5, 4e6, 100 seeds", "raw-test1-d0.5-corrected-100.npz", "results-corrected-100.json",
     "test1-d0.5", "test1"),
    ("double well delta 0.25, 4e6, 50 seeds", "raw-test2-d0.25-corrected-50.npz", "results-corrected-50.json",
     "test2-d0.25", "test2"),
    ("Test 1 delta 0.5, 2e7, 60 seeds", "raw-test1-d0.5@2e+07-corrected-budget-60.npz",
     "results-corrected-budget-60.json", "test1-d0.5@2e+07", "test1"),
    ("double well delta 0.3, 4e6, 96 fits", "raw-test2-d0.3-corrected-dw03-100.npz", "results-corrected-dw03-100.json",
     "test2-d0.3", "test2"),
]


#: per-seed Jacobian factors of the stored corrected studies: npz -> (results json, case key)
FACTORS = {npz: (res, case) for _, npz, res, case, _ in STUDIES}
FACTORS["raw-test1-d0.5-corrected-50.npz"] = ("results-corrected-50.json", "test1-d0.5")


def fits(npz, factor="max", results=None, case=None):
    """The corrected fits of a stored study with the band rebuilt: k = s (``factor`` "s"), max(s, 1) ("max", learn
    now) or a number."""
    results, case = (results, case) if results else FACTORS[npz]
    z = np.load(HERE / npz)
    per = {int(r["seed"]): r for r in json.loads((HERE / results).read_text())[case]["per_seed"]}
    out, regress = [], []
    for s in sorted({int(k.split("|")[1]) for k in z.files if k.startswith("map/corrected|")}):
        g = z[f"map/corrected|{s}|grid"][:, 0]
        cm = z[f"map/corrected|{s}|U_mean"]
        rm, rl, ru = (z[f"map/calibrated|{s}|{f}"] for f in ("U_mean", "U_lower", "U_upper"))
        se = np.interp(g, z[f"correction|{s}|grid"], z[f"correction|{s}|correction_se"])
        sj = float(per[s]["correction"]["factor"])
        k = sj if factor == "s" else max(sj, 1.0) if factor == "max" else float(factor)
        out.append({"grid": z[f"map/corrected|{s}|grid"], "weight": z[f"map/corrected|{s}|weight"], "U_mean": cm,
                    "U_lower": cm - np.hypot(k * (rm - rl), Z94 * se),
                    "U_upper": cm + np.hypot(k * (ru - rm), Z94 * se)})
    return out


def regression(npz):
    """Weighted mean over the 98 % region of the pointwise slope of C - mean C on raw U - mean raw U over seeds."""
    z = np.load(HERE / npz)
    seeds = sorted({int(k.split("|")[1]) for k in z.files if k.startswith("correction|")})
    g0 = z[f"map/calibrated|{seeds[0]}|grid"][:, 0]
    R, C, W = [], [], []
    for s in seeds:
        g, c = z[f"map/calibrated|{s}|grid"][:, 0], z[f"correction|{s}|correction"]
        if g.size != g0.size or not np.allclose(g, g0) or c.size != g.size:
            continue
        w = z[f"map/calibrated|{s}|weight"] / z[f"map/calibrated|{s}|weight"].sum()
        u = z[f"map/calibrated|{s}|U_mean"]
        R.append(u - w @ u)
        C.append(c)
        W.append(w)
    R, C, w = np.array(R), np.array(C), np.mean(W, axis=0)
    cw = np.cumsum(w)
    reg = (cw > 0.01) & (cw < 0.99)
    eR, eC = R - R.mean(0), C - C.mean(0)
    slope = (eR * eC).sum(0) / (eR * eR).sum(0)
    return {"fits": len(R), "response_minus_1": float(np.sum(w[reg] * slope[reg]) / w[reg].sum())}


def main():
    from replicate_ci import row

    out = []
    for label, npz, res, case, ref in STUDIES:
        if not (HERE / npz).exists():
            continue
        rs = row(label + ", k = s (learn until 2026-12-04)", fits(npz, "s"), ref)
        r1 = row(label + ", k = max(s, 1) (learn now)", fits(npz, "max"), ref)
        rg = regression(npz)
        out.append({"study": label, "k_s": rs, "k_max_s_1": r1, "regression": rg})
        for r in (rs, r1):
            print(f"| {r['study']} | {r['seeds']} | {r['width_ratio']:.3f} [{r['width_ratio_ci'][0]:.3f}, "
                  f"{r['width_ratio_ci'][1]:.3f}] | {r['coverage']:.3f} | {r['coverage_truth']:.3f} |")
        print(f"|   response of U_c to the raw noise - 1 (s - 1 if s were right): {rg['response_minus_1']:+.3f} |")
    (HERE / "band_factor_whatif.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
