"""Self-contained HTML reports: key numbers, warnings, tables, figures and ArviZ diagnostics.

A :class:`Report` is one HTML file with everything inline: CSS in a ``<style>`` block and every
matplotlib figure as a PNG data URI (``data:image/png;base64,...``), so the file can be mailed or
archived and opened offline.  No external ``src``/``href`` is ever emitted; all text from results
and model files is HTML-escaped.

Sections come from result objects (see ``docs/ARCHITECTURE.md``): ``summary()`` (a
:class:`bayescg.summary.Summary`: its rows are the key numbers, its tables are tables; a plain dict or list of
dicts is still read), ``warnings`` / ``to_dict()["warnings"]`` (highlighted at the top of the
section and collected at the top of the report), ``figures()`` ([(title, Figure)]) and
``to_inference_data()`` (ArviZ InferenceData), from which :func:`inference_data_figures` draws, for
any model, a posterior summary table (mean, sd, 94 % HDI, ESS, R-hat), rank plots
(``az.plot_trace(kind="rank_bars")``; trace plots for a single chain) and posterior-predictive checks
(``az.plot_ppc`` with labelled axes, observed values against the predictive interval along their coordinate)
when a ``posterior_predictive`` group exists.  The figures themselves are drawn by :mod:`bayescg.plots`; numbers
are formatted by :mod:`bayescg.plots.numbers`; the settings block lists every section the command reads.
"""
from __future__ import annotations

import html
import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable

from .io import atomic_write_text
from .summary import Summary
from .plots._base import (closing_on_error as _closing_on_error, figure_to_data_uri, prebuilt, render_each,
                          with_arviz_numpy)
from .plots.numbers import interval as _num_interval, num as _num, speedup as _speedup, sweep_axis_label

__all__ = ["Report", "figure_to_data_uri", "table_html", "inference_data_figures", "posterior_summary_rows",
           "select_scalar_variables", "collect_warnings", "key_numbers", "structured_tables", "diagnostic_warnings", "HDI_PROB",
           "settings_text"]

#: Credible mass of the HDIs in summary tables (94 %, like every band bayescg reports).
HDI_PROB = 0.94
#: Thresholds that flag a diagnostic cell in tables (same as :func:`bayescg.fit.convergence_warnings`).
R_HAT_MAX = 1.01
ESS_MIN = 100.0
#: Observed variables with fewer entries are statistics (e.g. the Ising R_l by lag): no az.plot_ppc KDE.
MIN_PPC_KDE_POINTS = 20


class _SkipPlot(Exception):
    pass

_CSS = """
*{box-sizing:border-box}
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:1180px;margin:1.5em auto;
color:#1f2328;line-height:1.45;padding:0 1.2em;background:#fff}
h1{font-size:1.7em;border-bottom:3px solid #2f4f75;padding-bottom:.25em;margin-bottom:.2em}
h2{color:#2f4f75;margin-top:1.8em;border-bottom:1px solid #d0d7de;padding-bottom:.15em}
h3{color:#334;margin:1.2em 0 .4em;font-size:1.05em}
.sub{color:#57606a;margin:.1em 0 1em}
nav{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:.5em 1em;margin:1em 0;font-size:.92em}
nav a{margin-right:1.2em;color:#0b5cad;text-decoration:none}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.45em .8em;min-width:9.5em;background:#fbfcfd}
.card .k{font-size:.78em;color:#57606a}.card .v{font-size:1.25em;font-weight:600;font-variant-numeric:tabular-nums}
.card.bad{border-color:#d1242f;background:#fff5f5}.card.ok{border-color:#1a7f37;background:#f4fbf6}
table{border-collapse:collapse;margin:.5em 0 1em;font-size:.9em;font-variant-numeric:tabular-nums}
td,th{border:1px solid #d0d7de;padding:.2em .45em;text-align:right;vertical-align:top;white-space:nowrap}
td.text{white-space:normal;min-width:6em}
.tw{max-width:100%;overflow-x:auto}
th{background:#eef2f7;font-weight:600}
td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
td.bad{background:#ffe3e3 !important;color:#a40e26;font-weight:600}
td.good{color:#1a7f37;font-weight:600}
td.text{text-align:left}
table.mat{margin:0;font-size:.95em}table.mat td{border:none;padding:0 .35em;background:none !important}
.figs{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}
figure{margin:.4em 0;max-width:100%}
figcaption{font-size:.88em;color:#57606a;margin-top:.2em}
img{max-width:100%;height:auto;border:1px solid #e1e4e8;border-radius:3px}
.warn{background:#fff8e6;border-left:5px solid #d4a72c;padding:.45em .9em;margin:.4em 0;border-radius:3px}
.warn.top{background:#fff1f0;border-left-color:#d1242f}
.note{color:#57606a;font-size:.9em}
details{margin:.6em 0}summary{cursor:pointer;color:#0b5cad}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:.6em;overflow-x:auto;font-size:.85em}
pre.settings{white-space:pre-wrap;overflow-wrap:anywhere}
.meta{font-size:.8em;color:#6e7781;margin-top:2.5em;border-top:1px solid #d0d7de;padding-top:.5em}
"""


