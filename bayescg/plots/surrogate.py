"""Figures of the surrogate comparison (:class:`bayescg.surrogate.SurrogateResult`, d = 1, and
:class:`bayescg.surrogate.SurrogateResultND`, d = 2, 3): phase portraits, equilibrium densities, mean paths,
normalized ACFs and the effective potential used.  Every shaded area is named in a legend."""
from __future__ import annotations

import numpy as np

from ._base import axes_or_new, figure_of
from .numbers import num

BAND = "surrogate: 94% band over U_k posterior draws"


def labels(result) -> dict:
    """Legend texts shared by the 1D and 2D figures: surrogate, full model, compare, band, coordinate names."""
    st = result.settings
    d = int(st.get("dimension", 1))
    return {"surrogate": f"surrogate U_k, delta = {num(st['delta'])}", "full": f"full V, h = {num(st['reference_step'])}",
            "compare": f"compare: {result.compare['expression']}" if result.compare else None, "band": BAND,
            "names": st.get("variables") or (["q"] if d == 1 else [f"q{i + 1}" for i in range(d)])}


# --- d = 1 ------------------------------------------------------------------------------------
def plot_phase_portrait(result, ax=None):
    c, L = result.curves, labels(result)
    ax = axes_or_new(ax, (6, 5))
    for i, (orb_s, orb_f) in enumerate(zip(c["phase_surrogate"], c["phase_full"])):
        ax.plot(orb_f[:, 0], orb_f[:, 1], color="k", lw=0.6, label=L["full"] if i == 0 else None)
        ax.plot(orb_s[:, 0], orb_s[:, 1], "--", color="C1", lw=1.2, label=L["surrogate"] if i == 0 else None)
    for i, orb in enumerate(c.get("phase_compare", [])):
        ax.plot(orb[:, 0], orb[:, 1], ":", color="C2", lw=1.0, label=L["compare"] if i == 0 else None)
    ax.set_xlabel("q")
    ax.set_ylabel("p")
    ax.set_title(f"Hamiltonian (4.1): phase portrait, error {num(result.hamiltonian['phase_portrait_error'])}")
    ax.legend(fontsize=8)
    return ax


def plot_equilibrium_density(result, ax=None):
    c, L = result.curves, labels(result)
    ax = axes_or_new(ax, (6, 4))
    e = np.asarray(c["density_edges"])
    mid = 0.5 * (e[1:] + e[:-1])
    if "density_band" in c:
        ax.fill_between(mid, c["density_band"][0], c["density_band"][1], color="C1", alpha=0.25, step="mid",
                        label=L["band"])
    ax.step(mid, c["density_full"], where="mid", color="k", lw=1, label=L["full"])
    ax.step(mid, c["density_surrogate"], where="mid", color="C1", lw=1, label=L["surrogate"])
    if "density_compare" in c:
        ax.step(mid, c["density_compare"], where="mid", color="C2", lw=1, ls=":", label=L["compare"])
    ax.set_xlabel("q")
    ax.set_ylabel("density")
    ax.set_title(f"Equilibrium law, W1 = {num(result.langevin['equilibrium_w1'])}")
    ax.legend(fontsize=8)
    return ax


def plot_path(result, which: str = "mean", ax=None):
    """Mean path (4.3) (``which="mean"``) or normalized ACF (4.4) (``"acf"``): full model, surrogate with its band
    over U_k draws, compare."""
    c, L = result.curves, labels(result)
    x = "t" if which == "mean" else "lags"
    ax = axes_or_new(ax, (6, 4))
    if f"{which}_band" in c:
        ax.fill_between(c[f"{x}_surrogate"], c[f"{which}_band"][0], c[f"{which}_band"][1], color="C1", alpha=0.25,
                        label=L["band"])
    ax.plot(c[f"{x}_full"], c[f"{which}_full"], color="k", lw=1, label=L["full"])
    ax.plot(c[f"{x}_surrogate"], c[f"{which}_surrogate"], "--", color="C1", lw=1.2, label=L["surrogate"])
    if f"{which}_compare" in c:
        ax.plot(c[f"{x}_full"], c[f"{which}_compare"], ":", color="C2", lw=1.2, label=L["compare"])
    if which == "mean":
        ax.set_xlabel("t")
        ax.set_ylabel("mean q (4.3)")
        ax.set_title(f"Mean path, max error {num(result.langevin['mean_path_max_error'])}")
    else:
        ax.axhline(0, color="0.6", lw=0.5)
        ax.set_xlabel("lag tau")
        ax.set_ylabel("normalized ACF (4.4)")
        ax.set_title(f"Normalized ACF, RMS error {num(result.langevin['acf_l2_error'])}")
    ax.legend(fontsize=8)
    return ax


