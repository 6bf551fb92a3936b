"""python benchmarks/calibration/polish_step.py CASE SEEDS BUDGET   (issue 11; output polish_step-CASE-B<BUDGET>.json)

Prototype, not in learn: after learn's correction (white fixed point + kick-shape step), one more step on the complete model:
r = L_delta[V] - L_kicks[U_corr] (map on U_corr driven by the recorded kicks about U_corr, i.i.d. + colour taps as learn,
budget B x V-run steps, fitted with n_eff factor / B so the fit weighs it like the V-run), U_pol = U_corr + s r.
Scores per-fit RMSE vs U_0 on the corrected fit's grid (98 % region, count-weighted alignment)."""
import json, math, sys, time
import numpy as np
from scipy import stats as st
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parent))
from replicates import CASES, catalogue, grid_weights, _correct
from bayescg.simulate import simulate
from bayescg.fit import fit_effective_potential, mass_region_cells
from bayescg.bias import check_frames, residual_kick_correlation, coupled_maps, kick_colour, colour_taps, RHO_TOL
from bayescg.splines import SplineRep, design_matrix
from bayescg.potentials import Potential

case, nseeds, B = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
spec = CASES[case]; pot = catalogue(spec["pot"])
ref = Potential.from_expression({"test1": "q**2/2", "test2": "(q**2 - 1)**2/4"}[spec["pot"]], ["q"])
out = []
for s in range(1, nseeds + 1):
    t0 = time.time()
    kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"], gamma=spec["gamma"])
    sim = simulate(pot, spec["delta"], seed=s, **kw)
    f = fit_effective_potential(sim, knots=spec["knots"], method="map", draws=50, seed=s)
    fc, info = _correct(sim, f, kw, spec, s, pot)
    if fc is None:
        print("seed", s, "no correction", info.get("note")); continue
    G = np.asarray(fc.grid, float)[:, 0]
    coef_c = np.asarray(fc.coef_mean, float)  # the corrected spline
    Uc = SplineRep(fc.knots, coef_c)
    q, p, A, E = check_frames(pot, sim)
    stat, kicks = residual_kick_correlation(q, p, Uc.gradient, delta=sim.delta, A=A, E=E, return_kicks="both")
    r1, rse = stat["rho"][0], stat["rho_se"]
    chk = {"corrected": stat, "flag": bool(abs(r1) > RHO_TOL and abs(r1) > 4 * rse), "colour": kick_colour(stat["rho"], rse)}
    taps, col = colour_taps(chk)
    e = np.asarray(sim.hist_edges[0], float)
    rr = np.asarray(kicks, float).reshape(-1); rr = np.sort(rr - rr.mean())
    pad = 0.5 * (e[-1] - e[0]); xs = np.linspace(e[0] - pad, e[-1] + pad, 20001)
    tab = Uc.gradient(xs).reshape(-1)
    walkers = 16; n = int(B * spec["steps"]) // walkers
    a, Ee = float(A[0, 0]), float(E[0, 0])
    nef = float(f.n_eff) / float(np.sum(sim.hist_counts)) / B
    hist = np.zeros((2, e.size - 1)); mom = np.zeros((2, walkers, 20, 2))
    coupled_maps(xs[0], 1.0 / (xs[1] - xs[0]), tab, float(sim.delta), a, Ee, rr, rr.copy(), n, n // 10, walkers, 100 + s,
                 float(e[0]), float(e[-1]), hist, mom, taps=taps)
    m = (n - n // 10) // 20
    mp, mp2 = mom[0, :, :, 0] / m, mom[0, :, :, 1] / m
    v = a * (mp2.mean() - mp.mean() ** 2); se_v = a * mp2.ravel().std(ddof=1) / math.sqrt(mp2.size)
    fk = fit_effective_potential({"counts": hist[0], "edges": [e], "beta_hat": 1 / v, "beta_hat_se": se_v / v ** 2,
                                  "n_eff_factor": nef}, knots=spec["knots"], method="map", draws=50,
                                 calibrate_band=False, predictive=False)
    w = np.interp(G, np.asarray(f.grid)[:, 0], grid_weights(f)); w = w / w.sum()
    raw = np.interp(G, np.asarray(f.grid)[:, 0], np.asarray(f.U_mean))
    Lk = SplineRep(fk.knots, fk.coef_mean).value(G)
    al = lambda u: u - w @ u
    r = al(raw) - al(Lk)
    s_f = info["factor"]
    Ucv = al(np.asarray(fc.U_mean, float)); Upol = Ucv + s_f * r
    U0 = al(np.asarray(ref.V(G), float))
    reg = mass_region_cells(w, 0.98)
    rm = lambda u: float(np.sqrt(np.mean((u - U0)[reg] ** 2)))
    out.append({"seed": s, "grid": G.tolist(), "w": w.tolist(), "Uc": Ucv.tolist(), "Upol": Upol.tolist(), "U0": U0.tolist(),
                "r": r.tolist(), "rmse_c": rm(Ucv), "rmse_pol": rm(Upol), "colour": col.get("modelled"), "s": s_f,
                "converged": info["converged"]})
    print(f"seed {s}: {time.time()-t0:.1f} s rmse corrected {rm(Ucv):.4f} polished {rm(Upol):.4f} |r| {np.sqrt(np.mean(r[reg]**2)):.4f} colour {col.get('modelled')} conv {info['converged']}", flush=True)
json.dump(out, open(f"{Path(__file__).resolve().parent}/polish_step-{case}-B{B:g}.json", "w"))
rc = np.array([o["rmse_c"] for o in out]); rp = np.array([o["rmse_pol"] for o in out])
print(f"{case} B {B}: per-fit RMSE corrected {rc.mean():.4f} polished {rp.mean():.4f}; paired diff {np.mean(rp-rc):+.4f} +- {np.std(rp-rc, ddof=1)/math.sqrt(len(rc)):.4f}")
# seed-mean error profile
G = np.asarray(out[0]["grid"]); 
try:
    Ec = np.mean([np.array(o["Uc"]) - np.array(o["U0"]) for o in out], 0); Ep = np.mean([np.array(o["Upol"]) - np.array(o["U0"]) for o in out], 0)
    reg = mass_region_cells(np.mean([o["w"] for o in out], 0), 0.98)
    print(f"RMS of seed-mean error: corrected {np.sqrt(np.mean(Ec[reg]**2)):.4f} polished {np.sqrt(np.mean(Ep[reg]**2)):.4f}")
    for qq in (-2, -1.5, -1, 0, 1, 1.5, 2, -3, 3):
        i = np.argmin(abs(G - qq))
        if reg[i]: print(f"  q {G[i]:+.2f}: {Ec[i]:+.4f} -> {Ep[i]:+.4f}")
except Exception as exc:
    print("profile skipped:", exc)
