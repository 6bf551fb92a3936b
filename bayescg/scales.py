"""Scale detection by a sweep over step sizes (Remark 3.2), with a verdict that does not follow the sample size.

For each delta the damped map (3.2) runs independently (in parallel through an executor).  Remark 3.2: where the
momenta are Gaussian, delta has found a scale eps_k ~ delta; where they are not, scales are still mixed.  A
normality *test* cannot decide this: its p-value shrinks with the number of samples for any fixed, however
harmless, deviation (on (4.7) the D'Agostino p-values on 5000 thinned points pass at delta 0.65, 0.45 and
0.2601 and all fail on ~1e6 points).  So each row is judged on *effect sizes with confidence intervals* against
explicit tolerances; more samples only narrow the intervals, and a decided verdict does not change once they
are narrow enough:

* ``accepted``: every effect's interval lies inside its tolerance band;
* ``rejected``: some effect's interval lies wholly outside its band (or most walkers are trapped);
* ``undetermined``: otherwise -- an interval straddles a band edge: not enough samples to decide.

Effects (momenta of the untrapped walkers; standard errors from batch means, :func:`bayescg.stats.shape_effects`):

* excess kurtosis and skewness of each p_i; for d >= 2 also Mardia's kurtosis effect 3 (b2 / (d (d+2)) - 1)
  (:func:`bayescg.stats.mardia_kurtosis_effect`), which is invariant under linear maps of p;
* the beta_hat plateau: from (3.4)-(3.5), 1 / beta_hat = var(p) = Z / (2 gamma) with Z = delta E[g^2], so the
  *unresolved gradient power* G2 = 2 gamma / (delta beta_hat) (= E|g|^2 / d of the unresolved part of grad V,
  M = I) is independent of delta and gamma as long as the set of unresolved scales does not change: beta_hat is
  proportional to 1 / delta (e.g. 4 gamma / delta for V = q^2/2 + e sin(q/e)).  Its local log-slope
  s = d log G2 / d log delta (grid neighbours within a factor 1.5 that pass the shape test) is 0 on a plateau.

Tolerances (``ShapeTolerance``), from the bias in U each allows:

* kurtosis 0.1: where scales are mixed the local kinetic temperature T(q) depends on position, so p is a
  variance mixture of Gaussians with excess kurtosis 3 CV(T)^2.  A learned U = -log pi(q) / beta_hat with one
  beta_hat then has force errors of relative size (T(q) - <T>) / <T>; |kurtosis| <= 0.1 bounds CV(T) by 0.18,
  a worst-case (smooth T(q)) error of ~0.18 * 2 kT = 0.37 kT in U across the central 95 % of a 1D law
  (beta U spans ~2 there), and a distortion of the log-density of p itself of at most 0.1 * max|He4| / 24 =
  0.025 kT within +-2 sd (Edgeworth).
* skewness 0.075: a variance mixture has no skewness; a skewed p means a non-Gibbs (driven) law.  The tolerance
  allows the same +-2 sd Edgeworth distortion of log p's density as the kurtosis tolerance: s max|He3| / 6 =
  kappa max|He4| / 24, max|He3| = 2, max|He4| = 6 on [-2, 2]: s = 0.75 kappa.
* slope 0.5: the finite-step bias of beta_hat is O(delta): G2 = G0 (1 + c delta) has log-slope
  c delta / (1 + c delta) < 1/2 as long as that bias is smaller than G0 itself; a steeper slope means the
  unresolved gradient power itself changes with delta: a scale is being crossed.
Intervals are two-sided at ``confidence`` with a Bonferroni split over the effects judged in a row.

The scale found (Remark 3.2: eps_k proportional to delta) is estimated from where the verdict flips on the grid:
scanning delta downwards, each run of accepted deltas gives eps ~ its largest delta, bracketed by the next larger
rejected delta.  Trapped walkers (fixed points of the map, momentum collapsed to 0) are excluded and counted,
never averaged in, and listed in ``warnings``.  ``normality_pvalue`` is still reported (SPEC field) but does not
enter the verdict.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Optional

import numpy as np

from .config import Model
from .errors import InputError

VERDICTS = ("accepted", "rejected", "undetermined")


@dataclasses.dataclass(frozen=True)
class ShapeTolerance:
    """Tolerances of the scale criterion (reasoning in the module docstring)."""

    kurtosis: float = 0.1     # |excess kurtosis| of p_i (and Mardia's kurtosis effect, d >= 2)
    skewness: float = 0.075   # |skewness| of p_i
    slope: float = 0.5        # |d log G2 / d log delta|, G2 = 2 gamma / (delta beta_hat)
    confidence: float = 0.95  # family-wise, Bonferroni over the effects of a row
    max_trapped: float = 0.5  # a larger trapped fraction rejects the row

    def to_dict(self):
        return dataclasses.asdict(self)


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


def momentum_moment_batches(sim):
    """(M (W, B, d, 4), counts (W, B) or None, source): batch means of p_i^k, k = 1..4, of the untrapped walkers.

    Streamed over all post-burn-in steps when the simulator provides ``p_moment_batches``; else from the stored
    samples (``source`` says which).
    """
    from .stats import moment_batches

    pmb = getattr(sim, "p_moment_batches", None)
    if pmb is not None:
        good = ~np.asarray(sim.trapped, dtype=bool)
        M = np.asarray(pmb, dtype=float)[good]
        n_acc = int(sim.steps_per_walker) - int(sim.burn_in_steps)
        B = M.shape[1]
        lens = np.full(B, n_acc // B, dtype=float)
        lens[-1] = n_acc - (n_acc // B) * (B - 1)
        return M, np.broadcast_to(lens, M.shape[:2]), f"streamed moments of {M.shape[0] * n_acc:.3g} steps"
    p = np.asarray(sim.samples_p, dtype=float)
    M, counts = moment_batches(p, np.asarray(sim.sample_walker))
    return M, counts, f"{p.shape[0]} stored samples (stride {int(sim.sample_stride)} steps)"


def shape_row(sim) -> dict:
    """Effect sizes of the momentum law of ``sim`` with standard errors (see the module docstring)."""
    from .stats import mardia_kurtosis_effect, shape_effects

    M, counts, source = momentum_moment_batches(sim)
    eff = shape_effects(M, counts)
    row = {"excess_kurtosis": eff["excess_kurtosis"].tolist(), "excess_kurtosis_se": eff["excess_kurtosis_se"].tolist(),
           "skewness": eff["skewness"].tolist(), "skewness_se": eff["skewness_se"].tolist(),
           "moments_from": source, "moment_batches": eff["batches"]}
    p = np.asarray(sim.samples_p, dtype=float)
    if p.ndim == 2 and p.shape[1] >= 2:
        mk = mardia_kurtosis_effect(p, np.asarray(sim.sample_walker))
        row.update(mardia_kurtosis_effect=mk["kurtosis_effect"], mardia_kurtosis_effect_se=mk["kurtosis_effect_se"],
                   mardia_skewness_effect=mk["skewness_effect"], mardia_from=f"{p.shape[0]} stored samples")
    return row


def run_scale_task(task: ScaleTask) -> dict:
    from .potentials import Potential
    from .simulate import auto_gamma, simulate
    from .stats import equilibrium_summary

    pot = Potential.from_expression(task.expression, list(task.variables))
    kw = dict(task.sim_kwargs)
    choice = None
    if task.auto_gamma:
        choice = auto_gamma(pot, task.delta, kw, task.target_beta)
    sim = simulate(pot, task.delta, checkpoint=task.checkpoint, resume=task.resume, **kw)
    row = {"delta": task.delta, "gamma": kw["gamma"], "steps": sim.steps, "seconds": sim.seconds,
           "walkers": int(sim.walkers), "trapped_walkers": int(np.sum(sim.trapped)),
           "trapped_fraction": sim.trapped_fraction, "gamma_pilots": choice.history if choice else None}
    # trapping is absorbing, so the trapped fraction grows with the steps per walker; the rate per walker-step
    # before trapping does not (information: the verdict uses the fraction)
    at = np.asarray(sim.trapped_at)
    exposure = float(np.where(at >= 0, at, sim.steps_per_walker).sum())
    row["trap_rate_per_step"] = float(np.sum(at >= 0)) / exposure if exposure > 0 else None
    if sim.trapped_fraction >= 1.0 or sim.samples_p.shape[0] < 40:
        row.update(beta_hat=None, beta_hat_se=None, normality_statistic=None, normality_pvalue=None,
                   momentum_covariance=None, noise_power=None, noise_power_se=None)
        return row
    eq = equilibrium_summary(sim)
    row.update(beta_hat=eq.beta_hat, beta_hat_se=eq.beta_hat_se, normality_statistic=eq.normality_statistic,
               normality_pvalue=eq.normality_pvalue, momentum_covariance=sim.momentum_covariance.tolist())
    g2 = 2.0 * kw["gamma"] / (task.delta * eq.beta_hat) if eq.beta_hat > 0 else None
    row.update(noise_power=g2, noise_power_se=(g2 * eq.beta_hat_se / eq.beta_hat) if g2 else None)
    row.update(shape_row(sim))
    # beta_hat is proportional to gamma (see choose_gamma): the friction that would give beta_hat ~ 0.6
    row["suggested_gamma"] = kw["gamma"] * task.target_beta / eq.beta_hat if eq.beta_hat > 0 else None
    return row


# measured on (4.7) at delta 0.1309 (models/test3-cosine-series-d01309.toml): walkers trap after 3e4-8e4
# steps whatever the run length, so the budget has to go into more, shorter walkers
_TRAP_REMEDY = "remedies: a lower gamma (hotter), or more walkers with fewer steps each"


def _ok(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


#: Grid neighbours farther apart than this factor in delta are not used for the local G2 slope: the paper's
#: scales lie a factor 2-2.5 apart (0.65, 0.2601, 0.1309), so a wider difference may straddle a scale.
MAX_NEIGHBOUR_RATIO = 1.5


def plateau_slopes(rows: list, eligible=None, max_trapped: float = 0.5) -> None:
    """Set ``noise_power_slope`` / ``_se`` of each row with a finite G2: the local d log G2 / d log delta.

    Neighbours are the nearest ``eligible`` rows (default: all) below and above within a factor
    :data:`MAX_NEIGHBOUR_RATIO` in delta, with a finite G2 and at most ``max_trapped`` of their walkers trapped:
    a central difference between them, or one-sided against the row itself when only one side has one; errors of
    different deltas are independent.  None where no neighbour qualifies.
    """
    def usable(r):
        return _ok(r.get("noise_power")) and r["noise_power"] > 0 and r.get("trapped_fraction", 0.0) <= max_trapped

    pool = sorted((r for r in (rows if eligible is None else eligible) if usable(r)), key=lambda r: r["delta"])
    for r in rows:
        r["noise_power_slope"] = r["noise_power_slope_se"] = None
        if not usable(r):
            continue
        below = [x for x in pool if x["delta"] < r["delta"] and r["delta"] / x["delta"] <= MAX_NEIGHBOUR_RATIO]
        above = [x for x in pool if x["delta"] > r["delta"] and x["delta"] / r["delta"] <= MAX_NEIGHBOUR_RATIO]
        lo, hi = (below[-1] if below else r), (above[0] if above else r)
        if lo is hi:
            continue
        dl = math.log(hi["delta"] / lo["delta"])
        r["noise_power_slope"] = math.log(hi["noise_power"] / lo["noise_power"]) / dl
        rel = [(x["noise_power_se"] or 0.0) / x["noise_power"] for x in (lo, hi)]
        r["noise_power_slope_se"] = math.hypot(*rel) / dl


def _judge(value, se, tol, z):
    """'accepted' if value +- z se lies inside (-tol, tol), 'rejected' if wholly outside, else 'undetermined'."""
    if not (_ok(value) and _ok(se)):
        return "undetermined"
    lo, hi = value - z * se, value + z * se
    if -tol < lo and hi < tol:
        return "accepted"
    if lo > tol or hi < -tol:
        return "rejected"
    return "undetermined"


def _effects(row: dict) -> list:
    """[(name, value, se, tolerance key)] judged for a row."""
    out = []
    k = row.get("excess_kurtosis") or []
    for i in range(len(k)):
        sfx = f"[{i}]" if len(k) > 1 else ""
        out.append((f"excess kurtosis{sfx}", k[i], row["excess_kurtosis_se"][i], "kurtosis"))
        out.append((f"skewness{sfx}", row["skewness"][i], row["skewness_se"][i], "skewness"))
    if row.get("mardia_kurtosis_effect") is not None:
        out.append(("Mardia kurtosis effect", row["mardia_kurtosis_effect"], row["mardia_kurtosis_effect_se"], "kurtosis"))
    if row.get("noise_power_slope") is not None:
        out.append(("G2 log-slope", row["noise_power_slope"], row["noise_power_slope_se"], "slope"))
    return out


def classify(row: dict, tol: ShapeTolerance = ShapeTolerance(), plateau_required: bool = False) -> tuple[str, str]:
    """(verdict, reason) of a row with its effects (and ``noise_power_slope`` once :func:`plateau_slopes` ran).

    With ``plateau_required`` (a scan of several deltas) a row is accepted only with a plateau check.

    Also writes ``z`` (the interval half-width in se) and, per effect, its interval into ``row["intervals"]``.
    """
    from scipy.stats import norm

    if row["trapped_fraction"] >= 1.0:
        return "rejected", f"all walkers trapped in fixed points of the map ({_TRAP_REMEDY})"
    if row["trapped_fraction"] > tol.max_trapped:
        return "rejected", f"{100 * row['trapped_fraction']:.0f}% of walkers trapped ({_TRAP_REMEDY})"
    b = row.get("beta_hat")
    if not _ok(b) or b <= 0:
        return "rejected", "no finite temperature"
    eff = _effects(row)
    if not eff:
        return "undetermined", "no effect sizes (too few samples)"
    z = float(norm.ppf(1 - (1 - tol.confidence) / (2 * len(eff))))
    row["z"] = z
    row["intervals"] = {name: [v - z * se, v + z * se] if _ok(v) and _ok(se) else None for name, v, se, _ in eff}
    judged = [(name, v, se, getattr(tol, key), _judge(v, se, getattr(tol, key), z)) for name, v, se, key in eff]

    def say(name, v, se, t):
        return f"{name} {v:+.3g} [{v - z * se:+.3g}, {v + z * se:+.3g}] vs +-{t:g}"

    for verdict, text in (("rejected", "outside tolerance: "),
                          ("undetermined", "interval straddles the tolerance, run longer: ")):
        hit = [j for j in judged if j[4] == verdict]
        if hit:
            row["decided_by"] = [j[0] for j in hit]
            return verdict, text + "; ".join(say(*j[:4]) for j in hit)
    if row.get("noise_power_slope") is None and plateau_required:
        row["decided_by"] = ["G2 log-slope"]
        return "undetermined", (f"shape effects inside tolerance but no beta_hat plateau check: no grid neighbour within "
                                f"a factor {MAX_NEIGHBOUR_RATIO:g} in delta that passes the shape test (add deltas or steps)")
    worst = max(judged, key=lambda j: abs(j[1]) / j[3])
    row["decided_by"] = [worst[0]]
    plateau = "" if row.get("noise_power_slope") is not None else " (single delta: no plateau check)"
    return "accepted", "all effects inside tolerance, largest " + say(*worst[:4]) + plateau


def scale_estimate(rows: list) -> dict:
    """eps ~ delta (Remark 3.2) from where the verdict flips: runs of accepted deltas scanning downwards.

    Each run gives ``epsilon`` = its largest delta, ``bracket`` = [that delta, the next larger delta whose verdict is
    rejected] (None when none is larger: the flip is above the grid).  The top-level estimate is the first run
    (largest delta); ``undetermined`` lists deltas that could still move a bracket.
    """
    ordered = sorted(rows, key=lambda r: -r["delta"])
    runs, cur = [], None
    for i, r in enumerate(ordered):
        if r["verdict"] == "accepted":
            if cur is None:
                above = [x["delta"] for x in ordered[:i] if x["verdict"] == "rejected"]
                cur = {"epsilon": r["delta"], "delta_max": r["delta"], "delta_min": r["delta"],
                       "bracket": [r["delta"], min(above) if above else None]}
                runs.append(cur)
            cur["delta_min"] = r["delta"]
        elif r["verdict"] == "rejected":
            cur = None
    und = [r["delta"] for r in ordered if r["verdict"] == "undetermined"]
    if not runs:
        return {"epsilon": None, "bracket": None, "runs": [], "undetermined": und,
                "method": "no delta accepted" + (" (some undetermined: run longer)" if und else "")}
    return {"epsilon": runs[0]["epsilon"], "bracket": runs[0]["bracket"], "runs": runs, "undetermined": und,
            "method": "largest delta of the first run of accepted deltas scanning downwards (eps proportional to "
                      "delta, Remark 3.2); bracket up to the next larger rejected delta"}


@dataclasses.dataclass
class ScalesResult:
    rows: list
    tolerance: ShapeTolerance = dataclasses.field(default_factory=ShapeTolerance)
    estimate: dict = dataclasses.field(default_factory=dict)

    @property
    def warnings(self) -> list:
        out = []
        trapped = [r for r in sorted(self.rows, key=lambda r: -r["delta"]) if r.get("trapped_fraction", 0) > 0]
        if trapped:
            def count(r):
                n, w = r.get("trapped_walkers"), r.get("walkers")
                c = f"{n}/{w}" if n is not None and w else f"{100 * r['trapped_fraction']:.0f}%"
                rate = r.get("trap_rate_per_step")
                return c + (f" (half-life {math.log(2) / rate:.2g} steps per walker)" if _ok(rate) and rate > 0 else "")

            out.append("trapped walkers (fixed points of the map; excluded from the statistics, a row with more than "
                       f"{100 * self.tolerance.max_trapped:.0f}% is rejected): "
                       + ", ".join(f"delta {r['delta']:g}: {count(r)}" for r in trapped) + f"; {_TRAP_REMEDY}. "
                       "Trapping is absorbing: a longer run loses more walkers and can change the verdict")
        und = [r["delta"] for r in self.rows if r["verdict"] == "undetermined"]
        if und:
            out.append(f"undetermined at delta {', '.join(f'{d:g}' for d in und)}: the intervals straddle a tolerance; "
                       "more steps narrow them")
        return out

    def to_dict(self) -> dict:
        return {"rows": self.rows, "tolerance": self.tolerance.to_dict(), "scale_estimate": self.estimate,
                "scales_found": [r["delta"] for r in self.rows if r["scale_found"]], "warnings": self.warnings}

    def summary(self):
        """:class:`bayescg.summary.Summary`: the scale estimate, and a table with one row per delta (largest
        first): verdict, effects with their intervals, G2 and its slope, and which effects decided the verdict
        (the full reason is in ``to_dict()``)."""
        from .summary import Summary

        est = self.estimate or {}
        s = Summary("scales: scale scan (Remark 3.2)", warnings=list(self.warnings))
        s.add("scale eps ~ delta", est.get("epsilon"), ".4g", missing=f"none found ({est.get('method', '')})")
        if est.get("epsilon") is not None:
            s.add("bracket", est.get("bracket"), ".4g")
        return s.table("", self._table_rows())

    def _table_rows(self) -> list:
        out = []
        for r in sorted(self.rows, key=lambda r: -r["delta"]):
            iv = r.get("intervals") or {}

            def est(name, v):
                c = iv.get(name)
                return f"{v:+.3f} [{c[0]:+.3f}, {c[1]:+.3f}]" if c and _ok(v) else None

            k, s = r.get("excess_kurtosis") or [], r.get("skewness") or []
            row = {"delta": r["delta"], "verdict": r["verdict"]}
            for i in range(len(k)):
                sfx = f"[{i}]" if len(k) > 1 else ""
                row[f"kurtosis{sfx} [CI]"] = est(f"excess kurtosis{sfx}", k[i])
                row[f"skewness{sfx} [CI]"] = est(f"skewness{sfx}", s[i])
            if r.get("mardia_kurtosis_effect") is not None:
                row["Mardia kurtosis [CI]"] = est("Mardia kurtosis effect", r["mardia_kurtosis_effect"])
            row["G2"] = r.get("noise_power")
            row["G2 slope [CI]"] = est("G2 log-slope", r.get("noise_power_slope"))
            row.update({"beta_hat": r.get("beta_hat"), "trapped_fraction": r.get("trapped_fraction"),
                        "normality_pvalue": r.get("normality_pvalue")})
            by = r.get("decided_by")
            row["decided by"] = ((("closest to its tolerance: " if r["verdict"] == "accepted" else "") + ", ".join(by))
                                 if by else r.get("reason"))
            out.append(row)
        return out

    def figures(self):
        """[(caption, Figure)]: the scan's effect sizes against delta (:func:`bayescg.plots.scales.plot_scale_scan`)."""
        from .plots.scales import scale_figures

        return scale_figures(self)