def plot_surrogate_potential(result, ax=None):
    """U_k as used by the surrogate (learned grid values, continuation outside, posterior draws)."""
    c = result.curves
    ax = axes_or_new(ax, (6, 4))
    xs = c["U_x"]
    if "U_draws" in c:
        for j, u in enumerate(c["U_draws"]):
            ax.plot(xs, u, color="C1", lw=0.5, alpha=0.5, label="posterior draws of U_k" if j == 0 else None)
    ax.plot(xs, c["U_used"], color="C1", lw=1.5, label="U_k used (with continuation)")
    ax.plot(c["U_grid"], c["U_grid_values"], "k.", ms=2, label="learned grid values")
    ax.axvspan(c["U_grid"][0], c["U_grid"][-1], color="0.9", zorder=0, label="learned grid (continued outside)")
    ax.set_xlabel("q")
    ax.set_ylabel("U_k(q)")
    ax.set_ylim(-0.5, max(5.0, float(np.nanmax(c["U_grid_values"])) * 1.1))
    ax.legend(fontsize=8)
    return ax


def surrogate_figures(result) -> list:
    """[(caption, Figure)] of a d = 1 surrogate comparison."""
    if not result.curves:
        return []
    return [("Phase portrait (Hamiltonian)", figure_of(plot_phase_portrait(result))),
            ("Equilibrium density (Langevin)", figure_of(plot_equilibrium_density(result))),
            ("Mean path (Langevin)", figure_of(plot_path(result, "mean"))),
            ("Normalized ACF (Langevin)", figure_of(plot_path(result, "acf"))),
            ("Effective potential used by the surrogate", figure_of(plot_surrogate_potential(result)))]


# --- d = 2, 3 ----------------------------------------------------------------------------------
def _box(ax, c):
    lo, hi = c["box"]
    ax.plot([lo[0], hi[0], hi[0], lo[0], lo[0]], [lo[1], lo[1], hi[1], hi[1], lo[1]], color="C3", lw=1,
            label="data box (U_k continued outside)")


def plot_equilibrium_2d(result, axes=None):
    """Joint late-time samples (full and surrogate; d = 3: their (q_1, q_2) projection) and each coordinate's
    marginal density."""
    c, L = result.curves, labels(result)
    d, names, lg = result.settings["dimension"], L["names"], result.langevin
    axs = axes_or_new(axes, (5 * (d + 1), 4.2), 1, d + 1)
    ax = axs[0]
    for key, col, lbl in (("eq_full", "k", L["full"]), ("eq_surrogate", "C1", L["surrogate"])):
        x = c[key]  # scatter (not contours): separated wells stay visible
        ax.plot(x[:, 0], x[:, 1], ".", color=col, ms=1.5, alpha=0.4, label=f"{lbl}: late-time samples")
    _box(ax, c)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    proj = f" ({names[0]}, {names[1]}) projection," if d > 2 else ""
    ax.set_title(f"Equilibrium law,{proj} sliced W1 = {num(lg['equilibrium_w1'])}")
    ax.legend(fontsize=7, loc="best", markerscale=4)
    for i in range(d):
        ax = axs[i + 1]
        e = np.asarray(c["density_edges"][i])
        mid = 0.5 * (e[1:] + e[:-1])
        if "density_band" in c:
            ax.fill_between(mid, c["density_band"][0][i], c["density_band"][1][i], color="C1", alpha=0.25,
                            step="mid", label=L["band"])
        ax.step(mid, c["density_full"][i], where="mid", color="k", lw=1, label=L["full"])
        ax.step(mid, c["density_surrogate"][i], where="mid", color="C1", lw=1, label=L["surrogate"])
        ax.set_xlabel(names[i])
        ax.set_ylabel("marginal density")
        ax.set_title(f"{names[i]}: W1 = {num(lg['equilibrium_w1_per_coordinate'][i])}")
        ax.legend(fontsize=7)
    figure_of(axs).tight_layout()
    return axs


