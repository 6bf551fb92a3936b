"""Replicate study of the bands of the learned U (issue 11, item 1): are they as wide as the seed-to-seed spread?

For each case, ``--seeds`` independent simulations (seeds 1..S, everything else fixed) are fitted; on the grid
points common to all fits, inside the 98 % mass region of the mean histogram, it reports
  * width ratio = mean band half-width / (1.88 x seed-to-seed sd of U_mean) (1 for a calibrated 94 % band);
  * coverage of the replicate mean: fraction of (seed, point) whose band holds the mean of U_mean over seeds
    (what the raw estimator targets; the finite-delta bias is not part of this study);
  * the same two numbers for the model band before the walker-clustered sandwich scaling (``calibrate_band
    = False``) and for the n_eff rule of main (largest IAT of any statistic), recomputed from the same runs.
Every U is aligned to the count-weighted mean (weights: mean histogram over seeds) on the common grid before
the spread is taken.  Settings were fixed before any run (the models' own delta/gamma, modest budgets); the
2D case uses one friction Gamma = Z / 2 from a stage-1 noise estimate (seed 0) for all seeds, so only the
simulation noise varies.

    nice python benchmarks/calibration/replicates.py --seeds 20 --out benchmarks/calibration/results.json
    nice python benchmarks/calibration/replicates.py --plot benchmarks/calibration/results*.json

Corrected bands (``--corrected``): each seed's MAP fit is also passed through the finite-delta correction that
``bayescg learn`` applies (bayescg.pipeline.correct_finite_delta, with the FitSection defaults learn uses: the
main run's steps per white-kick run, its max iterations, V known so the white-noise check and the 1D kick-shape
step run; d = 1 only, as learn on main).  For the corrected U it reports the same width ratio and coverage of
the replicate mean, plus the coverage of the TRUE U_0 (catalogue reference, used only for scoring), and the
two parts of its band separately (raw band x s; 1.88 x correction_se) for the diagnosis.  One command reruns
it (e.g. after bayescg.bias changes):

    nice python benchmarks/calibration/replicates.py --corrected --seeds 20 --cases test1-d0.5 test2-d0.25 \
        --out benchmarks/calibration/results-corrected.json
    python benchmarks/calibration/replicates.py --truth-2d   # raw 2D band against V_0 (stored npz, no runs)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bayescg.fit import fit_effective_potential, grid_weights, replicate_band_summary
from bayescg.bias import Z94
from bayescg.potentials import catalogue, reference
from bayescg.errors import SimulationError
from bayescg.simulate import simulate

CASES = {
    # name: potential, delta, gamma, steps, hist_range, bins, knots, methods
    "test1-d0.5": dict(pot="test1", delta=0.5, gamma=0.1, steps=4_000_000, rng=[(-7.0, 7.0)], bins=200, knots=40,
                       methods=("map", "nuts")),
    "test2-d0.25": dict(pot="test2", delta=0.25, gamma=0.1, steps=4_000_000, rng=[(-3.0, 3.0)], bins=200, knots=40,
                        methods=("map", "nuts")),
    # issue 11's double-well target (delta 0.3, 4e6 steps: corrected RMSE <= 0.01), the model file's grid
    "test2-d0.3": dict(pot="test2", delta=0.3, gamma=0.1, steps=4_000_000, rng=[(-3.0, 3.0)], bins=200, knots=40,
                       methods=("map",)),
    # Z: the stage-1 estimate (estimate_noise(test4, 0.05, 0.1, steps=2e6, walkers=16, seed=0, bayesian=False),
    # which this script computes when "Z" is absent; fixed here to save its ~15 min on the loaded machine)
    "test4-d0.05": dict(pot="test4", delta=0.05, gamma=0.1, steps=8_000_000, rng=[(-1.5, 3.0), (-2.5, 2.0)],
                        bins=60, knots=15, methods=("map",),
                        Z=[[0.05031484922112986, 0.028224252509647323], [0.028224252509647323, 0.02468827294702154]]),
}


def _old_rule_factor(sim):
    """n_eff / n of main's rule (largest streaming IAT of q, q^2, |p|^2), for the comparison column."""
    from bayescg import stats

    q = np.asarray(sim.samples_q, float)
    p = np.asarray(sim.samples_p, float)
    w = np.asarray(sim.sample_walker)
    tau = max(stats.pooled_iat(q, w), stats.pooled_iat(p, w))
    p2 = stats.p2_iat_steps(sim.beta_hat, sim.beta_hat_se, sim.momentum_covariance, sim.accumulated_steps)
    it, _ = stats.effective_iat_steps(sim.q_iat_steps, sim.accumulated_steps, tau, sim.sample_stride,
                                      getattr(sim, "q2_iat_steps", None), p2)
    return min(1.0, sim.accumulated_steps / it / float(np.sum(sim.hist_counts)))


