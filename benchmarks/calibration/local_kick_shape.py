"""python benchmarks/calibration/local_kick_shape.py CASE SEEDS   (issue 11; output local_kick_shape-CASE.json)

Prototype, not in learn.  Hypothesis: the one-step kick-shape completion U_c - s shift uses the global s where the local inverse Jacobian
P(q) of (B1) differs (double-well walls: P ~ 0.55 against s ~ 0.92).  Alternative: U_c - (s shift + I[(P - s) shift''])
(bias.local_curvature_step on the shift), P from U_c'' pointwise or smoothed over 2 knot spacings.  Scores per-fit RMSE
against U_0 (98 % region) for learn's corrected U and the two alternatives, same seeds."""
import json, math, sys, time
import numpy as np
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from replicates import CASES, catalogue, grid_weights, _correct
import bayescg.bias as bias
from bayescg.simulate import simulate
from bayescg.fit import fit_effective_potential, mass_region_cells
from bayescg.splines import SplineRep
from bayescg.potentials import Potential
from scipy.ndimage import gaussian_filter1d

case, nseeds = sys.argv[1], int(sys.argv[2])
spec = CASES[case]; pot = catalogue(spec["pot"])
ref = Potential.from_expression({"test1": "q**2/2", "test2": "(q**2 - 1)**2/4"}[spec["pot"]], ["q"])
cap = {}
orig = bias.kick_shape_shift
def rec(knots, coef, kicks, **kw):
    out = orig(knots, coef, kicks, **kw)
    cap["knots"], cap["coef"], cap["res"], cap["delta"], cap["a"], cap["E"] = knots, np.array(coef), out, kw["delta"], kw["a"], kw["E"]
    return out
bias.kick_shape_shift = rec
rows = []
for s in range(1, nseeds + 1):
    cap.clear()
    kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"], gamma=spec["gamma"])
    sim = simulate(pot, spec["delta"], seed=s, **kw)
    f = fit_effective_potential(sim, knots=spec["knots"], method="map", draws=50, seed=s)
    fc, info = _correct(sim, f, kw, spec, s, pot)
    if fc is None or "res" not in cap:
        print("seed", s, "skipped"); continue
    x = np.asarray(info["grid"], float)
    gx, shift, se, kurt = cap["res"]
    sh = np.interp(x, gx, shift)
    s_f = info["factor"]
    Uc = SplineRep(cap["knots"], cap["coef"]).value(x)
    kmax = (1.0 + cap["E"]) / cap["delta"] ** 2
    de = cap["delta"] * math.sqrt(cap["a"])
    wgrid = np.interp(x, np.asarray(f.grid)[:, 0], grid_weights(f)); wgrid = np.clip(wgrid, 0, None); wgrid /= wgrid.sum()
    kap_pw = np.clip(bias._grid_curvature(Uc, x), -kmax, kmax)
    t = np.unique(np.asarray(cap["knots"][0])); spacing = np.mean(np.diff(t)); dx = np.mean(np.diff(x))
    kap_sm = gaussian_filter1d(kap_pw, 2 * spacing / dx, mode="nearest")
    extra_pw = bias.local_curvature_step(sh, kap_pw, x, wgrid, s_f, de, cap["E"])
    extra_sm = bias.local_curvature_step(sh, kap_sm, x, wgrid, s_f, de, cap["E"])
    G = np.asarray(fc.grid, float)[:, 0]
    w = np.interp(G, x, wgrid); w /= w.sum()
    al = lambda u: u - w @ u
    Um = al(np.asarray(fc.U_mean, float))
    U_pw = al(Um - np.interp(G, x, extra_pw))
    U_sm = al(Um - np.interp(G, x, extra_sm))
    U0 = al(np.asarray(ref.V(G), float))
    reg = mass_region_cells(w, 0.98)
    rm = lambda u: float(np.sqrt(np.mean((u - U0)[reg] ** 2)))
    half = 0.5 * (np.asarray(fc.U_upper) - np.asarray(fc.U_lower))
    cov = lambda u: float(np.mean((np.abs(u - U0) <= half)[reg]))
    rows.append({"seed": s, "G": G.tolist(), "w": w.tolist(), "U": Um.tolist(), "U_pw": U_pw.tolist(), "U_sm": U_sm.tolist(),
                 "U0": U0.tolist(), "rmse": [rm(Um), rm(U_pw), rm(U_sm)], "cov": [cov(Um), cov(U_pw), cov(U_sm)],
                 "P_over_s_min": float(np.min((((2 * (1 + cap["E"]) - de ** 2 * kap_sm) ** 2) / (8 * (1 + cap["E"])) / s_f)[wgrid > 0]))})
    print(f"seed {s}: rmse main {rm(Um):.4f} local-pw {rm(U_pw):.4f} local-smooth {rm(U_sm):.4f}  cov {cov(Um):.2f} {cov(U_pw):.2f} {cov(U_sm):.2f}  shift max {np.max(np.abs(sh[wgrid>0])):.4f}", flush=True)
json.dump(rows, open(Path(__file__).resolve().parent / f"local_kick_shape-{case}.json", "w"))
R = np.array([r["rmse"] for r in rows]); C = np.array([r["cov"] for r in rows])
d1, d2 = R[:, 1] - R[:, 0], R[:, 2] - R[:, 0]
print(f"{case} {len(rows)} seeds: per-fit RMSE main {R[:,0].mean():.4f} local-pw {R[:,1].mean():.4f} ({d1.mean():+.4f} +- {d1.std(ddof=1)/math.sqrt(len(d1)):.4f}) local-smooth {R[:,2].mean():.4f} ({d2.mean():+.4f} +- {d2.std(ddof=1)/math.sqrt(len(d2)):.4f}); coverage {C.mean(0).round(3).tolist()}")
G = np.asarray(rows[0]["G"])
if all(len(r["G"]) == len(G) for r in rows):
    reg = mass_region_cells(np.mean([r["w"] for r in rows], 0), 0.98)
    for k in ("U", "U_pw", "U_sm"):
        E = np.mean([np.array(r[k]) - np.array(r["U0"]) for r in rows], 0)
        print(f"  seed-mean error {k}: RMS {np.sqrt(np.mean(E[reg]**2)):.4f}; " + " ".join(f"{G[i]:+.2f}:{E[i]:+.4f}" for i in [np.argmin(abs(G - q)) for q in (-2, -1.5, -1, 0, 1, 1.5, 2)] if reg[i]))
