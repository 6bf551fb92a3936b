"""Is correction_se the Monte Carlo sd of the correction?  One raw fit (replicates.py's case and seed), the
correction (pipeline.correct_finite_delta exactly as replicates._correct) repeated with K different correction
seeds; prints, per |q| bin, the sd over the K repeats of the aligned correction against the mean correction_se,
and each repeat's outcome (converged, run, step length alpha).

    python tail11_mc_repeat.py --case test2-d0.25 --seed 48 --repeats 8 [--json out.json]
"""
import argparse, json, time
import numpy as np
from bayescg.config import FitSection
from bayescg.fit import fit_effective_potential
from bayescg.pipeline import correct_finite_delta
from bayescg.potentials import catalogue
from bayescg.simulate import simulate
from replicates import CASES

ap = argparse.ArgumentParser()
ap.add_argument("--case", default="test2-d0.25"); ap.add_argument("--seed", type=int, default=48)
ap.add_argument("--repeats", type=int, default=8); ap.add_argument("--json")
ap.add_argument("--final", default="full", choices=("full", "legacy"), help="fixed_point_correction's final_step")
a = ap.parse_args()
import functools
import bayescg.bias as _b
_b.fixed_point_correction = functools.partial(_b.fixed_point_correction, final_step=a.final)
spec = CASES[a.case]; pot = catalogue(spec["pot"])
kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"], gamma=spec["gamma"])
sim = simulate(pot, spec["delta"], seed=a.seed, **kw)
f = fit_effective_potential(sim, knots=spec["knots"], method="map", draws=400, tune=400, chains=2, seed=a.seed)
fs = FitSection()
rows, C, S = [], [], []
t0 = time.process_time()
for r in range(1, a.repeats + 1):
    fc, raw, corr, note = correct_finite_delta(sim, f, kw, mode=fs.delta_correction, knots=spec["knots"],
                                               mass_fraction=fs.mass_fraction, steps=spec["steps"],
                                               max_iter=fs.correction_iterations,
                                               min_iter=fs.correction_min_iterations, reference=None,
                                               seed=1000 * r + a.seed, warnings=[], potential=pot)
    ev = [e for e in corr.history if "update_rms" in e]
    from bayescg.potentials import reference
    u0 = reference(spec["pot"]).V(fc.grid[:, 0]); wg = np.asarray(fc.grid_weights, float); wg = wg / wg.sum()
    e = (fc.U_mean - wg @ fc.U_mean) - (u0 - wg @ u0); mr = np.asarray(fc.mass_region, bool)
    cov0 = float(np.mean((np.abs(e) <= 0.5 * (fc.U_upper - fc.U_lower))[mr]))
    rows.append(dict(repeat=r, converged=corr.converged, iterations=corr.iterations, alpha=ev[-1]["alpha"],
                     rmse_U0=float(np.sqrt(np.mean(e[mr] ** 2))), coverage_U0=cov0))
    C.append(np.asarray(corr.correction)); S.append(np.asarray(corr.correction_se))
    print(rows[-1], flush=True)
x = np.asarray(corr.grid); w = np.asarray(f.grid_weights, float); w = w / w.sum()
reg = np.asarray(f.mass_region, bool)
C = np.array(C); C = C - (C @ w)[:, None]; S = np.array(S)
sd = C.std(0, ddof=1)
print(f"mean RMSE vs U_0 {np.mean([r['rmse_U0'] for r in rows]):.4f}, mean coverage of U_0 {np.mean([r['coverage_U0'] for r in rows]):.3f}")
out = {"case": a.case, "seed": a.seed, "final": a.final, "repeats": rows, "cpu_s": time.process_time() - t0, "bins": []}
print(f"{a.case} seed {a.seed}: sd over {a.repeats} correction seeds / mean correction_se "
      f"(RMS over the region: {np.sqrt(np.mean(sd[reg]**2)):.4f} / {np.sqrt(np.mean((S**2).mean(0)[reg])):.4f})")
edges = [0, .5, 1, 1.5, 2, 2.5, 3, 9] if "test1" in a.case else [0, .5, 1, 1.25, 1.5, 1.75, 9]
for lo_, hi_ in zip(edges[:-1], edges[1:]):
    m = reg & (np.abs(x) >= lo_) & (np.abs(x) < hi_)
    if m.any():
        r_ = np.sqrt(np.mean(sd[m] ** 2)) / np.sqrt(np.mean((S ** 2).mean(0)[m]))
        out["bins"].append(dict(lo=lo_, hi=hi_, sd=float(np.sqrt(np.mean(sd[m] ** 2))),
                                se=float(np.sqrt(np.mean((S ** 2).mean(0)[m]))), ratio=float(r_)))
        print(f"  |q| in [{lo_},{hi_}): sd {out['bins'][-1]['sd']:.4f}  se {out['bins'][-1]['se']:.4f}  ratio {r_:.2f}")
if a.json:
    json.dump(out, open(a.json, "w"), indent=1)