def _correct(sim, fit, kw, spec, seed, pot):
    """The finite-delta correction exactly as ``bayescg learn`` runs it (pipeline.correct_finite_delta with
    FitSection's defaults; reference None: U_0 is only used for scoring) -> (corrected fit or None, info)."""
    from bayescg.config import FitSection
    from bayescg.pipeline import correct_finite_delta

    fs = FitSection()
    warns = []
    if spec.get("vary_kick_seeds"):
        # diagnosis only: learn's kick-shape step draws its coupled maps with seeds (1, 2) in every run, so across
        # replicates its Monte Carlo error is partly common (a bias of the replicate mean, not seed spread); here
        # each replicate gets its own seeds (bias.apply_kick_shape's seeds argument), nothing else changes
        import functools

        import bayescg.bias as bias

        orig = getattr(bias.apply_kick_shape, "__wrapped__", bias.apply_kick_shape)
        bias.apply_kick_shape = functools.wraps(orig)(
            functools.partial(orig, seeds=(1000 + 2 * int(seed), 1001 + 2 * int(seed))))
    fc, raw, corr, note = correct_finite_delta(
        sim, fit, kw, mode=fs.delta_correction, knots=spec["knots"], mass_fraction=fs.mass_fraction,
        steps=int(spec.get("correction_steps_factor", 1) * spec["steps"]) if spec.get("correction_steps_factor")
        else fs.correction_steps or spec["steps"], max_iter=fs.correction_iterations,
        min_iter=spec.get("min_iter", fs.correction_min_iterations), reference=None,
        seed=int(seed), warnings=warns, potential=pot, kick_shape=spec.get("kick_shape", True))
    if corr is None:
        return None, {"note": note, "warnings": warns}
    return fc, {"factor": float(corr.factor), "converged": bool(corr.converged), "iterations": int(corr.iterations),
                "size": float(corr.size), "correction": np.asarray(corr.correction).tolist(),
                "correction_se": np.asarray(corr.correction_se).tolist(), "grid": np.asarray(corr.grid).tolist(),
                "kick_shape": corr.kick_shape, "warnings": warns, "seconds": float(corr.seconds),
                "history": corr.history}


