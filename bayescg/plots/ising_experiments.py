"""Figures of the PCG slides' experiments (:mod:`bayescg.ising.experiments`): each takes the experiment's results
(the ``res`` dict of rows) and returns a Figure."""
from __future__ import annotations

import numpy as np

from ._base import pyplot


def plot_mu_sweep(res):
    plt = pyplot()

    rows = res["mu"]
    mu = [r[0] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    ax = axes[0]
    ax.plot(mu, [r[1]["truth"]["magnetization"] for r in rows], "k--", lw=2, label="exact")
    for k, style in (("laplace", "o-"), ("exact_em", "s:"), ("relent", "^-")):
        if k not in rows[0][1]["methods"]:
            continue
        mg = [r[1]["methods"][k]["magnetization"] for r in rows]
        line, = ax.plot(mu, [m["mean"] for m in mg], style, ms=3, label=k)
        ax.fill_between(mu, [m["lower"] for m in mg], [m["upper"] for m in mg], color=line.get_color(), alpha=0.25)
    ax.set_xlabel("μ")
    ax.set_ylabel("magnetization")
    ax.legend(fontsize=8)
    ax.set_title("m against μ (n_f=32, L_f=L_c=1, l_c=2)")
    for j, (key, title) in enumerate((("theta_c", "theta_c (pair1)"), ("theta_cf", "theta_cf"))):
        ax = axes[j + 1]
        for k in ("laplace", "exact_em", "relent"):
            if k not in rows[0][1]["methods"] or (key == "theta_cf" and k == "relent"):
                continue
            v = [r[1]["methods"][k][key] for r in rows]
            v = [d["pair1"] for d in v] if key == "theta_c" else v
            ax.plot(mu, v, "o-", ms=3, label=k)
            if k == "laplace":
                sd = [r[1]["methods"][k][key + "_sd"] for r in rows]
                sd = [d["pair1"] for d in sd] if key == "theta_c" else sd
                ax.fill_between(mu, np.array(v) - 1.88 * np.array(sd), np.array(v) + 1.88 * np.array(sd), alpha=0.2)
        ax.set_xlabel("μ")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_data_size(res):
    plt = pyplot()

    rows = res["data"]
    sizes = sorted({r[0] for r in rows})
    methods = [k for k in ("laplace", "exact_em", "nuts", "em", "relent") if k in rows[0][2]["methods"]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for k in methods:
        em_ = [np.mean([r[2]["methods"][k]["err_mag"] for r in rows if r[0] == s and r[1] != 0.0]) for s in sizes]
        ec = [np.mean([r[2]["methods"][k]["err_corr"] for r in rows if r[0] == s]) for s in sizes]
        axes[0].plot(sizes, em_, "o-", label=k)
        axes[1].plot(sizes, ec, "o-", label=k)
    for ax, t in zip(axes[:2], ("mean err_mag (mu != 0)", "mean err_corr")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("S_f")
        ax.set_title(t)
        ax.legend(fontsize=8)
    ax = axes[2]
    r0 = [r for r in rows if r[1] == 0.0]
    lags = r0[0][2]["truth"]["lags"]
    ax.plot(lags, r0[0][2]["truth"]["correlation"], "k--", lw=2, label="exact")
    for r in r0:
        k = "laplace" if "laplace" in r[2]["methods"] else methods[0]
        c = r[2]["methods"][k]["correlation"]
        line, = ax.plot(lags, c["mean"], label=f"S_f={r[0]}")
        ax.fill_between(lags, c["lower"], c["upper"], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("l")
    ax.set_title("R_l at μ = 0 (Laplace PCG)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_levels(res):
    plt = pyplot()

    rows = res["levels"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    r0 = [r for r in rows if r[1] == 0.0]
    lags = r0[0][2]["truth"]["lags"]
    axes[0].plot(lags, r0[0][2]["truth"]["correlation"], "k--", lw=2, label="exact")
    for r in r0:
        c = r[2]["methods"]["laplace"]["correlation"]
        line, = axes[0].plot(lags, c["mean"], label=f"l_c={r[0]}")
        axes[0].fill_between(lags, c["lower"], c["upper"], color=line.get_color(), alpha=0.15)
    axes[0].set_title("R_l at μ = 0 by level (Laplace PCG)")
    axes[0].set_xlabel("l")
    axes[0].legend(fontsize=8)
    r6 = [r for r in rows if r[1] == 0.3]
    lv = [r[0] for r in r6]
    mg = [r[2]["methods"]["laplace"]["magnetization"] for r in r6]
    axes[1].errorbar(lv, [m["mean"] for m in mg], yerr=[[m["mean"] - m["lower"] for m in mg],
                                                         [m["upper"] - m["mean"] for m in mg]], fmt="o", capsize=4,
                     label="laplace")
    axes[1].plot(lv, [m["mean"] for m in [r[2]["methods"]["relent"]["magnetization"] for r in r6]], "^", label="relent")
    axes[1].axhline(r6[0][2]["truth"]["magnetization"], color="k", ls="--", label="exact")
    axes[1].set_xscale("log", base=2)
    axes[1].set_xlabel("l_c")
    axes[1].set_title("magnetization at μ = 0.3")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_model_compare(res):
    import arviz as az

    ax = az.plot_compare(res["_compare_df"], insample_dev=False)
    fig = np.ravel(ax)[0].figure
    fig.set_size_inches(7, 3.5)
    fig.tight_layout()
    return fig
