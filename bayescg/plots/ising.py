"""Figures of predictive coarse-graining of the Ising chain (:class:`bayescg.ising.pipeline.IsingResult` and
``IsingSweepResult``): predicted magnetization and correlations by method with 94 % intervals drawn by their
kind (posterior: uncertainty about theta; Monte Carlo: sampling error of a point estimate only), the posterior
predictive check of the data's statistics, Laplace against NUTS, and the same across a sweep (each sampler's
marginals and rank plots: :func:`bayescg.plots.diagnostics.plot_posterior_diagnostics`)."""
from __future__ import annotations

import numpy as np

from ._base import axes_or_new, figure_of
from .numbers import num, sweep_axis_label

#: Interval kinds as legend text, and their line and marker styles (posterior: solid/circle, Monte Carlo: dotted/square).
KIND_TEXT = {"posterior": "94% posterior interval", "monte_carlo": "94% Monte Carlo interval (point estimate)"}
KIND_STYLE = {"posterior": dict(ls="-", marker="o"), "monte_carlo": dict(ls=":", marker="s")}
def plot_magnetization(result, ax=None):
    """Each method's predicted magnetization with its 94 % interval (marker by interval kind) and the exact value."""
    ax = axes_or_new(ax, (6.5, 3.6))
    names = list(result.methods)
    seen = set()
    for i, k in enumerate(names):
        r = result.methods[k]
        mg = r.magnetization
        yerr = [[max(0.0, mg["mean"] - mg["lower"])], [max(0.0, mg["upper"] - mg["mean"])]]
        post = r.interval_kind == "posterior"
        lab = KIND_TEXT.get(r.interval_kind, r.interval_kind) if r.interval_kind not in seen else None
        seen.add(r.interval_kind)
        ax.errorbar([i], [mg["mean"]], yerr=yerr, fmt="o" if post else "s", capsize=4,
                    color="C0" if post else "C1", ls="none", label=lab)
    ax.axhline(result.m_true, color="k", ls="--", label=f"exact (transfer matrix) {num(result.m_true, 4)}")
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set_ylabel("magnetization m")
    ax.set_title("Predicted magnetization (mean and 94% interval of its kind)", fontsize=10)
    ax.legend(fontsize=7)
    figure_of(ax).tight_layout()
    return ax


def plot_correlations(result, ax=None):
    """Predicted correlations R_l by method with their 94 % bands (solid: posterior, dotted: Monte Carlo)."""
    ax = axes_or_new(ax, (6.5, 3.6))
    ax.plot(result.lags, result.R_true, "k--", lw=2, label="exact (transfer matrix)")
    for k, r in result.methods.items():
        c = r.correlation
        line, = ax.plot(result.lags, c["mean"], ls=KIND_STYLE.get(r.interval_kind, {}).get("ls", "-"),
                        label=f"{k}: mean, {KIND_TEXT.get(r.interval_kind, r.interval_kind)} (band)")
        ax.fill_between(result.lags, c["lower"], c["upper"], color=line.get_color(), alpha=0.2)
    ax.set_xlabel("lag l")
    ax.set_ylabel("R_l")
    ax.set_title("Correlations, 94% bands (posterior: solid, Monte Carlo: dotted)", fontsize=10)
    ax.legend(fontsize=7)
    figure_of(ax).tight_layout()
    return ax


def plot_predictive_check(result, axes=None):
    """The data's R_l against 94 % of replicated data sets (left) and the data's m against its replicates (right)."""
    ppc = result.checks["predictive_check"]
    rep, obs = ppc["replicated"], ppc["observed"]
    axes = axes_or_new(axes, (9, 3.4), 1, 2)
    lo, hi = np.quantile(rep["R"], [0.03, 0.97], axis=0)
    axes[0].fill_between(result.lags, lo, hi, color="C0", alpha=0.3, label="94% of replicated data sets")
    axes[0].plot(result.lags, obs["R"], "ko", ms=3, label="data")
    axes[0].set_xlabel("lag l")
    axes[0].set_ylabel("R_l of the data set")
    axes[0].legend(fontsize=7)
    axes[1].hist(rep["m"], bins=30, color="C0", alpha=0.6, label="replicated data sets")
    axes[1].axvline(obs["m"], color="k", label=f"data (p = {num(ppc['p_value']['m'], 2)})")
    axes[1].set_xlabel("m of the data set")
    axes[1].set_ylabel("replicated data sets")
    axes[1].legend(fontsize=7)
    fig = figure_of(axes)
    fig.suptitle(f"Posterior predictive check ({ppc.get('method', '')}): min p = {num(ppc['p_min'], 2)}", fontsize=10)
    fig.tight_layout()
    return axes


def plot_overlay(idatas: list, labels: list, title: str):
    """az.plot_density of several posteriors (e.g. the Laplace Gaussian over NUTS) with 94 % HDIs."""
    import arviz as az

    axes = az.plot_density(idatas, data_labels=labels, hdi_prob=0.94, shade=0.1)
    fig = figure_of(axes)
    n = np.size(axes)
    fig.set_size_inches(min(3.6 * n, 12), 3.4 * int(np.ceil(n / 3)))  # ArviZ's default size dwarfs the text
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return axes


def _xs(values):
    return (np.asarray(values, float) if all(isinstance(v, (int, float)) for v in values)
            else np.arange(len(values)))


def plot_sweep_magnetization(sweep, ax=None):
    """Magnetization against the swept value: exact, and each method's mean with its 94 % interval of its kind."""
    d = sweep.to_dict()
    xs = _xs(sweep.values)
    ax = axes_or_new(ax, (9, 4))
    ax.plot(xs, d["truth"]["magnetization"], "k--", lw=2, label="exact (transfer matrix)")
    for k, m in d["methods"].items():
        mg, kind = m["magnetization"], m.get("interval_kind", "posterior")
        st = KIND_STYLE.get(kind, KIND_STYLE["posterior"])
        line, = ax.plot(xs, mg["mean"], ls=st["ls"], marker=st["marker"], ms=3, label=f"{k}: mean")
        ax.fill_between(xs, mg["lower"], mg["upper"], color=line.get_color(), alpha=0.2,
                        label=f"{k}: {KIND_TEXT.get(kind, kind)}")
    ax.set_xlabel(sweep_axis_label(sweep.key, sweep.label))
    ax.set_ylabel("magnetization m")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # outside: the curves fill the panel
    ax.set_title("Magnetization, 94% intervals (posterior: solid, Monte Carlo: dotted)", fontsize=10)
    figure_of(ax).tight_layout()
    return ax


def plot_sweep_parameters(sweep, axes=None):
    """theta_c and theta_cf of each method against the swept value."""
    d = sweep.to_dict()
    xs = _xs(sweep.values)
    axes = axes_or_new(axes, (9, 3.5), 1, 2)
    for k, m in d["methods"].items():
        tc = m["theta_c"]
        for name in (tc[0] or {}):
            axes[0].plot(xs, [t[name] for t in tc], "o-", ms=3, label=f"{k}: {name}")
        if m["theta_cf"][0] is not None:
            axes[1].plot(xs, m["theta_cf"], "o-", ms=3, label=k)
    axes[0].set_title("theta_c (coarse model parameters)")
    axes[1].set_title("theta_cf (coarse-to-fine map)")
    for a in axes:
        a.set_xlabel(sweep_axis_label(sweep.key, sweep.label))
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7, loc="best")
    figure_of(axes).tight_layout()
    return axes