def run_case(name, spec, seeds, draws, main_rule=True, corrected=False):
    pot = catalogue(spec["pot"])
    d = pot.dim
    kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"])
    if d == 2:
        from bayescg.noise import calibrate, estimate_noise

        Z = spec.get("Z")
        if Z is None:
            t = time.time()
            Z = estimate_noise(pot, spec["delta"], spec["gamma"], steps=2_000_000, walkers=16, seed=0,
                               bayesian=False, calibrated_run=False, hist_range=spec["rng"]).noise_covariance
            print(f"{name}: Z = {np.asarray(Z).tolist()} ({time.time() - t:.0f} s)", flush=True)
        kw.update(mass=np.eye(d), friction=calibrate(np.asarray(Z))[1])
    else:
        kw.update(gamma=spec["gamma"])
    runs, failed = [], []
    for s in seeds:
        t0 = time.time()
        try:
            sim = simulate(pot, spec["delta"], seed=int(s), **kw)
        except SimulationError as exc:  # e.g. the double well at delta 0.3: a walker started past the walls'
            # stability limit; the seed is recorded as failed and left out (the summary counts them)
            print(f"{name} seed {s}: V-run failed: {exc}", flush=True)
            failed.append({"seed": int(s), "error": str(exc)})
            continue
        t_sim = time.time() - t0
        row = {"seed": int(s), "sim_seconds": t_sim, "fits": {}}
        old = _old_rule_factor(sim)
        for m in spec["methods"]:
            for variant in ("calibrated", "main_rule") if m == "map" and main_rule else ("calibrated",):
                src = sim
                if variant == "main_rule":
                    from bayescg.stats import equilibrium_summary

                    eq = equilibrium_summary(sim)
                    src = {"counts": sim.hist_counts, "edges": sim.hist_edges, "beta_hat": eq.beta_hat,
                           "beta_hat_se": eq.beta_hat_se, "n_eff_factor": old}
                t1 = time.time()
                f = fit_effective_potential(src, knots=spec["knots"], method=m, draws=draws, tune=draws, chains=2,
                                            seed=int(s), calibrate_band=variant == "calibrated")
                rec = {"grid": f.grid, "U_mean": f.U_mean, "U_lower": f.U_lower, "U_upper": f.U_upper,
                       "weight": grid_weights(f), "n_eff_factor": f.n_eff_factor, "seconds": time.time() - t1,
                       "band_calibration": f.band_calibration, "warnings": f.warnings, "diagnostics": f.diagnostics}
                row["fits"][f"{m}/{variant}"] = rec
                if corrected and m == "map" and variant == "calibrated":
                    t2 = time.time()
                    fc, info = _correct(sim, f, kw, spec, s, pot)
                    row["correction"] = info
                    if fc is not None:
                        crec = {"grid": fc.grid, "U_mean": fc.U_mean, "U_lower": fc.U_lower, "U_upper": fc.U_upper,
                                "weight": grid_weights(fc), "n_eff_factor": fc.n_eff_factor,
                                "seconds": time.time() - t2, "band_calibration": fc.band_calibration,
                                "warnings": info["warnings"], "diagnostics": {}}
                        row["fits"]["map/corrected"] = crec
                        # its two parts, each alone about the corrected mean (for the diagnosis): the raw band
                        # x s, and 1.88 x the correction's Monte Carlo se (interpolated to the fit grid)
                        k = info["factor"]
                        half_raw = 0.5 * (f.U_upper - f.U_lower)
                        se = np.interp(fc.grid[:, 0], np.asarray(info["grid"]), np.asarray(info["correction_se"]))
                        for part, hw in (("raw_x_s", k * half_raw), ("mc_se", Z94 * se)):
                            row["fits"][f"map/corrected_{part}"] = dict(crec, U_lower=fc.U_mean - hw,
                                                                        U_upper=fc.U_mean + hw)
                if variant == "calibrated":
                    # the model band before scaling: the scaling is affine about the draws' mean, so its
                    # quantiles scale exactly (no refit needed)
                    k = f.band_calibration.get("scale", 1.0)
                    row["fits"][f"{m}/model"] = dict(rec, U_lower=f.U_mean + (f.U_lower - f.U_mean) / k,
                                                     U_upper=f.U_mean + (f.U_upper - f.U_mean) / k,
                                                     band_calibration={"scale": 1.0})
        print(f"{name} seed {s}: sim {t_sim:.1f} s, fits " +
              ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in row["fits"].items()), flush=True)
        runs.append(row)
    return runs, failed


def truth_summary(fits, truth, mass_fraction=0.98):
    """Coverage of the true U_0 and the bias of the replicate mean, on the points and alignment of
    replicate_band_summary (common grid, 98 % region of the summed weights, every curve and U_0 aligned to the
    same count-weighted mean).  truth: Potential (its .V) of the reference.  Returns coverage_truth (fraction of
    (fit, point) whose band holds U_0), rmse_mean_vs_truth (RMS of replicate mean - U_0 over the region),
    bias_over_sd (that RMS / RMS seed sd: the bias in units of one seed's scatter), rmse_per_fit_mean,
    and the bias profile."""
    from bayescg.fit import mass_region_cells, on_common_grid

    common, U, lo, hi, wt = on_common_grid(fits)
    w = wt.sum(axis=0)
    reg = mass_region_cells(w, mass_fraction)
    w = w / w.sum()
    pts = np.asarray(common, float)
    u0 = np.asarray(truth.V(pts if pts.shape[1] > 1 else pts[:, 0]), float).ravel()
    u0 = u0 - w @ u0
    c = U @ w
    U, lo, hi = U - c[:, None], lo - c[:, None], hi - c[:, None]
    inside = (lo <= u0[None]) & (u0[None] <= hi)
    bias = U.mean(axis=0) - u0
    sd = U.std(axis=0, ddof=1)
    rng = np.random.default_rng(0)  # seed-bootstrap interval of coverage_truth, as replicate_band_summary's
    per_fit = inside[:, reg].mean(axis=1)
    boot = per_fit[rng.integers(0, len(per_fit), (2000, len(per_fit)))].mean(axis=1)
    return {"coverage_truth": float(inside[:, reg].mean()),
            "coverage_truth_ci": (per_fit.mean() + np.array([-1.645, 1.645]) * boot.std(ddof=1)).tolist(),
            "coverage_truth_per_fit_min": float(inside[:, reg].mean(axis=1).min()),
            "rmse_mean_vs_truth": float(np.sqrt(np.mean(bias[reg] ** 2))),
            "rmse_per_fit_mean": float(np.mean(np.sqrt(np.mean((U[:, reg] - u0[reg]) ** 2, axis=1)))),
            "bias_over_sd": float(np.sqrt(np.mean(bias[reg] ** 2)) / np.sqrt(np.mean(sd[reg] ** 2))),
            "bias_profile": bias[reg].tolist()}


