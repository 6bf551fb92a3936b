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


@dataclasses.dataclass(frozen=True)
class ScaleTask:
    """One delta of a sweep; picklable so it can run in another process or on a dask worker."""

    expression: str
    variables: tuple
    delta: float
    sim_kwargs: dict
    checkpoint: Optional[str] = None
    resume: bool = False


def run_scale_task(task: ScaleTask) -> dict:
    from .potentials import Potential
    from .simulate import simulate
    from .stats import equilibrium_summary

    pot = Potential.from_expression(task.expression, list(task.variables))
    sim = simulate(pot, task.delta, checkpoint=task.checkpoint, resume=task.resume, **task.sim_kwargs)
    row = {"delta": task.delta, "steps": sim.steps, "seconds": sim.seconds, "trapped_fraction": sim.trapped_fraction}
    if sim.trapped_fraction >= 1.0:
        row.update(beta_hat=None, beta_hat_se=None, normality_statistic=None, normality_pvalue=None,
                   momentum_covariance=None)
        return row
    eq = equilibrium_summary(sim)
    row.update(beta_hat=eq.beta_hat, beta_hat_se=eq.beta_hat_se, normality_statistic=eq.normality_statistic,
               normality_pvalue=eq.normality_pvalue, momentum_covariance=sim.momentum_covariance.tolist())
    return row


def classify(row: dict, alpha: float = 0.01, max_rel_se: float = 0.05, max_trapped: float = 0.5) -> tuple[bool, str]:
    """Whether a row found a scale, and why not if it did not."""
    if row["trapped_fraction"] >= 1.0:
        return False, "all walkers trapped in fixed points of the map"
    if row["trapped_fraction"] > max_trapped:
        return False, f"{100 * row['trapped_fraction']:.0f}% of walkers trapped"
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

    pot = model.require("potential")
    kw = sim_kwargs(model)
    tasks = []
    for d in deltas:
        ck = str(Path(workdir) / f"checkpoint-scales-{d:g}.npz") if workdir is not None else None
        tasks.append(ScaleTask(pot.expression, tuple(pot.variables), float(d), kw, ck,
                               bool(resume and ck and Path(ck).exists())))
    ex = executor or SerialExecutor()
    if control is not None:
        control.check()
    rows = ex.map(run_scale_task, tasks)
    for row in rows:
        row["scale_found"], row["reason"] = classify(row, alpha)
    return ScalesResult(rows=rows, alpha=alpha)