# --------------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------------
def _is_matrix(v) -> bool:
    return (isinstance(v, (list, tuple)) and 0 < len(v) <= 6 and all(isinstance(r, (list, tuple)) for r in v)
            and all(0 < len(r) <= 6 and all(isinstance(x, (int, float)) or x is None for x in r) for r in v))


def _fmt_keyed(key, v: Any) -> str:
    """:func:`_fmt` that knows the quantity: speedups carry their unit ("8.9x"), p-values below 1e-4 read "<1e-4"."""
    k = str(key).lower()
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if "speedup" in k:
            return html.escape(_speedup(v))
        if ("pvalue" in k or "p-value" in k or k == "p") and 0 <= v < 1e-4:  # 0 or 1e-300: both "no fit"
            return html.escape("<1e-4")
    return _fmt(v)


def _fmt(v: Any) -> str:
    """One value as HTML: floats to 4 significant digits, bools as yes/no, small matrices as grids."""
    try:
        import numpy as np

        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
    except ImportError:  # pragma: no cover
        pass
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–" if math.isnan(v) else html.escape(str(v))
        return _num(v, 4)
    if isinstance(v, int):
        return str(v)
    if _is_matrix(v):
        rows = "".join("<tr>" + "".join(f"<td>{_fmt(x)}</td>" for x in r) + "</tr>" for r in v)
        return f'<table class="mat">{rows}</table>'
    if isinstance(v, (list, tuple)):
        if len(v) <= 8 and all(isinstance(x, (int, float)) or x is None for x in v):
            return "[" + ", ".join(_fmt(x) for x in v) + "]"
        if len(v) <= 8 and all(isinstance(x, str) for x in v):
            return html.escape(", ".join(v))
        return html.escape(f"[{len(v)} values]")
    if isinstance(v, dict):
        return html.escape(", ".join(f"{k}: {_plain(x)}" for k, x in v.items()))
    return html.escape(str(v))


def _plain(v) -> str:
    if isinstance(v, float):
        return _num(v, 4)
    return str(v)


def cell_class(column: str, value: Any) -> str:
    """CSS class flagging a cell: diagnostics beyond thresholds, found/not found, booleans."""
    c = str(column).lower()
    if c == "verdict" and value in ("accepted", "rejected"):  # the scale scan's verdicts (bayescg.scales)
        return "good" if value == "accepted" else "bad"
    if isinstance(value, bool):
        return "good" if value else ""
    if isinstance(value, dict):  # e.g. theta_c {lin: ..., pair1: ...}: may wrap
        return "text"
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(float(value)):
        return "text" if isinstance(value, str) and not value.startswith("[") else ""
    v = float(value)
    if "r_hat" in c and v > R_HAT_MAX:
        return "bad"
    if re.search(r"(^|[^a-z])ess([^a-z]|$)", c) and v < ESS_MIN:  # ess, ess_bulk, bulk ESS; not skewness/excess
        return "bad"
    if "diverg" in c and v > 0:
        return "bad"
    if "trapped" in c and v > 0:
        return "bad"
    return ""


