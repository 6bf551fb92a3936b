"""Figures of an effective-potential fit (:class:`bayescg.fit.FitResult`) and of a learn result with the
finite-delta correction: U with its 94 % band against the reference (1D), U as colour with the reference V_0
as contour lines and the band width (2D), and the posterior predictive check of the histogram against q."""
from __future__ import annotations

import numpy as np

from ._base import axes_or_new, figure_of
from .numbers import num


def _names(fit, variables=None):
    return list(variables) if variables else (["q"] if fit.dim == 1 else ["x", "y", "z"])[: fit.dim]


def plot_potential_1d(fit, ax=None):
    """U_mean with its 94 % band and the aligned reference (dashed) on q; returns the axes."""
    ax = axes_or_new(ax, (6, 4))
    x = np.asarray(fit.grid).ravel()
    cov = "" if fit.reference_coverage is None else f" (covers {100 * fit.reference_coverage:.0f}% of the reference)"
    ax.fill_between(x, fit.U_lower, fit.U_upper, color="C0", alpha=0.3, label=f"94% band{cov}")
    ax.plot(x, fit.U_mean, color="C0", label="posterior mean U")
    if fit.reference_grid is not None:
        ax.plot(x, fit.reference_grid, "k--", lw=1, label="reference V_0 (aligned)")
    ax.set_xlabel("q")
    ax.set_ylabel("U(q)")
    ax.legend(fontsize=8)
    return ax


def plot_potential_2d(fit, axes=None, variables=None):
    """Two panels: posterior mean U (colour) with the reference V_0 as contour lines on the same levels, and the
    width of the 94 % band; returns the two axes."""
    axes = axes_or_new(axes, (11, 4.2), 1, 2)
    fig = figure_of(axes)
    g = np.asarray(fit.grid)
    names = _names(fit, variables)
    U = np.asarray(fit.U_mean)
    ref = None if fit.reference_grid is None else np.asarray(fit.reference_grid)
    w = np.asarray(fit.U_upper) - np.asarray(fit.U_lower)
    if g.shape[1] == 3:  # d = 3: the (x, y) slice of grid points through the minimum of U
        zs = g[np.argmin(U), 2]
        on = np.isclose(g[:, 2], zs)
        g, U, w = g[on], U[on], w[on]
        ref = None if ref is None else ref[on]
        fig.suptitle(f"slice at {names[2] if len(names) > 2 else 'the third coordinate'} = {zs:.3g} "
                     "(through the minimum of U)", fontsize=9)
    from matplotlib.ticker import MaxNLocator

    levels = MaxNLocator(12).tick_values(float(U.min()), float(np.quantile(U, 0.9)))  # round numbers
    cs = axes[0].tricontourf(g[:, 0], g[:, 1], np.minimum(U, levels[-1]), levels=levels, cmap="viridis")
    fig.colorbar(cs, ax=axes[0], label="U (clipped at its 90% quantile)")
    title = "posterior mean U (colour)"
    if ref is not None:
        axes[0].tricontour(g[:, 0], g[:, 1], ref, levels=levels, colors="k",
                           linewidths=0.7)
        axes[0].plot([], [], "k-", lw=0.7, label="reference V_0, same levels")
        axes[0].legend(fontsize=7, loc="upper right")
        title += " and reference V_0 (lines)"
    axes[0].set_title(title, fontsize=10)
    s1 = axes[1].tricontourf(g[:, 0], g[:, 1], w, levels=12, cmap="magma")
    fig.colorbar(s1, ax=axes[1], label="band width")
    cov = "" if fit.reference_coverage is None else f"; covers {100 * fit.reference_coverage:.0f}% of V_0"
    axes[1].set_title(f"width of the 94% band{cov}", fontsize=10)
    for a in axes:
        a.set_xlabel(names[0])
        a.set_ylabel(names[1])
    fig.tight_layout()
    return axes


