"""Which part of the 1D correction's Monte Carlo error does correction_se miss?  One raw fit (replicates.py's case and
seed, optionally at another budget), the correction (pipeline.correct_finite_delta exactly as learn runs it) repeated
with K correction seeds.  The correction is split into its two parts -- the Gaussian white-kick fixed point and the
kick-shape step (bias.apply_kick_shape) -- by recording the correction before and after that step; for each part and
for the whole, the sd over the K repeats (aligned, count-weighted) is set against the RMS of the se it claims
(fixed point: correction_se before the step; kick shape: s x its se over its 4 coupled runs; whole: correction_se).

    python se_parts.py --case test1-d0.5 --steps 2e7 --seed 1 --repeats 8 [--json out.json]
"""
import argparse
import functools
import json
import time
from types import SimpleNamespace

import numpy as np

import bayescg.bias as bias
from bayescg.fit import fit_effective_potential
from bayescg.potentials import catalogue
from bayescg.simulate import simulate
from replicates import CASES, _correct

ap = argparse.ArgumentParser()
ap.add_argument("--case", default="test1-d0.5")
ap.add_argument("--steps", type=float)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--repeats", type=int, default=8)
ap.add_argument("--json")
ap.add_argument("--final-step", help="bias.fixed_point_correction's final_step (default: the library's)")
a = ap.parse_args()
if a.final_step:
    bias.fixed_point_correction = functools.partial(bias.fixed_point_correction, final_step=a.final_step)

rec = {}
_orig = bias.apply_kick_shape


@functools.wraps(_orig)
def _recording(corr, *args, **kw):
    rec["fp"], rec["fp_se"] = np.array(corr.correction), np.array(corr.correction_se)
    _orig(corr, *args, **kw)


bias.apply_kick_shape = _recording
spec = dict(CASES[a.case])
if a.steps:
    spec["steps"] = int(a.steps)
pot = catalogue(spec["pot"])
kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"], gamma=spec["gamma"])
sim = simulate(pot, spec["delta"], seed=a.seed, **kw)
f = fit_effective_potential(sim, knots=spec["knots"], method="map", draws=400, seed=a.seed)
parts = {"fixed point": ([], []), "kick shape": ([], []), "whole": ([], [])}
t0 = time.time()
info = []
for r in range(1, a.repeats + 1):
    fc, corr = _correct(sim, f, kw, spec, 1000 * r + a.seed, pot)  # as learn runs it, this correction seed
    corr = SimpleNamespace(**corr)
    C, S = np.asarray(corr.correction, dtype=float), np.asarray(corr.correction_se, dtype=float)
    ks_se = np.sqrt(np.clip(S ** 2 - rec["fp_se"] ** 2, 0, None))
    for k, (c, s) in {"fixed point": (rec["fp"], rec["fp_se"]), "kick shape": (C - rec["fp"], ks_se),
                      "whole": (C, S)}.items():
        parts[k][0].append(c)
        parts[k][1].append(s)
    ev = [e for e in corr.history if "update_rms" in e]
    info.append(dict(repeat=r, iterations=corr.iterations, converged=bool(corr.converged), alpha=ev[-1].get("alpha"),
                     final=ev[-1].get("final_step")))
    print(info[-1], f"{time.time() - t0:.0f} s", flush=True)
x = np.asarray(corr.grid, dtype=float)
w = np.asarray(f.grid_weights, float)
w = w / w.sum()
reg = np.asarray(f.mass_region, bool)
edges = [0, .5, 1, 1.5, 2, 2.5, 3, 9] if "test1" in a.case else [0, .5, 1, 1.25, 1.5, 1.75, 9]
out = {"case": a.case, "steps": spec["steps"], "seed": a.seed, "final_step": a.final_step, "repeats": info, "parts": {}}
print(f"{a.case} at {spec['steps']:.3g} steps, raw seed {a.seed}: sd over {a.repeats} correction seeds / RMS se")
for k, (cs, ss) in parts.items():
    C = np.array(cs)
    C = C - (C @ w)[:, None]
    S = np.array(ss)
    sd = C.std(0, ddof=1)
    row = {"region": [float(np.sqrt(np.mean(sd[reg] ** 2))), float(np.sqrt(np.mean((S ** 2).mean(0)[reg])))],
           "bins": []}
    for lo_, hi_ in zip(edges[:-1], edges[1:]):
        m = reg & (np.abs(x) >= lo_) & (np.abs(x) < hi_)
        if m.any():
            row["bins"].append([lo_, hi_, float(np.sqrt(np.mean(sd[m] ** 2))), float(np.sqrt(np.mean((S ** 2).mean(0)[m])))])
    out["parts"][k] = row
    print(f"  {k:12s} region: sd {row['region'][0]:.4f} se {row['region'][1]:.4f} ratio "
          f"{row['region'][0] / row['region'][1]:.2f};  by |q|: " +
          ", ".join(f"[{b[0]},{b[1]}) {b[2] / b[3]:.2f}" for b in row["bins"]))
if a.json:
    json.dump(out, open(a.json, "w"), indent=1)