def table_html(rows: list[dict] | dict, title: str | None = None) -> str:
    """A table from a list of dicts (columns = keys, in order of first appearance) or a dict (two
    columns).  Diagnostic cells beyond thresholds (R-hat > 1.01, bulk ESS < 100, divergences > 0,
    trapped walkers > 0) get class ``bad``."""
    if isinstance(rows, dict):
        rows = [{"quantity": k, "value": v} for k, v in rows.items()]
        keyed = True
    else:
        keyed = False
    rows = list(rows)
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c)
            cls = cell_class(r.get("quantity") if keyed and c == "value" else c, v)
            attr = f' class="{cls}"' if cls else ""
            cells.append(f"<td{attr}>{_fmt_keyed(r.get('quantity') if keyed and c == 'value' else c, v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cap = f"<h3>{html.escape(title)}</h3>" if title else ""
    return f'{cap}<div class="tw"><table><tr>{head}</tr>{"".join(body)}</table></div>'


#: Patterns (lower case, substring) of the numbers a reader looks at first, in order of importance.
KEY_PATTERNS = ["beta_hat", "reference_rmse", "reference_coverage", "coverage of the reference", "correction applied",
                "correction size", "r_hat", "ess_bulk", "diverg", "trapped",
                "normality", "w1", "mean-path", "acf", "phase", "speedup", "err_mag", "err_corr", "kl",
                "scale", "seconds"]


def key_numbers(summary: dict, n: int = 6) -> dict:
    """The ``n`` most important scalar entries of a summary dict (by :data:`KEY_PATTERNS`, then in order);
    standard errors (``*_se``) are left to the table."""
    def rank(k):
        kl = str(k).lower()
        for i, p in enumerate(KEY_PATTERNS):
            if p in kl:
                return i
        return len(KEY_PATTERNS)

    # scalars, and short texts of key quantities (a summary may give a speedup as "8.9x")
    scal = [k for k, v in summary.items() if (isinstance(v, (int, float, bool)) or v is None
                                              or (isinstance(v, str) and len(v) <= 12 and rank(k) < len(KEY_PATTERNS)))
            and not str(k).endswith("_se")]

    chosen = sorted(scal, key=lambda k: (rank(k), scal.index(k)))[:n]
    return {k: summary[k] for k in chosen}


def _cards_html(items: dict) -> str:
    out = []
    for k, v in items.items():
        cls = cell_class(k, v)
        if cls not in ("bad",):
            cls = "ok" if (isinstance(v, bool) and v) else ""
        out.append(f'<div class="card {cls}"><div class="k">{html.escape(str(k))}</div>'
                   f'<div class="v">{_fmt_keyed(k, v)}</div></div>')
    return f'<div class="cards">{"".join(out)}</div>'


def _anchor(text: str, used: set) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    a, i = base, 2
    while a in used:
        a, i = f"{base}-{i}", i + 1
    used.add(a)
    return a


def _interval(d) -> str:
    if not isinstance(d, dict) or d.get("lower") is None:
        return "–"
    return _num_interval(d["lower"], d["upper"])


def diagnostic_warnings(d: dict) -> list[str]:
    """Warnings for sampler diagnostics beyond thresholds found anywhere in a result dict: a
    ``diagnostics`` {r_hat_max, ess_bulk_min, divergences} block at the top or per method."""
    out = []

    def check(where, dg):
        if not isinstance(dg, dict):
            return
        rh, ess, div = dg.get("r_hat_max"), dg.get("ess_bulk_min"), dg.get("divergences")
        if isinstance(rh, (int, float)) and math.isfinite(rh) and rh > R_HAT_MAX:
            out.append(f"{where}r_hat_max = {rh:.3f} > {R_HAT_MAX}: chains disagree, run longer")
        if isinstance(ess, (int, float)) and math.isfinite(ess) and ess < ESS_MIN:
            out.append(f"{where}ess_bulk_min = {ess:.0f} < {ESS_MIN:.0f}: too few effective draws")
        if isinstance(div, (int, float)) and div > 0:
            out.append(f"{where}{int(div)} divergent transitions")

    check("", d.get("diagnostics"))
    for name, m in (d.get("methods") or {}).items() if isinstance(d.get("methods"), dict) else []:
        if isinstance(m, dict):
            check(f"{name}: ", m.get("diagnostics"))
    return out


def structured_tables(d: dict) -> tuple[dict, list]:
    """Key numbers and tables for results whose ``to_dict()`` compares several methods against a truth
    (``ising.json``: ``truth``, ``methods`` {name: {magnetization {mean, lower, upper}, err_mag, ...}},
    ``laplace_vs_nuts``; a sweep has lists per method and a ``sweep`` {key, values}).
    Returns ``(key_numbers, [(title, rows)])``; empty when ``d`` has no such layout."""
    methods, truth = d.get("methods"), d.get("truth")
    if not isinstance(methods, dict) or not isinstance(truth, dict) or not methods:
        return {}, []
    keys, tables = {}, []
    sweep = d.get("sweep")
    if sweep:  # one row per swept value: exact and each method's magnetization with its interval
        rows = []
        for i, v in enumerate(sweep.get("values", [])):
            row = {sweep_axis_label(sweep.get("key", "value"), sweep.get("label")): v,
                   "exact m": truth["magnetization"][i]}
            for name, m in methods.items():
                mg = m["magnetization"]
                kind = {"posterior": "posterior", "monte_carlo": "Monte Carlo"}.get(m.get("interval_kind"), "")
                row[f"{name} m"] = mg["mean"][i]
                row[f"{name} 94% {kind}".rstrip()] = _interval({"lower": mg["lower"][i], "upper": mg["upper"][i]})
            rows.append(row)
        tables.append(("Magnetization across the sweep (94% intervals: posterior = uncertainty about theta, "
                       "Monte Carlo = sampling error of a point estimate only)", rows))
        for name, m in methods.items():
            errs = [e for e in m.get("err_mag", []) if e is not None]
            if errs:
                keys[f"{name}: max err_mag"] = max(errs)
        return keys, tables
    keys["exact magnetization"] = truth.get("magnetization")
    rows = [{"method": "exact (transfer matrix)", "magnetization": truth.get("magnetization"), "94% interval": "–"}]
    for name, m in methods.items():
        diag = m.get("diagnostics") or {}
        rows.append({"method": name, "magnetization": (m.get("magnetization") or {}).get("mean"),
                     "94% interval": _interval(m.get("magnetization")),
                     "interval kind": m.get("interval_kind", "–"), "err_mag": m.get("err_mag"),
                     "err_corr": m.get("err_corr"), "theta_cf": m.get("theta_cf"), "theta_c": m.get("theta_c"),
                     "r_hat_max": diag.get("r_hat_max"), "ess_bulk_min": diag.get("ess_bulk_min"),
                     "divergences": diag.get("divergences"), "seconds": m.get("seconds")})
    for name in ("nuts", "gibbs", "laplace", "em"):
        if name in methods:
            keys[f"{name}: err_mag"] = methods[name].get("err_mag")
            keys[f"{name}: err_corr"] = methods[name].get("err_corr")
            break
    for name in ("nuts", "gibbs"):
        dg = (methods.get(name) or {}).get("diagnostics") or {}
        if dg.get("r_hat_max") is not None:
            keys[f"{name}: r_hat_max"] = dg["r_hat_max"]
    tables.append(("Predictions by method (err = relative error against the exact value; interval kind: "
                   "posterior = uncertainty about theta, monte_carlo = sampling error of a point estimate only)", rows))
    lv = d.get("laplace_vs_nuts")
    if isinstance(lv, dict) and lv:
        keys["Laplace vs NUTS: KL"] = lv.get("kl")
        if lv.get("magnetization_shift_sd") is not None:
            keys["Laplace vs NUTS: m shift (sd)"] = lv["magnetization_shift_sd"]
        tables.append(("Laplace approximation against NUTS (parameters in the unconstrained space; predictions "
                       "as shifts in NUTS posterior sds)", lv))
    tables += _ising_check_tables(d)
    return keys, tables


def _ising_check_tables(d: dict) -> list:
    """Tables of ising.json's checks: identifiability, the exact posterior against each posterior
    method, the posterior predictive check and the model averaging over candidates."""
    tables = []
    idf = d.get("identifiability")
    if isinstance(idf, dict):
        rows = [{"parameter": k, "ML": (idf.get("ml") or {}).get(k), "lower side bounded": v.get("lower_bounded"),
                 "upper side bounded": v.get("upper_bounded")} for k, v in (idf.get("parameters") or {}).items()]
        tables.append((f"Identifiability: {idf.get('criterion', '')}", rows))
    pc = d.get("posterior_check")
    if isinstance(pc, dict) and pc.get("exact"):
        ex = pc["exact"]
        rows = [{"method": "exact (grid quadrature)", **{f"{k} mean": ex["mean"][k] for k in ex["mean"]},
                 **{f"{k} sd": ex["sd"][k] for k in ex["sd"]}}]
        for name, m in (pc.get("methods") or {}).items():
            row = {"method": name}
            for k, v in m.items():
                row[f"{k} mean"] = f"{v['mean_shift_sd']:+.2f} sd"
                row[f"{k} sd"] = f"x {v['sd_ratio']:.3f}"
            rows.append(row)
        tables.append(("Posterior against the exact posterior (shift of the mean in exact sds, sd ratio)", rows))
    ppc = d.get("predictive_check")
    if isinstance(ppc, dict) and ppc.get("p_value"):
        pv = ppc["p_value"]
        lags = (d.get("truth") or {}).get("lags") or []
        rows = [{"statistic": "m", "data": ppc["observed"]["m"], "p-value": pv["m"]}]
        rows += [{"statistic": f"R_{l}", "data": o, "p-value": p}
                 for l, o, p in zip(lags, ppc["observed"]["R"], pv["R"])]
        tables.append((f"Posterior predictive check of the data's statistics ({ppc.get('method', '')}; "
                       f"{ppc.get('replicates')} replicated data sets; p < {ppc.get('threshold')} is a misfit)", rows))
    ma = d.get("model_averaging")
    if isinstance(ma, dict) and ma.get("weights"):
        rows = [{"model": c, "stacking weight": ma["weights"][c], "elpd_loo": ma["elpd_loo"][c],
                 "PPC min p": ma["ppc_p_min"][c], "misfit": ", ".join(ma["misfit"][c]) or "–"}
                for c in ma.get("candidates", ma["weights"])]
        tables.append((f"Model averaging over coarse models ({ma.get('method', '')})", rows))
    return tables


def _plain_summary(d: dict) -> dict:
    """For results without ``summary()``: the top-level numbers, strings and small matrices of ``to_dict()``."""
    out = {}
    for k, v in (d or {}).items():
        if k in ("warnings", "meta"):
            continue
        if isinstance(v, (int, float, bool, str)) or v is None or _is_matrix(v):
            out[k] = v
    return out


def collect_warnings(result) -> list[str]:
    """A result's warnings: its ``warnings`` attribute and ``to_dict()["warnings"]``, deduplicated; when
    neither mentions the sampler, warnings from its diagnostics (:func:`diagnostic_warnings`)."""
    ws = list(getattr(result, "warnings", None) or [])
    d = {}
    if hasattr(result, "to_dict"):
        try:
            d = result.to_dict() or {}
        except Exception:  # a report must not fail because a summary cannot be built
            d = {}
        ws += list(d.get("warnings") or [])
    if not any(("r_hat" in str(w) or "diverg" in str(w) or "effective sample" in str(w)) for w in ws):
        ws += diagnostic_warnings(d)
    return list(dict.fromkeys(str(w) for w in ws))


# --------------------------------------------------------------------------------------------------
# generic ArviZ part
# --------------------------------------------------------------------------------------------------
def select_scalar_variables(idata, max_vars: int = 6, max_size: int = 6) -> list[str]:
    """Posterior variables worth a trace/rank plot: not PyMC's transformed copies (names with ``__``),
    at most ``max_size`` entries each (scalars, small vectors/matrices such as theta_c or Z), none of
    them constant (e.g. the unit diagonal of an LKJ correlation matrix, which has no density), at most
    ``max_vars`` of them, in the posterior's order."""
    import numpy as np

    post = getattr(idata, "posterior", None)
    if post is None:
        return []
    names = []
    for name, da in post.data_vars.items():
        if "__" in str(name):
            continue
        size = 1
        for d in da.dims:
            if d not in ("chain", "draw"):
                size *= int(da.sizes[d])
        if size > max_size:
            continue
        v = np.asarray(da.values, dtype=float).reshape(-1, size)
        if not np.all(np.isfinite(v)) or np.any(np.ptp(v, axis=0) == 0):
            continue
        names.append(str(name))
    return names[:max_vars]


def _has_sampler(idata) -> bool:
    """True when the draws come from an MCMC sampler (a ``sample_stats`` group), not an approximation."""
    return "sample_stats" in idata.groups()


def posterior_summary_rows(idata, var_names: list[str], hdi_prob: float = HDI_PROB) -> list[dict]:
    """``az.summary`` as table rows: variable, mean, sd, HDI bounds, ess_bulk, ess_tail, r_hat."""
    import arviz as az

    if not var_names:
        return []
    nchain = idata.posterior.sizes.get("chain", 1)
    import warnings

    with warnings.catch_warnings():  # one chain: R-hat is undefined and dropped below
        warnings.simplefilter("ignore")
        df = az.summary(idata, var_names=var_names, hdi_prob=hdi_prob, kind="all" if nchain >= 2 else "stats",
                        round_to="none")
    rows = []
    for name, r in df.iterrows():
        row = {"variable": str(name)}
        for c in df.columns:
            if c.startswith("mcse"):
                continue
            v = r[c]
            row[str(c)] = float(v) if v == v else None
        if nchain < 2:
            row.pop("r_hat", None)
        rows.append(row)
    return rows


@contextmanager
def _arviz_without_numba():
    """ArviZ's plain numpy code paths inside the block: with numba installed ArviZ compiles its KDE, histogram
    and rank helpers on first use (measured 14 s CPU of a cold README run, more than the plots themselves),
    while the report's few thousand draws per variable take milliseconds in numpy."""
    from arviz.utils import Numba

    flag = Numba.numba_flag
    Numba.numba_flag = False
    try:
        yield
    finally:
        Numba.numba_flag = flag


def inference_data_figures(idata, var_names: list[str] | None = None, max_ppc_points: int = 500,
                           drawn: frozenset = frozenset()) -> tuple[list, list]:
    """Tables and figures for any InferenceData: ``(tables, figures)``.

    tables: [(title, rows)] with the posterior summary of ``var_names`` (default
    :func:`select_scalar_variables`).  figures: [(caption, Figure)]: rank plots
    (``az.plot_trace(kind="rank_bars")``) when a sampler with >= 2 chains produced the draws, trace
    plots for one chain, marginal posteriors with 94 % HDIs (``az.plot_posterior``) for draws of an
    approximation (no ``sample_stats``); and for each ``posterior_predictive`` variable with observed
    data ``az.plot_ppc`` (when it has at least ``MIN_PPC_KDE_POINTS`` entries: a data set, not a few
    statistics) and, when it has at most ``max_ppc_points`` entries, the observed values against the
    94 % predictive interval along their coordinate (e.g. lag; the index when there is none).  Variables on
    histogram cells (``cell_*`` coordinates, the learn fit) are left to the result's own check against q.
    ``drawn``: the groups ("posterior", "posterior_predictive") whose figures the caller's result draws itself
    (its ``report_figures_drawn``); their tables stay, their figures are not drawn twice.
    """
    import numpy as np

    from .plots import diagnostics as P
    from .plots._base import figure_of

    tables, figs = [], []
    if idata is None or "posterior" not in idata.groups():
        return tables, figs
    names = var_names if var_names is not None else select_scalar_variables(idata)
    sampler = _has_sampler(idata)
    if names:
        method = idata.posterior.attrs.get("method")  # which of a result's posteriors this is (ising: the primary)
        title = (f"Posterior summary{f' of {method}' if method else ''} ({int(100 * HDI_PROB)}% HDI"
                 + (")" if sampler else "; draws of an approximation, not MCMC)"))
        try:
            tables.append((title, posterior_summary_rows(idata, names)))
        except Exception as exc:  # noqa: BLE001
            tables.append((title, [{"note": f"az.summary failed: {exc.__class__.__name__}: {exc}"}]))
    if names and "posterior" not in drawn:
        try:
            with _closing_on_error(), _arviz_without_numba():
                figs.append(P.plot_posterior_diagnostics(idata, names, sampler, HDI_PROB))
        except Exception as exc:  # noqa: BLE001 - a report must never fail on a plot
            tables.append(("Posterior plots", [{"note": f"ArviZ could not plot the posterior: "
                                                        f"{exc.__class__.__name__}: {exc}"}]))
    if "posterior_predictive" in idata.groups() and "observed_data" in idata.groups() \
            and "posterior_predictive" not in drawn:
        for v in idata.posterior_predictive.data_vars:
            if v not in idata.observed_data:
                continue
            da = idata.observed_data[v]
            if any(str(c).startswith("cell_") for c in da.coords):
                continue  # histogram cells: the result's own figures check them against their positions
            obs = np.asarray(da.values, dtype=float).ravel()
            try:
                if obs.size < MIN_PPC_KDE_POINTS:  # a few statistics, not a data set: no KDE of them
                    raise _SkipPlot
                with _closing_on_error(), _arviz_without_numba():
                    fig = figure_of(P.plot_ppc_kde(idata, v))
                figs.append((f"Posterior predictive check of {v} (az.plot_ppc): distribution of the values", fig))
            except _SkipPlot:
                pass
            except Exception as exc:  # some shapes have no KDE (e.g. constant data); the by-index plot remains
                tables.append((f"Posterior predictive check of {v}", [{"note": f"az.plot_ppc failed: {exc}"}]))
            if 1 < obs.size <= max_ppc_points:
                pp = np.asarray(idata.posterior_predictive[v].values, dtype=float)
                dim = da.dims[0] if da.ndim == 1 else None  # a coordinate (e.g. lag) beats the index
                x = (np.asarray(da[dim].values) if dim is not None and dim in da.coords
                     and np.issubdtype(da[dim].dtype, np.number) else None)
                with _closing_on_error():
                    fig = figure_of(P.plot_ppc_intervals(obs, pp, x=x, xlabel=None if x is None else str(dim), name=v))
                figs.append((f"Posterior predictive check of {v} " + ("by index" if x is None else f"against {dim}"), fig))
    return tables, figs


#: Sections each command reads; those missing from the model file are shown with their default values.
COMMAND_SECTIONS = {"learn": ["potential", "simulation", "fit", "noise"], "scales": ["potential", "simulation", "scales"],
                    "noise": ["potential", "simulation", "noise"], "surrogate": ["potential", "simulation", "surrogate"],
                    "simulate": ["potential", "simulation"], "ising": ["fine", "data", "coarse", "inference"],
                    "run": ["potential", "simulation", "fit", "noise", "scales", "surrogate"]}


def _toml_value(v) -> str:
    import json

    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str, list, tuple)):
        return json.dumps(v, default=str)
    return json.dumps(str(v))


