"""Is the kick-shape step's noise model right at the truth?  (issue 11: where the corrected U's remaining bias comes from)

    python benchmarks/calibration/kicks_at_truth.py --case test1-d0.5 --seeds 16 [--budget 1.0] [--no-colour]

The 1D correction solves L_model[U] = L_delta[V]: the white fixed point with white kicks, completed by the kick-shape
step for the recorded kicks' shape (i.i.d. replay) and, where learn's check flags it, their colour (a moving average).
If that model were exact, U_0 would solve it.  Per seed (replicates.py's case: V-run, raw MAP fit L_delta[V] with its
knots and histogram): the residual kicks of a fresh stretch of the V-run about U_0 (bias.check_frames,
residual_kick_correlation), their colour as learn would model it (bias.colour_taps), and paired maps on U_0 driven by
those kicks and by Gaussian kicks of the same variance (bias.coupled_maps; U_0 continued past the histogram with its
edge curvature), each fitted by apply_kick_shape's recipe (MAP, the raw fit's knots and n_eff factor) on two map
seeds of ``budget`` x the V-run's steps each (1.0: the V-run's own count scale, so the fits shrink alike).  Output:
the seed mean and standard error of L_delta[V] - L_kicks[U_0] and L_delta[V] - L_gauss[U_0] on the raw fit's grid
(count-weighted alignment, 98 % mass region).  U_0 enters only here, as the point to test the model at.
Output: kicks_at_truth-<case>[-white].json.
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

from replicates import CASES, catalogue, grid_weights  # noqa: E402

from bayescg.bias import (RHO_TOL, check_frames, colour_taps, coupled_maps, kick_colour,  # noqa: E402
                          residual_kick_correlation)
from bayescg.fit import fit_effective_potential, mass_region_cells  # noqa: E402
from bayescg.potentials import Potential  # noqa: E402
from bayescg.simulate import simulate  # noqa: E402
from bayescg.splines import SplineRep  # noqa: E402

REPORT_Q = (-3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5)


def one_seed(spec, pot, ref, s, budget, colour):
    g = lambda x: ref.gradient(np.asarray(x, float)).reshape(np.shape(x))  # noqa: E731
    sim = simulate(pot, spec["delta"], seed=s, steps=spec["steps"], walkers=16, hist_range=spec["rng"],
                   bins=spec["bins"], gamma=spec["gamma"])
    f = fit_effective_potential(sim, knots=spec["knots"], method="map", draws=50, seed=s)
    G = np.asarray(f.grid, float)[:, 0]
    q, p, A, E = check_frames(pot, sim)
    stat, kicks = residual_kick_correlation(q, p, g, delta=sim.delta, A=A, E=E, return_kicks="both")
    r1, rse = stat["rho"][0], stat["rho_se"]
    chk = {"corrected": stat, "flag": bool(abs(r1) > RHO_TOL and abs(r1) > 4 * rse),
           "colour": kick_colour(stat["rho"], rse)}
    taps, col = colour_taps(chk) if colour else (None, {"modelled": False, "rho": list(map(float, stat["rho"]))})
    e = np.asarray(sim.hist_edges[0], float)
    r = np.sort(np.asarray(kicks, float).reshape(-1) - np.mean(kicks))
    gq = np.sort(st.norm.ppf((np.arange(r.size) + 0.5) / r.size) * r.std())
    gq *= r.std() / gq.std()
    pad = 0.5 * (e[-1] - e[0])
    xs = np.linspace(e[0] - pad, e[-1] + pad, 20001)
    # past the histogram U_0 continues with its curvature at the edge (the quartic's walls would pass the map's
    # stability limit, which learn's stable continuation of U_c avoids)
    lo, hi = e[0] - 0.2, e[-1] + 0.2
    xc = np.clip(xs, lo, hi)
    kap = (g(xc + 1e-4) - g(xc - 1e-4)) / 2e-4
    tab = g(xc) + kap * (xs - xc)
    walkers = 16
    n = int(budget * spec["steps"]) // walkers
    a, Ee = float(A[0, 0]), float(E[0, 0])
    nef = float(f.n_eff) / float(np.sum(sim.hist_counts))
    Ls = {0: [], 1: []}
    for sd in (1, 2):
        hist = np.zeros((2, e.size - 1))
        mom = np.zeros((2, walkers, 20, 2))
        coupled_maps(xs[0], 1.0 / (xs[1] - xs[0]), tab, float(sim.delta), a, Ee, r, gq, n, n // 10, walkers, sd,
                     float(e[0]), float(e[-1]), hist, mom, taps=taps)
        m = (n - n // 10) // 20
        for c in range(2):
            mp, mp2 = mom[c, :, :, 0] / m, mom[c, :, :, 1] / m
            v = a * (mp2.mean() - mp.mean() ** 2)
            se_v = a * mp2.ravel().std(ddof=1) / math.sqrt(mp2.size)
            fc = fit_effective_potential({"counts": hist[c], "edges": [e], "beta_hat": 1 / v, "beta_hat_se": se_v / v ** 2,
                                          "n_eff_factor": nef}, knots=spec["knots"], method="map", draws=50,
                                         calibrate_band=False, predictive=False)
            Ls[c].append(SplineRep(fc.knots, fc.coef_mean).value(G))
    return {"seed": s, "grid": G.tolist(), "w": np.asarray(grid_weights(f)).tolist(),
            "raw": np.asarray(f.U_mean, float).tolist(), "L_kicks": np.mean(Ls[0], 0).tolist(),
            "L_gauss": np.mean(Ls[1], 0).tolist(), "U0": np.asarray(ref.V(G), float).tolist(),
            "excess_kurtosis": float(st.kurtosis(r)), "colour": col}


def summarise(rows):
    # the fits' report grids can differ between seeds (their data's extent): the first seed's points inside all
    lo = max(min(r["grid"]) for r in rows)
    hi = min(max(r["grid"]) for r in rows)
    G = np.asarray(rows[0]["grid"])
    G = G[(G >= lo) & (G <= hi)]
    rows = [{k: (np.interp(G, r["grid"], r[k]) if k in ("w", "raw", "L_kicks", "L_gauss", "U0") else r[k])
             for k in r} for r in rows]
    W = np.mean([r["w"] for r in rows], 0)
    reg = mass_region_cells(W, 0.98)
    Wn = W / W.sum()

    def al(u):
        u = np.asarray(u, float)
        return u - Wn @ u
    out = {}
    for k in ("L_kicks", "L_gauss", "U0"):
        d = np.array([al(r["raw"]) - al(r[k]) for r in rows])
        m, se = d.mean(0), d.std(0, ddof=1) / math.sqrt(len(d))
        # what pure Monte Carlo error would give: the RMS of the seed mean's se over the region
        out[f"raw_minus_{k}"] = {"rms_seed_mean": float(np.sqrt(np.mean(m[reg] ** 2))),
                                 "rms_se": float(np.sqrt(np.mean(se[reg] ** 2))),
                                 "at": {f"{G[i]:+.2f}": [round(float(m[i]), 4), round(float(se[i]), 4)]
                                        for i in sorted({int(np.argmin(abs(G - x))) for x in REPORT_Q}) if reg[i]}}
    return out


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", default="test1-d0.5")
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--budget", type=float, default=1.0)
    ap.add_argument("--no-colour", action="store_true")
    a = ap.parse_args(argv)
    spec = CASES[a.case]
    pot = catalogue(spec["pot"])
    ent = {"test1": "q**2/2", "test2": "(q**2 - 1)**2/4"}[spec["pot"]]
    ref = Potential.from_expression(ent, ["q"])
    rows = []
    for s in range(1, a.seeds + 1):
        t0 = time.time()
        rows.append(one_seed(spec, pot, ref, s, a.budget, not a.no_colour))
        print(f"{a.case} seed {s}: {time.time() - t0:.1f} s, colour modelled {rows[-1]['colour']['modelled']}", flush=True)
    summ = summarise(rows)
    out = HERE / f"kicks_at_truth-{a.case}{'-white' if a.no_colour else ''}.json"
    out.write_text(json.dumps({"case": a.case, "spec": {k: v for k, v in spec.items() if k != "methods"},
                               "budget": a.budget, "colour": not a.no_colour, "seeds": a.seeds, "summary": summ,
                               "rows": rows}, default=str))
    print(json.dumps(summ, indent=1))


if __name__ == "__main__":
    main()
