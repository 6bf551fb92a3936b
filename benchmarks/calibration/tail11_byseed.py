"""Per-seed z-scores of the corrected U (replicate mean and U_0) grouped by the fixed point's outcome
(converged / returned best iterate) and by its last residual / MC error; stored 50-seed curves only."""
import json
from pathlib import Path
import numpy as np
from bayescg.fit import mass_region_cells, on_common_grid
from bayescg.potentials import reference
from tail11_profile import load, HERE

for case, pot in (("test1-d0.5", "test1"), ("test2-d0.25", "test2")):
    per = json.load(open(HERE / "results-corrected-50.json"))[case]["per_seed"]
    fits = load(case, "map/corrected")
    common, U, lo, hi, wt = on_common_grid(fits)
    w = wt.sum(0); reg = mass_region_cells(w, 0.98); w = w / w.sum()
    x = np.asarray(common, float)[:, 0]
    u0 = np.asarray(reference(pot).V(x), float); u0 -= w @ u0
    c = U @ w; U, lo, hi = U - c[:, None], lo - c[:, None], hi - c[:, None]
    sdb = 0.5 * (hi - lo) / 1.88
    Ubar = U.mean(0)
    zm = np.sqrt(np.mean(((U - Ubar) / sdb)[:, reg] ** 2, axis=1))
    z0 = np.sqrt(np.mean(((U - u0) / sdb)[:, reg] ** 2, axis=1))
    cov0 = ((lo <= u0) & (u0 <= hi))[:, reg].mean(1)
    covm = ((lo <= Ubar) & (Ubar <= hi))[:, reg].mean(1)
    conv = np.array([p["correction"]["converged"] for p in per])
    its = np.array([p["correction"]["iterations"] for p in per])
    last = []
    for p in per:
        h = p["correction"]["history"]
        ret = [e for e in h if e.get("returned")]
        e = ret[0] if ret else [e for e in h if "update_rms" in e][-1]
        last.append(e["update_rms"] / e["mc_error_rms"])
    last = np.array(last)
    print(f"\n{case}: RMS z vs replicate mean / vs U_0 (1 if the band is right), coverage of U_0 / of the mean")
    for name, m in (("converged", conv), ("not converged (best iterate)", ~conv),
                    ("converged at run 1-2", conv & (its <= 2)), ("converged at run >= 3", conv & (its >= 3))):
        if m.any():
            print(f"  {name:30s} n={m.sum():2d}  z_mean {np.sqrt(np.mean(zm[m]**2)):.2f}  z_U0 {np.sqrt(np.mean(z0[m]**2)):.2f}"
                  f"  cov U0 {cov0[m].mean():.3f}  cov mean {covm[m].mean():.3f}  last resid/MC {last[m].mean():.2f}")
    print(f"  corr(per-seed z_mean, last resid/MC) {np.corrcoef(zm, last)[0,1]:+.2f}; worst 5 seeds (cov U0): "
          + ", ".join(f"{per[i]['seed']}:{cov0[i]:.2f}/{'c' if conv[i] else 'nc'}{its[i]}" for i in np.argsort(cov0)[:5]))