def plot_corrected_potential(fit, raw_fit, correction, axes=None):
    """1D learn with the finite-delta correction: raw U_delta and corrected U_k with their 94 % bands against the
    reference (left), and the same minus the aligned reference (right; the correction itself when there is no
    reference).  ``correction``: :class:`bayescg.bias` result (``correction``, ``iterations``, ``size``)."""
    axs = axes_or_new(axes, (11, 4), 1, 2)
    x = np.asarray(fit.grid).ravel()
    for f, col, lab in ((raw_fit, "C1", "raw U_delta (paper's recipe)"), (fit, "C0", "corrected U_k (headline)")):
        axs[0].fill_between(x, f.U_lower, f.U_upper, color=col, alpha=0.25)
        axs[0].plot(x, f.U_mean, color=col, label=f"{lab}, 94% band")
        if f.reference_grid is not None:
            r = f.reference_grid
            axs[1].fill_between(x, f.U_lower - r, f.U_upper - r, color=col, alpha=0.25)
            cov = "" if f.reference_coverage is None else f", band covers {100 * f.reference_coverage:.0f}%"
            axs[1].plot(x, f.U_mean - r, color=col, label=f"{lab}{cov}")
    if fit.reference_grid is not None:
        axs[0].plot(x, fit.reference_grid, "k--", lw=1, label="reference V_0 (aligned)")
        axs[1].axhline(0.0, color="k", ls="--", lw=1)
        if fit.mass_region is not None and np.any(fit.mass_region):
            xr = x[np.asarray(fit.mass_region, bool)]
            axs[1].axvspan(xr.min(), xr.max(), color="0.9", zorder=0, label="98% mass region (scored)")
        axs[1].set_ylabel("U - reference")
    else:
        axs[1].plot(x, correction.correction, color="C2", label="correction U_k - U_delta")
        axs[1].set_ylabel("correction")
    axs[0].set_ylabel("U(q)")
    for a in axs:
        a.set_xlabel("q")
        a.legend(fontsize=7)
    axs[1].set_title(f"finite-delta correction: {correction.iterations} white-kick run(s), "
                     f"max |dU| = {num(correction.size)}", fontsize=9)
    figure_of(axs).tight_layout()
    return axs


def _ppc_arrays(fit):
    """Observed and replicated counts of the active likelihood cells, the cells' centres (n, d) and total."""
    obs = np.asarray(fit.lik_counts if fit.lik_counts is not None else fit.counts, dtype=float).ravel()
    ex = fit.arviz_extras or {}
    centres = ex.get("cell_centres")
    if fit.ppc_counts is None or centres is None or len(centres) != obs.size:
        return None
    return obs, np.asarray(fit.ppc_counts, dtype=float).reshape(-1, obs.size), np.asarray(centres, dtype=float)


def plot_ppc_density(fit, ax=None, variables=None):
    """Posterior predictive check of the histogram.  1D: observed density against q (points) and the predicted
    density (median line, 94 % band) of replicated histograms of the same size; 2D: each cell's observed count
    as a z-score against its replicated counts, at the cell's centre.  Returns the axes (None: no check)."""
    arr = _ppc_arrays(fit)
    if arr is None:
        return None
    obs, rep, centres = arr
    lo, med, hi = np.quantile(rep, [0.03, 0.5, 0.97], axis=0)
    inside = float(np.mean((obs >= lo) & (obs <= hi)))
    names = _names(fit, variables)
    ax = axes_or_new(ax, (6, 4) if fit.dim == 1 else (6, 4.8))
    if fit.dim == 1:
        q = centres[:, 0]
        order = np.argsort(q)
        q = q[order]
        width = np.gradient(q) if q.size > 1 else np.ones(1)
        norm = obs.sum() * width
        ax.fill_between(q, lo[order] / norm, hi[order] / norm, color="C0", alpha=0.3, step="mid",
                        label="predicted density, 94% band")
        ax.step(q, med[order] / norm, where="mid", color="C0", lw=0.9, label="predicted density, median")
        ax.plot(q, obs[order] / norm, ".", color="k", ms=3, label="observed density (histogram of q)")
        ax.set_xlabel(names[0])
        ax.set_ylabel("density of q")
    else:
        sd = rep.std(axis=0)
        z = (obs - rep.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
        lim = max(3.0, float(np.nanmax(np.abs(z))))
        sc = ax.scatter(centres[:, 0], centres[:, 1], c=z, s=6, cmap="coolwarm", vmin=-lim, vmax=lim, marker="s")
        figure_of(ax).colorbar(sc, ax=ax, label="(observed - predicted mean) / predicted sd")
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
    ax.set_title(f"{100 * inside:.0f}% of {obs.size} cells inside the 94% predictive interval", fontsize=10)
    if fit.dim == 1:
        ax.legend(fontsize=8)
    return ax


def fit_figures(fit, variables=None) -> list:
    """[(caption, Figure)] of a :class:`bayescg.fit.FitResult`: the potential, then the predictive check."""
    if fit.dim == 1:
        figs = [("Effective potential", figure_of(plot_potential_1d(fit)))]
    else:
        figs = [("Effective potential (region with data)", figure_of(plot_potential_2d(fit, variables=variables)))]
    return figs + ppc_figures(fit, variables)


def ppc_figures(fit, variables=None) -> list:
    ax = plot_ppc_density(fit, variables=variables)
    if ax is None:
        return []
    what = ("observed and predicted density against q" if fit.dim == 1 else
            "each cell's observed count against its replicated counts (z-score; |z| > 2 in few cells is expected)")
    return [(f"Posterior predictive check of the histogram: {what}", figure_of(ax))]
