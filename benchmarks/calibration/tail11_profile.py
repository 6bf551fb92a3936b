"""Where over q does the corrected 1D band miss U_0 and the replicate mean? (issue 11, items 1-2; stored curves only)

Reads raw-<case>-corrected-50.npz (replicates.py --corrected), aligns as replicate_band_summary/truth_summary do,
and prints per q-bin: bias of the replicate mean vs U_0 / seed sd, mean half-width / (1.88 seed sd), coverage of
U_0 and of the replicate mean, and the two band parts (raw x s, 1.88 correction_se) / seed sd.

    python benchmarks/calibration/tail11_profile.py [--json out.json]
"""
import argparse, json
from pathlib import Path
import numpy as np
from bayescg.fit import mass_region_cells, on_common_grid
from bayescg.potentials import reference

HERE = Path(__file__).parent


def load(case, key, n=50):
    d = np.load(HERE / f"raw-{case}-corrected-50.npz")
    return [{k: d[f"{key}|{s}|{k}"] for k in ("grid", "U_mean", "U_lower", "U_upper", "weight")}
            for s in range(1, n + 1) if f"{key}|{s}|grid" in d.files]


def profile(case, pot, edges):
    fits = load(case, "map/corrected")
    parts = {k: load(case, f"map/{k}") for k in ("corrected_raw_x_s", "corrected_mc_se", "calibrated")}
    common, U, lo, hi, wt = on_common_grid(fits)
    w = wt.sum(axis=0); reg = mass_region_cells(w, 0.98); w = w / w.sum()
    x = np.asarray(common, float)[:, 0]
    u0 = np.asarray(reference(pot).V(x), float); u0 -= w @ u0
    c = U @ w
    U, lo, hi = U - c[:, None], lo - c[:, None], hi - c[:, None]
    Ubar, sd, hw = U.mean(0), U.std(0, ddof=1), 0.5 * (hi - lo)
    in0 = (lo <= u0) & (u0 <= hi); inm = (lo <= Ubar) & (Ubar <= hi)
    # raw (uncorrected, calibrated) replicate mean, to see whether the corrected bias profile follows the raw bias
    _, Ur, _, _, _ = on_common_grid(parts["calibrated"]); Ur = Ur - (Ur @ w)[:, None]
    hwp = {}
    for k in ("corrected_raw_x_s", "corrected_mc_se"):
        _, _, l2, h2, _ = on_common_grid(parts[k]); hwp[k] = 0.5 * (h2 - l2).mean(0)
    rows = []
    print(f"\n{case}: {len(fits)} fits, {reg.sum()} points in region; total coverage U_0 {in0[:, reg].mean():.3f}, "
          f"mean {inm[:, reg].mean():.3f}; bias/sd(rms) {np.sqrt(np.mean((Ubar-u0)[reg]**2)/np.mean(sd[reg]**2)):.2f}")
    print(" q-bin          pts  w-mass  bias/sd  rawbias/sd  hw/1.88sd  rawxs/1.88sd  cse/sd  cov(U0)  cov(mean)  miss-share(U0)")
    miss_tot = (~in0[:, reg]).sum()
    for a, b in zip(edges[:-1], edges[1:]):
        m = reg & (np.abs(x) >= a) & (np.abs(x) < b)
        if not m.any():
            continue
        r = dict(lo=a, hi=b, points=int(m.sum()), mass=float(w[m].sum()),
                 bias_over_sd=float(np.mean((Ubar - u0)[m] / sd[m])),
                 rawbias_over_sd=float(np.mean((Ur.mean(0) - u0)[m] / sd[m])),
                 width_ratio=float(hw[:, m].mean() / (1.88 * sd[m]).mean()),
                 rawxs_ratio=float(hwp["corrected_raw_x_s"][m].mean() / (1.88 * sd[m]).mean()),
                 cse_over_sd=float((hwp["corrected_mc_se"][m] / 1.88 / sd[m]).mean()),
                 cov_truth=float(in0[:, m].mean()), cov_mean=float(inm[:, m].mean()),
                 miss_share=float((~in0[:, m]).sum() / miss_tot))
        rows.append(r)
        print(f" [{a:4.2f},{b:4.2f})  {r['points']:4d}  {r['mass']:.3f}  {r['bias_over_sd']:+7.2f}  {r['rawbias_over_sd']:+9.2f}"
              f"  {r['width_ratio']:9.2f}  {r['rawxs_ratio']:11.2f}  {r['cse_over_sd']:6.2f}  {r['cov_truth']:7.3f}"
              f"  {r['cov_mean']:8.3f}  {r['miss_share']:8.2f}")
    # signed bias by side (q<0 vs q>0) and per-seed coverage spread
    pc = in0[:, reg].mean(1)
    print(f" per-seed coverage of U_0: min {pc.min():.2f}, 10% {np.quantile(pc,.1):.2f}, median {np.median(pc):.2f}")
    return dict(case=case, rows=rows, x=x[reg].tolist(), bias_over_sd=((Ubar - u0) / sd)[reg].tolist(),
                width_ratio=(hw.mean(0) / (1.88 * sd))[reg].tolist(), cov_truth=in0[:, reg].mean(0).tolist(),
                cov_mean=inm[:, reg].mean(0).tolist())


