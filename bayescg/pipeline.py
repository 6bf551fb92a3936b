"""Pillar-1 pipeline over a model file: potential -> (noise calibration) -> simulation -> fit.

``learn_model`` is what ``bayescg learn`` runs: for d >= 2 it first estimates the effective
noise covariance Z (Theorem 3.1, stage 1) and calibrates the friction to Gamma = Z / 2 with
M = I (stage 2) so the sampled law is Gibbs with beta = 1; in 1D it uses beta_hat = 1/var(p)
(3.5).  Then it fits U_k on a spline basis with PyMC (3.9).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .config import FitSection, Model, NoiseSection
from .errors import InputError


def potential_from_model(model: Model):
    """The model's V as a compiled :class:`~bayescg.potentials.Potential`."""
    from .potentials import Potential

    pot = model.require("potential")
    return Potential.from_expression(pot.expression, pot.variables)


def reference_from_model(model: Model):
    """The model's reference U_k (or None)."""
    from .potentials import Potential

    pot = model.require("potential")
    if not pot.reference:
        return None
    return Potential.from_expression(pot.reference, pot.variables)


def hist_range_from_model(model: Model):
    dom = model.potential.domain if model.potential is not None else None
    return None if dom is None else [tuple(r) for r in dom]


def sim_kwargs(model: Model) -> dict:
    """Keyword arguments of :func:`bayescg.simulate.simulate` from ``[simulation]``."""
    s = model.require("simulation")
    kw = dict(gamma=s.gamma, steps=s.steps, walkers=s.walkers, seed=s.seed, burn_in=s.burn_in,
              init_sd=s.init_sd, bins=s.bins, max_samples=s.max_samples,
              hist_range=hist_range_from_model(model))
    if s.init_mean:
        kw["init_mean"] = np.asarray(s.init_mean, float)
    if s.mass is not None:
        kw["mass"] = np.asarray(s.mass, float)
    if s.friction is not None:
        kw["friction"] = np.asarray(s.friction, float)
    return kw


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


@dataclasses.dataclass
class LearnResult:
    """Everything ``bayescg learn`` produces; ``to_dict`` is ``result.json``."""

    model_name: str
    simulation: Any
    fit: Any
    equilibrium: Any
    noise: Optional[Any] = None
    gamma_choice: Optional[Any] = None
    seconds: float = 0.0
    warnings: list = dataclasses.field(default_factory=list)

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
        corr = self.delta_correction()
        if corr is not None:
            out["finite_delta_correction"] = dict(
                corr.to_dict(), applied=False,
                use="U_k above is as learned (the paper's recipe); multiply it by 'factor' to remove the "
                    "finite-delta bias (surrogate.delta_correction = true does this for the surrogate)")
        return out

    def delta_correction(self):
        """The finite-delta correction (bayescg.bias, B2) of a 1D damped-map run with M = I, else None."""
        from .bias import learned_U_correction

        sim, fit = self.simulation, self.fit
        if sim.dim != 1 or getattr(sim, "integrator", "damped") != "damped" or \
                not np.allclose(np.asarray(sim.mass, dtype=float), 1.0):
            return None
        try:
            return learned_U_correction(fit.grid[:, 0], fit.U_mean, fit.beta["mean"], sim.delta, sim.gamma)
        except InputError:  # non-convex mean curvature: no global factor
            return None

    def summary(self) -> dict:
        d = self.to_dict()
        keys = ["dimension", "delta", "gamma", "steps", "beta_hat", "beta_hat_se", "trapped_fraction",
                "reference_rmse", "seconds"]
        s = {k: d.get(k) for k in keys}
        s.update({f"diagnostics.{k}": v for k, v in (d.get("diagnostics") or {}).items()})
        s["normality p-value"] = d["normality"]["pvalue"]
        return s

    def to_inference_data(self):
        return self.fit.to_inference_data()

    def figures(self):
        figs = list(self.fit.figures())
        if self.noise is not None and hasattr(self.noise, "figures"):
            figs += list(self.noise.figures())
        return figs


def learn_model(model: Model, *, workdir: str | Path | None = None, resume: bool = False,
                control=None, executor=None) -> LearnResult:
    """Simulate, calibrate (d >= 2) and fit the model's effective potential."""
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
        kw["friction"] = np.asarray(noise.friction, float)
        kw["mass"] = np.eye(pot.dim)
    gamma_choice = None
    if s.auto_gamma and s.friction is None and noise is None:
        from .scales import auto_gamma

        gamma_choice = auto_gamma(pot, s.delta, kw, s.target_beta)
    checkpoint = Path(workdir) / "checkpoint-learn.npz" if workdir is not None else None
    begin_stage(control, f"simulate ({s.steps:.3g} steps)", 1.0)
    sim = simulate(pot, s.delta, checkpoint=checkpoint, resume=resume and checkpoint is not None
                   and checkpoint.exists(), control=control, **kw)
    if sim.trapped_fraction > 0:
        warnings.append(f"{100 * sim.trapped_fraction:.0f}% of walkers fell into fixed points of the map "
                        "(momentum collapsed to 0) and were excluded")
    eq = equilibrium_summary(sim)
    fit = fit_effective_potential(sim, knots=fs.knots, method=fs.method, draws=fs.draws, tune=fs.tune,
                                  chains=fs.chains, seed=fs.seed if fs.seed is not None else s.seed,
                                  reference=reference_from_model(model), mass_fraction=fs.mass_fraction,
                                  control=control)
    return LearnResult(model_name=model.name, simulation=sim, fit=fit, equilibrium=eq, noise=noise,
                       gamma_choice=gamma_choice, seconds=time.perf_counter() - t0, warnings=warnings)
