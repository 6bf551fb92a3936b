"""Is the correction's claimed Monte Carlo error the size of its Monte Carlo spread?  (issue 11, band of U_k)

band_parts.py found, over V-run seeds, the correction C of Test 1 spread wider than Z94 x correction_se claims
(width ratio 0.85 at 4e6 steps, 100 seeds).  This separates the two sources of that spread: for a fixed V-run (seed
and fit fixed) the correction is repeated with other seeds of its own runs (white-kick runs, white-noise check,
kick-shape maps: pipeline.correct_finite_delta's ``seed``), exactly as ``bayescg learn`` runs it
(replicates._correct).  The spread over those seeds is the pure Monte Carlo error, which correction_se claims; what
the V-run seeds add on top comes from the correction's inputs taken from the V-run (its kick variance Z, the target
fit), which correction_se does not hold.

    nice python benchmarks/calibration/correction_mc.py [--case test1-d0.5] [--vruns 1,2] [--repeats 20]
    # -> correction_mc-<case>.json + a table on stdout
    nice python benchmarks/calibration/correction_mc.py --vrun-spread --vruns 1-24 [--min-iter 1]
    # -> correction_mc-<case>-vruns-min<N>.json: Z94 x correction_se against C's spread over V-run seeds, with and
    #    without the kick-shape step (learn's correction; the same fits); --min-iter: at least that many iterations
    #    (learn's default 4; -min1.json is learn before 2026-12-04, which stopped at the first converged update)
    nice python benchmarks/calibration/correction_mc.py --beta-sensitivity --vruns 1,2
    # -> correction_mc-<case>-beta.json: how far one se of the V-run's beta_hat (its temperature, which sets the
    #    white runs' kick variance) moves C, against correction_se (same correction seed, beta_hat +- 2 se)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bayescg.bias import Z94
from bayescg.config import FitSection
from bayescg.fit import fit_effective_potential, replicate_band_summary
from bayescg.potentials import catalogue
from bayescg.simulate import simulate
from replicates import CASES, _correct

HERE = Path(__file__).resolve().parent


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="test1-d0.5", choices=sorted(CASES))
    ap.add_argument("--vruns", default="1,2", help="V-run seeds (each: one simulation and fit, then the repeats)")
    ap.add_argument("--repeats", type=int, default=20, help="correction seeds per V-run")
    ap.add_argument("--steps", type=float, help="override the case's steps (outputs named <case>@<steps>)")
    ap.add_argument("--beta-sensitivity", action="store_true", help="the beta_hat sensitivity instead (see above)")
    ap.add_argument("--vrun-spread", action="store_true", help="C's spread over V-run seeds (see above)")
    ap.add_argument("--min-iter", type=int, default=None,
                    help="with --vrun-spread: at least this many fixed-point iterations (default: learn's "
                         "fit.correction_min_iterations, 4 since 2026-12-04; 1 before)")
    a = ap.parse_args(argv)
    if a.beta_sensitivity:
        return beta_sensitivity(a)
    if a.vrun_spread:
        return vrun_spread(a)
    spec, pot, kw = _setup(a.case, a.steps)
    out = {"case": a.case, "settings": {k: v for k, v in spec.items() if k != "methods"}, "vruns": {}}
    print("| V-run seed | repeats | width ratio of Z94 x correction_se to the repeats' spread [90 %] | "
          "coverage of the repeats' mean |")
    print("|---|---|---|---|")
    for v in _seeds(a.vruns):
        t0 = time.time()
        sim = simulate(pot, spec["delta"], seed=v, **kw)
        fit = fit_effective_potential(sim, knots=spec["knots"], method="map", seed=v)
        rows = []
        for c in range(1, a.repeats + 1):
            _, info = _correct(sim, fit, kw, spec, 100 * v + c, pot)
            if "correction" not in info:
                print(f"V-run {v}, correction seed {100 * v + c}: not applied ({info['note']})")
                continue
            rows.append(_as_fit(info, fit))
        r = replicate_band_summary(rows)
        lo, hi = r["width_ratio_ci"]
        out["vruns"][str(v)] = {k: r[k] for k in ("fits", "points", "width_ratio", "width_ratio_ci", "coverage",
                                                  "coverage_ci")}
        out["vruns"][str(v)]["seconds"] = time.time() - t0
        print(f"| {v} | {r['fits']} | {r['width_ratio']:.3f} [{lo:.3f}, {hi:.3f}] | {r['coverage']:.3f} |",
              flush=True)
    (HERE / f"correction_mc-{_name(a)}.json").write_text(json.dumps(out, indent=1))


def _seeds(text):
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def _name(a):
    return a.case if a.steps is None else f"{a.case}@{a.steps:g}"


def _setup(case, steps=None):
    """(spec, potential, simulate keywords) of a replicates.py case, as its 1D studies run it (``steps``: override the
    case's steps, as replicates.py --steps)."""
    spec = CASES[case] if steps is None else dict(CASES[case], steps=int(steps))
    kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"], gamma=spec["gamma"])
    return spec, catalogue(spec["pot"]), kw


def _as_fit(info, fit):
    """The correction C of one run as a 'fit' with band +- Z94 x correction_se, on the fit's grid and weights."""
    if np.asarray(info["grid"], dtype=float).size != len(fit.grid):
        raise ValueError("the correction's grid is not the fit's")
    C, se = np.asarray(info["correction"]), np.asarray(info["correction_se"])
    w = np.asarray(fit.grid_weights, dtype=float)
    return {"grid": fit.grid, "U_mean": C, "U_lower": C - Z94 * se, "U_upper": C + Z94 * se, "weight": w}


def vrun_spread(a):
    spec, pot, kw = _setup(a.case, a.steps)
    if a.min_iter is not None:
        spec = dict(spec, min_iter=a.min_iter)
    rows = {"with kick-shape step (learn)": [], "without it (fixed point only)": []}
    for v in _seeds(a.vruns):
        sim = simulate(pot, spec["delta"], seed=v, **kw)
        fit = fit_effective_potential(sim, knots=spec["knots"], method="map", seed=v)
        for name, ks in (("with kick-shape step (learn)", True), ("without it (fixed point only)", False)):
            _, info = _correct(sim, fit, kw, dict(spec, kick_shape=ks), v, pot)
            if "correction" in info:
                rows[name].append(_as_fit(info, fit))
    min_iter = spec.get("min_iter", FitSection().correction_min_iterations)
    out = {"case": a.case, "vruns": a.vruns, "min_iter": min_iter, "results": {}}
    print("| correction | V-runs | width ratio of Z94 x correction_se to C's spread over V-runs [90 %] | coverage |")
    print("|---|---|---|---|")
    for name, fits in rows.items():
        r = replicate_band_summary(fits)
        out["results"][name] = {k: r[k] for k in ("fits", "points", "width_ratio", "width_ratio_ci", "coverage",
                                                  "coverage_ci")}
        lo, hi = r["width_ratio_ci"]
        print(f"| {name} | {r['fits']} | {r['width_ratio']:.3f} [{lo:.3f}, {hi:.3f}] | {r['coverage']:.3f} |",
              flush=True)
    (HERE / f"correction_mc-{_name(a)}-vruns-min{min_iter}.json").write_text(json.dumps(out, indent=1))


def beta_sensitivity(a):
    import copy

    spec, pot, kw = _setup(a.case, a.steps)
    out = {"case": a.case, "vruns": {}}
    for v in _seeds(a.vruns):
        sim = simulate(pot, spec["delta"], seed=v, **kw)
        fit = fit_effective_potential(sim, knots=spec["knots"], method="map", seed=v)
        b, bse = float(sim.beta_hat), float(sim.beta_hat_se)
        res = {}
        for k in (-2, 0, 2):
            s2 = copy.copy(sim)
            s2.beta_hat = b + k * bse
            _, info = _correct(s2, fit, kw, spec, 100 * v + 1, pot)
            res[k] = (np.asarray(info["correction"]), np.asarray(info["correction_se"]))
        reg = np.asarray(fit.mass_region, dtype=bool)
        g = np.asarray(info["grid"], dtype=float).reshape(-1)
        if g.size != reg.size:
            raise ValueError("the correction's grid is not the fit's")
        dC = (res[2][0] - res[-2][0]) / 4.0  # per one se of beta_hat, common correction seed
        dC = dC - dC[reg].mean()
        rms = float(np.sqrt(np.mean(dC[reg] ** 2)))
        se = float(np.sqrt(np.mean(res[0][1][reg] ** 2)))
        out["vruns"][str(v)] = {"beta_hat": b, "beta_hat_se": bse, "rms_dC_per_se": rms, "rms_correction_se": se,
                                "ratio": rms / se}
        print(f"V-run {v}: beta_hat {b:.4f} +- {bse:.4f}; RMS over the mass region of dC per se of beta_hat {rms:.5f}"
              f" against RMS correction_se {se:.5f} (ratio {rms / se:.3f})", flush=True)
    (HERE / f"correction_mc-{_name(a)}-beta.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