def analyse(runs, truth=None):
    """Width ratio and coverage of the replicate mean per fit variant (bayescg.fit.replicate_band_summary), and
    with ``truth`` (the reference Potential) the coverage of U_0 and the bias (truth_summary)."""
    out = {}
    for key in runs[0]["fits"]:
        fits = [r["fits"][key] for r in runs if key in r["fits"]]
        if len(fits) < 3:
            continue
        out[key] = dict(replicate_band_summary(fits), **(truth_summary(fits, truth) if truth is not None else {}),
                        band_scale_mean=float(np.mean([f["band_calibration"].get("scale", 1.0) for f in fits])),
                        n_eff_factor_mean=float(np.mean([f["n_eff_factor"] for f in fits])),
                        fit_seconds_mean=float(np.mean([f["seconds"] for f in fits])),
                        fits_with_warnings=int(sum(bool(f["warnings"]) for f in fits)))
    return out




def plot(result_files, png):
    """Band half-width against 1.88 x seed-to-seed sd of U_mean, per grid point (mass region), per case: the raw
    learned U's band and the finite-delta corrected U's band (with its two parts), files merged in order (a later
    file's variant of the same case replaces an earlier one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = {}
    for f in result_files:
        if Path(f).exists():
            for name, c in json.loads(Path(f).read_text()).items():
                cases.setdefault(name, {"results": {}})["results"].update(c["results"])
    fig, axs = plt.subplots(1, len(cases), figsize=(4.8 * len(cases), 4.6), squeeze=False)
    style = {"map/calibrated": ("C0", "o", "raw U, MAP+Laplace"),
             "nuts/calibrated": ("C1", "s", "raw U, NUTS"),
             "map/corrected": ("C3", "D", "corrected U (reported band)"),
             "map/corrected_raw_x_s": ("C2", "^", "  its part raw band x s"),
             "map/corrected_mc_se": ("C7", "v", "  its part 1.88 x correction_se"),
             # the 2D learn study (--analyse-learn-2d): learn's headline and raw bands (both carry Z's part since
             # 2026-12-04; the headline U is the raw U where the correction is within its Monte Carlo error)
             "raw/with_z": ("C0", "o", "raw U as learn reports it (with Z's part)"),
             "corrected/with_z": ("C3", "D", "headline U_k: learn's band"),
             "corrected/no_z": ("C1", "s", "  the same without Z's part"),
             "corrected/part_raw_x_s": ("C2", "^", "  its part raw band (no Z) x s"),
             "corrected/part_mc_se": ("C7", "v", "  its part 1.88 x correction_se")}
    for ax, (name, c) in zip(axs[0], cases.items()):
        top = 0.0
        for key, (col, mk, lab) in style.items():
            r = c["results"].get(key)
            if r is None:
                continue
            x = 1.88 * np.asarray(r["profile"]["seed_sd"])
            y = np.asarray(r["profile"]["half_width"])
            cov0 = f", U_0 {r['coverage_truth']:.2f}" if "coverage_truth" in r and "part" not in key and "corrected_" not in key else ""
            ax.scatter(x, y, s=8, color=col, marker=mk, alpha=0.6,
                       label=f"{lab} ({r['fits']}): ratio {r['width_ratio']:.2f}, cover {r['coverage']:.2f}{cov0}")
            if key in ("map/calibrated", "map/corrected", "raw/with_z", "corrected/with_z"):
                top = max(top, 1.6 * max(x.max(), y.max()))
        t = np.linspace(0, top, 2)
        ax.plot(t, t, "k-", lw=1)
        ax.plot(t, 0.8 * t, "k:", lw=0.8)
        ax.plot(t, 1.25 * t, "k:", lw=0.8)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top * 1.3)
        ax.set_xlabel("1.88 x seed-to-seed sd of U_mean")
        ax.set_ylabel("mean band half-width")
        note = "" if any(k.startswith(("map/corrected", "corrected/")) for k in c["results"]) else " -- raw only"
        nfit = next(iter(c["results"].values()))["fits"]
        ax.set_title(f"{name} ({nfit} seeds){note}", fontsize=9)
        ax.legend(fontsize=6, loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def truth_2d(npz, key="map/calibrated", pot="test4"):
    """Coverage of V_0 by the stored raw 2D replicate fits (no runs): learn does not correct in 2D on main."""
    z = np.load(npz)
    seeds = sorted({int(k.split("|")[1]) for k in z.files if k.startswith(key + "|")})
    fits = [{a: z[f"{key}|{s}|{a}"] for a in ("grid", "U_mean", "U_lower", "U_upper", "weight")} for s in seeds]
    return dict(truth_summary(fits, reference(pot)), fits=len(fits), key=key, source=str(npz))


# --- 2D: exactly what ``bayescg learn`` runs, per seed (issue 11, deliverable 1, 2D) ------------------------------
# Settings fixed before the first run (2026-12-03): models/test4-2d-quadratic.toml (4.8) with these overrides, the
# seed the only thing that changes.  learn_model runs stage 1 (its own Z and Z posterior per seed), stage 2
# (Gamma = Z / 2, M = I), the main run, the MAP + Laplace fit with the walker sandwich, Z's part of the band
# (noise.z_draws = 3 re-runs) and the finite-delta correction (pipeline.correct_finite_delta, d = 2 by default).
LEARN_2D_MODEL = Path(__file__).resolve().parents[2] / "models" / "test4-2d-quadratic.toml"
LEARN_2D_OVERRIDES = {"simulation.steps": 2_000_000, "simulation.bins": 60, "fit.knots": 15, "fit.method": "map"}


def learn_2d_seed(seed, workdir):
    """One seed of ``bayescg learn`` on (4.8) -> workdir/seed-<s>.npz (curves) + .json (numbers).

    Stored: the raw and the corrected U with the bands learn reports, and the parts of those bands (Z's factor
    noise_part_of_band.band_scale and which band it widened, the correction's Jacobian factor s and correction_se),
    so the bands with and without Z's part can be rebuilt exactly (affine maps about U_mean; bias.corrected_fit)."""
    import os

    from bayescg.config import load_model
    from bayescg.pipeline import learn_model

    model = load_model(LEARN_2D_MODEL, dict(LEARN_2D_OVERRIDES, **{"simulation.seed": int(seed)}))
    t0, c0, load0 = time.time(), time.process_time(), os.getloadavg()[0]
    res = learn_model(model)
    raw, fc, corr, zp = res.raw_fit, res.fit, res.correction, res.noise_part or {}
    arr = {"grid": fc.grid, "weight": grid_weights(fc)}
    for tag, f in (("raw", raw if raw is not None else fc), ("corrected", fc)):
        for a in ("U_mean", "U_lower", "U_upper"):
            arr[f"{tag}|{a}"] = np.asarray(getattr(f, a), float)
    if corr is not None:
        arr["correction_se"] = np.asarray(corr.correction_se, float)
    np.savez_compressed(Path(workdir) / f"seed-{int(seed):03d}.npz", **arr)
    info = {"seed": int(seed), "wall_seconds": time.time() - t0, "cpu_seconds": time.process_time() - c0,
            "load_start": load0, "load_end": os.getloadavg()[0],
            "noise_covariance": np.asarray(res.noise.noise_covariance).tolist(),
            "noise_covariance_sd": np.asarray(res.noise.noise_covariance_sd).tolist(),
            "noise_part_of_band": zp, "correction_applied": corr is not None, "correction_note": res.correction_note,
            # corr.applied False: within its Monte Carlo error, U is the raw U with the correction's se in the band
            # (bias.correction_significance); the "corrected" arrays are then what learn reports as U
            "correction_significant": bool(getattr(corr, "applied", True)) if corr is not None else None,
            "correction_significance": getattr(corr, "significance", None) if corr is not None else None,
            "jacobian_factor": float(corr.factor) if corr is not None else None,
            "converged": bool(corr.converged) if corr is not None else None,
            "iterations": int(corr.iterations) if corr is not None else None,
            "beta_hat": float(res.simulation.beta_hat), "trapped_fraction": float(res.simulation.trapped_fraction),
            "raw_band_scale": float(raw.band_calibration.get("scale", 1.0)) if raw is not None else None,
            "reference_rmse": fc.reference_rmse, "reference_rmse_raw": raw.reference_rmse if raw is not None else None,
            "warnings": list(res.warnings)}
    (Path(workdir) / f"seed-{int(seed):03d}.json").write_text(json.dumps(info, indent=1, default=float))
    return info


def _band_variants_2d(z, info):
    """The bands of one seed: as learn reported them, and rebuilt with / without Z's part for each U.

    Z's factor f (noise_part_of_band.band_scale) scales the raw draws about U_mean; the corrected band is
    U_c -/+ sqrt((s x raw half-width)^2 + (Z94 x correction_se)^2) on each side (bias.corrected_fit, exact for
    the quantiles of affinely scaled draws)."""
    zp = info.get("noise_part_of_band") or {}
    f = float(zp.get("band_scale", 1.0))
    # learn before the widens field widened the raw fit before the correction (so both bands carried Z's part)
    widens = zp.get("widens", ["U_raw", "U"])
    base = {"grid": z["grid"], "weight": z["weight"]}
    rm, rl, ru = z["raw|U_mean"], z["raw|U_lower"], z["raw|U_upper"]
    f_raw = f if "U_raw" in widens or ("U" in widens and not info.get("correction_applied")) else 1.0
    lo0, hi0 = (rm - rl) / f_raw, (ru - rm) / f_raw  # the raw band without Z's part
    out = {"raw/reported": dict(base, U_mean=rm, U_lower=rl, U_upper=ru),
           "raw/no_z": dict(base, U_mean=rm, U_lower=rm - lo0, U_upper=rm + hi0),
           "raw/with_z": dict(base, U_mean=rm, U_lower=rm - f * lo0, U_upper=rm + f * hi0)}
    if info.get("correction_applied"):
        cm = z["corrected|U_mean"]
        s, se = float(info["jacobian_factor"]), Z94 * z["correction_se"]
        out["corrected/reported"] = dict(base, U_mean=cm, U_lower=z["corrected|U_lower"],
                                         U_upper=z["corrected|U_upper"])
        for name, g in (("no_z", 1.0), ("with_z", f)):
            out[f"corrected/{name}"] = dict(base, U_mean=cm, U_lower=cm - np.hypot(g * s * lo0, se),
                                            U_upper=cm + np.hypot(g * s * hi0, se))
        out["corrected/part_raw_x_s"] = dict(base, U_mean=cm, U_lower=cm - s * lo0, U_upper=cm + s * hi0)
        out["corrected/part_mc_se"] = dict(base, U_mean=cm, U_lower=cm - se, U_upper=cm + se)
    return out


def analyse_learn_2d(workdir, compact=None):
    """Width ratio, coverage of the replicate mean and of V_0 (used only here, for scoring), bias/sd, for every
    band variant, over the seeds done in ``workdir``; ``compact``: an npz path for the per-seed curves on the mass
    region (what the repository keeps; the per-seed files in workdir are ~55 kB each)."""
    infos = [json.loads(p.read_text()) for p in sorted(Path(workdir).glob("seed-*.json"))]
    rows = [_band_variants_2d(np.load(Path(workdir) / f"seed-{i['seed']:03d}.npz"), i) for i in infos]
    truth = reference("test4")
    # "*/reported" are the bands the learn that ran reported: equal to raw/with_z and corrected/with_z for runs made
    # before learn widened only the raw band (noise_part_of_band.widens), to raw/with_z and corrected/no_z after
    keys = [k for k in rows[0] if all(k in r for r in rows) and not k.endswith("/reported")]
    res = {}
    for k in keys:
        fits = [r[k] for r in rows]
        rb = replicate_band_summary(fits)
        rb["profile"] = ({a: [float(f"{v:.4g}") for v in rb["profile"][a]] for a in ("half_width", "seed_sd")}
                         if k != "raw/no_z" else None)   # kept for the plot (--plot)
        ts = truth_summary(fits, truth)
        ts.pop("bias_profile")
        res[k] = dict(rb, **ts)
    if compact:  # every variant can be rebuilt from these (< 0.5 MB for 40 seeds): the mass region of the common grid
        from bayescg.fit import mass_region_cells, on_common_grid

        common, U, lo, hi, wt = on_common_grid([r["raw/no_z"] for r in rows])
        reg = mass_region_cells(wt.sum(axis=0), 0.98)
        arr = {"grid": np.asarray(common, float)[reg], "weight": wt[:, reg].astype(np.float32),
               "raw_U_mean": U[:, reg].astype(np.float32), "raw_lower_no_z": lo[:, reg].astype(np.float32),
               "raw_upper_no_z": hi[:, reg].astype(np.float32), "seeds": np.array([i["seed"] for i in infos]),
               "z_band_scale": np.array([float((i.get("noise_part_of_band") or {}).get("band_scale", 1.0))
                                         for i in infos]),
               "jacobian_factor": np.array([float(i["jacobian_factor"] or np.nan) for i in infos])}
        if all("corrected/part_mc_se" in r for r in rows):
            _, Uc, loc, _, _ = on_common_grid([r["corrected/part_mc_se"] for r in rows])
            arr.update(corrected_U_mean=Uc[:, reg].astype(np.float32),
                       correction_se=((Uc - loc)[:, reg] / Z94).astype(np.float32))
        np.savez_compressed(compact, **arr)
    per_seed = [{a: i.get(a) for a in ("seed", "wall_seconds", "cpu_seconds", "load_start", "load_end",
                                       "noise_covariance", "noise_part_of_band", "jacobian_factor", "converged",
                                       "iterations", "beta_hat", "reference_rmse", "reference_rmse_raw", "warnings",
                                       "correction_significant", "correction_significance")}
                for i in infos]
    return {"settings": {"model": "models/test4-2d-quadratic.toml", "overrides": LEARN_2D_OVERRIDES,
                         "seeds": [i["seed"] for i in infos],
                         "fixed_before_first_run": True,
                         "what": "bayescg.pipeline.learn_model per seed (stage 1 Z, stage 2, main run, MAP + "
                                 "Laplace, noise_part_of_band with noise.z_draws = 3, finite-delta correction)"},
            "wall_seconds_sum": float(sum(i["wall_seconds"] for i in infos)),
            "cpu_seconds_sum": float(sum(i["cpu_seconds"] for i in infos)),
            "load_average_range": [float(min(i["load_start"] for i in infos)),
                                   float(max(i["load_end"] for i in infos))],
            "results": res, "per_seed": per_seed}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--methods", nargs="*", help="override the cases' fit methods (e.g. map)")
    ap.add_argument("--no-main-rule", action="store_true", help="skip the refit with main's n_eff rule")
    ap.add_argument("--corrected", action="store_true",
                    help="MAP only, plus the finite-delta correction learn applies (1D), scored against U_0 too")
    ap.add_argument("--steps", type=float, help="override the cases' steps (the case is then stored as NAME@STEPS)")
    ap.add_argument("--first-seed", type=int, default=1)
    ap.add_argument("--final-step", choices=("full", "legacy", "se"),
                    help="A/B only: bias.fixed_point_correction's final_step (default: the library's)")
    ap.add_argument("--no-kick-shape", action="store_true",
                    help="diagnosis only: the correction without its 1D kick-shape step (stored as NAME~white)")
    ap.add_argument("--vary-kick-seeds", action="store_true",
                    help="diagnosis only: per-replicate seeds for the kick-shape step (stored as NAME~kickseeds)")
    ap.add_argument("--correction-steps-factor", type=float,
                    help="diagnosis: white-kick runs of this many x the main run's steps (learn's fit.correction_steps; "
                         "stored as NAME~cstepsF)")
    ap.add_argument("--truth-2d", action="store_true",
                    help="only score the stored raw 2D fits (raw-test4-d0.05.npz) against V_0 -> results-2d-truth.json")
    ap.add_argument("--learn-2d", metavar="WORKDIR",
                    help="2D: run bayescg learn's pipeline (test4, LEARN_2D_OVERRIDES) for seeds first-seed.. into "
                         "WORKDIR (per-seed npz + json; seeds already there are skipped)")
    ap.add_argument("--analyse-learn-2d", metavar="WORKDIR",
                    help="score the seeds in WORKDIR (corrected and raw bands, with and without Z's part) -> --out")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    ap.add_argument("--plot", nargs="*", help="only plot these result files into band_vs_spread.png")
    a = ap.parse_args()
    if a.plot:
        plot(a.plot, Path(__file__).with_name("band_vs_spread.png"))
        return
    if a.learn_2d:
        Path(a.learn_2d).mkdir(parents=True, exist_ok=True)
        for sd in range(a.first_seed, a.first_seed + a.seeds):
            if (Path(a.learn_2d) / f"seed-{sd:03d}.json").exists():
                continue
            i = learn_2d_seed(sd, a.learn_2d)
            print(f"seed {sd}: {i['wall_seconds']:.0f} s, load {i['load_end']:.1f}, rmse raw "
                  f"{i['reference_rmse_raw']}, corrected {i['reference_rmse']}, Z part x"
                  f"{(i['noise_part_of_band'] or {}).get('band_scale')}", flush=True)
        return
    if a.analyse_learn_2d:
        r = analyse_learn_2d(a.analyse_learn_2d, Path(a.out).with_name(f"raw-{Path(a.out).stem}.npz"))
        Path(a.out).write_text(json.dumps({"test4-learn-2d": r}, indent=1, default=float))
        for k, v in r["results"].items():
            print(f"{k}: {v['fits']} seeds, width ratio {v['width_ratio']:.3f}, coverage of mean {v['coverage']:.3f}, "
                  f"coverage of V_0 {v['coverage_truth']:.3f}, bias/sd {v['bias_over_sd']:.2f}")
        return
    if a.truth_2d:
        r = truth_2d(Path(__file__).with_name("raw-test4-d0.05.npz"))
        Path(__file__).with_name("results-2d-truth.json").write_text(json.dumps(r, indent=1))
        print({k: v for k, v in r.items() if k != "bias_profile"})
        return
    out = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else {}
    for name in a.cases:
        spec = dict(CASES[name], **({"methods": tuple(a.methods)} if a.methods else {}))
        if a.corrected:
            spec["methods"] = ("map",)
        case = name
        if a.steps:
            spec["steps"] = int(a.steps)
            case = f"{name}@{a.steps:.3g}"
        if a.no_kick_shape:
            spec["kick_shape"] = False
            case += "~white"
        if a.vary_kick_seeds:
            spec["vary_kick_seeds"] = True
            case += "~kickseeds"
        if a.correction_steps_factor:
            spec["correction_steps_factor"] = a.correction_steps_factor
            case += f"~csteps{a.correction_steps_factor:g}"
        t0 = time.time()
        if a.final_step:
            import functools

            import bayescg.bias as bias

            orig = getattr(bias.fixed_point_correction, "func", bias.fixed_point_correction)
            bias.fixed_point_correction = functools.partial(orig, final_step=a.final_step)
        runs, failed = run_case(name, spec, range(a.first_seed, a.first_seed + a.seeds), a.draws,
                                not (a.no_main_rule or a.corrected), corrected=a.corrected)
        res = analyse(runs, reference(spec["pot"]) if a.corrected else None)
        raw = {f"{k}|{r['seed']}|{a}": np.asarray(v[a]) for r in runs for k, v in r["fits"].items()
               for a in ("grid", "U_mean", "U_lower", "U_upper", "weight")}
        # corrected runs: one npz per results file (raw-<case>-corrected-50.npz for results-corrected-50.json, ...)
        tag = "-" + Path(a.out).stem.replace("results-", "", 1) if a.corrected else ""
        for r in runs:  # the correction's curves go to the npz, not the json (one number per line there)
            c = r.get("correction") or {}
            for nm in ("grid", "correction", "correction_se"):
                if nm in c:
                    raw[f"correction|{r['seed']}|{nm}"] = np.asarray(c.pop(nm))
        np.savez_compressed(Path(a.out).with_name(f"raw-{case}{tag}.npz"), **raw)  # re-analysable without rerunning
        per_seed = [{"seed": r["seed"], "sim_seconds": r["sim_seconds"], "correction": r.get("correction"),
                     **{k: {"band_calibration": f["band_calibration"], "warnings": f["warnings"],
                            "diagnostics": f["diagnostics"], "seconds": f["seconds"], "n_eff_factor": f["n_eff_factor"]}
                        for k, f in r["fits"].items() if not k.endswith("/model") and "corrected_" not in k}}
                    for r in runs]
        out[case] = {"settings": {k: v for k, v in spec.items()}, "wall_seconds": time.time() - t0,
                     "cpu_seconds": time.process_time(),
                     "sim_seconds_mean": float(np.mean([r["sim_seconds"] for r in runs])), "results": res,
                     "per_seed": per_seed, "failed_seeds": failed}
        Path(a.out).write_text(json.dumps(out, indent=1, default=list))
        if failed:
            print(f"{case}: {len(failed)} of {len(failed) + len(runs)} seeds failed in the V-run and are left out: "
                  + ", ".join(str(f["seed"]) for f in failed), flush=True)
        for k, v in res.items():
            extra = (f", coverage of U_0 {v['coverage_truth']:.3f}, bias/sd {v['bias_over_sd']:.2f}, "
                     f"rmse(mean) {v['rmse_mean_vs_truth']:.4f}") if "coverage_truth" in v else ""
            print(f"{case} {k}: width ratio {v['width_ratio']:.3f}, coverage {v['coverage']:.3f}, "
                  f"scale {v['band_scale_mean']:.3f}, n_eff/n {v['n_eff_factor_mean']:.3f}{extra}", flush=True)


if __name__ == "__main__":
    main()
