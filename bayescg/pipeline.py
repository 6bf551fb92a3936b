"""Pillar-1 pipeline over a model file: potential -> (noise calibration) -> simulation -> fit.

``learn_model`` is what ``bayescg learn`` runs: for d >= 2 it first estimates the effective
noise covariance Z (Theorem 3.1, stage 1) and calibrates the friction to Gamma = Z / 2 with
M = I (stage 2) so the sampled law is Gibbs with beta = 1; in 1D it uses beta_hat = 1/var(p)
(3.5).  Then it fits U_k on a spline basis with PyMC (3.9) and, for 1D damped-map runs (any mass), removes
the finite-delta bias of that learned U_delta by the fixed point (B4) of :mod:`bayescg.bias` (``fit.delta_correction``).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .config import FitSection, Model, NoiseSection
from .errors import BlowUpError, InputError, SimulationError
from .simulate import hist_range_from_model, potential_from_model, reference_from_model, sim_kwargs  # noqa: F401


def estimate_noise_model(model: Model, *, executor=None, control=None, workdir=None, resume: bool = False):
    """Stage 1 (+ stage-2 check) of Theorem 3.1 for the model's potential; see :mod:`bayescg.noise`.

    workdir / resume: per-design checkpoints (:func:`bayescg.noise.estimate_noise`)."""
    from .noise import estimate_noise

    s = model.require("simulation")
    ns = model.noise or NoiseSection()
    # the design runs start where the model says (init_mean/init_sd matter: e.g. Mueller-Brown's
    # exponential term blows up walkers started far from the wells); mass and friction are the designs'
    kw = {k: v for k, v in sim_kwargs(model).items() if k not in ("gamma", "steps", "walkers", "seed", "mass", "friction")}
    return estimate_noise(potential_from_model(model), s.delta, s.gamma, steps=ns.steps or s.steps,
                          walkers=s.walkers, seed=s.seed, executor=executor, control=control, workdir=workdir,
                          resume=resume, **kw)


def identified_noise(sim) -> dict:
    """What one uncalibrated run identifies about Z = Sigma Sigma^T: the linear functional Tr(Z A).

    Ito's formula for H = p^T A p / 2 + U with friction Gamma (see :mod:`bayescg.noise`) gives at equilibrium
    Tr(Z A) = 2 E[p^T A Gamma A p] = 2 Tr(A Gamma A E[p p^T]); A = M^-1 (d, d) and Gamma (d, d) of the run.
    The se propagates the momentum-covariance ses as independent (a rough bound).  For d >= 2 the other
    d(d+1)/2 - 1 combinations of Z are not identified by this run.
    """
    A = np.asarray(sim.mass, dtype=float)
    G = np.asarray(sim.friction, dtype=float)
    C = np.asarray(sim.momentum_covariance, dtype=float)
    mu = np.asarray(sim.momentum_mean, dtype=float).ravel()
    W = A @ G @ A
    val = 2.0 * float(np.sum(W * (C + np.outer(mu, mu))))
    se_c = np.asarray(getattr(sim, "momentum_covariance_se", np.full_like(C, np.nan)), dtype=float)
    se = 2.0 * float(np.sqrt(np.sum((W * se_c) ** 2)))
    d = A.shape[0]
    return {"calibrated": False,
            "identified": "Tr(Z A) = 2 Tr(A Gamma A E[p p^T]) (one run identifies one linear functional of Z)",
            "trace_ZA": val, "trace_ZA_se": se if np.isfinite(se) else None,
            "mass_inverse": A.tolist(), "friction": G.tolist(),
            "beta_hat": float(sim.beta_hat), "beta_hat_se": float(sim.beta_hat_se),
            "note": ("Z = Tr(Z A) / A (1D)" if d == 1 else
                     "the full Z is not identified by a run with one mass matrix: noise_covariance is null; "
                     "run the Theorem 3.1 designs (noise.calibrate = true) to estimate it")}


def noise_part_of_band(potential, delta: float, sim_kw: dict, noise, fit, *, draws: int, knots, seed: int = 1,
                       control=None, apply: bool = True) -> Optional[dict]:
    """Z's part of U's band (d >= 2, calibrated runs): calibrate at ``draws`` posterior draws of Z, re-run, re-fit.

    Each draw Z_k gives the friction Gamma_k = Z_k / 2 (stage 2); a run with the main run's settings and seed
    and a MAP fit give U_k on the main fit's grid (same count-weighted alignment).  Over the mass region,
    between = mean_g var_k U_k(g) holds Z's part plus each run's own sampling variance, estimated by the mean
    sandwich variance of the re-fits (``band_calibration``), so Z's part is var_Z = max(0, between - within)
    (a method-of-moments split with draws - 1 degrees of freedom: a rough number).  The band is then widened
    by one factor sqrt(1 + var_Z / var_band) (var_band: the mean variance of the main band's draws), which
    adds var_Z in the same average sense as the walker sandwich.  Returns the numbers (result.json
    ``noise_part_of_band``) or None without a posterior of Z.  ``apply``: scale ``fit``'s band here (``widens``
    = ["U_raw"]; learn_model widens it before the finite-delta correction, so the corrected band carries it too and
    ``widens`` becomes ["U_raw", "U"]); False leaves the band to the caller and sets ``widens`` = [].
    """
    from .fit import fit_effective_potential, grid_weights
    from .noise import calibrate
    from .runtime import begin_stage
    from .simulate import simulate

    post = getattr(noise, "idata", None)
    if draws < 2 or post is None or "Z" not in post.posterior or fit.U_draws is None:
        return None
    d = fit.dim
    zs = post.posterior["Z"].values.reshape(-1, d, d)
    pick = np.random.default_rng(seed).choice(len(zs), size=min(int(draws), len(zs)), replace=False)
    begin_stage(control, f"Z's part of the band: {len(pick)} runs and fits at posterior draws of Z")
    w = grid_weights(fit)
    w = w / w.sum()
    reg = fit.mass_region if fit.mass_region is not None and fit.mass_region.any() else np.ones(len(w), bool)
    U, within = [], []
    for k in pick:
        kw = dict(sim_kw, friction=calibrate(zs[k])[1], mass=np.eye(d))
        fk = fit_effective_potential(simulate(potential, delta, control=control, **kw), knots=knots, method="map",
                                     seed=seed, predictive=False)
        u = fk.spline().value(fit.grid)
        U.append(u - w @ u)
        within.append(float(fk.band_calibration.get("sandwich_var_mean", np.nan)))
    U = np.array(U)
    between = float(U[:, reg].var(axis=0, ddof=1).mean())
    within_m = float(np.nanmean(within)) if np.isfinite(within).any() else 0.0
    var_z = max(0.0, between - within_m)
    var_band = float(np.var(fit.U_draws, axis=0, ddof=1)[reg].mean())
    factor = float(np.sqrt(1.0 + var_z / var_band)) if var_band > 0 else 1.0
    if apply:
        fit.scale_band(factor)
    return {"draws": int(len(pick)), "between_draw_var": between, "within_run_var": within_m,
            "z_var": var_z, "band_var_before": var_band, "z_share_of_band_var": var_z / (var_band + var_z)
            if var_band + var_z > 0 else 0.0, "band_scale": factor, "widens": ["U_raw"] if apply else [],
            "method": "calibrate at posterior draws of Z, re-run and re-fit (MAP); var_Z = between - within"}


@dataclasses.dataclass
class LearnResult:
    """Everything ``bayescg learn`` produces; ``to_dict`` is ``result.json``."""

    model_name: str
    simulation: Any
    fit: Any
    equilibrium: Any
    noise: Optional[Any] = None
    gamma_choice: Optional[Any] = None
    noise_part: Optional[dict] = None   # Z's part of U's band (noise_part_of_band)
    seconds: float = 0.0
    warnings: list = dataclasses.field(default_factory=list)
    trajectory: Optional[dict] = None  # learned from user data: {path, sha256, walkers, frames_per_walker}
    raw_fit: Optional[Any] = None     # the paper's learned U_delta (FitResult) when ``fit`` is corrected
    correction: Optional[Any] = None  # bayescg.bias.FixedPointCorrection when applied
    correction_note: str = ""         # why no correction was applied
    delta_check: Optional[dict] = None  # delta_consistency with a second learn (fit.delta_check)

    def to_dict(self) -> dict:
        sim, fit, eq = self.simulation, self.fit, self.equilibrium
        fd = fit.to_dict()
        d = sim.dim
        nd = self.noise.to_dict() if self.noise is not None else None
        if nd is not None:
            noise_cov, friction = nd["noise_covariance"], nd["friction"]
        else:
            friction = np.asarray(sim.friction).tolist()
            ident = identified_noise(sim)
            # 1D: the one functional is Z itself, Z = 2 gamma var(p) = 2 gamma / beta_hat (3.5).  d >= 2: one run
            # identifies only Tr(Z A); the full Z needs the Theorem 3.1 designs, so it is not reported
            noise_cov = [[ident["trace_ZA"] / float(np.asarray(sim.mass).ravel()[0])]] if d == 1 else None
            nd = ident
        out = {
            "dimension": d,
            "delta": sim.delta,
            "gamma": sim.gamma,
            "steps": sim.steps,
            "walkers": sim.walkers,
            "beta_hat": eq.beta_hat,
            "beta_hat_se": eq.beta_hat_se,
            "beta_used": fd.get("beta_mean", eq.beta_hat),
            "noise_covariance": noise_cov,
            "friction": friction,
            "normality": {"statistic": eq.normality_statistic, "pvalue": eq.normality_pvalue},
            "trapped_fraction": sim.trapped_fraction,
            "simulation_seconds": sim.seconds,
            "steps_per_second": sim.steps_per_second,
        }
        out.update({k: v for k, v in fd.items() if k not in out})
        out["seconds"] = self.seconds
        out["warnings"] = list(self.warnings) + list(fd.get("warnings", []))
        out["noise"] = dict(nd, calibrated=True) if self.noise is not None else nd
        if self.gamma_choice is not None:
            out["gamma_choice"] = self.gamma_choice.to_dict()
        if self.noise_part is not None:
            out["noise_part_of_band"] = dict(self.noise_part)
        if self.trajectory is not None:
            out["trajectory"] = dict(self.trajectory)
        raw = self.raw_fit
        if raw is not None:
            rd = raw.to_dict()
            out.update({"U_raw_mean": rd["U_mean"], "U_raw_lower": rd["U_lower"], "U_raw_upper": rd["U_upper"],
                        "band_raw": rd["band"], "reference_rmse_raw": rd["reference_rmse"],
                        "reference_coverage_raw": rd["reference_coverage"]})
        if self.correction is not None:
            out["finite_delta_correction"] = dict(
                self.correction.to_dict(),
                use="U_mean/U_lower/U_upper are U_raw + the correction (the estimate of U_k); U_raw_* are the "
                    "paper's learned U_delta" if self.correction.applied else
                    "U_mean is U_raw (the correction is within its Monte Carlo error); U_lower/U_upper hold that "
                    "error as the bound on the bias left; U_raw_* are the paper's learned U_delta and its band",
                **({} if self.correction.applied else {"reason": self.correction_note}))
        else:
            out["finite_delta_correction"] = {"applied": False, "reason": self.correction_note}
        if self.delta_check is not None:
            out["delta_check"] = dict(self.delta_check)
        return out

    def summary(self):
        """Key numbers (:class:`bayescg.summary.Summary`): run, temperature, fit quality, sampler diagnostics
        (n/a for a MAP fit), the noise covariance Z (d >= 2) and the finite-delta correction."""
        from .summary import Summary

        d = self.to_dict()
        s = Summary("learn: effective potential U_k", warnings=list(d.get("warnings") or []))
        s.add("dimension", d["dimension"]).add("delta", d["delta"]).add("gamma", d["gamma"])
        s.add("steps", int(d["steps"]), ",").add("beta_hat", d["beta_hat"]).add("beta_hat_se", d["beta_hat_se"], ".2g")
        s.add("trapped_fraction", d["trapped_fraction"], ".3g")
        if d.get("knots") is not None:  # the fit's, after the default by dimension and the 2D / 3D cap
            s.add("spline knots per dimension", " x ".join(str(int(k)) for k in d["knots"]))
        s.add("reference_rmse", d.get("reference_rmse"), missing="n/a (no reference)")
        s.add("reference_coverage", d.get("reference_coverage"), ".3g", missing="n/a (no reference)")
        if d["dimension"] >= 2 and d.get("noise_covariance") is not None:
            s.add("noise covariance Z", d["noise_covariance"])
        zp = d.get("noise_part_of_band")
        if zp is not None:  # issue 11 item 3: Z's uncertainty is in U's band; say how much
            s.add("Z's share of U's band variance", zp["z_share_of_band_var"], ".2f")
            s.add("band widened for Z by", zp["band_scale"], ".3g")
            if zp.get("widens") is not None:
                s.add("band widened for Z", ", ".join(zp["widens"]) or "none")
        s.add_diagnostics(d.get("diagnostics"), d.get("method"))
        s.add("normality p-value", d["normality"]["pvalue"], ".3g")
        c = d["finite_delta_correction"]
        s.add("correction applied", bool(c.get("applied")))
        if c.get("significance"):
            s.add("correction / its Monte Carlo error (RMS)", c["significance"]["ratio"], ".3g")
        if c.get("applied"):
            s.add("correction size (max |dU|)", c["size"], ".3g").add("correction iterations", c["iterations"])
            s.add("correction stop", "converged" if c.get("converged") else
                  "at the cap, residual within its Monte Carlo error (95 %)" if c.get("residual_consistent", True)
                  else "NOT converged (see warnings)")
            parts = [("fixed point", c["seconds"])] + [
                (name, (c.get(key) or {}).get("seconds")) for name, key in
                (("white-noise check", "white_noise_check"), ("kick-shape step", "kick_shape"))]
            s.add("correction seconds", c["seconds_total"], ".1f", "s")
            s.add("correction seconds by step", ", ".join(f"{name} {v:.1f} s" for name, v in parts if v is not None))
            s.add("U_raw: rmse", d.get("reference_rmse_raw"), missing="n/a (no reference)")
            s.add("U_raw: coverage of reference", d.get("reference_coverage_raw"), ".3g", missing="n/a (no reference)")
        else:
            s.add("correction: why not", c.get("reason"))
        if c.get("significance"):  # the band is bias.corrected_fit's (applied or not): its known calibration
            from .bias import CORRECTED_BAND_COVERAGE, CORRECTED_BAND_COVERAGE_2D, CORRECTED_BAND_COVERAGE_LARGE

            s.add("band: measured coverage of U_k",
                  f"{CORRECTED_BAND_COVERAGE} at 4e6-2e7 steps, not the nominal 0.94, and less at larger budgets: "
                  f"{CORRECTED_BAND_COVERAGE_LARGE} (1D replicate studies: benchmarks/calibration/RESULTS.md, "
                  "DELTA_CHECK.md)" if d["dimension"] == 1 else
                  f"{CORRECTED_BAND_COVERAGE_2D}, nominal 0.94 (benchmarks/calibration/RESULTS.md, "
                  "results/effective/RESULTS.md)")
        chk = c.get("white_noise_check") or {}
        if chk.get("colour"):
            col = chk["colour"]
            s.add("residual kicks: momentum diffusion / white (lags 1-3)",
                  f"{col['diffusion_factor']:.3f} +- {col['diffusion_factor_se']:.3f}")
            ks = (c.get("kick_shape") or {}).get("colour")
            s.add("kick colour in the correction", "modelled (moving average, lags 1-3)" if ks and ks.get("modelled")
                  else f"not modelled ({ks['reason']})" if ks else "not modelled (no kick-shape step)")
        dc = d.get("delta_check")
        if dc is None and c.get("applied") and d["dimension"] == 1:
            s.add("delta check", "not run (--set fit.delta_check=1.2: a second learn at 1.2 delta, whose corrected U "
                  "should agree within the bands; benchmarks/calibration/DELTA_CHECK.md)")
        elif dc is not None:
            s.add("delta check", (f"at delta = {dc['delta']:.4g}: " if "delta" in dc else "") + (
                f"failed ({dc['failed']})" if dc.get("failed") else dc["reason"] if dc.get("reason") else
                f"{'INCONSISTENT' if dc['inconsistent'] else 'consistent'}, outside the combined bands at "
                f"{100 * dc['outside_fraction']:.0f} % of the mass region (tolerance {100 * dc['tol']:.0f} %)"
                + "".join(f"; the learn at {t['delta']:.4g} failed" for t in dc.get("tried") or [])))
        s.add("seconds", d["seconds"], ".1f", "s")
        return s

    def to_inference_data(self):
        """The fit's InferenceData: the raw posterior (``U`` = the paper's U_delta on the grid) and, when the
        finite-delta correction is applied, ``U_corrected`` (same dims; bayescg.bias.corrected_fit)."""
        idata = self.fit.to_inference_data(variables=list(self.simulation.variables) or None)
        if self.correction is not None and self.fit.U_draws is not None:
            import xarray as xr

            post = idata.posterior
            nchain = post.sizes.get("chain", 1)
            u = np.asarray(self.fit.U_draws)
            post["U_corrected"] = xr.DataArray(u.reshape(nchain, -1, u.shape[-1]), dims=("chain", "draw", "grid_point"))
            post.attrs["U_corrected"] = ("U + finite-delta correction (fixed point (B4) of bayescg.bias), the headline "
                                         "estimate of U_k; U is the paper's raw learned U_delta"
                                         if self.correction.applied else
                                         "U with the finite-delta correction's Monte Carlo error (the correction is "
                                         "within it and not applied), the headline estimate of U_k")
        return idata

    def figures(self):
        """[(title, Figure)]: the effective potential (raw and corrected in 1D when the finite-delta correction
        was applied), the posterior predictive check, and the noise calibration (d >= 2)."""
        from .plots.effective import figure_of, plot_corrected_potential, ppc_figures

        variables = list(self.simulation.variables) or None
        if self.raw_fit is None or self.fit.dim != 1:
            figs = list(self.fit.figures(variables))
        else:
            figs = [("Effective potential: raw and finite-delta corrected",
                     figure_of(plot_corrected_potential(self.fit, self.raw_fit, self.correction)))]
            figs += ppc_figures(self.fit, variables)
        if self.noise is not None and hasattr(self.noise, "figures"):
            figs += list(self.noise.figures())
        return figs


def learn_trajectory_model(model: Model, *, control=None) -> LearnResult:
    """Fit the model's effective potential from its ``[trajectory]`` file (:mod:`bayescg.trajectory`).

    delta, gamma and mass come from the section, else from arrays of the same names in the .npz."""
    from .trajectory import load_npz

    tr = model.require("trajectory")
    fs = model.fit or FitSection()
    path = model.resolve(tr.path)
    data = load_npz(path)
    pick = lambda key: getattr(tr, key) if getattr(tr, key) is not None else data.get(key)  # noqa: E731
    res = learn_trajectory(data["q"], data["p"], variables=model.potential.variables, delta=pick("delta"),
                            gamma=pick("gamma"), mass=pick("mass"), burn_in=tr.burn_in, bins=tr.bins,
                            hist_range=hist_range_from_model(model), max_samples=tr.max_samples, knots=fs.knots,
                            method=fs.method, draws=fs.draws, tune=fs.tune, chains=fs.chains,
                            seed=fs.seed if fs.seed is not None else 1, reference=reference_from_model(model),
                            mass_fraction=fs.mass_fraction, delta_correction=fs.delta_correction,
                            correction_steps=fs.correction_steps, correction_iterations=fs.correction_iterations,
                            correction_min_iterations=fs.correction_min_iterations, control=control, name=model.name)
    import hashlib

    res.trajectory = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                      "walkers": int(res.simulation.walkers), "frames_per_walker": int(res.simulation.steps_per_walker)}
    return res


def learn_trajectory(q, p, *, variables=None, delta=None, gamma=None, mass=None, burn_in: float = 0.0,
                     bins: int = 200, hist_range=None, max_samples: int = 100_000, knots=None, method: str = "nuts",
                     draws: int = 1000, tune: Optional[int] = None, chains: int = 4, seed: int = 1, reference=None,
                     mass_fraction: float = 0.98, delta_correction: str = "fixed_point", correction_steps=None,
                     correction_iterations: int = 6, correction_min_iterations: int = 4,
                     correction_walkers: int = 16, control=None,
                     name: str = "trajectory"):
    """Learn U_k (3.9) from arrays (q, p): the Python-API twin of a model file's ``[trajectory]``.

    Arguments as :func:`bayescg.trajectory.trajectory_result` and :func:`bayescg.fit.fit_effective_potential`; variables: names of
    the d coordinates (default q0..); reference: Potential or callable of points (n, d) -> (n,).
    delta_correction ("fixed_point" | "none"), correction_steps (default: the frames given), correction_iterations,
    correction_min_iterations (``min_iter``), correction_walkers: the finite-delta correction of :func:`correct_finite_delta`, applied when
    delta and gamma say the data come from the damped map (3.2) (1D, any mass), on white-kick runs of
    ``correction_walkers`` walkers.
    Returns a :class:`LearnResult` (same ``to_dict`` / ``to_inference_data`` as ``learn``).
    """
    from .fit import fit_effective_potential
    from .stats import equilibrium_summary
    from .trajectory import trajectory_result

    t0 = time.perf_counter()
    sim = trajectory_result(q, p, delta=delta, gamma=gamma, mass=mass, burn_in=burn_in, bins=bins,
                            hist_range=hist_range, max_samples=max_samples, variables=variables)
    if sim.dim > 3:
        raise InputError(f"effective potentials are fitted for d = 1 to 3; these data have d = {sim.dim}")
    eq = equilibrium_summary(sim)
    fit = fit_effective_potential(sim, knots=knots, method=method, draws=draws, tune=tune, chains=chains,
                                  seed=seed, reference=reference, mass_fraction=mass_fraction, control=control)
    warnings = []
    if sim.hist_outside:
        warnings.append(f"{sim.hist_outside} frames lie outside the histogram range and were not counted")
    if delta is None or gamma is None:
        fit, raw, corr, note = fit, None, None, "delta and gamma of the map (3.2) that made the data are not given"
    else:
        sim_kw = {"gamma": float(gamma), "walkers": int(correction_walkers), "mass": sim.mass}
        fit, raw, corr, note = correct_finite_delta(
            sim, fit, sim_kw, mode=delta_correction, knots=knots, mass_fraction=mass_fraction,
            steps=int(correction_steps or sim.steps), max_iter=correction_iterations,
            min_iter=correction_min_iterations, reference=reference,
            seed=seed, warnings=warnings, control=control)
    return LearnResult(model_name=name, simulation=sim, fit=fit, equilibrium=eq,
                       seconds=time.perf_counter() - t0, warnings=warnings + coverage_warnings(fit),
                       raw_fit=raw, correction=corr, correction_note=note)


def learn_model(model: Model, *, workdir: str | Path | None = None, resume: bool = False,
                control=None, executor=None) -> LearnResult:
    """Simulate, calibrate (d >= 2) and fit the model's effective potential (from ``[trajectory]`` data
    instead when the model has that section).  In 1D and 2D, on a cold numba cache, the fit's and the correction's
    kernels compile in a background process while the first stages run (:mod:`bayescg.warmup`; results do not
    depend on it)."""
    from . import warmup

    fs = model.fit or FitSection()
    if model.trajectory is not None:
        res = learn_trajectory_model(model, control=control)
        if fs.delta_check is not None:  # a second learn at another delta needs data made at that delta
            res.delta_check = {"ratio": float(fs.delta_check), "reason": "not run: learned from a trajectory file, "
                               "and a second learn at another delta needs data made at that delta"}
        return res
    task = {1: "learn1d", 2: "learn2d"}.get(len(model.require("potential").variables))
    child = warmup.start(task, fs.method, fs.delta_correction) if task else None
    try:
        res = _learn_model(model, workdir=workdir, resume=resume, control=control, executor=executor, child=child)
    finally:
        warmup.stop(child, task)
    if fs.delta_check is not None:
        check_delta(model, res, fs.delta_check, workdir=workdir, resume=resume, control=control, executor=executor)
    return res


#: share of the mass region where two corrected U's (fit.delta_check) may differ by more than their combined 94 %
#: half-width before learn calls them inconsistent.  Set from 15 pairs of learns at neighbouring deltas (4e7 steps x
#: delta_0 / delta, MAP, seeds 1-2; benchmarks/calibration/DELTA_CHECK.md): 0.09-0.42 where both bands covered U_0 at
#: 0.46-0.95 of the region, 0.72-0.94 where one covered it at 0.04-0.13.  Fresh seeds (3-4, 18 checks) and a potential
#: not used here (eps = 0.03, 6 checks): 0.06-0.36 and 0.72-0.93, every case on the right side
DELTA_CHECK_TOL = 0.5


def delta_consistency(fit, other, *, tol: float = DELTA_CHECK_TOL) -> dict:
    """Do two corrected 1D fits (FitResult, learned at different deltas) agree within their bands?  U_k does not depend
    on delta inside the scale window, so a difference beyond the bands is a model error of at least one of them.

    On ``fit``'s grid points inside both mass regions: d = U - U_other (U_other interpolated), aligned to mean 0;
    ``outside_fraction``: share of points with |d| above hypot of the two 94 % half-widths (~0.06 for two calibrated,
    unbiased bands); ``inconsistent``: outside_fraction > tol."""
    x, xo = np.asarray(fit.grid, float)[:, 0], np.asarray(other.grid, float)[:, 0]
    mo = np.asarray(other.mass_region, bool)
    m = np.asarray(fit.mass_region, bool) & (x >= xo[mo].min()) & (x <= xo[mo].max())
    if m.sum() < 5:
        raise InputError("the two runs' mass regions overlap in fewer than 5 grid points")
    h = 0.5 * (np.asarray(fit.U_upper) - np.asarray(fit.U_lower))[m]
    ho = np.interp(x[m], xo, 0.5 * (np.asarray(other.U_upper) - np.asarray(other.U_lower)))
    dif = np.asarray(fit.U_mean)[m] - np.interp(x[m], xo, np.asarray(other.U_mean))
    dif -= dif.mean()
    band = np.hypot(h, ho)
    frac = float(np.mean(np.abs(dif) > band))
    return {"points": int(m.sum()), "rms_difference": float(np.sqrt(np.mean(dif ** 2))),
            "combined_half_width_rms": float(np.sqrt(np.mean(band ** 2))), "outside_fraction": frac, "tol": tol,
            "inconsistent": bool(frac > tol)}


def check_delta(model: Model, res: LearnResult, ratio: float, *, workdir=None, resume=False, control=None,
                executor=None) -> None:
    """fit.delta_check: learn ``model`` again at delta x ratio (steps / ratio: the same simulated time; seed + 1) and
    compare the corrected U's (:func:`delta_consistency`); in place on ``res`` (``delta_check``, and a warning when
    they are inconsistent or the second learn fails).  A second learn at a larger delta that blows up (past the map's
    stability limit, e.g. the double well's walls at 0.36: a BlowUpError) is replaced by one at delta / ratio
    (``tried`` says so).  1D with the correction applied only."""
    from .runtime import begin_stage

    s = model.require("simulation")
    fs = model.fit or FitSection()
    if res.fit.dim != 1 or res.correction is None or not res.correction.applied:
        res.delta_check = {"ratio": float(ratio), "reason": "not run: it compares finite-delta corrected 1D potentials, "
                           "and this U is " + ("not 1D" if res.fit.dim != 1 else "not corrected")}
        return
    t0 = time.perf_counter()
    sub = Path(workdir) / "delta-check" if workdir is not None else None
    tried, c = [], None
    for r in [float(ratio)] + ([1.0 / float(ratio)] if ratio > 1 else []):
        d2 = float(s.delta) * r
        out = {"delta": d2, "ratio": r, "steps": int(round(s.steps / r)), "seed": int(s.seed) + 1}
        m2 = dataclasses.replace(model, simulation=dataclasses.replace(s, delta=d2, steps=out["steps"],
                                                                       seed=out["seed"]),
                                 fit=dataclasses.replace(fs, delta_check=None,
                                                         seed=None if fs.seed is None else fs.seed + 1))
        w2 = None if sub is None else sub / f"delta-{d2:.6g}"
        if w2 is not None:
            w2.mkdir(parents=True, exist_ok=True)
        begin_stage(control, f"delta check: learn again at delta = {d2:.4g} ({out['steps']:.3g} steps)")
        try:
            other = learn_model(m2, workdir=w2, resume=resume, control=control, executor=executor)
            c = delta_consistency(res.fit, other.fit)
            break
        except (SimulationError, InputError) as exc:
            tried.append({"delta": d2, "failed": str(exc)})
            if not (isinstance(exc, BlowUpError) and r > 1):
                break
    if c is None:  # no second learn finished
        res.delta_check = dict(out, failed=tried[-1]["failed"], tried=tried)
        res.warnings.append(f"delta check: the second learn at delta = {d2:.4g} failed ({tried[-1]['failed']})"
                            + (f", after one at {tried[0]['delta']:.4g} blew up" if len(tried) > 1 else "")
                            + "; whether the corrected U depends on delta is not checked")
        return
    res.delta_check = dict(out, **c, seconds=time.perf_counter() - t0, tried=tried,
                           other={"reference_rmse": other.fit.reference_rmse,
                                  "reference_coverage": other.fit.reference_coverage,
                                  "correction_applied": bool(other.correction is not None and other.correction.applied),
                                  "warnings": other.to_dict()["warnings"]})
    if c["inconsistent"]:
        res.warnings.append(
            f"delta check: the corrected U changes with delta beyond its band -- a second learn at delta = {d2:.4g} "
            f"differs from it by {c['rms_difference']:.3g} RMS, outside the two bands' combined 94 % half-width at "
            f"{100 * c['outside_fraction']:.0f} % of the mass region (> {100 * c['tol']:.0f} %).  U_k does not depend "
            "on delta inside the scale window, so at least one of the two carries a model error its band does not hold "
            "(measured: Test 1 at delta 0.3 and 0.25, the double well at 0.177 and 0.125, within 5-7x the scale the "
            "correction treats as noise: bands covering U_0 at 4-15 % of the region; benchmarks/calibration/"
            "DELTA_CHECK.md); bayescg scales finds the window")


def _learn_model(model: Model, *, workdir, resume, control, executor, child=None) -> LearnResult:
    """learn_model's stages; child: the background compile (bayescg.warmup.Child) or None.  The fit waits for the
    child's "fit" step and the correction for its "correction" step (its kick-shape step for "kick_shape"), rather than
    compile their kernels beside it."""
    from . import warmup
    from .fit import fit_effective_potential
    from .runtime import begin_stage
    from .simulate import simulate
    from .stats import equilibrium_summary

    t0 = time.perf_counter()
    s = model.require("simulation")
    fs = model.fit or FitSection()
    pot = potential_from_model(model)
    kw = sim_kwargs(model)
    warnings: list[str] = []
    noise = None
    if pot.dim >= 2 and (model.noise or NoiseSection()).calibrate and s.friction is None:
        noise = estimate_noise_model(model, executor=executor, control=control, workdir=workdir, resume=resume)
        # the friction below is the noise model's: what it warns of (an SPD clip, a calibration off beta = 1, a
        # direction the friction barely damps) bears on U, so it is the learn's warning too, not only result.json's
        warnings += [f"noise model: {w}" for w in noise.warnings]
        kw["friction"] = np.asarray(noise.friction, float)
        kw["mass"] = np.eye(pot.dim)
    gamma_choice = None
    if s.auto_gamma and s.friction is None and noise is None:
        from .simulate import auto_gamma

        gamma_choice = auto_gamma(pot, s.delta, kw, s.target_beta)
    checkpoint = Path(workdir) / "checkpoint-learn.npz" if workdir is not None else None
    begin_stage(control, f"simulate ({s.steps:.3g} steps)", 1.0)
    sim = simulate(pot, s.delta, checkpoint=checkpoint, resume=resume and checkpoint is not None
                   and checkpoint.exists(), control=control, **kw)
    if sim.trapped_fraction > 0:
        warnings.append(f"{100 * sim.trapped_fraction:.0f}% of walkers fell into fixed points of the map "
                        "(momentum collapsed to 0) and were excluded")
    eq = equilibrium_summary(sim)
    seed = fs.seed if fs.seed is not None else s.seed
    reference = reference_from_model(model)
    warmup.await_step(child, "fit", control, "fit")
    fit = fit_effective_potential(sim, knots=fs.knots, method=fs.method, draws=fs.draws, tune=fs.tune,
                                  chains=fs.chains, seed=seed, reference=reference, mass_fraction=fs.mass_fraction,
                                  control=control)
    noise_part = None
    ns = model.noise or NoiseSection()
    if noise is not None and ns.z_draws > 0:
        # Z's part widens the raw learned U's band before the correction, so the corrected band (bias.corrected_fit
        # carries the raw deviations) holds it too: on 40 seeds of (4.8) at 2e6 steps (each its own stage-1 Z,
        # benchmarks/calibration/RESULTS.md, 2026-12-04) the corrected band without Z's part was 0.79 of the seed
        # spread and covered the replicate mean at 0.83, with it 1.00 and 0.88.  (The correction with the calibrated
        # Z as its kick shape, since 2026-12-03 17:16, no longer undoes Z's tilt as the earlier measurement
        # z_part_corrected.json found for the kick-covariance shape.)
        noise_part = noise_part_of_band(pot, s.delta, kw, noise, fit, draws=ns.z_draws, knots=fs.knots,
                                        seed=seed, control=control, apply=True)
    if fs.delta_correction != "none":
        warmup.await_step(child, "correction", control, "finite-delta correction")
    fit, raw, corr, note = correct_finite_delta(
        sim, fit, kw, mode=fs.delta_correction, knots=fs.knots, mass_fraction=fs.mass_fraction,
        steps=fs.correction_steps or s.steps, max_iter=fs.correction_iterations,
        min_iter=fs.correction_min_iterations, reference=reference, seed=seed,
        warnings=warnings, control=control, potential=pot, noise=noise, min_ratio=fs.correction_min_ratio, child=child)
    if noise_part is not None:
        noise_part["widens"] = ["U_raw", "U"] if raw is not None else ["U"]
    warnings += large_budget_warning(fit.dim, corr, s.steps) + coverage_warnings(fit)
    return LearnResult(model_name=model.name, simulation=sim, fit=fit, equilibrium=eq, noise=noise,
                       gamma_choice=gamma_choice, noise_part=noise_part, seconds=time.perf_counter() - t0,
                       warnings=warnings, raw_fit=raw, correction=corr, correction_note=note)


def large_budget_warning(dim: int, corr, steps: int) -> list[str]:
    """A warning for a finite-delta corrected 1D U (the correction applied) learned at bias.LARGE_BUDGET_STEPS steps or
    more, where the replicate studies measured the corrected band covering the true U_k far less often than nominal
    (its model error, which the band does not hold, is then a large part of the error)."""
    from .bias import CORRECTED_BAND_COVERAGE, CORRECTED_BAND_COVERAGE_LARGE, LARGE_BUDGET_STEPS

    if dim != 1 or corr is None or not corr.applied or steps < LARGE_BUDGET_STEPS:
        return []
    return [f"at {steps:.3g} steps (>= {LARGE_BUDGET_STEPS:.0e}) the finite-delta corrected band holds the correction's "
            "Monte Carlo error but not its model error, which is then a large part of the error: replicate studies "
            f"measured its coverage of the true U_k at {CORRECTED_BAND_COVERAGE_LARGE} (two potentials inside their "
            f"scale windows), against {CORRECTED_BAND_COVERAGE} at 4e6-2e7 (benchmarks/calibration/DELTA_CHECK.md); "
            "--set fit.delta_check=1.2 compares U with a second learn at 1.2 delta"]


def coverage_warnings(fit) -> list[str]:
    """A warning when the 94 % band of U misses the reference over more than a fifth of the mass region."""
    cov = getattr(fit, "reference_coverage", None)
    if cov is None or cov >= 0.8:
        return []
    return [f"the 94 % band of U misses the reference at {100 * (1 - cov):.0f} % of the mass region "
            "(more than a fifth)"]


def correct_finite_delta(sim, fit, sim_kw: dict, *, mode: str, knots, mass_fraction: float, steps: int,
                         max_iter: int, min_iter: int, reference, seed: int, warnings: list, control=None, potential=None,
                         kick_shape: bool = True, max_dim: int = 2, noise=None, min_ratio: float = 2.0, child=None):
    """The finite-delta correction (bayescg.bias, B4) of a learned ``fit`` of the run ``sim`` -> (fit, raw, corr,
    note): the corrected fit and the raw one (or ``fit``, None, None, why-not).  ``sim_kw``: keyword arguments of
    :func:`bayescg.simulate.simulate` for the white-kick runs (walkers, gamma, ...); ``mode``: fit.delta_correction.
    max_iter / min_iter: most / fewest white-kick runs (fit.correction_iterations / correction_min_iterations; min_iter
    applies in 1D: stopped at its first update within Monte Carlo error, the 1D iteration leaves a start-dependent
    remainder its se does not hold, benchmarks/calibration/RESULTS.md; the 2D study's band is calibrated as it is).
    Failures and non-convergence are appended to ``warnings``; a failed correction keeps the raw U.  With the
    run's ``potential`` V, the white-noise model is checked on a fresh stretch of the V-run
    (bayescg.bias.white_noise_check) and a step that resolves the 'noise' is warned about; in 1D, with
    ``kick_shape``, the correction then also removes what the non-Gaussian shape of the recorded kicks changes in
    the learned U (bayescg.bias.apply_kick_shape).  max_dim: the largest d corrected (2 by default; in 2D the
    coefficients the data do not see are continued with minimum curvature (bayescg.bias.min_curvature_continuation_2d); a learned U
    still steeper than the map's stability limit, or a white-kick run far off the run's temperature, keeps the raw
    U with a warning).  In d >= 2 the white kicks' shape (the learned U depends on it, bayescg.bias.learned_hessian_of)
    is the calibrated Z of a two-stage run (``noise``: its NoiseResult, whose noise_covariance stage 1 measured with
    its own error bars), else, with the ``potential``, the V-run's measured kick covariance about the raw U
    (bayescg.bias.kick_covariance: local fits in cells of q, right for multi-well runs).  min_ratio
    (fit.correction_min_ratio): a correction whose RMS over the mass region is below min_ratio x the RMS of its
    Monte Carlo se is not applied (bayescg.bias.correction_significance): U stays the raw U, its band keeps the
    correction's se as the bound on the bias left, ``corr.applied`` is False and ``note`` says why.  child: the run's
    background compile (bayescg.warmup.Child) or None; the kick-shape step waits for its "kick_shape" step."""
    from .fit import fit_effective_potential

    note = _correction_blocker(sim, mode, max_dim)
    if note:
        return fit, None, None, note
    from .bias import corrected_fit, damped_white_learner, fixed_point_correction

    t_all = time.perf_counter()
    target = fit if fit.method == "map" else fit_effective_potential(
        sim, knots=knots, method="map", seed=seed, mass_fraction=mass_fraction, draws=400, predictive=False)
    from .runtime import begin_stage

    begin_stage(control, f"finite-delta correction: fixed point on white-kick runs ({steps:.3g} steps each)")
    # the white runs are fitted with the break points the target has: fit_effective_potential caps them in d >= 2
    # (max_knots_2d), and a learner on the model's knots had more basis functions than the target coefficients
    learn = damped_white_learner(sim, sim_kw, knots=len(np.unique(target.knots[0])), steps=steps, seed=seed + 1,
                                 control=control)
    shape = frames = kc = None
    if sim.dim >= 2 and noise is not None and getattr(noise, "noise_covariance", None) is not None:
        # two-stage run: the calibrated Z (stage 1, Theorem 3.1) is the kick covariance the run's friction was matched
        # to; measured on (4.9) it is closer to the micro-scales' Z than any estimate from the kicks about the raw U
        shape = np.asarray(noise.noise_covariance, dtype=float)
    elif sim.dim >= 2 and potential is not None and getattr(sim, "final_q", None) is not None:
        from .bias import check_frames, residual_kick_correlation
        from .splines import SplineRep

        # the white kicks get the V-run's measured kick covariance (about the raw U), not an assumed shape: in d >= 2
        # the learned U depends on it (bias.learned_hessian_of); a calibrated run's is ~ its friction's.  The frames
        # are kept for the white-noise check below (same stretch of the V-run: simulated once)
        begin_stage(control, "finite-delta correction: kick covariance of the V-run")
        frames = check_frames(potential, sim)
        q, p, A, E = frames
        kc = residual_kick_correlation(q, p, SplineRep(target.knots, target.coef_mean).gradient, delta=sim.delta,
                                       A=A, E=E)
        if kc["Z_matrix"] is None:
            warnings.append(f"finite-delta correction: the V-run's kick covariance could not be measured "
                            f"({kc['Z_matrix_error']}); the white kicks get the friction's shape")
        else:
            shape = np.asarray(kc["Z_matrix"])
    try:
        corr = fixed_point_correction(target.knots, target.coef_mean, learn,
                                      grid=fit.grid[:, 0] if sim.dim == 1 else fit.grid, weights=fit.grid_weights,
                                      region=fit.mass_region, var_p=1.0 / sim.beta_hat, delta=sim.delta,
                                      gamma=sim.gamma, mass=sim.mass, friction=sim.friction, max_iter=max_iter,
                                      min_iter=min_iter if sim.dim == 1 else 1,
                                      noise_shape=shape)
    except (SimulationError, InputError) as exc:  # keep the learned U; say why it is not corrected
        note = f"the correction failed: {exc}"
        warnings.append(f"finite-delta correction not applied ({note}); U is the raw learned U_delta")
        return fit, None, None, note
    if potential is not None and getattr(sim, "final_q", None) is not None:
        try:
            from .bias import white_noise_check

            begin_stage(control, "finite-delta correction: white-noise check of the residual kicks")
            t = time.perf_counter()
            chk, kicks = white_noise_check(potential, sim, target.knots, target.coef_mean,
                                           np.asarray(target.coef_mean) + corr.coef_shift, frames=frames, raw=kc)
            chk["seconds"] = time.perf_counter() - t
            corr.white_noise_check = chk
            if kick_shape and sim.dim == 1:
                from . import warmup
                from .bias import apply_kick_shape

                # the background compile's last step is the coupled maps: on a cold cache it is ~1 s from done when
                # the run gets here, and compiling them beside it took the run 1.9 s and slowed both
                warmup.await_step(child, "kick_shape", control, "finite-delta correction: kick-shape step")
                # the coupled maps are cheap (a tabulated gradient, no recipe statistics): 4x a white run's steps; their
                # Monte Carlo error enters the band
                begin_stage(control, "finite-delta correction: kick-shape step (coupled maps)")
                # four independent coupled runs (seeds from the run's seed, so replicate runs do not share this Monte
                # Carlo error) of half the length each: the same cost as two full ones, a spread with 3 degrees of freedom
                t = time.perf_counter()
                apply_kick_shape(corr, target, sim, kicks, steps=int(min(4 * steps, 2e8)) // 2,
                                 seeds=tuple(1000 * int(seed) + k for k in range(1, 5)), check=chk)
                corr.kick_shape["seconds"] = time.perf_counter() - t
            if chk["flag"]:
                warnings.append(
                    f"the residual kicks of the corrected U are not white (lag-1 autocorrelation "
                    f"{chk['corrected']['rho'][0]:.2f} > {chk['rho_tol']}): the step delta = {sim.delta:g} resolves part "
                    "of what the correction treats as noise, so U_k here is the potential at the scale this step "
                    "resolves (bayescg.bias.white_noise_check)")
            col = chk["colour"]
            ks_col = (corr.kick_shape or {}).get("colour")
            # the kick-shape step models a colour when it runs (1D, V known); a resolved scale (chk["flag"]) is warned
            # about above: its correlation is not a noise colour
            if col["flag"] and not chk["flag"] and not (ks_col and ks_col["modelled"]):
                rho = ", ".join(f"{r:.3f}" for r in chk["corrected"]["rho"])
                warnings.append(
                    f"the residual kicks of the corrected U are coloured (autocorrelation at lags 1-3: {rho}; momentum "
                    f"diffusion {col['diffusion_factor']:.3f}x that of white kicks of their variance), and the correction "
                    "models them as white here ("
                    + (ks_col["reason"] if ks_col else "no kick-shape step: it runs in 1D with V known")
                    + "), which can leave a bias its band does not hold (measured: a double well at delta 0.3 with white "
                    "kicks, walls ~0.015 low, 0.01 RMS, the band covering U_0 at 0.86 over 96 fits; in 2D on (4.8) the "
                    "band still covered V_0 at 0.92 over 40 seeds; benchmarks/calibration/FDELTA.md, RESULTS.md)")
        except (SimulationError, InputError) as exc:  # the fixed point stands; say what is missing
            warnings.append(f"finite-delta correction: the white-noise check / kick-shape step failed ({exc}); U is the "
                            "Gaussian white-kick fixed point without the kick-shape step, which on Test 1 leaves about "
                            "twice the bias (benchmarks/calibration/FDELTA.md)")
            corr.white_noise_check = None
    if not corr.residual_consistent:  # stopped at the cap with a residual its Monte Carlo error does not explain
        best = next((h for h in corr.history if h.get("returned")), corr.history[-1])
        q95 = best.get("mc_rms_q95")
        warnings.append(f"finite-delta correction not converged after {corr.iterations} white-kick runs "
                        f"(best residual {best['update_rms']:.3g}, run {best['iteration']}, RMS over the mass region, "
                        + (f"above the 95 % range of its Monte Carlo error, {q95:.3g}" if q95 is not None else
                           f"> Monte Carlo error {best['mc_error_rms']:.3g}")
                        + "; that iterate is used)")
    from .bias import correction_significance

    corr.significance = sig = correction_significance(corr, fit.mass_region, min_ratio)
    corr.applied = sig["significant"]
    corr.seconds_total = time.perf_counter() - t_all
    note = "" if corr.applied else (
        f"the correction (RMS {sig['rms_correction']:.3g} over the mass region) is within its Monte Carlo error (RMS "
        f"se {sig['rms_se']:.3g}; ratio {sig['ratio']:.2f} < {min_ratio:g}, fit.correction_min_ratio): U is the raw "
        "U_delta, equal to U_k within that error, and the band keeps the correction's Monte Carlo error")
    return corrected_fit(fit, corr, reference, rng_seed=seed), fit, corr, note


def _correction_blocker(sim, mode: str, max_dim: int = 2) -> str:
    """Why the finite-delta correction (bayescg.bias, B4) is not applied to this run ('' when it is)."""
    if mode == "none":
        return "fit.delta_correction = 'none'"
    if sim.dim > 2:
        return ("the fixed-point correction is implemented for d = 1, 2 (in d = 3 the white-noise law predicts a "
                "curvature bias of ~0.1 % at delta = 0.05, benchmarks/RESULTS_D3.md)")
    if sim.dim > max_dim:
        return f"max_dim = {max_dim}: the fixed-point correction is not applied to d = {sim.dim}"
    if getattr(sim, "integrator", "damped") != "damped":
        return f"the run used integrator {sim.integrator!r}, not the damped map (3.2)"
    if not np.isfinite(sim.beta_hat) or sim.beta_hat <= 0:
        return "no kinetic temperature (beta_hat undefined)"
    return ""
