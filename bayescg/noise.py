"""Effective noise covariance Z = Sigma Sigma^T and friction calibration (Theorem 3.1, stages 1 and 2).

Relation (derived here; the potential paper's (3.8) lacks the factor 2).  For the auxiliary dynamics
(3.7) with inverse mass A = M^-1 and scalar friction gamma,

    dq = A p dt,   dp = (-grad U(q) - gamma A p) dt + Sigma dW,   Z = Sigma Sigma^T,

Ito's formula for H = p^T A p / 2 + U(q) gives

    dH = grad U . A p dt + (A p) . [(-grad U - gamma A p) dt + Sigma dW] + (1/2) Tr(Sigma^T A Sigma) dt
       = -gamma p^T A^2 p dt + (1/2) Tr(Z A) dt + p^T A Sigma dW.

The martingale term has zero mean, and at equilibrium d E[H] / dt = 0, so

    Tr(Z A) = 2 gamma E[p^T A^2 p].                                             (3.8, corrected)

(The paper's proof writes the noise as sqrt(2) Sigma dW in one line and Sigma dW in another; with the
(3.3)/(3.7) convention Sigma dW the factor is 2.  Check: 1D, A = 1, Gibbs law var(p) = 1/beta and
fluctuation-dissipation Z = 2 gamma / beta give Z = 2 gamma var(p).)

Stage 1: ``designs(d)`` gives d(d+1)/2 inverse mass matrices whose equations determine the entries of Z;
one damped-map run per design measures E[p^T A^2 p] = Tr(A^2 E[p p^T]) with a batch-means error;
Z follows by weighted least squares (``estimate_noise_covariance``) and, with uncertainty, from the LKJ
model in :mod:`bayescg.bayes.noise`.
Stage 2: ``calibrate(Z)`` sets M = I and Gamma = Z / 2 (2 Gamma = Z), so the law is Gibbs with beta = 1
and the momentum covariance should be I.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Optional

import numpy as np

from .errors import InputError
from .runtime import begin_stage

__all__ = ["designs", "design_matrix", "design_condition_number", "second_moment_of_design",
           "estimate_noise_covariance", "nearest_spd", "calibrate", "NoiseResult", "estimate_noise"]


def designs(d: int) -> list[np.ndarray]:
    """Inverse mass matrices A for stage 1: d diagonal designs I + e_k e_k^T, then for each pair l < r
    the design I + (e_l e_r^T + e_r e_l^T) / 2 (eigenvalues 1/2, 1, 3/2: SPD).

    For d = 2 these are the paper's diag(2, 1), diag(1, 2) and [[1, 1/2], [1/2, 1]] (Remark 3.3).  The
    d(d+1)/2 equations Tr(Z A) = y are independent (see :func:`design_condition_number`).
    """
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise InputError(f"dimension must be a positive integer, got {d!r}")
    out = []
    for k in range(d):
        a = np.eye(d)
        a[k, k] = 2.0
        out.append(a)
    for lft in range(d):
        for r in range(lft + 1, d):
            a = np.eye(d)
            a[lft, r] = a[r, lft] = 0.5
            out.append(a)
    if d == 1:
        out = [np.eye(1)]
    return out


def _pairs(d):
    return [(i, i) for i in range(d)] + [(i, j) for i in range(d) for j in range(i + 1, d)]


def design_matrix(design_As) -> np.ndarray:
    """Rows of the linear map z -> Tr(Z A_k), z = (Z_11..Z_dd, Z_12, Z_13, ..): (K, d(d+1)/2)."""
    As = [np.asarray(a, dtype=float) for a in design_As]
    d = As[0].shape[0]
    for a in As:
        if a.shape != (d, d) or not np.allclose(a, a.T):
            raise InputError("designs must be symmetric (d, d) matrices of one size")
        if np.linalg.eigvalsh(a).min() <= 0:
            raise InputError("designs must be positive definite")
    return np.array([[a[i, j] * (1.0 if i == j else 2.0) for i, j in _pairs(d)] for a in As])


def design_condition_number(design_As) -> float:
    """2-norm condition number of :func:`design_matrix` (inf when the entries of Z are not determined)."""
    x = design_matrix(design_As)
    s = np.linalg.svd(x, compute_uv=False)
    if len(s) < x.shape[1] or s[-1] <= 1e-14 * s[0]:
        return float("inf")
    return float(s[0] / s[-1])


def _to_matrix(z, d):
    m = np.zeros((d, d))
    for v, (i, j) in zip(z, _pairs(d)):
        m[i, j] = m[j, i] = v
    return m


def estimate_noise_covariance(design_As, moments, moment_ses, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Z and its standard errors (d, d) from y_k = 2 gamma E[p^T A_k^2 p] (3.8, corrected).

    Weighted least squares with weights 1 / (2 gamma s_k)^2; the covariance of the entries of Z is
    (X^T W X)^-1 (exact error propagation for a linear map; independent runs).
    """
    x = design_matrix(design_As)
    m = np.asarray(moments, dtype=float).ravel()
    s = np.asarray(moment_ses, dtype=float).ravel()
    if len(m) != x.shape[0] or len(s) != len(m):
        raise InputError(f"{x.shape[0]} designs but {len(m)} moments and {len(s)} standard errors")
    if not gamma > 0:
        raise InputError(f"gamma must be positive, got {gamma}")
    if not np.isfinite(design_condition_number(design_As)):
        raise InputError("the designs do not determine all entries of Z")
    if np.any(~np.isfinite(s)) or np.any(s <= 0):
        s = np.full_like(m, max(np.nanmax(np.abs(m)), 1.0))  # unweighted fallback, se then meaningless
    y, sy = 2 * gamma * m, 2 * gamma * s
    w = 1.0 / sy ** 2
    xtwx = x.T @ (w[:, None] * x)
    cov = np.linalg.inv(xtwx)
    z = cov @ (x.T @ (w * y))
    d = design_As[0].shape[0] if hasattr(design_As[0], "shape") else len(design_As[0])
    return _to_matrix(z, d), _to_matrix(np.sqrt(np.diag(cov)), d)


