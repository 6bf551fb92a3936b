"""Does replaying the recorded kicks by position (bias.kick_cells) remove the corrected U's bias?  A paired study.

For each seed: the V-run and its MAP fit as replicates.py's corrected studies make them, the fixed point on white-kick
runs (pipeline.correct_finite_delta without the kick-shape step), then the kick-shape step twice on copies of the
same fixed point, same kicks and same coupled-map seeds: i.i.d. replay of all kicks (what learn does now) and replay
from the cell of q_{n+1/2} (kick_cells).  Only the kick-shape step differs, so the difference of the two errors
against U_0 is paired.  U_0 is used only for scoring.

    python benchmarks/calibration/kick_cells_ab.py --case test2-d0.3 --seeds 1-24 --out kick_cells_ab-dw03.json
    python benchmarks/calibration/kick_cells_ab.py --summary --out kick_cells_ab-dw03.json

The position-dependent replay did not help (FDELTA.md, last section) and was taken out of bayescg again: the runs need
the library of commit d375f21 (``git worktree add /tmp/kc d375f21``; ``--summary`` runs on any commit).
"""
import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replicates import CASES  # noqa: E402



def seeds_of(text):
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def one(case, spec, seed):
    from bayescg.bias import apply_kick_shape, check_frames, corrected_fit, white_noise_check
    from bayescg.config import FitSection
    from bayescg.fit import fit_effective_potential
    from bayescg.pipeline import correct_finite_delta
    from bayescg.potentials import catalogue, reference
    from bayescg.simulate import simulate

    pot = catalogue(spec["pot"])
    kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"], gamma=spec["gamma"])
    sim = simulate(pot, spec["delta"], seed=int(seed), **kw)
    f = fit_effective_potential(sim, knots=spec["knots"], method="map", draws=400, seed=int(seed))
    fs = FitSection()
    warns = []
    _, raw, corr, note = correct_finite_delta(
        sim, f, kw, mode=fs.delta_correction, knots=spec["knots"], mass_fraction=fs.mass_fraction,
        steps=fs.correction_steps or spec["steps"], max_iter=fs.correction_iterations,
        min_iter=fs.correction_min_iterations, reference=None, seed=int(seed), warnings=warns, potential=pot,
        kick_shape=False)
    if corr is None:
        return {"seed": seed, "note": note}
    frames = check_frames(pot, sim)
    q, p, A, E = frames
    _, kicks = white_noise_check(pot, sim, raw.knots, raw.coef_mean, np.asarray(raw.coef_mean) + corr.coef_shift,
                                 frames=frames)
    qh = q[:-1] + 0.5 * sim.delta * np.einsum("ij,nwj->nwi", A, p[:-1])
    steps = int(min(4 * (fs.correction_steps or spec["steps"]), 2e8)) // 2
    seeds = tuple(1000 * int(seed) + k for k in range(1, 5))
    g = f.grid[:, 0]
    out = {"seed": seed, "U0": np.asarray(reference(spec["pot"]).V(g[:, None])).reshape(-1).tolist(), "converged": bool(corr.converged), "grid": g.tolist(), "weight": np.asarray(f.grid_weights).tolist(),
           "region": np.asarray(f.mass_region).tolist()}
    for name, pos in (("iid", None), ("cells", qh)):
        c = copy.deepcopy(corr)
        t = time.time()
        apply_kick_shape(c, raw, sim, kicks, steps=steps, seeds=seeds, positions=pos)
        fc = corrected_fit(raw, c, None, rng_seed=int(seed))
        out[name] = {"U_mean": np.asarray(fc.U_mean).tolist(), "U_lower": np.asarray(fc.U_lower).tolist(),
                     "U_upper": np.asarray(fc.U_upper).tolist(), "kick_shape": c.kick_shape,
                     "seconds": time.time() - t}
    return out


def summary(path):
    """Per variant: mean per-fit RMSE against U_0 over the mass region (each U aligned to U_0's count-weighted mean),
    RMS of the seed-mean error (bias), RMS seed sd, coverage of U_0 by the 94 % band; and the paired RMSE difference
    (cells - iid) with its standard error over seeds."""
    d = json.loads(Path(path).read_text())
    rows = [r for r in d["rows"] if "iid" in r]
    out = {"case": d["case"], "seeds": len(rows)}
    errs, rm = {}, {}
    for name in ("iid", "cells"):
        E, R, C = [], [], []
        for r in rows:
            w, reg, U0 = (np.asarray(r[k], dtype=float) for k in ("weight", "region", "U0"))
            reg = reg.astype(bool)
            w = w / w.sum()
            U = np.asarray(r[name]["U_mean"])
            lo, hi = np.asarray(r[name]["U_lower"]), np.asarray(r[name]["U_upper"])
            off = w @ (U - U0)
            e = U - U0 - off
            E.append(np.where(reg, e, np.nan))
            R.append(float(np.sqrt(np.mean(e[reg] ** 2))))
            C.append(float(np.mean(((lo - off) <= U0)[reg] & ((hi - off) >= U0)[reg])))
        E = np.array(E)
        errs[name], rm[name] = E, np.array(R)
        keep = ~np.isnan(E).any(axis=0)
        Ek = E[:, keep]  # grid points inside every seed's mass region
        out[name] = {"rmse_mean": float(np.mean(R)), "bias_rms": float(np.sqrt(np.mean(Ek.mean(0) ** 2))),
                     "seed_sd_rms": float(np.sqrt(np.mean(Ek.var(0, ddof=1)))),
                     "coverage_U0": float(np.mean(C)),
                     "shift_max": float(np.mean([r[name]["kick_shape"]["shift_max"] for r in rows]))}
    dd = rm["cells"] - rm["iid"]
    out["rmse_diff_cells_minus_iid"] = [float(dd.mean()), float(dd.std(ddof=1) / np.sqrt(dd.size))]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="test2-d0.3")
    ap.add_argument("--seeds", default="1-12")
    ap.add_argument("--out", required=True)
    ap.add_argument("--summary", action="store_true", help="summarise --out (no runs)")
    a = ap.parse_args()
    if a.summary:
        print(json.dumps(summary(Path(__file__).resolve().parent / a.out), indent=1))
        return
    spec = CASES[a.case]
    rows = []
    path = Path(__file__).resolve().parent / a.out
    for s in seeds_of(a.seeds):
        t = time.time()
        rows.append(one(a.case, spec, s))
        print(f"{a.case} seed {s}: {time.time() - t:.0f} s", flush=True)
        path.write_text(json.dumps({"case": a.case, "spec": {k: v for k, v in spec.items() if k != "methods"},
                                    "rows": rows}))


if __name__ == "__main__":
    main()
