"""PyMC model of the effective noise covariance Z = Sigma Sigma^T from the design equations of Theorem 3.1.

Each design run k (inverse mass A_k, scalar friction gamma) measures m_k = E[p^T A_k^2 p] with standard
error s_k.  The corrected relation (Ito's formula for H = p^T A p / 2 + U, see :mod:`bayescg.noise`)

    Tr(Z A_k) = 2 gamma m_k

gives the likelihood y_k = 2 gamma m_k ~ Normal(Tr(Z A_k), 2 gamma s_k).  Z has an LKJ prior (eta = 2)
on its correlation matrix and half-normal priors on its standard deviations, so every draw is SPD.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError


def _checked(design_As, moments, moment_ses, gamma, sd_scale):
    """(As (K, d, d), y, sy, sd_scale) of the design equations, checked."""
    As = np.asarray(design_As, dtype=float)
    m = np.asarray(moments, dtype=float).ravel()
    s = np.asarray(moment_ses, dtype=float).ravel()
    if As.ndim != 3 or As.shape[1] != As.shape[2] or len(m) != As.shape[0] or len(s) != len(m):
        raise InputError("noise_model needs K square (d, d) designs and K moments and standard errors")
    if gamma <= 0 or np.any(s <= 0) or not np.all(np.isfinite(m)):
        raise InputError("noise_model needs gamma > 0, finite moments and positive standard errors")
    y = 2.0 * gamma * m
    sy = 2.0 * gamma * s
    if sd_scale is None:
        sd_scale = 5.0 * float(np.sqrt(np.max(np.abs(y) / np.trace(As, axis1=1, axis2=2))))
    return As, y, sy, float(sd_scale)


def noise_density(design_As, moments, moment_ses, gamma: float, *, eta: float = 2.0, sd_scale: float | None = None,
                  z_init=None):
    """The posterior of :func:`noise_model` as a :class:`bayescg.sampling.CompiledDensity` over PyMC's
    unconstrained point (packed Cholesky factor, log diagonal; d = 1: log z), the cached numba kernel
    :mod:`bayescg.kernels.noise`: nothing compiled per run.  Stores ``Z`` (d, d) per draw.  z_init: the centre of
    the chains' starting points (e.g. the least-squares Z, SPD); default diag(y_k / tr A_k) averaged."""
    from ..kernels import noise as k
    from ..sampling import CompiledDensity

    As, y, sy, sd_scale = _checked(design_As, moments, moment_ses, gamma, sd_scale)
    d, K = As.shape[1], As.shape[0]
    buf = np.concatenate([[0.0, d, K, eta, sd_scale], y, sy, As.ravel()])
    buf[0] = len(buf)
    buf = np.ascontiguousarray(buf)
    if z_init is None:
        z_init = np.eye(d) * float(np.mean(y / np.trace(As, axis1=1, axis2=2)))
    Lc = np.linalg.cholesky(np.asarray(z_init, dtype=float))
    centre = np.array([math.log(Lc[i, j]) if i == j else Lc[i, j] for i in range(d) for j in range(i + 1)])
    n = len(centre)

    def initial_point(seed):
        # as PyMC/nutpie jitter the initial point: uniform(-1, 1) on the log diagonal, relative on the off-diagonal
        rng = np.random.default_rng(seed)
        return centre + rng.uniform(-0.5, 0.5, n) * np.where(np.abs(centre) > 0, np.maximum(np.abs(centre), 0.1), 1)

    return CompiledDensity(k.noise_logp_cfunc, k.noise_expand_cfunc, buf, {"Z": (d, d)}, initial_point, n,
                           dims={"Z": ["Z_row", "Z_col"]}, coords={"Z_row": np.arange(d), "Z_col": np.arange(d)})


def noise_model(design_As, moments, moment_ses, gamma: float, *, eta: float = 2.0, sd_scale: float | None = None):
    """pm.Model with ``chol`` (LKJCholeskyCov), deterministic ``Z`` (d, d) and observed ``design``.

    design_As: list of K (d, d) SPD inverse mass matrices; moments, moment_ses: (K,) estimates of
    E[p^T A_k^2 p] and their standard errors; gamma: scalar friction of the design runs.
    sd_scale: scale of the HalfNormal prior on sqrt(Z_ii); default 5 x the largest sqrt of
    2 gamma m_k / Tr(A_k) (a weakly informative, data-scaled prior).
    """
    import pymc as pm
    import pytensor.tensor as pt

    As, y, sy, sd_scale = _checked(design_As, moments, moment_ses, gamma, sd_scale)
    d = As.shape[1]
    with pm.Model() as model:
        if d == 1:
            z = pm.HalfNormal("z", sigma=sd_scale ** 2)
            Z = pm.Deterministic("Z", z.reshape((1, 1)))
        else:
            chol, _, _ = pm.LKJCholeskyCov("chol", n=d, eta=eta, sd_dist=pm.HalfNormal.dist(sigma=sd_scale, size=d),
                                           compute_corr=True)
            Z = pm.Deterministic("Z", chol @ chol.T)
        traces = pt.stack([pt.sum(Z * A) for A in As])  # Tr(Z A) = sum_ij Z_ij A_ij for symmetric A
        pm.Normal("design", mu=traces, sigma=sy, observed=y)
    return model