if __name__ == "__main__":
    ap = argparse.ArgumentParser(); ap.add_argument("--json")
    a = ap.parse_args()
    out = [profile("test1-d0.5", "test1", [0, .5, 1, 1.5, 2, 2.25, 2.5, 3, 9]),
           profile("test2-d0.25", "test2", [0, .25, .5, .75, 1, 1.25, 1.5, 1.75, 2, 9])]
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


def variance_budget(case, edges):
    """Per q-bin: seed sd of the corrected U, of the raw (calibrated) U, of the correction itself (aligned), the
    mean correction_se, the raw band's half-width/1.88 x s, and corr(raw, correction) over seeds."""
    d = np.load(HERE / f"raw-{case}-corrected-50.npz")
    fits = load(case, "map/corrected"); raw = load(case, "map/calibrated"); rxs = load(case, "map/corrected_raw_x_s")
    common, U, lo, hi, wt = on_common_grid(fits)
    _, R, rlo, rhi, _ = on_common_grid(raw)
    _, _, xlo, xhi, _ = on_common_grid(rxs)
    w = wt.sum(0); reg = mass_region_cells(w, 0.98); w = w / w.sum()
    x = np.asarray(common, float)[:, 0]
    C = np.zeros_like(U); CS = np.zeros_like(U)
    for s in range(U.shape[0]):
        g = d[f"correction|{s+1}|grid"]
        C[s] = np.interp(x, g, d[f"correction|{s+1}|correction"]); CS[s] = np.interp(x, g, d[f"correction|{s+1}|correction_se"])
    al = lambda A: A - (A @ w)[:, None]
    U, R, C = al(U), al(R), al(C)
    resid = U - R - C  # what the corrected U holds beyond raw + correction (alignment; should be ~0)
    print(f"\n{case} variance budget (sd over 50 seeds, aligned); |U - raw - corr| max {np.abs(resid[:, reg]).max():.2e}")
    print(" q-bin        sd(U)   sd(raw)  sd(corr)  mean cse  raw_hw/1.88  rawxs_hw/1.88  corr(raw,corr)  sd(U)/sqrt(hw_x^2+cse^2)")
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        m = reg & (np.abs(x) >= a) & (np.abs(x) < b)
        if not m.any():
            continue
        sdU, sdR, sdC = (A[:, m].std(0, ddof=1).mean() for A in (U, R, C))
        cse = CS[:, m].mean(); rh = (0.5 * (rhi - rlo))[:, m].mean() / 1.88; xh = (0.5 * (xhi - xlo))[:, m].mean() / 1.88
        rc = np.mean([np.corrcoef(R[:, j], C[:, j])[0, 1] for j in np.where(m)[0]])
        print(f" [{a:4.2f},{b:4.2f})  {sdU:.4f}  {sdR:.4f}  {sdC:.4f}   {cse:.4f}    {rh:.4f}      {xh:.4f}        {rc:+.2f}          {sdU/np.hypot(xh, cse):.2f}")
        out.append(dict(lo=a, hi=b, sd_U=sdU, sd_raw=sdR, sd_corr=sdC, cse=cse, raw_hw=rh, rawxs_hw=xh, corr_raw_corr=rc))
    return out


if __name__ == "__main__":
    variance_budget("test1-d0.5", [0, .5, 1, 1.5, 2, 2.25, 2.5, 3, 9])
    variance_budget("test2-d0.25", [0, .25, .5, .75, 1, 1.25, 1.5, 1.75, 2, 9])
