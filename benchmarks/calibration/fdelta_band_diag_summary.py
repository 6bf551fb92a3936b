"""Summarise fdelta_band_diag_seed{N}_k6.npz (fdelta_band_diag.py --kick-seeds 6): per seed, the corrected U's
error against q^2/2 (scoring only) and its band; across seeds, the shared (bias) and seed-specific parts; and the
error without the kick-shape step (corrected mean + s x the mean kick-shape shift), regressed on s x shift.

    python benchmarks/calibration/fdelta_band_diag_summary.py 1 2 [3]
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
Z94 = 1.8807936081512509
E, rows = {}, []
for s in [int(a) for a in sys.argv[1:]]:
    d = np.load(HERE / f"fdelta_band_diag_seed{s}_k6.npz")
    reg, x, w = d["region"], d["grid"], d["w"] / d["w"].sum()
    f = float(d["factor"])
    e = d["mean"] - d["ref"]
    sd = (d["hi"] - d["lo"]) / (2 * Z94)
    a = f * np.interp(x, d["kick_grid"], d["kick_shifts"].mean(0))
    a -= w @ a
    e0 = e + a
    k = float(a[reg] @ e0[reg] / (a[reg] @ a[reg]))
    rms = lambda v: float(np.sqrt(np.mean(v[reg] ** 2)))  # noqa: E731
    kick_sd = np.interp(x, d["kick_grid"], d["kick_shifts"].std(0, ddof=1))
    print(f"seed {s}: coverage {np.mean(((d['ref'] >= d['lo']) & (d['ref'] <= d['hi']))[reg]):.3f}  rms err {rms(e):.4f}"
          f"  rms band sd {rms(sd):.4f}  rms (err / sd) {rms(e / sd):.2f}  per-kick-seed sd of the shift {rms(kick_sd):.4f}"
          f"  | without kick-shape step: rms err {rms(e0):.4f}, slope on s*shift {k:.2f}")
    E[s] = (e, e0, sd)
ks = sorted(E)
if len(ks) >= 2:
    reg = d["region"]
    em = np.mean([E[k][0] for k in ks], axis=0)
    dev = np.array([E[k][0] - em for k in ks])
    n = len(ks)
    sd_between = np.sqrt((dev ** 2).sum(0) / (n - 1))
    print(f"shared part (mean over {n} seeds) rms {np.sqrt(np.mean(em[reg] ** 2)):.4f}; seed-to-seed sd rms "
          f"{np.sqrt(np.mean(sd_between[reg] ** 2)):.4f} against the band's sd rms "
          f"{np.sqrt(np.mean(np.mean([E[k][2] ** 2 for k in ks], axis=0)[reg])):.4f}; mean without the kick step rms "
          f"{np.sqrt(np.mean(np.mean([E[k][1] for k in ks], axis=0)[reg] ** 2)):.4f}")
    if n == 2:
        print(f"correlation of the two seeds' errors {np.corrcoef(E[ks[0]][0][reg], E[ks[1]][0][reg])[0, 1]:.2f}")
