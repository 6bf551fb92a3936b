"""Scale detection by a sweep over step sizes (Remark 3.2).

For each delta the damped map (3.2) runs independently (in parallel through an executor).
A row says a scale was *found* when the momenta are Gaussian on decorrelated samples
(normality p-value above ``alpha``), beta_hat is stable (batch-means relative standard error
below ``max_rel_se``) and at least half the walkers stayed untrapped; trapped walkers
(fixed points of the map, momentum collapsed to 0) are excluded and counted, never averaged in.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Optional

from .config import Model
from .errors import InputError


@dataclasses.dataclass(frozen=True)
class ScaleTask:
    """One delta of a sweep; picklable so it can run in another process or on a dask worker."""

    expression: str
    variables: tuple
    delta: float
    sim_kwargs: dict
    checkpoint: Optional[str] = None
    resume: bool = False
    auto_gamma: bool = False
    target_beta: float = 0.6


def run_scale_task(task: ScaleTask) -> dict:
    from .potentials import Potential
    from .simulate import simulate
    from .stats import equilibrium_summary

    pot = Potential.from_expression(task.expression, list(task.variables))
    kw = dict(task.sim_kwargs)
    choice = None
    if task.auto_gamma:
        choice = auto_gamma(pot, task.delta, kw, task.target_beta)
    sim = simulate(pot, task.delta, checkpoint=task.checkpoint, resume=task.resume, **kw)
    row = {"delta": task.delta, "gamma": kw["gamma"], "steps": sim.steps, "seconds": sim.seconds,
           "trapped_fraction": sim.trapped_fraction, "gamma_pilots": choice.history if choice else None}
    if sim.trapped_fraction >= 1.0:
        row.update(beta_hat=None, beta_hat_se=None, normality_statistic=None, normality_pvalue=None,
                   momentum_covariance=None)
        return row
    eq = equilibrium_summary(sim)
    row.update(beta_hat=eq.beta_hat, beta_hat_se=eq.beta_hat_se, normality_statistic=eq.normality_statistic,
               normality_pvalue=eq.normality_pvalue, momentum_covariance=sim.momentum_covariance.tolist())
    # beta_hat is proportional to gamma (see choose_gamma): the friction that would give beta_hat ~ 0.6
    row["suggested_gamma"] = kw["gamma"] * task.target_beta / eq.beta_hat if eq.beta_hat > 0 else None
    return row


# measured on (4.7) at delta 0.1309 (models/test3-cosine-series-d01309.toml): walkers trap after 3e4-8e4
# steps whatever the run length, so the budget has to go into more, shorter walkers
_TRAP_REMEDY = "remedies: a lower gamma (hotter), or more walkers with fewer steps each"


def classify(row: dict, alpha: float = 0.01, max_rel_se: float = 0.05, max_trapped: float = 0.5) -> tuple[bool, str]:
    """Whether a row found a scale, and why not if it did not."""
    if row["trapped_fraction"] >= 1.0:
        return False, f"all walkers trapped in fixed points of the map ({_TRAP_REMEDY})"
    if row["trapped_fraction"] > max_trapped:
        return False, f"{100 * row['trapped_fraction']:.0f}% of walkers trapped ({_TRAP_REMEDY})"
    b, se, pv = row["beta_hat"], row["beta_hat_se"], row["normality_pvalue"]
    if b is None or not math.isfinite(b) or b <= 0:
        return False, "no finite temperature"
    if se is None or not math.isfinite(se) or se / b > max_rel_se:
        return False, f"beta_hat not stable (relative standard error {se / b:.2g})" if se else "beta_hat not stable"
    if pv is None or pv < alpha:
        return False, f"momenta not Gaussian (p = {pv:.2g}): scales still mixed"
    return True, "Gaussian momenta, stable beta_hat"


@dataclasses.dataclass
class ScalesResult:
    rows: list
    alpha: float = 0.01

    def to_dict(self) -> dict:
        return {"rows": self.rows, "alpha": self.alpha,
                "scales_found": [r["delta"] for r in self.rows if r["scale_found"]]}

    def summary(self):
        keys = ["delta", "beta_hat", "beta_hat_se", "normality_pvalue", "trapped_fraction", "scale_found", "reason"]
        return [{k: r.get(k) for k in keys} for r in self.rows]

    def figures(self):
        import matplotlib.pyplot as plt
        import numpy as np

        rows = [r for r in self.rows if r["beta_hat"] is not None]
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        if rows:
            d = np.array([r["delta"] for r in rows])
            b = np.array([r["beta_hat"] for r in rows])
            se = np.array([r["beta_hat_se"] or 0.0 for r in rows])
            found = np.array([r["scale_found"] for r in rows])
            ax[0].errorbar(d, b, yerr=2 * se, fmt="o-", color="0.4")
            ax[0].plot(d[found], b[found], "o", color="tab:green", label="scale found")
            ax[0].set(xscale="log", xlabel="delta", ylabel="beta_hat = 1/var(p)")
            ax[0].legend()
            pv = np.array([max(r["normality_pvalue"] or 1e-300, 1e-300) for r in rows])
            ax[1].semilogx(d, pv, "o-")
            ax[1].axhline(self.alpha, ls="--", color="tab:red", label=f"alpha = {self.alpha}")
            ax[1].set(yscale="log", xlabel="delta", ylabel="normality p-value")
            ax[1].legend()
        fig.tight_layout()
        return [("Scale scan: temperature and normality of p against delta", fig)]


def scan_scales(model: Model, deltas: list[float], *, executor=None, control=None,
                workdir: str | Path | None = None, resume: bool = False, alpha: float = 0.01) -> ScalesResult:
    """Run the damped map at each delta (in parallel) and classify each row."""
    from .executor import SerialExecutor
    from .pipeline import sim_kwargs

    from .pipeline import potential_from_model

    pot = potential_from_model(model)  # a module potential's traced expression when it has one
    if pot.expression is None:
        raise InputError(f"{model.path or model.name}: scales runs each delta in a worker process, which rebuilds the "
                         "potential from an expression; a module potential with its own grad has none (run learn or "
                         "simulate per delta instead, or drop grad so that V is traced)")
    kw = sim_kwargs(model)
    tasks = []
    for d in deltas:
        ck = str(Path(workdir) / f"checkpoint-scales-{d:g}.npz") if workdir is not None else None
        tasks.append(ScaleTask(pot.expression, tuple(pot.variables), float(d), kw, ck,
                               bool(resume and ck and Path(ck).exists()),
                               model.simulation.auto_gamma, model.simulation.target_beta))
    ex = executor or SerialExecutor()
    if control is not None:
        control.check()
    rows = ex.map(run_scale_task, tasks)
    for row in rows:
        row["scale_found"], row["reason"] = classify(row, alpha)
    return ScalesResult(rows=rows, alpha=alpha)


# --- friction choice: the remedy for cold, trapped runs -------------------------------------
@dataclasses.dataclass
class GammaChoice:
    """Outcome of :func:`choose_gamma`: the friction and the pilot runs that led to it."""

    gamma: float
    beta_hat: float
    history: list  # [{gamma, beta_hat, trapped_fraction}] of the pilots

    def to_dict(self):
        return dataclasses.asdict(self)


def choose_gamma(potential, delta: float, *, gamma0: float = 0.1, target_beta: float = 0.6,
                 band: tuple = (0.2, 1.25), pilot_steps: int = 2_000_000, walkers: int = 16, seed: int = 1,
                 max_pilots: int = 4, **sim_kwargs) -> GammaChoice:
    """Pick a scalar friction that puts beta_hat = 1/var(p) near ``target_beta``.

    From (3.4)-(3.5) in 1D, var(p) = Z / (2 gamma) with Z = delta E[g^2] independent of gamma,
    so beta_hat is proportional to gamma: one pilot at ``gamma0`` predicts the gamma for any target;
    further pilots correct the finite-delta deviation from proportionality.  A cold run
    (beta_hat >> 1) is where walkers fall into fixed points of the map (measured on Test 1 at
    delta = 0.065: gamma 0.1 gives 41 % trapped and beta_hat ~ 480, gamma 0.01 gives beta_hat
    0.61); a pilot whose walkers all trap is retried with gamma / 10.
    """
    from .simulate import simulate

    gamma, history = float(gamma0), []
    for i in range(max_pilots):
        sim = simulate(potential, delta, gamma, steps=pilot_steps, walkers=walkers, seed=seed + i, **sim_kwargs)
        b = sim.beta_hat
        history.append({"gamma": gamma, "beta_hat": None if not math.isfinite(b) else b,
                        "trapped_fraction": sim.trapped_fraction})
        if not math.isfinite(b) or sim.trapped_fraction >= 1.0:
            gamma /= 10.0
            continue
        if band[0] <= b <= band[1] and sim.trapped_fraction < 0.05:
            return GammaChoice(gamma, b, history)
        gamma *= target_beta / b
    last = [h for h in history if h["beta_hat"] is not None]
    return GammaChoice(gamma, last[-1]["beta_hat"] if last else float("nan"), history)


PILOT_MAX_WALKERS = 64


def auto_gamma(potential, delta: float, sim_kwargs: dict, target_beta: float = 0.6) -> GammaChoice:
    """:func:`choose_gamma` from the run's own settings, starting at ``sim_kwargs["gamma"]``.

    The pilots use the run's walkers, seed and histogram grid; the chosen friction is written back
    into ``sim_kwargs["gamma"]`` so the caller's run uses it.
    """
    pilot = {k: sim_kwargs[k] for k in ("walkers", "seed", "bins", "hist_range") if k in sim_kwargs}
    # a pilot spread over thousands of walkers would be a few hundred steps each, too short to equilibrate
    pilot["walkers"] = min(int(pilot.get("walkers", PILOT_MAX_WALKERS)), PILOT_MAX_WALKERS)
    choice = choose_gamma(potential, delta, gamma0=sim_kwargs["gamma"], target_beta=target_beta, **pilot)
    sim_kwargs["gamma"] = choice.gamma
    return choice
