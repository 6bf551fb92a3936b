"""Figures of the scale scan (:class:`bayescg.scales.ScalesResult`): effect sizes with their intervals against
their tolerance bands, against a log delta axis; verdicts as marker styles, the found scale and its bracket
marked in every panel."""
from __future__ import annotations

import math

import numpy as np

from ._base import axes_or_new, figure_of
from .numbers import num

VERDICT_STYLE = {"accepted": dict(color="tab:green", marker="o", mfc="tab:green"),
                 "rejected": dict(color="tab:red", marker="s", mfc="white"),
                 "undetermined": dict(color="0.35", marker="D", mfc="white")}


def _ok(x) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def delta_axis(ax, label: str = "delta", deltas=None):
    """A log delta axis with plain-number ticks (0.1, 0.2, 0.3, 0.5, ...) thinned with the number of decades
    it spans so that labels never overlap."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    lo, hi = ax.get_xlim()
    if deltas is not None and len(deltas):
        lo, hi = min(deltas) / 1.15, max(deltas) * 1.15
        ax.set_xlim(lo, hi)
    decades = math.log10(hi / lo) if lo > 0 and hi > lo else 1.0
    ds = sorted(set(deltas or []))
    if 0 < len(ds) <= 6 and all(b / a > 1.25 for a, b in zip(ds, ds[1:])):  # few deltas: tick each one
        from matplotlib.ticker import FixedFormatter, FixedLocator

        ax.xaxis.set_major_locator(FixedLocator(ds))
        ax.xaxis.set_major_formatter(FixedFormatter([num(d, 4) for d in ds]))
        ax.xaxis.set_minor_locator(FixedLocator([]))
    else:
        subs = (1.0, 2.0, 3.0, 5.0) if decades <= 1.3 else (1.0, 2.0, 5.0) if decades <= 2.3 else (1.0,)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(label)


def effect_panel(a, rows, get, t, label, shift=0.0, legend=False, filled=None, **extra):
    """Draw get(row) -> (value, se) of the rows on axes ``a`` against delta: markers by verdict
    (:data:`VERDICT_STYLE`; ``filled`` True/False fills all or none), +- z se bars, the tolerance band +-t (None:
    no band); ``shift`` offsets delta by a factor 1 + shift, ``extra`` overrides the marker style.  Values beyond
    6 t are named in a note instead of squashing the band (walkers cooling give kurtosis in the hundreds)."""
    pts = [(r, *get(r)) for r in rows]
    pts = [(r, v, se) for r, v, se in pts if _ok(v) and _ok(se)]
    for verdict, st in VERDICT_STYLE.items():
        if filled is not None:
            st = {**st, "mfc": st["color"] if filled else "white"}
        sel = [(r["delta"] * (1 + shift), v, (r.get("z") or 2.0) * se) for r, v, se in pts if r["verdict"] == verdict]
        if sel:
            x, y, e = map(np.array, zip(*sel))
            a.errorbar(x, y, yerr=e, ls="none", capsize=3, ms=5, **{**st, **extra}, label=verdict if legend else None)
    if t is not None:
        a.axhspan(-t, t, color="tab:green", alpha=0.12, lw=0, label=f"tolerance ±{num(t)}" if legend else None)
        a.axhline(0, color="0.6", lw=0.8)
        off = [(r["delta"], v) for r, v, se in pts if abs(v) > 6 * t]
        lim = max([4 * t] + [abs(v) + (r.get("z") or 2.0) * se for r, v, se in pts if abs(v) <= 6 * t])
        a.set_ylim(-min(lim, 6 * t), min(lim, 6 * t))
        if off:
            off.sort(key=lambda o: -abs(o[1]))
            more = f" and {len(off) - 3} more" if len(off) > 3 else ""
            a.text(0.02, 0.02, "off scale: " + ", ".join(f"δ {num(d)}: {num(v)}" for d, v in off[:3]) + more,
                   transform=a.transAxes, fontsize=7, color="tab:red", va="bottom", clip_on=True)
    delta_axis(a, deltas=[r["delta"] for r in rows])
    a.set_ylabel(label)


def _mark_scale(axes, estimate):
    """The found scale: a dotted vertical line at eps and the bracket (eps, next rejected delta) shaded."""
    eps = (estimate or {}).get("epsilon")
    if eps is None:
        return
    b = estimate.get("bracket") or [eps, None]
    for a in axes:
        a.axvline(eps, color="tab:green", ls=":", lw=1.2)
        if b[1] is not None:
            a.axvspan(eps, b[1], color="tab:green", alpha=0.06, lw=0)


def plot_scale_scan(result, axes=None):
    """Four panels against delta: excess kurtosis and skewness of p, the unresolved gradient power G2 (log) and
    its local log-slope, each with Bonferroni intervals and its tolerance band; returns the four axes."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    tol = result.tolerance
    axes = axes_or_new(axes, (11, 8), 2, 2)
    ax = list(np.ravel(axes))
    fig = figure_of(ax)
    rows = sorted(result.rows, key=lambda r: r["delta"])
    dim = max((len(r.get("excess_kurtosis") or []) for r in rows), default=0)

    def panel(a, get, t, label, shift=0.0, **extra):
        effect_panel(a, rows, get, t, label, shift=shift, **extra)

    for i in range(dim):
        sh = 0.03 * (i - (dim - 1) / 2)
        panel(ax[0], lambda r: ((r.get("excess_kurtosis") or [None] * dim)[i], (r.get("excess_kurtosis_se") or [None] * dim)[i]),
              tol.kurtosis if i == 0 else None, "excess kurtosis of p", sh)
        panel(ax[1], lambda r: ((r.get("skewness") or [None] * dim)[i], (r.get("skewness_se") or [None] * dim)[i]),
              tol.skewness if i == 0 else None, "skewness of p", sh)
    mardia = any(r.get("mardia_kurtosis_effect") is not None for r in rows)
    if mardia:
        panel(ax[0], lambda r: (r.get("mardia_kurtosis_effect"), r.get("mardia_kurtosis_effect_se")), None,
              "excess kurtosis of p_i; Mardia (triangles)", 0.06, marker="^")
    panel(ax[2], lambda r: (r.get("noise_power"), r.get("noise_power_se")), None, "G2 = 2 gamma / (delta beta_hat)")
    if any(_ok(r.get("noise_power")) and r["noise_power"] > 0 for r in rows):
        from matplotlib.ticker import FuncFormatter

        ax[2].set_yscale("log")  # G2 of cooling or trapped rows falls by orders of magnitude
        ax[2].yaxis.set_major_formatter(FuncFormatter(lambda v, _: num(v)))
    panel(ax[3], lambda r: (r.get("noise_power_slope"), r.get("noise_power_slope_se")), tol.slope,
          "d log G2 / d log delta")
    if not any(_ok(r.get("noise_power_slope")) for r in rows):
        ax[3].text(0.5, 0.5, "no plateau slope: it needs a neighbouring delta\n(within a factor 1.5) accepted on its shape",
                   transform=ax[3].transAxes, ha="center", va="center", fontsize=8, color="0.35")
    for a, t in zip(ax, ("excess kurtosis: interval vs tolerance", "skewness: interval vs tolerance",
                         "unresolved gradient power G2 (flat on a plateau)",
                         "beta_hat plateau: local log-slope of G2 vs tolerance")):
        a.set_title(t, fontsize=10)
    est = result.estimate or {}
    _mark_scale(ax, est)
    # one legend for every panel: what the markers, bands and lines mean
    present = {r["verdict"] for r in rows}
    handles = [Line2D([], [], ls="none", ms=6, markeredgecolor=st["color"], markerfacecolor=st["mfc"],
                      marker=st["marker"], label=f"{v} delta (interval: Bonferroni 95%)")
               for v, st in VERDICT_STYLE.items() if v in present]
    handles.append(Patch(color="tab:green", alpha=0.15, label="tolerance band (effect must lie inside)"))
    if est.get("epsilon") is not None:
        handles.append(Line2D([], [], color="tab:green", ls=":", label=f"scale found: eps ~ delta = {num(est['epsilon'])}"))
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), fontsize=8, frameon=False)
    if est.get("epsilon") is not None:
        b = est["bracket"]
        hi = num(b[1]) if b and b[1] is not None else "above the grid"
        fig.suptitle(f"scale found: eps ~ delta = {num(est['epsilon'])} (verdict flips between {num(b[0])} and {hi})",
                     fontsize=11)
    else:
        fig.suptitle(f"no scale found: {est.get('method', '')}", fontsize=11)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return ax


def scale_figures(result) -> list:
    """[(caption, Figure)] of a scale scan."""
    if not result.rows:
        return []
    ax = plot_scale_scan(result)
    return [("Scale scan: effect sizes with Bonferroni 95 % intervals against their tolerance bands (filled green "
             "circles: accepted = every interval inside its band; open red squares: rejected = one wholly outside, "
             "or most walkers trapped; grey diamonds: undetermined). Dotted line: the scale found; shaded: its "
             "bracket up to the next rejected delta", figure_of(ax))]
