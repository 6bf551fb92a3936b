"""PCG of the 1D Ising chain end to end: data, truth, every learning method, predictions, checks.

:func:`run_model` is the API behind ``bayescg ising``.  One model file gives one fine chain, one
data set (exact FFBS samples with ``data.seed``, or ``data.file``), one coarse model, and runs
the methods of ``inference.methods`` (classes registered by name in :mod:`bayescg.ising.methods`)
on the same data.  Predictions and what their intervals mean: :mod:`bayescg.ising.predict`
(``interval_kind`` "posterior" or "monte_carlo").  Checks (:mod:`bayescg.ising.checks`):
identifiability (profile likelihood), the exact posterior on a grid against laplace,
laplace_slides, nuts and gibbs (``posterior_check``), Laplace against NUTS on predictions
(``laplace_vs_nuts``), a posterior predictive check of the data's own statistics
(``predictive_check``) and, with ``inference.candidates``, LOO stacking over coarse models
(``model_averaging``).  Everything that should make a user doubt a number is in the top-level
``warnings`` list of ``to_dict()`` (ising.json) and of the report.

Priors (laplace, nuts, gibbs): see :mod:`bayescg.ising.bayes`.

``IsingResult.to_inference_data()`` uses ArviZ's standard groups only: ``posterior``,
``sample_stats`` and ``log_likelihood`` of the primary method (nuts, else gibbs, else laplace,
else laplace_slides; its name in ``posterior.attrs["method"]``), ``posterior_predictive`` and
``observed_data`` of the predictive check (statistics m and R with a ``lag`` coordinate; the fine
configurations as ``x`` (configuration, site)).  Every other method is its own InferenceData
(:meth:`IsingResult.method_inference_data`, written as ``posterior-<method>.nc``; point
estimates as one chain of one draw).
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputError, Interrupted
from ..io import to_jsonable
from ..runtime import begin_stage
from ..sampling import _interrupted
from .coarse import CoarseModel, parse_code
from .fine import FineModel, check_configurations, default_lags, load_configurations
from .methods import METHODS, ORDER, FitContext
from .predict import errors, posterior_predictive

METHOD_IDS = {k: METHODS[k].id for k in ORDER}
SAMPLERS = tuple(k for k in ORDER if METHODS[k].sampler)
POSTERIOR_PRIMARY = ("nuts", "gibbs", "laplace", "laplace_slides")
SD_RATIO_WARN = 0.2  # a Laplace's sd more than 20 % off the exact posterior's warns


@dataclass
class MethodResult:
    name: str
    theta_c: dict  # name -> posterior mean / point estimate
    theta_cf: Optional[float]
    magnetization: dict  # mean, lower, upper, interval_kind, shifted
    correlation: dict
    err: dict
    seconds: float  # wall time of the method: fit + predictions (+ PSIS-LOO for samplers)
    theta_c_sd: Optional[dict] = None
    theta_cf_sd: Optional[float] = None
    diagnostics: Optional[dict] = None
    extra: dict = field(default_factory=dict)
    draws_c: Optional[np.ndarray] = None  # (chains, draws, K)
    draws_cf: Optional[np.ndarray] = None  # (chains, draws)
    idata: Any = None
    interval_kind: str = "posterior"
    per_draw: Any = None  # (m (J,), R (J, L)): the values mean and interval are computed from
    warnings: list = field(default_factory=list)
    cpu_seconds: float = float("nan")  # process CPU time of the same span (all threads of this process)

    def to_dict(self) -> dict:
        cor = {k: (list(map(float, v)) if isinstance(v, np.ndarray) else v) for k, v in self.correlation.items()}
        d = {
            "theta_c": self.theta_c,
            "theta_cf": self.theta_cf,
            "interval_kind": self.interval_kind,
            "magnetization": self.magnetization,
            "correlation": cor,
            "err_mag": self.err.get("err_mag"),
            "err_corr": self.err.get("err_corr"),
            "abs_err_mag": self.err.get("abs_err_mag"),
            "seconds": self.seconds,
            "cpu_seconds": self.cpu_seconds,
        }
        if "err_mag_note" in self.err:
            d["err_mag_note"] = self.err["err_mag_note"]
        if self.theta_c_sd is not None:
            d["theta_c_sd"] = self.theta_c_sd
            d["theta_cf_sd"] = self.theta_cf_sd
        if self.diagnostics is not None:
            d["diagnostics"] = self.diagnostics
        d.update({k: v for k, v in self.extra.items() if not k.startswith("_")})
        return d


KIND_TEXT = {"posterior": "94 % posterior interval", "monte_carlo": "94 % Monte Carlo interval (point estimate)"}


@dataclass
class IsingResult:
    name: str
    fine: FineModel
    coarse: CoarseModel
    lags: np.ndarray
    m_true: float
    R_true: np.ndarray
    data: np.ndarray
    data_source: str
    methods: dict
    laplace_vs_nuts: Optional[dict]
    settings: dict
    seconds: float
    interrupted: Optional[dict] = None  # set when SIGINT stopped the run: which method, what was kept
    checks: dict = field(default_factory=dict)  # identifiability, posterior_check, predictive_check, model_averaging
    warnings: list = field(default_factory=list)
    figure_warnings: list = field(default_factory=list)  # figures that could not be drawn (figures())

    def to_dict(self) -> dict:
        d = self._to_dict()
        if self.interrupted is not None:
            d["interrupted"] = to_jsonable(self.interrupted)
        return d

    def _to_dict(self) -> dict:
        ppc = self.checks.get("predictive_check")
        if ppc is not None:
            rep = ppc["replicated"]
            ppc = {**{k: v for k, v in ppc.items() if k != "replicated"},
                   "replicated_mean": {"m": float(np.mean(rep["m"])), "R": list(np.mean(rep["R"], 0))}}
        return to_jsonable({
            "warnings": list(self.warnings) + list(self.figure_warnings),
            "truth": {"magnetization": self.m_true, "correlation": list(map(float, self.R_true)),
                      "method": "transfer matrix (exact)", "lags": list(map(int, self.lags))},
            "fine": {"sites": self.fine.n, "beta": self.fine.beta, "field": self.fine.mu,
                     "couplings": list(self.fine.J), "periodic": self.fine.periodic},
            "coarse": {"level": self.coarse.level, "model": self.coarse.code, "sites": self.coarse.n_c,
                       "parameters": self.coarse.names, "field": self.coarse.mu_c},
            "data": {"samples": int(len(self.data)), "source": self.data_source},
            "interval_kinds": {k: v for k, v in KIND_TEXT.items()},
            "methods": {k: v.to_dict() for k, v in self.methods.items()},
            "laplace_vs_nuts": self.laplace_vs_nuts,
            "identifiability": self.checks.get("identifiability"),
            "posterior_check": self.checks.get("posterior_check"),
            "predictive_check": ppc,
            "model_averaging": self.checks.get("model_averaging"),
            "settings": self.settings,
            "seconds": self.seconds,
        })

    def summary(self):
        """:class:`bayescg.summary.Summary`: the exact truth, one table row per method (magnetization with its
        94 % interval and the interval's kind, errors, time), Laplace against NUTS, warnings."""
        from ..summary import Summary

        s = Summary("ising: predictive coarse-graining", warnings=list(self.warnings) + list(self.figure_warnings))
        s.add("truth m (transfer matrix)", self.m_true, ".4f").add("truth |R|", float(np.linalg.norm(self.R_true)), ".4f")
        rows = []
        for k, v in self.methods.items():
            mg = v.magnetization
            rows.append({"method": k,
                         "m [94% interval] (kind)": f"{mg['mean']:.4f} [{mg['lower']:.4f}, {mg['upper']:.4f}] "
                                                    f"({v.interval_kind})",
                         "err_mag": v.err.get("err_mag"), "err_corr": v.err.get("err_corr"), "seconds": v.seconds})
        s.table("methods", rows)
        if self.laplace_vs_nuts:
            lv = self.laplace_vs_nuts
            s.add("laplace vs nuts: KL", lv["kl"], ".3g")
            s.add("laplace vs nuts: max mean shift", lv["max_mean_shift_sd"], ".3g", "sd")
            s.add("laplace vs nuts: magnetization shift", lv["magnetization_shift_sd"], ".3g", "sd")
            s.add("laplace vs nuts: correlation shift", lv["correlation_shift_sd"], ".3g", "sd")
        return s

    # --- ArviZ ------------------------------------------------------------------------------
    def primary_method(self) -> Optional[str]:
        return next((m for m in POSTERIOR_PRIMARY if m in self.methods), None)

    def _method_dataset(self, name):
        res = self.methods[name]
        if res.draws_c is not None:
            ds = _posterior_dataset(self.coarse, res.draws_c, res.draws_cf)
        else:
            tc = np.array([[list(res.theta_c.values())]]).reshape(1, 1, self.coarse.K)
            tf = np.array([[np.nan if res.theta_cf is None else res.theta_cf]])
            ds = _posterior_dataset(self.coarse, tc, tf)
        ds.attrs["method"] = name
        ds.attrs["interval_kind"] = res.interval_kind
        return ds

    def _observed(self):
        import xarray as xr

        x = np.asarray(self.data, np.int8)
        return xr.Dataset({"x": (("configuration", "site"), x)},
                          coords={"configuration": np.arange(x.shape[0]), "site": np.arange(x.shape[1])})

    def to_inference_data(self):
        """Standard groups only (module doc): the primary posterior method with its sample_stats and
        log_likelihood, the predictive check as posterior_predictive/observed_data."""
        import arviz as az
        import xarray as xr

        primary = self.primary_method() or next(iter(self.methods), None)
        groups = {}
        if primary is not None:
            res = self.methods[primary]
            groups["posterior"] = self._method_dataset(primary)
            if res.idata is not None and "sample_stats" in res.idata.groups():
                groups["sample_stats"] = res.idata.sample_stats
            if "log_likelihood" in res.extra.get("_groups", {}):
                groups["log_likelihood"] = res.extra["_groups"]["log_likelihood"]
        obs = self._observed()
        ppc = self.checks.get("predictive_check")
        if ppc is not None:
            rep = ppc["replicated"]
            lag = np.asarray(self.lags, int)
            groups["posterior_predictive"] = xr.Dataset(
                {"m": (("chain", "draw"), np.asarray(rep["m"])[None]),
                 "R": (("chain", "draw", "lag"), np.asarray(rep["R"])[None])},
                coords={"chain": [0], "draw": np.arange(len(rep["m"])), "lag": lag})
            groups["posterior_predictive"].attrs["method"] = ppc.get("method", "")
            obs = obs.assign({"m": ((), float(ppc["observed"]["m"])),
                              "R": (("lag",), np.asarray(ppc["observed"]["R"], float))}).assign_coords(lag=lag)
        groups["observed_data"] = obs
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.InferenceData(**groups)

    def method_inference_data(self) -> dict:
        """{method: InferenceData} for every method but the primary one: ``posterior`` (point
        estimates: 1 chain x 1 draw) and, for samplers, ``sample_stats``."""
        import arviz as az

        primary = self.primary_method() or next(iter(self.methods), None)
        out = {}
        for name, res in self.methods.items():
            if name == primary:
                continue
            groups = {"posterior": self._method_dataset(name)}
            if res.idata is not None and "sample_stats" in res.idata.groups():
                groups["sample_stats"] = res.idata.sample_stats
            if "log_likelihood" in res.extra.get("_groups", {}):
                groups["log_likelihood"] = res.extra["_groups"]["log_likelihood"]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out[name] = az.InferenceData(**groups)
        return out

    # --- figures ----------------------------------------------------------------------------
    def figures(self) -> list:
        """[(title, Figure)]; every figure is drawn on its own: one that fails is left out and
        reported in ``figure_warnings`` (and on stderr), the others still appear."""
        return _draw_each(self.figure_builders(), self.figure_warnings)

    def figure_builders(self) -> list:
        """[(title, builder)] of :meth:`figures` (a report draws them on two processes:
        :func:`bayescg.plots._base.render_each`)."""
        builders = [("Magnetization by method", self._fig_magnetization),
                    ("Correlations R_l", self._fig_correlations)]
        if self.checks.get("predictive_check") is not None:
            builders.append(("Posterior predictive check of the data's statistics", self._fig_ppc))
        if "nuts" in self.methods and "laplace" in self.methods:
            builders.append(("Laplace vs NUTS", lambda: self._overlay_figure("nuts", "laplace")))
        from ..plots.diagnostics import sampler_caption

        for k in SAMPLERS:
            res = self.methods.get(k)
            if res is not None and res.draws_c is not None:
                builders.append((f"{k}: {sampler_caption(np.shape(res.draws_c)[0])}",
                                 lambda k=k: self._sampler_figure(k)))
        return builders

    def _fig_magnetization(self):
        from ..plots.ising import figure_of, plot_magnetization

        return figure_of(plot_magnetization(self))

    def _fig_correlations(self):
        from ..plots.ising import figure_of, plot_correlations

        return figure_of(plot_correlations(self))

    def _fig_ppc(self):
        from ..plots.ising import figure_of, plot_predictive_check

        return figure_of(plot_predictive_check(self))

    def _sampler_figure(self, k):
        import arviz as az

        from ..plots.diagnostics import plot_posterior_diagnostics

        res = self.methods[k]
        idata = az.InferenceData(posterior=_posterior_dataset(self.coarse, res.draws_c, res.draws_cf))
        return plot_posterior_diagnostics(idata, ["theta_c", "theta_cf"], True, title=k)[1]

    @property
    def report_figures_drawn(self) -> frozenset:
        """Groups of ``to_inference_data()`` whose figures ``figures()`` draws (a report leaves its generic ones
        out): the primary posterior when it is a sampler's (its marginals and rank plots), the predictive check."""
        drawn = set()
        name = self.primary_method()
        if name is not None and METHODS[name].sampler and self.methods[name].draws_c is not None:
            drawn.add("posterior")
        if self.checks.get("predictive_check") is not None:
            drawn.add("posterior_predictive")
        return frozenset(drawn)

    def _overlay_figure(self, a, b):
        import arviz as az

        from ..plots.ising import figure_of, plot_overlay

        ids = []
        for k in (a, b):
            r = self.methods[k]
            ids.append(az.InferenceData(posterior=_posterior_dataset(self.coarse, r.draws_c, r.draws_cf)))
        return figure_of(plot_overlay(ids, [a, b], f"{b} (Gaussian) vs {a} posterior"))


def _draw_each(builders, sink: list) -> list:
    """Every (title, builder) drawn on its own (:func:`bayescg.plots._base.draw_each`)."""
    from ..plots._base import draw_each

    return draw_each(builders, sink)


def _posterior_dataset(cm: CoarseModel, draws_c, draws_cf):
    import xarray as xr

    draws_c = np.asarray(draws_c, float)
    c, d = draws_c.shape[:2]
    return xr.Dataset(
        {"theta_c": (("chain", "draw", "param"), draws_c.reshape(c, d, cm.K)),
         "theta_cf": (("chain", "draw"), np.asarray(draws_cf, float).reshape(c, d))},
        coords={"chain": np.arange(c), "draw": np.arange(d), "param": cm.names})


# --- building blocks from a Model --------------------------------------------------------------
def build(model) -> tuple[FineModel, CoarseModel]:
    """FineModel and CoarseModel from a config.Model (InputError on inconsistent settings)."""
    from ..config import CoarseSection

    if model.fine is None:
        raise InputError(f"{model.path or model.name}: an Ising run needs a [fine] section")
    fine = FineModel.from_section(model.fine)
    cs = model.coarse or CoarseSection()
    field_mode = getattr(cs, "field", "fine")
    if field_mode not in ("fine", "none"):
        raise InputError(f"coarse.field must be 'fine' or 'none', got {field_mode!r}")
    mu_c = fine.mu if field_mode == "fine" else 0.0
    cm = CoarseModel(fine.n, cs.level, cs.model, fine.beta, mu_c, fine.periodic)
    return fine, cm


def load_data(model, fine: FineModel) -> tuple[np.ndarray, str]:
    """Fine data: data.file (relative paths are tried against the model file's folder) or
    data.samples exact FFBS draws with data.seed."""
    from ..config import DataSection

    ds = model.data or DataSection()
    if ds.file:
        p = Path(ds.file)
        if not p.is_absolute() and not p.exists() and model.path:
            p = Path(model.path).parent / p
        return load_configurations(p, fine.n), str(p)
    rng = np.random.default_rng(np.random.SeedSequence([int(ds.seed), 7919]))
    return fine.sample(int(ds.samples), rng), f"exact FFBS samples, seed {ds.seed}"


def _inference(model):
    from ..config import InferenceSection

    return model.inference or InferenceSection()


def _rng(inf, name):
    return np.random.default_rng(np.random.SeedSequence([int(inf.seed), METHOD_IDS[name]]))


def run_methods(fine: FineModel, cm: CoarseModel, x, inf, *, control=None, name="ising",
                data_source="") -> IsingResult:
    """Run every method of ``inf.methods`` on data x (S_f, n_f), predict and check (module doc).

    Interruption: once ``control.interrupted`` is set (SIGINT through
    :class:`bayescg.runtime.RunControl`) the run stops at the next draw of a sampler, the next
    EM check or the next method, and raises :class:`bayescg.errors.Interrupted` whose
    ``partial`` attribute is an :class:`IsingResult` of what is complete (plus an interrupted
    sampler's draws so far, marked in ``interrupted``), or None if nothing is.
    On a cold numba cache the Gibbs and NUTS kernels compile in a background process meanwhile
    (:mod:`bayescg.warmup`; results do not depend on it).
    """
    from .. import warmup

    t_all = time.perf_counter()
    x, lags = _checked_inputs(fine, cm, x, inf)  # bad input: its one line before a child process starts
    child = warmup.start("ising") if any(m in ("gibbs", "nuts") for m in inf.methods) else None
    try:
        with contextlib.ExitStack() as beside:  # forked children of _run_methods (runtime.Forked), ended whatever happens
            return _run_methods(fine, cm, x, lags, inf, control=control, name=name, data_source=data_source,
                                t_all=t_all, child=child, beside=beside)
    finally:
        warmup.stop(child, "ising")


# the background compile's step (bayescg.warmup._ising) whose kernels a method needs first
_WARM_STEP = {"laplace_slides": "shared", "nuts": "shared", "gibbs": "gibbs"}


#: the methods after the last of which the data-only checks start in a forked child (they need the likelihood's
#: kernel, which laplace_slides and nuts compile, and the Laplace fit; nuts's chains use both cores)
_DATA_CHECKS_AFTER = ("laplace", "laplace_slides", "nuts")
#: how long the run waits for that child before it computes the data-only checks itself (they take ~0.7 s)
DATA_CHECKS_TIMEOUT = 300.0


def _run_methods(fine, cm, x, lags, inf, *, control, name, data_source, t_all, child=None,
                 beside=None) -> IsingResult:
    """run_methods on checked inputs (x, lags from _checked_inputs); t_all: the run's start (perf_counter); child:
    the background compile (bayescg.warmup.Child) or None.  A method whose kernels the child is still compiling
    waits for them rather than compile them beside it (both would take longer, on two cores).  The data-only
    checks (:func:`data_checks`) run in a forked child (entered on ``beside``, the caller's ExitStack) beside
    the methods after the last of :data:`_DATA_CHECKS_AFTER` (gibbs, relent: ~1 s on the other core); the
    same numbers as computed here afterwards, which happens when there is no such method or child."""
    from .. import warmup
    from ..runtime import Forked
    from .kernel import FastLoglik

    m_true, R_true = fine.truth(lags)
    prior_sd = float(getattr(inf, "prior_sd", 2.0))
    backend = getattr(inf, "sampler", "auto")
    S_pred = int(inf.prediction_samples)
    order = [m for m in ORDER if m in inf.methods]
    results, preds, fits = {}, {}, {}
    fast = FastLoglik(cm, x)
    after = [i for i, m in enumerate(order) if m in _DATA_CHECKS_AFTER]
    fork_at = after[-1] if after and after[-1] < len(order) - 1 and beside is not None else None
    grid = any(m in POSTERIOR_PRIMARY for m in order)
    data_job = None
    settings = {k: getattr(inf, k) for k in ("methods", "draws", "tune", "chains", "em_iterations", "coarse_samples",
                                             "posterior_samples", "prediction_samples", "seed")}
    settings["candidates"] = list(getattr(inf, "candidates", []) or [])
    settings["prior"] = {"theta_c": f"Normal(0, {prior_sd})", "theta_cf": "Uniform(0.5, 1)"}

    def stop(meth, partial_note=None):
        """SIGINT: an Interrupted carrying the completed methods as ``exc.partial`` (None if none)."""
        done = [m for m in order if m in results and not (partial_note and m == meth)]
        info = {"during": meth, "completed": done, "not_run": [m for m in order if m not in results]}
        kept = f"kept {', '.join(done)}" if done else "nothing complete kept"
        if partial_note:
            info["partial"] = partial_note
            kept += (f" ({meth} with {partial_note['draws']} of {partial_note['requested_draws']} draws x "
                     f"{partial_note['chains']} chains)")
        res = IsingResult(name, fine, cm, lags, m_true, R_true, x, data_source, results, None, settings,
                          time.perf_counter() - t_all, info)
        exc = Interrupted(f"ising: interrupted during {meth}; {kept}")
        exc.partial = res if results else None
        return exc

    for i, meth in enumerate(order):
        if _interrupted(control):
            raise stop(meth)
        label = f"ising {i + 1}/{len(order)}: {meth}"
        if meth in _WARM_STEP:  # before the method's clock starts: ising.json times the methods, not the wait
            from ..sampling import nuts_backend

            # meanwhile, work that needs no kernel: importing the NUTS sampler (~2 s, ArviZ with it)
            warmup.await_step(child, _WARM_STEP[meth], control, label,
                              meanwhile=nuts_backend if "nuts" in order[i:] and backend != "pymc" else None)
        rng = _rng(inf, meth)
        t0, c0 = time.perf_counter(), time.process_time()
        ctx = FitContext(cm, x, inf, rng, control, prior_sd, backend, fast)
        try:
            begin_stage(control, label + (": set-up" if METHODS[meth].stages else ""))  # its own stages follow
            fit = METHODS[meth].fit(ctx)
        except Interrupted:  # the EM loops' control.tick()
            raise stop(meth) from None
        if fit.partial is not None and fit.draws_c is None:  # interrupted before any draw
            raise stop(meth)
        if fit.partial is None:  # (a stopped sampler's draws so far are still turned into predictions)
            try:
                begin_stage(control, f"{label}: predictions" + (" and PSIS-LOO" if METHODS[meth].sampler else ""))
            except Interrupted:
                raise stop(meth) from None
        fits[meth] = fit
        results[meth], preds[meth] = _method_result(meth, fit, cm, fast, rng, lags, m_true, R_true, S_pred, t0, c0)
        if fit.partial is not None:  # a sampler stopped by SIGINT: its draws so far are kept
            raise stop(meth, fit.partial)
        if i == fork_at:
            data_job = beside.enter_context(Forked(lambda: data_checks(cm, x, fast, fits, prior_sd, grid)))
        if control is not None:
            try:
                control.tick((i + 1) / len(order), note=meth)
            except Interrupted:
                raise stop(order[i + 1] if i + 1 < len(order) else "the final comparison") from None
    ws = [w for r in results.values() for w in r.warnings]
    try:
        begin_stage(control, "ising: checks (identifiability, exact posterior on a grid, predictive check)")
    except Interrupted:
        raise stop("the final comparison") from None
    lvn = compare_laplace_to_nuts(fits, results, preds, cm, ws)
    ok, data = data_job.result(DATA_CHECKS_TIMEOUT) if data_job is not None else (False, None)
    checks = run_checks(fine, cm, x, inf, fast, fits, results, lags, ws, prior_sd, data=data if ok else None)
    return IsingResult(name, fine, cm, lags, m_true, R_true, x, data_source, results, lvn, settings,
                       time.perf_counter() - t_all, checks=checks, warnings=ws)


def _checked_inputs(fine, cm, x, inf):
    """InputError now, not after the methods ran: configurations, sizes, method names, candidate
    codes. Returns (x, lags of the correlation predictions)."""
    x = check_configurations(x, fine.n)
    if cm.n_f != fine.n:
        raise InputError(f"coarse model has {cm.n_f} fine sites, the fine chain {fine.n}")
    unknown = [m for m in inf.methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown inference method {unknown[0]!r} (known: {', '.join(ORDER)})")
    for code in getattr(inf, "candidates", []) or []:
        parse_code(code)
    max_lag = int(getattr(inf, "max_lag", 0) or 0)
    lags = default_lags(fine.n) if max_lag <= 0 else np.arange(1, min(max_lag, fine.n - 1) + 1)
    return x, lags


def _method_result(meth, fit, cm, fast, rng, lags, m_true, R_true, S_pred, t0, c0):
    """One method's fit -> (MethodResult, predictions): posterior predictive of m and R (point fits
    through their back-map), posterior means and sds of theta, PSIS-LOO for samplers, errors against
    the exact truth; t0/c0 are the method's wall/CPU start."""
    extra = dict(fit.extra)
    extra["fit_seconds"] = time.perf_counter() - t0
    mwarn = list(fit.warnings)
    if fit.is_point:
        th = np.asarray(fit.theta_c, float)
        pred = posterior_predictive(cm, th[None], fit.theta_cf, S_pred, rng, lags, backmap=fit.backmap)
        theta_c = dict(zip(cm.names, map(float, th)))
        theta_cf = None if fit.theta_cf is None else float(fit.theta_cf)
        sd_c = sd_cf = None
    else:
        fc = fit.draws_c.reshape(-1, cm.K)
        ff = fit.draws_cf.reshape(-1)
        pred = posterior_predictive(cm, fc, ff, S_pred, rng, lags)
        theta_c = dict(zip(cm.names, map(float, fc.mean(0))))
        sd_c = dict(zip(cm.names, map(float, fc.std(0, ddof=1))))
        theta_cf, sd_cf = float(ff.mean()), float(ff.std(ddof=1))
        if METHODS[meth].sampler:
            extra.update(psis_loo(fast, fc, ff, fit.draws_c.shape[:2]))
        for q in ("magnetization", "correlation"):
            if pred[q]["shifted"]:
                mwarn.append(f"{meth}: the {q} draws are so skewed that their mean lies outside the "
                             f"equal-tailed 94 % interval; the interval shown is the 94 % interval ending at the mean")
    err = errors(pred["magnetization"]["mean"], pred["correlation"]["mean"], m_true, R_true)
    res = MethodResult(meth, theta_c, theta_cf, pred["magnetization"], pred["correlation"], err,
                       time.perf_counter() - t0, sd_c, sd_cf, fit.diagnostics, extra, fit.draws_c,
                       fit.draws_cf, fit.idata, pred["interval_kind"], pred["per_draw"], mwarn,
                       time.process_time() - c0)
    return res, pred


def compare_laplace_to_nuts(fits, results, preds, cm, ws):
    """Parameters (unconstrained space) and predictions of laplace against nuts; warns past
    checks.SHIFT_SD_MAX posterior sds."""
    from . import bayes
    from .checks import SHIFT_SD_MAX, prediction_shift

    if "laplace" not in fits or "nuts" not in results:
        return None
    r = results["nuts"]
    lvn = bayes.compare_laplace_nuts(fits["laplace"].gaussian, r.draws_c.reshape(-1, cm.K), r.draws_cf.reshape(-1))
    lvn.update(prediction_shift(preds["laplace"], preds["nuts"]))
    if lvn["magnetization_shift_sd"] > SHIFT_SD_MAX or lvn["correlation_shift_sd"] > SHIFT_SD_MAX:
        ws.append(f"laplace vs nuts: Laplace's predictions differ from NUTS's by "
                  f"{lvn['magnetization_shift_sd']:.2g} (magnetization) and {lvn['correlation_shift_sd']:.2g} "
                  f"(correlations) NUTS posterior sds, more than {SHIFT_SD_MAX}: the Gaussian approximation is not "
                  f"good enough for predictions here ({100 * lvn['laplace_wrong_sign_fraction']:.2g} % of its draws "
                  f"predict the other sign of m); use nuts")
    return lvn


def data_checks(cm, x, fast, fits, prior_sd, grid: bool) -> dict:
    """The checks that need only the data (and the Laplace fit, when ``fits`` has one): {"identifiability",
    "exact": the exact posterior on a grid (with ``grid``, K + 1 <= 3) or None}."""
    from .bayes import fit_laplace
    from .checks import grid_posterior, identifiability

    out = {"identifiability": identifiability(cm, x, fast), "exact": None}
    if grid and cm.K + 1 <= 3:
        lap = fits["laplace"].gaussian if "laplace" in fits else fit_laplace(cm, x, prior_sd)
        out["exact"] = grid_posterior(cm, fast, prior_sd, lap.mean, 8.0 * np.sqrt(np.diag(lap.cov)))
    return out


def run_checks(fine, cm, x, inf, fast, fits, results, lags, ws, prior_sd, data=None) -> dict:
    """Identifiability, exact posterior on a grid, predictive check, model averaging (checks.py);
    appends their warnings to ``ws``.  ``data``: :func:`data_checks`' result when already computed
    (the run computes it beside its last methods), else it is computed here."""
    from .checks import PPC_P_MIN, compare_with_posterior, identifiability_warning, predictive_check, stacking

    out = {}
    rng = np.random.default_rng(np.random.SeedSequence([int(inf.seed), 99]))
    post = [m for m in POSTERIOR_PRIMARY if m in results]
    data = data or data_checks(cm, x, fast, fits, prior_sd, bool(post))
    idf = out["identifiability"] = data["identifiability"]
    w = identifiability_warning(idf)
    if w:
        ws.append(w)
    exact = data["exact"]
    if exact is not None:
        pc = {"exact": exact, "methods": {}}
        for m in post:
            r = results[m]
            pc["methods"][m] = compare_with_posterior(exact, r.draws_c, r.draws_cf, cm.names)
            if m.startswith("laplace"):
                ratio = pc["methods"][m]["theta_cf"]["sd_ratio"]
                if abs(ratio - 1.0) > SD_RATIO_WARN:
                    ws.append(f"{m}: its theta_cf posterior sd is {ratio:.2f} x the exact posterior's "
                              f"({'too narrow' if ratio < 1 else 'too wide'}; exact by quadrature on a grid)")
        if exact["edge_mass"] > 1e-3:
            ws.append(f"posterior_check: {exact['edge_mass']:.2g} of the exact posterior's mass lies on the grid's "
                      f"edge (8 Laplace sds); the exact moments are truncated")
        out["posterior_check"] = pc
    src = post[0] if post else next((m for m in ("exact_em", "em") if m in results), None)
    if src is not None:
        r = results[src]
        if r.draws_c is not None:
            dc, df = r.draws_c, r.draws_cf
        else:
            dc, df = np.array([list(r.theta_c.values())]), np.array([r.theta_cf])
        ppc = predictive_check(cm, x, dc, df, lags, rng)
        ppc["method"] = src if r.draws_c is not None else f"{src} (plug-in: no parameter uncertainty)"
        out["predictive_check"] = ppc
        if ppc["misfit"]:
            ws.append(f"model error: the data's own {', '.join(ppc['misfit'])} lie outside what coarse model "
                      f"{cm.code} ({ppc['method']}) reproduces (posterior predictive p < {PPC_P_MIN}); "
                      f"more data will shrink the intervals around a biased value: the coarse model is too coarse")
    cands = list(getattr(inf, "candidates", []) or [])
    if cands:
        codes = list(dict.fromkeys([cm.code, *cands]))
        ma = stacking(dict(n_f=cm.n_f, level=cm.level, beta=cm.beta, mu_c=cm.mu_c, periodic=cm.periodic),
                      x, codes, lags, rng, prior_sd=prior_sd)
        out["model_averaging"] = ma
        if ma["none_fits"]:
            ws.append(f"model error: none of the candidate coarse models {', '.join(codes)} reproduces the data's "
                      f"statistics (posterior predictive p < {PPC_P_MIN} for each)")
    return out


def psis_loo(fast, fc, ff, shape) -> dict:
    """PSIS-LOO and WAIC from the exact pointwise log-likelihood (X summed out) of every draw."""
    import arviz as az
    import xarray as xr

    ll = fast.logliks(fc, ff, pointwise=True).reshape(*shape, -1)
    ds = xr.Dataset({"x": (("chain", "draw", "configuration"), ll)},
                    coords={"chain": np.arange(shape[0]), "draw": np.arange(shape[1]),
                            "configuration": np.arange(ll.shape[-1])})
    idata = az.InferenceData(log_likelihood=ds, posterior=xr.Dataset(
        {"theta_cf": (("chain", "draw"), ff.reshape(shape))}))
    from ..plots._base import arviz_without_numba

    with warnings.catch_warnings(), arviz_without_numba():
        warnings.simplefilter("ignore")
        loo = az.loo(idata, pointwise=True)
        waic = az.waic(idata)
    return {"loo": {"elpd": float(loo.elpd_loo), "se": float(loo.se), "p": float(loo.p_loo),
                    "pareto_k_max": float(np.max(loo.pareto_k.values))},
            "waic": {"elpd": float(waic.elpd_waic), "se": float(waic.se), "p": float(waic.p_waic)},
            "_groups": {"log_likelihood": ds}}


# --- public entry --------------------------------------------------------------------------------
def run_model(model, *, control=None, executor=None):
    """Run the PCG pipeline a model file describes; a ``[sweep]`` runs it at every value.

    Returns :class:`IsingResult` (or :class:`IsingSweepResult`), both with ``to_dict()``
    (SPEC ising.json), ``to_inference_data()`` and ``figures()``.
    """
    if model.sweep is not None and model.sweep.values:
        return run_sweep(model, control=control, executor=executor)
    fine, cm = build(model)
    x, source = load_data(model, fine)
    inf = _inference(model)
    return run_methods(fine, cm, x, inf, control=control, name=model.name, data_source=source)


# --- sweeps ---------------------------------------------------------------------------------------
def _sweep_models(model):
    from ..config import apply_overrides, model_from_dict

    key = model.sweep.key
    raw = {k: v for k, v in model.raw.items() if k != "sweep"}
    out = []
    for v in model.sweep.values:
        r = apply_overrides(raw, {key: v}, where=f"{model.path or model.name}: sweep")
        out.append((r, model.path))
    # validate all now, in this process, for one clear error
    for r, p in out:
        model_from_dict(r, where=str(p or model.name), path=p)
    return out


def _sweep_task(item):
    from ..config import model_from_dict

    raw, path = item
    m = model_from_dict(raw, where=str(path or "<sweep>"), path=path)
    return run_model(m)


SWEEP_LABELS = {"fine.field": "mu (fine field)", "data.samples": "S_f (data size)",
                "coarse.level": "l_c (coarse level)", "fine.beta": "beta", "fine.coupling": "J_0"}


@dataclass
class IsingSweepResult:
    key: str
    values: list
    runs: list  # IsingResult per value
    figure_warnings: list = field(default_factory=list)

    @property
    def label(self) -> str:
        """Axis label of the swept key (``fine.field`` is mu)."""
        return SWEEP_LABELS.get(self.key, self.key)

    @property
    def warnings(self) -> list:
        return [f"{self.label} = {v}: {w}" for v, r in zip(self.values, self.runs) for w in r.warnings]

    def to_dict(self) -> dict:
        runs = [r.to_dict() for r in self.runs]
        names = list(runs[0]["methods"]) if runs else []
        methods = {}
        for k in names:
            ms = [r["methods"][k] for r in runs]
            d = {"theta_c": [m["theta_c"] for m in ms], "theta_cf": [m["theta_cf"] for m in ms],
                 "interval_kind": ms[0]["interval_kind"],
                 "magnetization": {q: [m["magnetization"][q] for m in ms] for q in ("mean", "lower", "upper")},
                 "correlation": {q: [m["correlation"][q] for m in ms] for q in ("mean", "lower", "upper")},
                 "err_mag": [m["err_mag"] for m in ms], "err_corr": [m["err_corr"] for m in ms],
                 "abs_err_mag": [m["abs_err_mag"] for m in ms], "seconds": [m["seconds"] for m in ms]}
            if k in SAMPLERS:
                d["diagnostics"] = [m.get("diagnostics") for m in ms]
            methods[k] = d
        return to_jsonable({
            "warnings": self.warnings + list(self.figure_warnings),
            "sweep": {"key": self.key, "label": self.label, "values": self.values},
            "truth": {"magnetization": [r["truth"]["magnetization"] for r in runs],
                      "correlation": [r["truth"]["correlation"] for r in runs],
                      "method": "transfer matrix (exact)", "lags": runs[0]["truth"]["lags"] if runs else []},
            "interval_kinds": dict(KIND_TEXT),
            "methods": methods,
            "laplace_vs_nuts": [r["laplace_vs_nuts"] for r in runs],
            "identified": [bool((r.get("identifiability") or {}).get("identified", True)) for r in runs],
            "runs": runs,
        })

    def summary(self):
        """:class:`bayescg.summary.Summary`: one table row per swept value and method (exact m, estimate with its
        94 % interval and kind, errors), warnings of every run."""
        from ..summary import Summary

        rows = []
        for v, r in zip(self.values, self.runs):
            for k, m in r.methods.items():
                mg = m.magnetization
                rows.append({self.label: v, "method": k, "exact m": r.m_true,
                             "m [94% interval] (kind)": f"{mg['mean']:.4f} [{mg['lower']:.4f}, {mg['upper']:.4f}] "
                                                        f"({m.interval_kind})",
                             "err_mag": m.err.get("err_mag"), "err_corr": m.err.get("err_corr")})
        s = Summary(f"ising: sweep of {self.label} ({len(self.values)} values)",
                    warnings=self.warnings + list(self.figure_warnings))
        return s.table("", rows)

    def to_inference_data(self):
        """Primary posterior of every run, concatenated along a ``sweep`` dimension (coordinate:
        the swept values; ``posterior.attrs["sweep_key"]``)."""
        import arviz as az
        import xarray as xr

        posts = [r.to_inference_data().posterior for r in self.runs]
        vals = [str(v) for v in self.values]
        post = xr.concat(posts, dim="sweep", join="outer").assign_coords(sweep=vals)
        post.attrs["sweep_key"] = self.key
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.InferenceData(posterior=post)

    def method_inference_data(self) -> dict:
        return {}

    def figures(self) -> list:
        """[(title, Figure)], each drawn on its own (failures in ``figure_warnings`` and on stderr)."""
        return _draw_each(self.figure_builders(), self.figure_warnings)

    def figure_builders(self) -> list:
        """[(title, builder)] of :meth:`figures`."""
        return [("Magnetization across the sweep", self._fig_mag), ("Parameters across the sweep", self._fig_params)]

    def _fig_mag(self):
        from ..plots.ising import figure_of, plot_sweep_magnetization

        return figure_of(plot_sweep_magnetization(self))

    def _fig_params(self):
        from ..plots.ising import figure_of, plot_sweep_parameters

        return figure_of(plot_sweep_parameters(self))



def run_sweep(model, *, control=None, executor=None) -> IsingSweepResult:
    """Run the model at every ``[sweep]`` value (processes by default, or ``executor.map``)."""
    from ..executor import get_executor

    items = _sweep_models(model)
    results = []
    own = executor is None
    ex = get_executor(None, workers=min(2, len(items))) if own else executor
    try:
        chunk = max(1, int(getattr(ex, "workers", 2)))
        for lo in range(0, len(items), chunk):
            results += list(ex.map(_sweep_task, items[lo:lo + chunk]))
            if control is not None:
                control.tick(len(results) / len(items))
    finally:
        if own:
            ex.close()
    return IsingSweepResult(model.sweep.key, list(model.sweep.values), results)
