"""Figure of the noise estimate (:class:`bayescg.noise.NoiseResult`): momentum covariance ellipses."""
from __future__ import annotations

import numpy as np

from ._base import axes_or_new, figure_of


def plot_momentum_covariance(noise, ax=None):
    """2-sd ellipses (first two coordinates) of the momentum covariance of every design run and of the calibrated
    run, with the target I / beta (beta = 1) circle; returns the axes (None when d < 2)."""
    if noise.dim < 2:
        return None
    ax = axes_or_new(ax, (5, 5))
    th = np.linspace(0, 2 * np.pi, 200)
    circ = np.stack([np.cos(th), np.sin(th)])

    def ell(c, **kw):
        c = np.asarray(c)[:2, :2]
        w, v = np.linalg.eigh(c)
        xy = v @ (2 * np.sqrt(np.maximum(w, 0))[:, None] * circ)
        ax.plot(xy[0], xy[1], **kw)

    for i, c in enumerate(noise.design_momentum_covariances):
        ell(c, color="0.6", lw=1, label="design runs (before calibration)" if i == 0 else None)
    if noise.calibrated_momentum_covariance is not None:
        ell(noise.calibrated_momentum_covariance, color="C3", lw=2, label="calibrated (M = I, 2 Gamma = Z)")
    ell(np.eye(2), color="k", ls="--", lw=1, label="target I / beta, beta = 1")
    ax.set_aspect("equal")
    ax.set_xlabel("p_1")
    ax.set_ylabel("p_2")
    ax.legend(fontsize=8)
    ax.set_title("momentum covariance, 2 sd")
    return ax


def noise_figures(noise) -> list:
    ax = plot_momentum_covariance(noise)
    return [] if ax is None else [("Momentum covariance before and after calibration", figure_of(ax))]