def settings_text(model: dict, command: str | None = None) -> str:
    """The model's settings as TOML: top-level keys, then every section; sections the command reads that the
    file left out are filled with their defaults (marked), so ``[fit]`` shows even when not written."""
    import dataclasses

    from .config import SECTIONS

    model = dict(model or {})
    scalars = {k: v for k, v in model.items() if not isinstance(v, dict)}
    sections = {k: v for k, v in model.items() if isinstance(v, dict)}
    defaulted = set()
    wanted = COMMAND_SECTIONS.get(command or "", [])
    if model.get("fine") is not None and command == "run":
        wanted = COMMAND_SECTIONS["ising"]
    if len((sections.get("potential") or {}).get("variables") or []) == 1:
        wanted = [w for w in wanted if w != "noise"]  # the noise calibration runs for d >= 2 only
    for name in wanted:
        if name not in sections and name in SECTIONS:
            try:
                sections[name] = dataclasses.asdict(SECTIONS[name]())
                defaulted.add(name)
            except TypeError:  # a section without defaults for every field (e.g. [potential])
                continue
    lines = [f"{k} = {_toml_value(v)}" for k, v in scalars.items() if k not in ("path",)]
    for name, sec in sections.items():
        lines.append("")
        lines.append(f"[{name}]" + ("   # not in the model file: defaults" if name in defaulted else ""))
        lines += [f"{k} = {_toml_value(v)}" for k, v in sec.items() if v is not None]
    return "\n".join(lines).strip() + "\n"


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------
class Report:
    """Collects sections; :meth:`write` produces one self-contained HTML file.

    ``Report(title, meta)``; ``meta`` is the ``meta`` block of the JSON outputs (``created``, ``seed``,
    ``versions``, ``model``).  Parts are rendered to HTML when added (figures are closed at once), so a
    report holds strings only.
    """

    def __init__(self, title: str, meta: dict | None = None, subtitle: str | None = None):
        self.title = title
        self.meta = meta or {}
        self.subtitle = subtitle
        self.parts: list[str] = []
        self.toc: list[tuple[str, str]] = []
        self.top_warnings: list[tuple[str, str]] = []   # (section heading, text)
        self._anchors: set = set()
        self._section = ""

    # -- building blocks ---------------------------------------------------------------------------
    def heading(self, text: str):
        a = _anchor(text, self._anchors)
        self.toc.append((a, text))
        self._section = text
        self.parts.append(f'<h2 id="{a}">{html.escape(text)}</h2>')

    def subheading(self, text: str):
        self.parts.append(f"<h3>{html.escape(text)}</h3>")

    def text(self, text: str):
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def note(self, text: str):
        self.parts.append(f'<p class="note">{html.escape(text)}</p>')

    def warning(self, text: str):
        self.top_warnings.append((self._section, text))
        self.parts.append(f'<p class="warn">&#9888; {html.escape(text)}</p>')

    def cards(self, items: dict):
        if items:
            self.parts.append(_cards_html(items))

    def table(self, rows, title: str | None = None):
        self.parts.append(table_html(rows, title))

    @staticmethod
    def _figure_html(rendered: Iterable[tuple[str, str]]) -> list[str]:
        """HTML of [(caption, PNG data URI)]."""
        return [f'<figure><img alt="{html.escape(caption)}" src="{uri}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, uri in rendered]

    def figures(self, figs: Iterable[tuple[str, Any]]):
        """[(caption, Figure)] into the report (encoded on two processes where possible: render_each); the
        figures are closed."""
        self._figs_block(self._figure_html(render_each(prebuilt(list(figs)), [])))

    def _figs_block(self, out: list, side: str = ""):
        """One row of figures (HTML pieces ``out``), after an optional side block; nothing when both are empty."""
        if side:
            self.parts.append(f'<div class="figs"><div>{side}</div>{"".join(out)}</div>')
        elif out:
            self.parts.append(f'<div class="figs">{"".join(out)}</div>')

    def details(self, summary: str, body_text: str):
        """A collapsed block of preformatted text (e.g. the model's settings)."""
        self.parts.append(f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(body_text)}</pre>"
                          "</details>")

    # -- results -----------------------------------------------------------------------------------
    @with_arviz_numpy
    def add_result(self, heading: str, result, summary: dict | list | None = None, key_numbers_n: int = 6,
                   inference_data: bool = True, var_names: list[str] | None = None):
        """A result section: warnings first, key numbers (the ``key_numbers_n`` most important scalars of a
        dict summary, :func:`key_numbers`) as cards, the summary table (``summary()``, else the plain numbers
        of ``to_dict()``), the result's ``figures()``, and the generic ArviZ part from
        ``to_inference_data()`` (posterior variables ``var_names``, default :func:`select_scalar_variables`)."""
        self.heading(heading)
        for w in collect_warnings(result):
            self.warning(w)
        if summary is None and hasattr(result, "summary"):
            summary = result.summary()
        extra = []  # a Summary (bayescg.summary): its rows as the key-number dict, its tables, its text
        if isinstance(summary, Summary):
            extra, text = summary.tables, str(summary)
            summary = summary.for_report() or ([] if extra else text)
        if summary is None and hasattr(result, "to_dict"):
            try:
                summary = _plain_summary(result.to_dict())
            except Exception:  # noqa: BLE001
                summary = None
        keys, tables = {}, []
        if hasattr(result, "to_dict"):
            try:
                keys, tables = structured_tables(result.to_dict())
            except Exception:  # noqa: BLE001 - fall back to the plain summary
                keys, tables = {}, []
        side = ""  # a dict summary's two-column table goes next to the first figure
        if tables:
            self.cards({k: v for k, v in keys.items() if v is not None})
            for title, rows in tables:
                self.table(rows, title)
            if extra:  # structured tables say it all; the terminal text for those who want it
                self.details("Text summary", text)
            elif isinstance(summary, str) and summary.strip():
                self.details("Text summary", summary)
        elif isinstance(summary, str):
            if summary.strip():
                self.parts.append(f"<pre>{html.escape(summary)}</pre>")
        elif isinstance(summary, dict) and summary:
            self.cards(key_numbers(summary, key_numbers_n))
            side = table_html(summary)
        elif summary:
            self.table(summary)
        if not tables:
            for title, rows in extra:
                self.table(rows, title)
        rendered = []
        fig_warnings = getattr(result, "figure_warnings", None)  # figures drawn one by one: the ones that failed
        fig_warnings = fig_warnings if isinstance(fig_warnings, list) else []
        if hasattr(result, "figures"):
            try:
                with _closing_on_error():
                    if hasattr(result, "figure_builders"):  # drawn one by one, on two processes (render_each)
                        rendered = render_each(result.figure_builders(), fig_warnings)
                    else:
                        rendered = render_each(prebuilt(result.figures()), fig_warnings)
            except Exception as exc:  # noqa: BLE001 - the tables are still worth having
                self.note(f"figures could not be drawn: {exc.__class__.__name__}: {exc}")
                rendered = []
        for w in fig_warnings:
            self.warning(w)
        self._figs_block(self._figure_html(rendered), side)
        if inference_data and hasattr(result, "to_inference_data"):
            try:
                idata = result.to_inference_data()
            except Exception as exc:  # noqa: BLE001 - the rest of the report is still useful
                self.note(f"no posterior diagnostics: {exc.__class__.__name__}: {exc}")
                idata = None
            if idata is not None and var_names is not None:
                var_names = [v for v in var_names if v in getattr(idata, "posterior", {})] or None
            self.add_inference_data(idata, var_names=var_names,
                                    drawn=frozenset(getattr(result, "report_figures_drawn", ())))

    @with_arviz_numpy
    def add_inference_data(self, idata, heading: str | None = None, var_names: list[str] | None = None,
                           drawn: frozenset = frozenset()):
        """Posterior summary, rank/trace plots and posterior-predictive checks of any InferenceData (the
        figures of the groups in ``drawn`` left out: :func:`inference_data_figures`)."""
        if idata is None:
            return
        tables, figs = inference_data_figures(idata, var_names, drawn=drawn)
        if not tables and not figs:
            return
        if heading:
            self.heading(heading)
        for title, rows in tables:
            self.table(rows, title)
        self.figures(figs)

    # -- output ------------------------------------------------------------------------------------
    def html(self) -> str:
        m = self.meta
        versions = m.get("versions", {})
        vtxt = ", ".join(f"{k} {v}" for k, v in versions.items())
        stamp = html.escape(f"created {m.get('created', '')} · command {m.get('command')} · seed {m.get('seed')}"
                            + (f" · run {m['run_id']}" if m.get("run_id") else ""))
        top = ""
        if self.top_warnings:
            items = "".join(f"<li><b>{html.escape(s)}</b>: {html.escape(t)}</li>" if s else
                            f"<li>{html.escape(t)}</li>" for s, t in self.top_warnings)
            top = (f'<div class="warn top"><b>&#9888; {len(self.top_warnings)} warning'
                   f'{"s" if len(self.top_warnings) > 1 else ""}</b><ul>{items}</ul></div>')
        nav = ""
        if len(self.toc) > 1:
            nav = "<nav>" + "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in self.toc) + "</nav>"
        model = ""
        if m.get("model"):
            model = ("<details open><summary>Model settings (as loaded, with defaults)</summary><pre class=\"settings\">"
                     f"{html.escape(settings_text(m['model'], m.get('command')))}</pre></details>")
        sub = f'<p class="sub">{html.escape(self.subtitle)}</p>' if self.subtitle else ""
        return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
                f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
                f"<h1>{html.escape(self.title)}</h1>{sub}{top}{nav}{''.join(self.parts)}{model}"
                f"<p class='meta'>{stamp}<br>{html.escape(vtxt)}</p></body></html>")

    def write(self, path: str | Path) -> Path:
        """Write atomically (temporary file + rename: a reader never sees a half-written report)."""
        return atomic_write_text(path, self.html())