def classify_rows(rows: list, tol: ShapeTolerance = ShapeTolerance()) -> dict:
    """Plateau slopes, verdict/reason/scale_found of every row, and the scale estimate (returned).

    G2 = 2 gamma / (delta beta_hat) is the unresolved gradient power only where p has the Gaussian law of the
    effective Langevin dynamics, so only rows accepted on their own shape effects serve as plateau neighbours: on
    (4.7) at 1e8 steps delta 0.2 and 0.1741 have beta_hat 7.7 and 66 from cooling walkers (excess kurtosis 44 and
    330 +- 280) and would set the slope of their neighbour delta 0.2297 to 12.
    """
    for row in rows:
        row["noise_power_slope"] = row["noise_power_slope_se"] = None
        row["verdict"] = classify(row, tol)[0]
    plateau_slopes(rows, [r for r in rows if r["verdict"] == "accepted"], tol.max_trapped)
    for row in rows:
        row["verdict"], row["reason"] = classify(row, tol, plateau_required=len(rows) > 1)
        row["scale_found"] = row["verdict"] == "accepted"
    return scale_estimate(rows)


def scan_scales(model: Model, deltas: list[float], *, executor=None, control=None,
                workdir: str | Path | None = None, resume: bool = False,
                tolerance: ShapeTolerance = ShapeTolerance()) -> ScalesResult:
    """Run the damped map at each delta (in parallel) and judge each row (module docstring)."""
    from .executor import SerialExecutor
    from .simulate import potential_from_model, sim_kwargs

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
    est = classify_rows(rows, tolerance)
    return ScalesResult(rows=rows, tolerance=tolerance, estimate=est)