def plot_paths_2d(result, which: str = "mean", axes=None):
    """Mean path (4.3) or normalized ACF (4.4) of every coordinate (one panel each)."""
    c, L = result.curves, labels(result)
    d, names, lg = result.settings["dimension"], L["names"], result.langevin
    xkey = "t" if which == "mean" else "lags"
    ylabel = "mean path (4.3)" if which == "mean" else "normalized ACF (4.4)"
    err = "mean_path_max_error_per_coordinate" if which == "mean" else "acf_l2_error_per_coordinate"
    axs = axes_or_new(axes, (5.5 * d, 4), 1, d)
    for i in range(d):
        ax = axs[i]
        xs_s = np.asarray(c[f"{xkey}_surrogate"])
        if f"{which}_band" in c:
            n = len(c[f"{which}_band"][0])
            ax.fill_between(xs_s[:n], np.asarray(c[f"{which}_band"][0])[:, i], np.asarray(c[f"{which}_band"][1])[:, i],
                            color="C1", alpha=0.25, label=L["band"])
        ax.plot(c[f"{xkey}_full"], np.asarray(c[f"{which}_full"])[:, i], color="k", lw=1, label=L["full"])
        ax.plot(xs_s, np.asarray(c[f"{which}_surrogate"])[:, i], "--", color="C1", lw=1.2, label=L["surrogate"])
        if which == "acf":
            ax.axhline(0, color="0.6", lw=0.5)
        ax.set_xlabel("t" if which == "mean" else "lag tau")
        ax.set_ylabel(f"{ylabel}, {names[i]}")
        ax.set_title(f"{names[i]}: {'max' if which == 'mean' else 'RMS'} error {num(lg[err][i])}")
        ax.legend(fontsize=7)
    figure_of(axs).tight_layout()
    return axs


def plot_phase_portraits_2d(result, axes=None):
    """(q_i, p_i) orbits of the full model and the surrogate, one panel per coordinate."""
    c, L = result.curves, labels(result)
    d, names, hm = result.settings["dimension"], L["names"], result.hamiltonian
    axs = axes_or_new(axes, (5.5 * d, 4.5), 1, d)
    K = c["phase_q_full"].shape[1]
    for i in range(d):
        ax = axs[i]
        for k in range(K):
            ax.plot(c["phase_q_full"][:, k, i], c["phase_p_full"][:, k, i], color="k", lw=0.5,
                    label=L["full"] if k == 0 else None)
            ax.plot(c["phase_q_surrogate"][:, k, i], c["phase_p_surrogate"][:, k, i], "--", color="C1", lw=0.9,
                    label=L["surrogate"] if k == 0 else None)
        ax.set_xlabel(names[i])
        ax.set_ylabel(f"p_{names[i]}")
        ax.set_title(f"({names[i]}, p_{names[i]}): error {num(hm['phase_portrait_error_per_coordinate'][i])}")
        ax.legend(fontsize=7)
    fig = figure_of(axs)
    fig.suptitle(f"Hamiltonian (4.1) phase portraits, joint error {num(hm['phase_portrait_error'])}")
    fig.tight_layout()
    return axs


def plot_surrogate_potential_2d(result, ax=None):
    """U_k used by the surrogate (colour, clipped at its 60 % quantile), the learned grid points, the data box; d = 3:
    the (q_1, q_2) slice through the data point of lowest U_k, grid points projected."""
    c, L = result.curves, labels(result)
    names = L["names"]
    ax = axes_or_new(ax, (6.5, 5))
    ax_x, ax_y = c["U_axes"]
    Uu = np.asarray(c["U_used"])
    top = float(np.quantile(Uu, 0.6))
    cs = ax.contourf(ax_x, ax_y, np.minimum(Uu, top).T, levels=20, cmap="viridis")
    figure_of(ax).colorbar(cs, ax=ax, label=f"U_k used (clipped at {num(top)})")
    ax.plot(c["U_grid"][:, 0], c["U_grid"][:, 1], "w.", ms=1.5, label="learned grid points (data region)")
    _box(ax, c)
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    at = np.asarray(c.get("U_slice_at", []), dtype=float)
    where = ", ".join(f"{n} = {num(v)}" for n, v in zip(names[2:], at))
    ax.set_title("Effective potential used by the surrogate" + (f" (slice {where})" if where else ""))
    ax.legend(fontsize=7, loc="upper right", markerscale=4, facecolor="0.85")
    return ax


def surrogate_figures_2d(result) -> list:
    """[(caption, Figure)] of a d = 2 or 3 surrogate comparison."""
    if not result.curves:
        return []
    return [("Equilibrium law (Langevin): joint and per coordinate", figure_of(plot_equilibrium_2d(result))),
            ("Mean path (Langevin) per coordinate", figure_of(plot_paths_2d(result, "mean"))),
            ("Normalized ACF (Langevin) per coordinate", figure_of(plot_paths_2d(result, "acf"))),
            ("Phase portraits (Hamiltonian) per coordinate", figure_of(plot_phase_portraits_2d(result))),
            ("Effective potential used by the surrogate", figure_of(plot_surrogate_potential_2d(result)))]