def second_moment_of_design(A, sim) -> tuple[float, float]:
    """E[p^T A^2 p] = Tr(A^2 E[p p^T]) and its se from ``sim.second_moment_batches`` (B, d, d).

    Falls back to Tr(A^2 (C + m m^T)) with se from ``momentum_covariance_se`` when batches are absent.
    """
    a2 = np.asarray(A, dtype=float) @ np.asarray(A, dtype=float)
    b = getattr(sim, "second_moment_batches", None)
    if b is not None and len(b) >= 2:
        vals = np.einsum("ij,bji->b", a2, np.asarray(b, dtype=float))
        return float(vals.mean()), float(vals.std(ddof=1) / math.sqrt(len(vals)))
    c = np.asarray(sim.momentum_covariance, dtype=float)
    mu = np.asarray(sim.momentum_mean, dtype=float)
    val = float(np.trace(a2 @ (c + np.outer(mu, mu))))
    se_c = np.asarray(sim.momentum_covariance_se, dtype=float)
    return val, float(np.sqrt(np.sum((a2 * se_c) ** 2)))


def nearest_spd(z, floor: float = 1e-12) -> tuple[np.ndarray, bool]:
    """Symmetrize and clip eigenvalues at ``floor * max|eig|``; returns (matrix, changed)."""
    z = np.asarray(z, dtype=float)
    z = 0.5 * (z + z.T)
    w, v = np.linalg.eigh(z)
    lo = floor * max(np.abs(w).max(), 1e-300)
    if w.min() > lo:
        return z, False
    return (v * np.maximum(w, lo)) @ v.T, True


