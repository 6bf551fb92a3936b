"""Generic ArviZ figures of any InferenceData (used by :func:`bayescg.report.inference_data_figures`): rank or
trace plots of sampler draws, marginal posteriors with HDIs of approximation draws, and posterior predictive
checks (az.plot_ppc with labelled axes; observed values against the predictive interval)."""
from __future__ import annotations

import math

import numpy as np

from ._base import axes_or_new, figure_of
from .numbers import interval_decimals

HDI_PROB = 0.94


def summary_round_to(idata, names, hdi_prob: float) -> int:
    """Significant digits (ArviZ's ``round_to``) for az.plot_posterior's labels: enough that the ends of every HDI
    of ``names`` print apart (1.48 and 1.52, not 1.5 and 1.5)."""
    import arviz as az

    sig = 2
    hdi = az.hdi(idata, var_names=names, hdi_prob=hdi_prob)
    for v in hdi.data_vars:
        for lo, hi in np.asarray(hdi[v].values, dtype=float).reshape(-1, 2):
            big = max(abs(lo), abs(hi))
            if np.isfinite(big) and big > 0:
                sig = max(sig, interval_decimals(lo, hi) + int(np.floor(np.log10(big))) + 1)
    return int(min(sig, 6))


def sampler_caption(nchain: int) -> str:
    """What :func:`plot_posterior_diagnostics` shows for sampler draws of ``nchain`` chains (rank plots need two)."""
    what = ("rank plots: each chain's ranks should be uniform (flat bars)" if nchain >= 2 else
            "trace (one chain: rank plots and R-hat need two or more)")
    return f"marginal posteriors and {what}"


def plot_posterior_diagnostics(idata, names, sampler: bool, hdi_prob: float = HDI_PROB, title: str | None = None):
    """(caption, Figure): rank plots (>= 2 chains) or trace plots of sampler draws; az.plot_posterior with HDIs
    (labels with as many decimals as the narrowest interval needs) for draws of an approximation; ``title``
    over the figure."""
    import arviz as az

    nchain = int(idata.posterior.sizes.get("chain", 1))
    nrows = sum(max(1, int(np.prod([idata.posterior[v].sizes[d] for d in idata.posterior[v].dims
                                    if d not in ("chain", "draw")]))) for v in names)
    if sampler:
        kind = "rank_bars" if nchain >= 2 else "trace"
        axes = az.plot_trace(idata, var_names=names, kind=kind, compact=True,
                             figsize=(11, 1.9 * len(names) + 0.4))
        fig = figure_of(axes)
        _title_and_layout(fig, title)
        return f"Sampler diagnostics: {sampler_caption(nchain)}", fig
    ncol = min(3, nrows)
    axes = az.plot_posterior(idata, var_names=names, hdi_prob=hdi_prob, textsize=9,
                             round_to=summary_round_to(idata, names, hdi_prob),
                             figsize=(3.6 * ncol, 2.6 * math.ceil(min(nrows, 12) / ncol)))
    fig = figure_of(axes)
    _title_and_layout(fig, title)
    return f"Marginal posteriors with {int(100 * hdi_prob)}% HDI", fig


def _title_and_layout(fig, title):
    if title:
        fig.suptitle(title)
    fig.tight_layout()


def plot_ppc_kde(idata, var: str, ax=None):
    """az.plot_ppc of ``var`` (distribution of the observed values against replicated ones) with labelled axes."""
    import arviz as az

    ax = axes_or_new(ax, (5.4, 3.3))
    az.plot_ppc(idata, var_names=[var], num_pp_samples=min(50, int(idata.posterior_predictive.sizes.get("draw", 50))),
                textsize=9, random_seed=0, ax=ax)
    ax.set_xlabel(f"value of {var}")
    ax.set_ylabel("density over the values")
    return ax


def plot_ppc_intervals(obs, pp, ax=None, x=None, xlabel: str | None = None, name: str = "y"):
    """Observed values (points) against the 94 % predictive interval and median of ``pp`` (draws, n), at
    positions ``x`` (default: the index); returns the axes."""
    obs = np.asarray(obs, dtype=float).ravel()
    pp = np.asarray(pp, dtype=float).reshape(-1, obs.size)
    lo, med, hi = np.quantile(pp, [0.03, 0.5, 0.97], axis=0)
    inside = float(np.mean((obs >= lo) & (obs <= hi)))
    xs = np.arange(obs.size) if x is None else np.asarray(x, dtype=float)
    order = np.argsort(xs)
    ax = axes_or_new(ax, (5.4, 3.3))
    ax.fill_between(xs[order], lo[order], hi[order], step="mid", color="C0", alpha=0.3, label="94% predictive interval")
    ax.step(xs[order], med[order], where="mid", color="C0", lw=0.8, label="predictive median")
    ax.plot(xs[order], obs[order], ".", color="k", ms=3, label="observed")
    ax.set_xlabel(xlabel or f"index of {name}")
    ax.set_ylabel(name)
    ax.set_title(f"{100 * inside:.0f}% of observed values inside the 94% predictive interval", fontsize=10)
    ax.legend(fontsize=8)
    figure_of(ax).tight_layout()
    return ax
