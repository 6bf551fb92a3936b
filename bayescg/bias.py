"""Finite-delta bias of the learned U_k and its correction from the exact law of the linear damped map.

The paper learns U_k from the damped map (3.2) as U = -log rho(q) / beta_hat with beta_hat = 1 / var(p)
(3.5).  On a harmonic U = kappa q^2 / 2 with the unresolved scales acting as white noise xi_n in the
kick, (3.2) with M = I is the linear map

    q' = q + (delta/2) p,   p_{n+1} = E p - delta kappa q' + xi_n,   q_{n+1} = q' + (delta/2) p_{n+1},

E = exp(-gamma delta).  Its stationary covariance (discrete Lyapunov equation, solved symbolically) has
cov(q, p) = 0 and

    var(p) / var(q) = 4 kappa / (2 (1 + E) - delta^2 kappa) =: kappa_raw,            (B1)

whatever the noise amplitude.  kappa_raw is exactly the curvature the paper's recipe learns
(-log rho / beta_hat with rho = N(0, var q)), so it exceeds kappa by the factor 2 / (1 + E - delta^2
kappa / 2): on Test 1 (4.5) at delta = 0.5, gamma = 0.1 that is 1.095, against 1.092 measured from
learning runs (results/effective/RESULTS.md).  Two parts: the friction (1 + E) / 2 = 1 - gamma delta / 2
+ ... and the position-Verlet shadow energy delta^2 kappa / 4.

Inverting (B1) gives the correction used here:

    kappa = kappa_raw (1 + E) / (2 + delta^2 kappa_raw / 2),   U_corrected = s U_raw,
    s = (1 + E) / (2 + delta^2 kappa_raw / 2).                                          (B2)

For a non-quadratic U_k, kappa_raw is the learned U's mean curvature under the sampled law,
E_rho[U_raw''] (for a quadratic U_raw it is its curvature): a first-order, global rescaling, exact for
quadratic U, M = I and scalar gamma; d = 1 only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import InputError


def _check(delta, gamma):
    delta, gamma = float(delta), float(gamma)
    if not (delta > 0 and math.isfinite(delta)) or not (gamma > 0 and math.isfinite(gamma)):
        raise InputError(f"delta and gamma must be positive and finite, got delta = {delta}, gamma = {gamma}")
    return delta, gamma


def learned_curvature_of(kappa, delta, gamma):
    """kappa_raw (B1): the curvature the paper's recipe learns on U = kappa q^2 / 2 (M = I).

    Valid while the map is stable, 0 < delta^2 kappa < 2 (1 + E); raises InputError otherwise.
    """
    delta, gamma = _check(delta, gamma)
    E = math.exp(-gamma * delta)
    den = 2.0 * (1.0 + E) - delta * delta * float(kappa)
    if not (kappa > 0 and den > 0):
        raise InputError(f"the damped map with curvature {kappa} is unstable at delta = {delta} "
                         f"(needs 0 < delta^2 kappa < 2 (1 + exp(-gamma delta)))")
    return 4.0 * float(kappa) / den


def correction_factor(kappa_raw, delta, gamma):
    """s of (B2): multiply the learned U_raw by s to remove the finite-delta bias."""
    delta, gamma = _check(delta, gamma)
    if not (kappa_raw > 0 and math.isfinite(kappa_raw)):
        raise InputError(f"the learned mean curvature must be positive, got {kappa_raw} "
                         "(no finite-delta correction for a non-convex average)")
    E = math.exp(-gamma * delta)
    return (1.0 + E) / (2.0 + 0.5 * delta * delta * float(kappa_raw))


@dataclass(frozen=True)
class DeltaCorrection:
    """(B2) applied to a learned 1D U: kappa_raw = E_rho[U_raw''], kappa = s kappa_raw."""

    delta: float
    gamma: float
    kappa_raw: float
    kappa: float
    factor: float
    method: str = "linear damped map (bayescg.bias, B1-B2)"

    def to_dict(self) -> dict:
        return asdict(self)


def mean_curvature(grid, U, weights) -> float:
    """E_w[U''] of a 1D curve U on ``grid`` (G,) by central differences, weights (G,) >= 0."""
    x = np.asarray(grid, dtype=float).reshape(-1)
    u = np.asarray(U, dtype=float).reshape(-1)
    w = np.asarray(weights, dtype=float).reshape(-1)
    if x.size < 3 or u.shape != x.shape or w.shape != x.shape:
        raise InputError("mean_curvature needs grid, U and weights of the same length >= 3")
    hl, hr = np.diff(x)[:-1], np.diff(x)[1:]
    if np.any(hl <= 0) or np.any(hr <= 0):
        raise InputError("mean_curvature needs an increasing grid")
    # three-point second difference on a non-uniform grid (exact for quadratics), interior points
    d2 = 2.0 * (hl * u[2:] - (hl + hr) * u[1:-1] + hr * u[:-2]) / (hl * hr * (hl + hr))
    ww = w[1:-1]
    if ww.sum() <= 0:
        raise InputError("mean_curvature: no weight inside the grid")
    return float(np.sum(ww * d2) / ww.sum())


def delta_correction(grid, U, weights, delta, gamma) -> DeltaCorrection:
    """The (B2) correction of a learned 1D U_raw on ``grid`` with sampled-law weights ``weights``."""
    k_raw = mean_curvature(grid, U, weights)
    s = correction_factor(k_raw, delta, gamma)
    return DeltaCorrection(float(delta), float(gamma), k_raw, s * k_raw, s)


def learned_U_correction(grid, U, beta, delta, gamma) -> DeltaCorrection:
    """(B2) for a learned 1D U (G,) on ``grid`` (G,) whose sampled law is exp(-beta U) (beta = beta_hat)."""
    u = np.asarray(U, dtype=float).reshape(-1)
    u = u - np.min(u)
    return delta_correction(grid, u, np.exp(-float(beta) * u), delta, gamma)
