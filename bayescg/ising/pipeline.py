"""PCG of the 1D Ising chain end to end: data, truth, every learning method, predictions.

:func:`run_model` is the API behind ``bayescg ising``.  One model file gives one fine chain, one
data set (exact FFBS samples with ``data.seed``, or ``data.file``), one coarse model, and runs
the methods of ``inference.methods`` on the same data:

==========  ====================================================================================
exact_em    EM with exact E-step / Newton M-step (transfer matrices), maximum likelihood
em          Monte Carlo EM of the slides (Gibbs E-step with S_q, M-step with S_c), max. likelihood
laplace     Gaussian at the posterior mode in (theta_c, logit(2 theta_cf - 1)), exact Hessian
nuts        NUTS on the exact marginal posterior (X summed out); nutpie if importable
gibbs       data augmentation: exact FFBS Gibbs step for X + NUTS for theta (PyMC compound step)
relent      relative entropy (Shell 2008): majority map, ML fit of p_c, majority back-map
==========  ====================================================================================

Priors (laplace, nuts, gibbs): see :mod:`bayescg.ising.bayes`.  Every method has its own
random stream ``SeedSequence([inference.seed, method id])`` so results do not depend on which
other methods ran.

``IsingResult.to_inference_data()``: ``posterior``/``sample_stats``/``log_likelihood`` are
NUTS's (else Gibbs's, else Laplace draws); other methods are extra groups named
``posterior_<method>`` (Laplace: 1 chain of Gaussian draws; point methods: 1 chain, 1 draw) and
``sample_stats_gibbs``; ``observed_data`` holds the fine configurations.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..errors import InputError, Interrupted
from .coarse import CoarseModel
from .fine import FineModel, check_configurations, default_lags, load_configurations
from .predict import errors, posterior_predictive

METHOD_IDS = {"exact_em": 0, "em": 1, "laplace": 2, "nuts": 3, "gibbs": 4, "relent": 5}
SAMPLERS = ("nuts", "gibbs")


@dataclass
class MethodResult:
    name: str
    theta_c: dict  # name -> posterior mean / point estimate
    theta_cf: Optional[float]
    magnetization: dict
    correlation: dict
    err: dict
    seconds: float
    theta_c_sd: Optional[dict] = None
    theta_cf_sd: Optional[float] = None
    diagnostics: Optional[dict] = None
    extra: dict = field(default_factory=dict)
    draws_c: Optional[np.ndarray] = None  # (chains, draws, K)
    draws_cf: Optional[np.ndarray] = None  # (chains, draws)
    idata: Any = None

    def to_dict(self) -> dict:
        d = {
            "theta_c": self.theta_c,
            "theta_cf": self.theta_cf,
            "magnetization": self.magnetization,
            "correlation": {k: list(map(float, v)) for k, v in self.correlation.items()},
            "err_mag": self.err.get("err_mag"),
            "err_corr": self.err.get("err_corr"),
            "abs_err_mag": self.err.get("abs_err_mag"),
            "seconds": self.seconds,
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


def _jsonable(v):
    from ..io import to_jsonable

    return to_jsonable(v)


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

    def to_dict(self) -> dict:
        d = self._to_dict()
        if self.interrupted is not None:
            d["interrupted"] = _jsonable(self.interrupted)
        return d

    def _to_dict(self) -> dict:
        return _jsonable({
            "truth": {"magnetization": self.m_true, "correlation": list(map(float, self.R_true)),
                      "method": "transfer matrix (exact)", "lags": list(map(int, self.lags))},
            "fine": {"sites": self.fine.n, "beta": self.fine.beta, "field": self.fine.mu,
                     "couplings": list(self.fine.J), "periodic": self.fine.periodic},
            "coarse": {"level": self.coarse.level, "model": self.coarse.code, "sites": self.coarse.n_c,
                       "parameters": self.coarse.names, "field": self.coarse.mu_c},
            "data": {"samples": int(len(self.data)), "source": self.data_source},
            "methods": {k: v.to_dict() for k, v in self.methods.items()},
            "laplace_vs_nuts": self.laplace_vs_nuts,
            "settings": self.settings,
            "seconds": self.seconds,
        })

    def summary(self) -> str:
        lines = [f"truth: m = {self.m_true:.4f}, |R| = {np.linalg.norm(self.R_true):.4f}"]
        for k, v in self.methods.items():
            em = v.err.get("err_mag")
            lines.append(f"{k:9s} m = {v.magnetization['mean']:.4f} [{v.magnetization['lower']:.4f}, "
                         f"{v.magnetization['upper']:.4f}]  err_mag = {'n/a' if em is None else f'{em:.3g}'}  "
                         f"err_corr = {v.err['err_corr']:.3g}  ({v.seconds:.1f} s)")
        if self.laplace_vs_nuts:
            lv = self.laplace_vs_nuts
            lines.append(f"laplace vs nuts: KL = {lv['kl']:.3g}, max mean shift = {lv['max_mean_shift_sd']:.3g} sd")
        return "\n".join(lines)

    # --- ArviZ ------------------------------------------------------------------------------
    def to_inference_data(self):
        import arviz as az
        import xarray as xr

        groups = {}
        primary = next((m for m in ("nuts", "gibbs", "laplace") if m in self.methods), None)
        for name, res in self.methods.items():
            if res.draws_c is not None:
                ds = _posterior_dataset(self.coarse, res.draws_c, res.draws_cf)
            else:
                tc = np.array([[list(res.theta_c.values())]]).reshape(1, 1, self.coarse.K)
                tf = np.array([[np.nan if res.theta_cf is None else res.theta_cf]])
                ds = _posterior_dataset(self.coarse, tc, tf)
            ds.attrs["method"] = name
            if name == primary:
                groups["posterior"] = ds
                if res.idata is not None and "sample_stats" in res.idata.groups():
                    groups["sample_stats"] = res.idata.sample_stats
                if "log_likelihood" in res.extra.get("_groups", {}):
                    groups["log_likelihood"] = res.extra["_groups"]["log_likelihood"]
            else:
                groups[f"posterior_{name}"] = ds
                if name in SAMPLERS and res.idata is not None and "sample_stats" in res.idata.groups():
                    groups[f"sample_stats_{name}"] = res.idata.sample_stats
        groups["observed_data"] = xr.Dataset(
            {"x": (("configuration", "site"), np.asarray(self.data, np.int8))})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.InferenceData(**groups)

    # --- figures ----------------------------------------------------------------------------
    def figures(self) -> list:
        import matplotlib.pyplot as plt

        figs = []
        names = list(self.methods)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for i, k in enumerate(names):
            mg = self.methods[k].magnetization
            ax.errorbar([i], [mg["mean"]], yerr=[[mg["mean"] - mg["lower"]], [mg["upper"] - mg["mean"]]],
                        fmt="o", capsize=4)
        ax.axhline(self.m_true, color="k", ls="--", label="exact")
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("magnetization m")
        ax.set_title("Predicted magnetization, 94 % intervals")
        ax.legend()
        fig.tight_layout()
        figs.append(("Magnetization by method", fig))

        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot(self.lags, self.R_true, "k--", lw=2, label="exact")
        for k in names:
            c = self.methods[k].correlation
            line, = ax.plot(self.lags, c["mean"], label=k)
            ax.fill_between(self.lags, c["lower"], c["upper"], color=line.get_color(), alpha=0.2)
        ax.set_xlabel("lag l")
        ax.set_ylabel("R_l")
        ax.set_title("Correlations, 94 % bands")
        ax.legend(fontsize=8)
        fig.tight_layout()
        figs.append(("Correlations R_l", fig))

        if "nuts" in self.methods and "laplace" in self.methods:
            figs.append(("Laplace vs NUTS", self._overlay_figure("nuts", "laplace")))
        for k in SAMPLERS:
            res = self.methods.get(k)
            if res is not None and res.draws_c is not None:
                import arviz as az

                idata = az.InferenceData(posterior=_posterior_dataset(self.coarse, res.draws_c, res.draws_cf))
                axes = az.plot_trace(idata, compact=True)
                f = np.ravel(axes)[0].figure
                f.suptitle(f"{k}: trace")
                f.tight_layout()
                figs.append((f"{k} trace", f))
        return figs

    def _overlay_figure(self, a, b):
        import arviz as az

        ids = []
        for k in (a, b):
            r = self.methods[k]
            ids.append(az.InferenceData(posterior=_posterior_dataset(self.coarse, r.draws_c, r.draws_cf)))
        axes = az.plot_density(ids, data_labels=[a, b], hdi_prob=0.94, shade=0.1)
        f = np.ravel(axes)[0].figure
        f.suptitle(f"{b} (Gaussian) vs {a} posterior")
        return f


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
    """Run every method of ``inf.methods`` on data x (S_f, n_f) and predict (see module doc).

    Interruption: once ``control.interrupted`` is set (SIGINT through
    :class:`bayescg.runtime.RunControl`) the run stops at the next draw of a sampler, the next
    EM check or the next method, and raises :class:`bayescg.errors.Interrupted` whose
    ``partial`` attribute is an :class:`IsingResult` of what is complete (plus an interrupted
    sampler's draws so far, marked in ``interrupted``), or None if nothing is.
    """
    from . import bayes
    from .kernel import FastLoglik

    t_all = time.perf_counter()
    x = check_configurations(x, fine.n)
    if cm.n_f != fine.n:
        raise InputError(f"coarse model has {cm.n_f} fine sites, the fine chain {fine.n}")
    unknown = [m for m in inf.methods if m not in METHOD_IDS]
    if unknown:
        raise InputError(f"unknown inference method {unknown[0]!r} (known: {', '.join(METHOD_IDS)})")
    max_lag = int(getattr(inf, "max_lag", 0) or 0)
    lags = default_lags(fine.n) if max_lag <= 0 else np.arange(1, min(max_lag, fine.n - 1) + 1)
    m_true, R_true = fine.truth(lags)
    prior_sd = float(getattr(inf, "prior_sd", 2.0))
    backend = getattr(inf, "sampler", "auto")
    S_pred = int(inf.prediction_samples)
    order = [m for m in METHOD_IDS if m in inf.methods]
    results = {}
    lap_fit = None
    fast = FastLoglik(cm, x)
    settings = {k: getattr(inf, k) for k in ("methods", "draws", "tune", "chains", "em_iterations", "coarse_samples",
                                             "posterior_samples", "prediction_samples", "seed")}
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
        rng = _rng(inf, meth)
        t0 = time.perf_counter()
        try:
            point, extra, draws_c, draws_cf, idata, diag, backmap, partial_note = _fit_one(
                meth, cm, x, inf, rng, control, prior_sd, backend)
        except Interrupted:  # the EM loops' control.check()
            raise stop(meth) from None
        if meth == "laplace":
            lap_fit = extra.pop("_fit")
        if partial_note is not None and draws_c is None:  # interrupted before any draw
            raise stop(meth)
        fit_seconds = time.perf_counter() - t0
        if point is not None:
            pred = posterior_predictive(cm, np.asarray(point[0])[None], point[1], S_pred, rng, lags, backmap=backmap)
            theta_c = dict(zip(cm.names, map(float, point[0])))
            theta_cf = None if point[1] is None else float(point[1])
            sd_c = sd_cf = None
        else:
            fc = draws_c.reshape(-1, cm.K)
            ff = draws_cf.reshape(-1)
            pred = posterior_predictive(cm, fc, ff, S_pred, rng, lags)
            theta_c = dict(zip(cm.names, map(float, fc.mean(0))))
            sd_c = dict(zip(cm.names, map(float, fc.std(0, ddof=1))))
            theta_cf, sd_cf = float(ff.mean()), float(ff.std(ddof=1))
            if meth in SAMPLERS:
                extra.update(_loo(fast, fc, ff, draws_c.shape[:2]))
        err = errors(pred["magnetization"]["mean"], pred["correlation"]["mean"], m_true, R_true)
        extra["fit_seconds"] = fit_seconds
        results[meth] = MethodResult(meth, theta_c, theta_cf, pred["magnetization"], pred["correlation"], err,
                                     time.perf_counter() - t0, sd_c, sd_cf, diag, extra, draws_c, draws_cf, idata)
        if partial_note is not None:  # a sampler stopped by SIGINT: its draws so far are kept
            raise stop(meth, partial_note)
        if control is not None:
            try:
                control.tick((i + 1) / len(order), note=meth)
            except Interrupted:
                raise stop(order[i + 1] if i + 1 < len(order) else "the final comparison") from None
    lvn = None
    if lap_fit is not None and "nuts" in results:
        r = results["nuts"]
        lvn = bayes.compare_laplace_nuts(lap_fit, r.draws_c.reshape(-1, cm.K), r.draws_cf.reshape(-1))
    return IsingResult(name, fine, cm, lags, m_true, R_true, x, data_source, results, lvn, settings,
                       time.perf_counter() - t_all)


def _fit_one(meth, cm, x, inf, rng, control, prior_sd, backend):
    """Run one method: (point or None, extra, draws_c, draws_cf, idata, diagnostics, backmap,
    partial_note).  partial_note is set when SIGINT stopped a sampler (draws_c None if it had
    no post-warm-up draw yet)."""
    from . import bayes
    from .em import exact_em, mc_em
    from .relent import relent_fit

    extra, diag, draws_c, draws_cf, idata, backmap, point, partial = {}, None, None, None, None, "pcf", None, None
    if meth == "exact_em":
        est = exact_em(cm, x, control=control)
        point = (est.theta_c, est.theta_cf)
        extra = {"iterations": est.iterations, "loglik": est.loglik}
    elif meth == "em":
        est = mc_em(cm, x, iterations=int(inf.em_iterations), S_q=int(inf.posterior_samples),
                    S_c=int(inf.coarse_samples), seed=int(rng.integers(2 ** 31)), control=control)
        point = (est.theta_c, est.theta_cf)
        extra = {"iterations": est.iterations, "loglik": est.loglik}
    elif meth == "relent":
        est = relent_fit(cm, x, rng=rng)
        point = (est.theta_c, None)
        backmap = "majority"
        extra = {"backmap": "uniform over blocks with the coarse spin's majority (ties 1/2)"}
    elif meth == "laplace":
        lap_fit = bayes.fit_laplace(cm, x, prior_sd)
        n = int(inf.draws) * int(inf.chains)
        dc, df = lap_fit.draws(n, rng)
        draws_c, draws_cf = dc[None], df[None]
        extra = {"mode_unconstrained": list(lap_fit.mean), "cov_unconstrained": lap_fit.cov.tolist(),
                 "_fit": lap_fit}
    else:  # nuts, gibbs
        kw = dict(draws=int(inf.draws), tune=int(inf.tune), chains=int(inf.chains), seed=int(rng.integers(2 ** 31)),
                  prior_sd=prior_sd, control=control)
        if meth == "nuts":
            run = bayes.sample_nuts(cm, x, backend=backend, likelihood=getattr(inf, "likelihood", "op"), **kw)
            extra = {"backend": run.backend, "sampling_seconds": run.seconds, "compile_seconds": run.compile_seconds}
        else:
            run = bayes.sample_gibbs(cm, x, **kw)
            extra = {"backend": run.backend, "sampling_seconds": run.seconds}
        idata = run.idata
        if run.interrupted:
            c, d = (0, 0) if idata is None else idata.posterior.theta_cf.shape
            partial = {"method": meth, "draws": int(d), "chains": int(c), "requested_draws": int(inf.draws),
                       "requested_chains": int(inf.chains)}
            extra["interrupted"] = partial
        if idata is not None:
            draws_c = idata.posterior.theta_c.values
            draws_cf = idata.posterior.theta_cf.values
            diag = bayes.diagnostics(idata)
    return point, extra, draws_c, draws_cf, idata, diag, backmap, partial


def _interrupted(control) -> bool:
    return control is not None and bool(getattr(control, "interrupted", False))


def _loo(fast, fc, ff, shape) -> dict:
    """PSIS-LOO and WAIC from the exact pointwise log-likelihood (X summed out) of every draw."""
    import arviz as az
    import xarray as xr

    ll = np.stack([fast.pointwise(fc[j], ff[j]) for j in range(len(fc))]).reshape(*shape, -1)
    ds = xr.Dataset({"x": (("chain", "draw", "configuration"), ll)})
    idata = az.InferenceData(log_likelihood=ds, posterior=xr.Dataset(
        {"theta_cf": (("chain", "draw"), ff.reshape(shape))}))
    with warnings.catch_warnings():
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


@dataclass
class IsingSweepResult:
    key: str
    values: list
    runs: list  # IsingResult per value

    def to_dict(self) -> dict:
        runs = [r.to_dict() for r in self.runs]
        names = list(runs[0]["methods"]) if runs else []
        methods = {}
        for k in names:
            ms = [r["methods"][k] for r in runs]
            d = {"theta_c": [m["theta_c"] for m in ms], "theta_cf": [m["theta_cf"] for m in ms],
                 "magnetization": {q: [m["magnetization"][q] for m in ms] for q in ("mean", "lower", "upper")},
                 "correlation": {q: [m["correlation"][q] for m in ms] for q in ("mean", "lower", "upper")},
                 "err_mag": [m["err_mag"] for m in ms], "err_corr": [m["err_corr"] for m in ms],
                 "abs_err_mag": [m["abs_err_mag"] for m in ms], "seconds": [m["seconds"] for m in ms]}
            if k in SAMPLERS:
                d["diagnostics"] = [m.get("diagnostics") for m in ms]
            methods[k] = d
        return _jsonable({
            "sweep": {"key": self.key, "values": self.values},
            "truth": {"magnetization": [r["truth"]["magnetization"] for r in runs],
                      "correlation": [r["truth"]["correlation"] for r in runs],
                      "method": "transfer matrix (exact)", "lags": runs[0]["truth"]["lags"] if runs else []},
            "methods": methods,
            "laplace_vs_nuts": [r["laplace_vs_nuts"] for r in runs],
            "runs": runs,
        })

    def summary(self) -> str:
        return "\n\n".join(f"{self.key} = {v}:\n{r.summary()}" for v, r in zip(self.values, self.runs))

    def to_inference_data(self):
        """Primary posterior of every run, concatenated along a ``sweep`` dimension."""
        import arviz as az
        import xarray as xr

        posts = [r.to_inference_data().posterior for r in self.runs]
        vals = [str(v) for v in self.values]
        post = xr.concat(posts, dim="sweep", join="outer").assign_coords(sweep=vals)
        post.attrs["sweep_key"] = self.key
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return az.InferenceData(posterior=post)

    def figures(self) -> list:
        import matplotlib.pyplot as plt

        d = self.to_dict()
        xs = np.asarray(self.values, float) if all(isinstance(v, (int, float)) for v in self.values) \
            else np.arange(len(self.values))
        figs = []
        fig, ax = plt.subplots(figsize=(6.5, 4))
        ax.plot(xs, d["truth"]["magnetization"], "k--", lw=2, label="exact")
        for k, m in d["methods"].items():
            mg = m["magnetization"]
            line, = ax.plot(xs, mg["mean"], "o-", ms=3, label=k)
            ax.fill_between(xs, mg["lower"], mg["upper"], color=line.get_color(), alpha=0.2)
        ax.set_xlabel(self.key)
        ax.set_ylabel("magnetization")
        ax.legend(fontsize=8)
        ax.set_title("Magnetization, 94 % intervals")
        fig.tight_layout()
        figs.append(("Magnetization across the sweep", fig))
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for k, m in d["methods"].items():
            tc = m["theta_c"]
            for name in (tc[0] or {}):
                axes[0].plot(xs, [t[name] for t in tc], "o-", ms=3, label=f"{k}: {name}")
            if m["theta_cf"][0] is not None:
                axes[1].plot(xs, m["theta_cf"], "o-", ms=3, label=k)
        axes[0].set_title("theta_c")
        axes[1].set_title("theta_cf")
        for a in axes:
            a.set_xlabel(self.key)
            a.legend(fontsize=7)
        fig.tight_layout()
        figs.append(("Parameters across the sweep", fig))
        return figs


def run_sweep(model, *, control=None, executor=None) -> IsingSweepResult:
    """Run the model at every ``[sweep]`` value (processes by default, or ``executor.map``)."""
    items = _sweep_models(model)
    results = []
    if executor is None:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(2, len(items)), mp_context=mp.get_context("spawn")) as pool:
            chunk = 2
            for lo in range(0, len(items), chunk):
                results += list(pool.map(_sweep_task, items[lo:lo + chunk]))
                if control is not None:
                    control.tick(len(results) / len(items))
    else:
        chunk = max(1, int(getattr(executor, "workers", 2)))
        for lo in range(0, len(items), chunk):
            results += list(executor.map(_sweep_task, items[lo:lo + chunk]))
            if control is not None:
                control.tick(len(results) / len(items))
    return IsingSweepResult(model.sweep.key, list(model.sweep.values), results)