def calibrate(Z) -> tuple[np.ndarray, np.ndarray]:
    """Stage 2: (inverse mass A = I, friction Gamma = Z / 2), so that 2 Gamma = Z and beta = 1."""
    z, _ = nearest_spd(Z)
    return np.eye(z.shape[0]), 0.5 * z


# --------------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _DesignTask:
    expression: Optional[str]
    variables: tuple
    delta: float
    kwargs: dict
    checkpoint: Optional[str] = None   # design summary (.npz), written when the run has finished
    resume: bool = False


#: Fields of a finished run that stage 1 and 2 use (what a design checkpoint holds).
_SUMMARY_FIELDS = ("second_moment_batches", "momentum_covariance", "momentum_covariance_se", "momentum_mean",
                   "trapped_fraction", "beta_hat", "beta_hat_se")


@dataclasses.dataclass
class _RunSummary:
    """The parts of a SimulationResult the noise stages use (picklable, checkpointable)."""

    second_moment_batches: np.ndarray
    momentum_covariance: np.ndarray
    momentum_covariance_se: np.ndarray
    momentum_mean: np.ndarray
    trapped_fraction: float
    beta_hat: float
    beta_hat_se: float


def _fingerprint(task: _DesignTask) -> str:
    """Hash of everything that determines a run (so a checkpoint of other settings is never reused)."""
    import hashlib
    import json

    kw = {k: (np.asarray(v).tolist() if isinstance(v, np.ndarray) else v) for k, v in sorted(task.kwargs.items())
          if k not in ("control", "checkpoint", "resume")}
    blob = json.dumps([task.expression, list(task.variables), float(task.delta), kw], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _run_design(task: _DesignTask, potential=None, control=None) -> _RunSummary:
    """One simulate() run -> its summary; picklable for process executors (potential rebuilt from its expression).

    With ``task.checkpoint``: a finished run's summary is saved there (atomically), and with ``task.resume`` a
    summary saved with the same settings is returned without simulating; a run interrupted half-way
    continues from simulate's own checkpoint (``<checkpoint>.sim.npz``, removed when the run is done).
    """
    from pathlib import Path

    from .runtime import load_checkpoint, save_checkpoint
    from .simulate import simulate

    fp = _fingerprint(task)
    ck = Path(task.checkpoint) if task.checkpoint else None
    if ck is not None and task.resume and ck.exists():
        st = load_checkpoint(ck)
        if str(st.get("fingerprint", "")) == fp:
            return _RunSummary(**{k: (float(st[k]) if st[k].ndim == 0 else st[k]) for k in _SUMMARY_FIELDS})
    if potential is None:
        from .potentials import Potential

        potential = Potential.from_expression(task.expression, list(task.variables))
    sim_ck = ck.with_suffix(".sim.npz") if ck is not None else None
    sim = simulate(potential, task.delta, control=control, checkpoint=sim_ck,
                   resume=bool(task.resume and sim_ck is not None and sim_ck.exists()), **task.kwargs)
    out = _RunSummary(**{k: getattr(sim, k) for k in _SUMMARY_FIELDS})
    if ck is not None:
        save_checkpoint(ck, fingerprint=fp, **dataclasses.asdict(out))
        sim_ck.unlink(missing_ok=True)
    return out


@dataclasses.dataclass
class NoiseResult:
    """Stage 1 + 2 of Theorem 3.1.

    noise_covariance Z (d, d) (weighted least squares), noise_covariance_sd (posterior sd of Z, or the
    least-squares se when no posterior was sampled), friction Gamma = Z / 2, calibrated_momentum_covariance
    (stage-2 run with M = I, Gamma = Z / 2; expected I / beta with beta = 1) and its beta_hat.
    """

    dim: int
    delta: float
    gamma: float
    designs: list
    moments: list
    moment_ses: list
    noise_covariance: np.ndarray
    noise_covariance_se: np.ndarray
    noise_covariance_sd: np.ndarray
    posterior_mean: Optional[np.ndarray]
    posterior_lower: Optional[np.ndarray]
    posterior_upper: Optional[np.ndarray]
    friction: np.ndarray
    condition_number: float
    design_momentum_covariances: list
    calibrated_momentum_covariance: Optional[np.ndarray] = None
    calibrated_momentum_covariance_se: Optional[np.ndarray] = None
    beta_hat: Optional[float] = None
    beta_hat_se: Optional[float] = None
    trapped_fractions: list = dataclasses.field(default_factory=list)
    diagnostics: Optional[dict] = None
    warnings: list = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    idata: Any = None

    def to_dict(self) -> dict:
        f = lambda a: None if a is None else np.asarray(a, dtype=float).tolist()  # noqa: E731
        return {
            "dimension": self.dim, "delta": self.delta, "gamma": self.gamma,
            "relation": "Tr(Z A) = 2 gamma E[p^T A^2 p]",
            "noise_covariance": f(self.noise_covariance),
            "noise_covariance_se": f(self.noise_covariance_se),
            "noise_covariance_sd": f(self.noise_covariance_sd),
            "posterior": None if self.posterior_mean is None else {
                "mean": f(self.posterior_mean), "lower": f(self.posterior_lower), "upper": f(self.posterior_upper),
                "interval": "94% equal-tailed"},
            "friction": f(self.friction),
            "calibrated_momentum_covariance": f(self.calibrated_momentum_covariance),
            "calibrated_momentum_covariance_se": f(self.calibrated_momentum_covariance_se),
            "beta_hat": self.beta_hat, "beta_hat_se": self.beta_hat_se,
            "designs": [f(a) for a in self.designs], "design_moments": list(map(float, self.moments)),
            "design_moment_ses": list(map(float, self.moment_ses)),
            "design_momentum_covariances": [f(c) for c in self.design_momentum_covariances],
            "design_condition_number": self.condition_number,
            "trapped_fractions": list(self.trapped_fractions),
            "diagnostics": self.diagnostics, "warnings": list(self.warnings), "seconds": self.seconds,
        }

    def summary(self):
        """:class:`bayescg.summary.Summary`: Z (d x d) with its sd, the friction Gamma = Z / 2, the calibrated run's
        beta_hat (1 when the calibration holds), the design's condition number and the sampler diagnostics."""
        from .summary import Summary

        d = self.to_dict()
        s = Summary(f"noise: covariance Z and friction calibration (Theorem 3.1), d = {self.dim}",
                    warnings=list(self.warnings))
        s.add("noise covariance Z", d["noise_covariance"]).add("sd of Z", d["noise_covariance_sd"], ".2g")
        s.add("friction Gamma = Z / 2", d["friction"])
        s.add("calibrated beta_hat (want 1)", d["beta_hat"], missing="n/a (not calibrated)")
        s.add("beta_hat_se", d["beta_hat_se"], ".2g", missing="n/a (not calibrated)")
        s.add("design condition number", d["design_condition_number"], ".3g")
        if d.get("diagnostics"):  # a sampled posterior of Z
            s.add_diagnostics(d["diagnostics"])
        else:
            s.add("posterior of Z", None, missing="n/a (not sampled: least-squares se)")
        return s.add("seconds", d["seconds"], ".1f", "s")

    def to_inference_data(self):
        """InferenceData: posterior of Z (when sampled), observed_data = design moments and their ses."""
        import arviz as az
        import xarray as xr

        idata = self.idata if self.idata is not None else az.InferenceData()
        obs = xr.Dataset({"design_moment": ("design", np.asarray(self.moments, dtype=float)),
                          "design_moment_se": ("design", np.asarray(self.moment_ses, dtype=float)),
                          "design_A": (("design", "i", "j"), np.asarray(self.designs, dtype=float))})
        if "observed_data" in idata.groups():
            del idata["observed_data"]
        idata.add_groups({"observed_data": obs})
        return idata

    def figures(self):
        """[(title, Figure)]: momentum covariance ellipses before and after calibration
        (:func:`bayescg.plots.noise.plot_momentum_covariance`)."""
        from .plots.noise import noise_figures

        return noise_figures(self)


def _run_designs(tasks, potential, executor, control) -> list:
    """The design runs, in this process unless ``executor`` is a cluster's."""
    from .executor import LocalExecutor

    # local worker processes only for a cluster: each design run already spreads its walkers over this machine's
    # cores (engine threads), and a spawned pool costs a fresh interpreter importing bayescg per worker (2D learn,
    # 2e6 steps: in-process 4.3 s wall, 4.7 s CPU vs 5.9-6.5 s wall, 8.0-8.6 s CPU with the pool; same designs)
    if executor is not None and tasks and tasks[0].expression is not None and not isinstance(executor, LocalExecutor):
        return list(executor.map(_run_design, tasks))
    out = []
    for k, t in enumerate(tasks):  # a stage each: every run's progress goes from 0 to 1
        begin_stage(control, f"noise model: design run {k + 1}/{len(tasks)} ({t.kwargs['steps']:.3g} steps)", 1.0)
        out.append(_run_design(t, potential, control))
    return out


def _design_moments(As, sims, warnings):
    """(moments, their ses, momentum covariances, trapped fractions) of the design runs (Theorem 3.1's left-hand
    sides); a design with trapped walkers adds a warning."""
    moments, ses, covs, trapped = [], [], [], []
    for A, s in zip(As, sims):
        m, se = second_moment_of_design(A, s)
        moments.append(m)
        ses.append(se)
        covs.append(np.asarray(s.momentum_covariance, dtype=float))
        trapped.append(float(getattr(s, "trapped_fraction", 0.0)))
        if trapped[-1] > 0:
            warnings.append(f"design {np.asarray(A).tolist()}: {100 * trapped[-1]:.0f}% of walkers trapped "
                            "(excluded from the moments)")
    return moments, ses, covs, trapped


def _noise_posterior(As, moments, ses, gamma, Zspd, d, *, draws, tune, chains, seed, control, warnings) -> dict:
    """NUTS on the posterior of Z (LKJ prior; bayes.noise): its mean, 94 % bounds and sd (d, d), diagnostics and
    the InferenceData."""
    from .bayes.noise import noise_density, noise_model
    from .sampling import convergence_warnings, diagnostics, nuts_backend, sample

    # nutpie: the cached numba kernel of the same posterior (no PyTensor/nutpie compile per run), chains
    # started around the least-squares Z; else the PyMC model
    model = (noise_density(As, moments, ses, gamma, z_init=Zspd) if nuts_backend() == "nutpie"
             else noise_model(As, moments, ses, gamma))
    idata = sample(model, draws=draws, tune=tune, chains=chains, seed=seed, control=control)
    zs = idata.posterior["Z"].values.reshape(-1, d, d)
    post_lo, post_hi = np.quantile(zs, [0.03, 0.97], axis=0)
    diag = diagnostics(idata, var_names=["Z"])
    warnings += [f"noise posterior: {w}" for w in convergence_warnings(diag)]
    return dict(post_mean=zs.mean(axis=0), post_lo=post_lo, post_hi=post_hi, z_sd=zs.std(axis=0, ddof=1),
                diag=diag, idata=idata)


def _record_calibrated_run(res, s2, warnings) -> None:
    """Stage 2's momentum covariance and temperature into ``res``; a warning when it is not close to I (beta = 1)."""
    d = res.dim
    res.calibrated_momentum_covariance = np.asarray(s2.momentum_covariance, dtype=float)
    res.calibrated_momentum_covariance_se = np.asarray(s2.momentum_covariance_se, dtype=float)
    res.beta_hat = float(s2.beta_hat)
    res.beta_hat_se = float(s2.beta_hat_se)
    c = res.calibrated_momentum_covariance
    off = np.abs(c - np.diag(np.diag(c))).max() if d > 1 else 0.0
    if abs(res.beta_hat - 1) > 0.1 or off > 0.1 * np.trace(c) / d:
        warnings.append(f"after calibration the momentum covariance {np.round(c, 3).tolist()} is not "
                        "close to I (beta = 1): the effective noise may not be additive at this delta")


#: Fewer momentum relaxation times than this per walker (after burn-in) along a direction of the calibrated friction
#: and the kicks do not set that direction's temperature (:func:`slow_directions`).
MIN_RELAXATIONS = 10.0


def slow_directions(friction, sampled_time: float, momentum_covariance=None,
                    min_relaxations: float = MIN_RELAXATIONS) -> list[str]:
    """Warnings for the directions v the calibrated friction Gamma (d, d) (rate per unit time, M = I) damps so weakly
    that a walker sees fewer than ``min_relaxations`` momentum relaxation times lambda T after burn-in, T =
    ``sampled_time`` (steps per walker after burn-in times delta): there the kicks (Z = 2 Gamma, Theorem 3.1) do not set the temperature,
    which carries the walkers' start (init_sd) unless V couples v to the damped directions, so the histogram along
    v need not be a Gibbs law.  Seen when the small scale acts along fewer than d directions (e.g. x^2/2 + y^2 +
    eps sin(x/eps): Z_yy is 0 within its error and Gamma's smallest eigenvalue 3e-14 after the SPD clip).
    momentum_covariance (d, d) of the calibrated run (optional): the temperature v^T C v measured along v is quoted
    next to the mean Tr(C) / d."""
    G = np.atleast_2d(np.asarray(friction, dtype=float))
    lam, vec = np.linalg.eigh(0.5 * (G + G.T))
    T = float(sampled_time)
    out = []
    for k in np.flatnonzero(lam * T < min_relaxations):
        v = vec[:, k] * np.sign(vec[np.argmax(np.abs(vec[:, k])), k])
        temp = ""
        if momentum_covariance is not None:
            C = np.asarray(momentum_covariance, dtype=float)
            temp = (f"; the calibrated run's temperature along it is {float(v @ C @ v):.3g} against "
                    f"{float(np.trace(C)) / len(C):.3g} on average")
        out.append(f"the calibrated friction damps direction {np.round(v, 3).tolist()} at rate {lam[k]:.3g} per unit "
                   f"time: {max(lam[k], 0.0) * T:.3g} momentum relaxation times per walker after burn-in (< "
                   f"{min_relaxations:g}), so the kicks do not set its temperature, which keeps the walkers' start "
                   f"unless V couples it to the damped directions{temp}; U along it need not be the effective "
                   "potential (more steps per walker, or a small scale that acts along it)")
    return out


def estimate_noise(potential, delta: float, gamma: float = 0.1, steps: int = 1_000_000, walkers: int = 16,
                   seed: int = 1, executor=None, control=None, *, calibrated_run: bool = True,
                   bayesian: bool = True, draws: int = 1000, tune: int = 1000, chains: int = 2,
                   calibrated_steps: Optional[int] = None, workdir=None, resume: bool = False,
                   **sim_kwargs) -> NoiseResult:
    """Run the stage-1 designs through ``simulate`` and estimate Z, then (optionally) the stage-2 run.

    potential: bayescg Potential (d >= 1); steps: total steps per design run (summed over walkers);
    executor: object with ``map(fn, items)`` (independent runs in parallel, e.g. on a dask cluster) or None
    (sequential; a LocalExecutor's process pool is not used: in this process each run uses every core);
    extra keyword arguments go to ``simulate`` (e.g. hist_range, burn_in).  The design runs use seeds
    seed, seed + 1, ... ; the calibrated run uses seed + K.
    workdir: folder for checkpoints: each finished design (and the calibrated run) is saved as
    ``checkpoint-noise-design-<k>.npz`` (``checkpoint-noise-calibrated.npz``) and, with ``resume``, a design
    saved with the same settings is not run again; an interrupted run continues from simulate's checkpoint.
    The result equals that of an uninterrupted run.
    """
    from pathlib import Path

    t0 = time.perf_counter()
    ckdir = Path(workdir) if workdir is not None else None

    def ckpath(name):
        return None if ckdir is None else str(ckdir / f"checkpoint-noise-{name}.npz")

    d = int(potential.dim)
    # Scale each design to largest eigenvalue 1: the relation is linear in A, so the equations stay
    # independent, and no design run is hotter or stiffer (delta^2 lambda_max(A Hess V)) than the
    # M = I run. With the paper's diag(2, 1) walkers on (4.9) blew up within 2e4 steps.
    As = [a / np.linalg.eigvalsh(a).max() for a in designs(d)]
    warnings: list[str] = []
    base = dict(gamma=gamma, steps=int(steps), walkers=int(walkers), **sim_kwargs)
    expr, variables = getattr(potential, "expression", None), tuple(getattr(potential, "variables", ()))
    tasks = [_DesignTask(expr, variables, delta, dict(base, seed=int(seed) + k, mass=A, friction=gamma * np.eye(d)),
                         checkpoint=ckpath(f"design-{k}"), resume=resume)
             for k, A in enumerate(As)]
    sims = _run_designs(tasks, potential, executor, control)
    moments, ses, covs, trapped = _design_moments(As, sims, warnings)
    Z, Z_se = estimate_noise_covariance(As, moments, ses, gamma)
    Zspd, changed = nearest_spd(Z)
    if changed:
        warnings.append("least-squares Z was not positive definite; clipped to the nearest SPD matrix")
    post = dict(post_mean=None, post_lo=None, post_hi=None, z_sd=Z_se, diag=None, idata=None)
    if bayesian:
        begin_stage(control, "noise model: NUTS set-up (import sampler)")
        post = _noise_posterior(As, moments, ses, gamma, Zspd, d, draws=draws, tune=tune, chains=chains, seed=seed,
                                control=control, warnings=warnings)
    _, friction = calibrate(Zspd)
    res = NoiseResult(dim=d, delta=float(delta), gamma=float(gamma), designs=As, moments=moments, moment_ses=ses,
                      noise_covariance=Zspd, noise_covariance_se=Z_se, noise_covariance_sd=post["z_sd"],
                      posterior_mean=post["post_mean"], posterior_lower=post["post_lo"],
                      posterior_upper=post["post_hi"], friction=friction,
                      condition_number=design_condition_number(As), design_momentum_covariances=covs,
                      trapped_fractions=trapped, diagnostics=post["diag"], warnings=warnings, idata=post["idata"])
    if calibrated_run:
        kw = dict(base, steps=int(calibrated_steps or steps), seed=int(seed) + len(As), mass=np.eye(d),
                  friction=friction)
        begin_stage(control, f"noise model: calibrated run ({kw['steps']:.3g} steps)", 1.0)
        s2 = _run_design(_DesignTask(expr, variables, delta, kw, checkpoint=ckpath("calibrated"), resume=resume),
                         potential, control)
        _record_calibrated_run(res, s2, warnings)
    from .simulate import DEFAULT_BURN_IN, walker_steps

    run = dict(base, steps=int(calibrated_steps or steps)) if calibrated_run else base
    n_per, burn = walker_steps(run["steps"], run["walkers"], run.get("burn_in", DEFAULT_BURN_IN))
    warnings += slow_directions(friction, (n_per - burn) * float(delta), res.calibrated_momentum_covariance)
    res.seconds = time.perf_counter() - t0
    return res
