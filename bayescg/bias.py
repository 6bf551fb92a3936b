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

Position-wise correction for any U (:func:`fixed_point_correction`).  The learned U_raw = L_delta[V] is what
the recipe (histogram + beta_hat, one spline basis) learns from the map run on V.  Modelling the unresolved
scales as a white kick xi ~ N(0, delta Z) (the map ``damped_white`` of bayescg.simulate), the map run on a
smooth candidate U_c learns L_delta[U_c]; the estimate of U_k is the U_c with L_delta[U_c] = L_delta[V], found
by the fixed point (like iterative Boltzmann inversion)

    U_c <- U_c + s (L_delta[V] - L_delta[U_c]),      U_c^0 = s L_delta[V],                (B4)

in spline coefficients (all curves share the knots of the fit), with the (B2) factor s as a preconditioner
(the inverse Jacobian of U -> L_delta[U] on quadratics, where (B4) is exact in one step).  The white-kick run
reproduces the V-run's kinetic temperature: on the linear map (B1) the discrete Lyapunov equation gives

    var(p) = 2 delta Z / ((1 - E) (2 (1 + E) - delta^2 kappa)),                         (B3)

which sets Z from the measured var(p) and kappa = s kappa_raw; after every white run Z is rescaled by the
ratio of target to measured var(p) (exact for the linear map, where var(p) is proportional to Z).
All white runs use the same seed (common random numbers), so the iteration is deterministic and stops when
the update is below the Monte Carlo error of L_delta[U_c].
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


def kick_noise_for(var_p, kappa, delta, gamma) -> float:
    """Z of (B3): the white-kick variance per unit step that gives the linear map (curvature kappa) var(p)."""
    delta, gamma = _check(delta, gamma)
    E = math.exp(-gamma * delta)
    den = 2.0 * (1.0 + E) - delta * delta * float(kappa)
    if not (var_p > 0 and math.isfinite(var_p)) or den <= 0:
        raise InputError(f"no white-kick noise for var(p) = {var_p}, curvature {kappa} at delta = {delta}")
    return float(var_p) * (1.0 - E) * den / (2.0 * delta)


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


# --------------------------------------------------------------------------------------------------
# position-wise correction (B3)-(B4)
# --------------------------------------------------------------------------------------------------
Z94 = 1.8807936081512509  # standard-normal quantile of 0.97: half-width of a 94 % interval in sd


@dataclass
class FixedPointCorrection:
    """Result of (B4) on a 1D learned U.

    grid (G,): the points of the learned U; correction (G,): U_c - L_delta[V] (count-weighted mean 0, so it
    moves the shape, not the arbitrary constant); correction_se (G,): its Monte Carlo standard error (from the
    last white-kick run's Laplace band, mapped through the Jacobian s); coef_shift (m,): the same correction in
    spline coefficients; size: max |correction| over the mass region; history: one row per white run.
    """

    grid: np.ndarray
    correction: np.ndarray
    correction_se: np.ndarray
    coef_shift: np.ndarray
    factor: float
    Z: float
    iterations: int
    converged: bool
    size: float
    history: list
    seconds: float
    method: str = "fixed point (B4) on the damped map with white kick noise (bayescg.bias)"

    def to_dict(self) -> dict:
        return {"method": self.method, "iterations": self.iterations, "converged": self.converged,
                "size": self.size, "jacobian_factor": self.factor, "kick_noise": self.Z,
                "history": list(self.history), "seconds": self.seconds,
                "correction_se_max": float(np.max(self.correction_se)) if self.correction_se.size else None}


def _aligned(u, w):
    return u - float(w @ u)


def _held(dc, inside):
    """dc with the entries outside ``inside`` (bool) set to the nearest inside entry (constant continuation)."""
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return np.zeros_like(dc)
    out = dc.copy()
    out[:idx[0]] = dc[idx[0]]
    out[idx[-1] + 1:] = dc[idx[-1]]
    return out


def _continued(coef, inside, grev, kappa_max):
    """coef with the entries outside ``inside`` replaced by a constant-curvature continuation of the inside ones
    (curvature at each end from its last three inside coefficients, clipped to [0, kappa_max]).

    Where the run had no data the fitted spline is the prior's and can be steep enough to make the map unstable
    (delta^2 U'' > 2 (1 + E)), which heats the white-kick walkers that stray there."""
    idx = np.flatnonzero(inside)
    out = np.asarray(coef, dtype=float).copy()
    if idx.size < 3:
        return out
    for step, ends in ((1, idx[-3:]), (-1, idx[:3][::-1])):
        a, b, c = ends  # c is the outermost inside coefficient
        s1 = (out[b] - out[a]) / (grev[b] - grev[a])
        s2 = (out[c] - out[b]) / (grev[c] - grev[b])
        k = float(np.clip(2 * (s2 - s1) / (grev[c] - grev[a]), 0.0, kappa_max))
        j = c + step
        while 0 <= j < out.size:
            prev, pp = j - step, j - 2 * step
            slope = (out[prev] - out[pp]) / (grev[prev] - grev[pp])
            out[j] = out[prev] + (slope + 0.5 * k * (grev[j] - grev[pp])) * (grev[j] - grev[prev])
            j += step
    return out


def fixed_point_correction(knots, coef_target, learn, *, grid, weights, region, var_p, delta, gamma,
                           max_iter: int = 6, min_iter: int = 1) -> FixedPointCorrection:
    """Iterate (B4) from the learned U_raw = L_delta[V] (spline ``coef_target`` (m,) on ``knots``, 1D).

    learn(coef (m,), Z) -> FitResult: runs the white-kick map on the spline U_c with coefficients ``coef`` and
    kick variance Z and fits it with the same recipe and knots (its ``coef_mean``, ``beta['beta_hat']`` and
    band are used).  grid (G,), weights (G,) >= 0 (count weights of the grid points, for the alignment),
    region (G,) bool (mass region, where convergence and size are measured); var_p: the V-run's var(p).
    Stops after the first iteration >= ``min_iter`` whose update (RMS over the region, aligned) is below the
    RMS Monte Carlo error of L_delta[U_c]; the last update is applied.
    """
    import time

    from .splines import SplineRep

    t0 = time.perf_counter()
    x = np.asarray(grid, dtype=float).reshape(-1)
    w = np.asarray(weights, dtype=float).reshape(-1)
    w = w / w.sum()
    reg = np.asarray(region, dtype=bool).reshape(-1)
    if not reg.any():
        reg = np.ones_like(reg)
    ct = np.asarray(coef_target, dtype=float).reshape(-1)
    ev = lambda c: SplineRep(knots, c).value(x)  # noqa: E731
    T = ev(ct)
    try:
        corr = learned_U_correction(x, T, 1.0 / var_p, delta, gamma)
        s, kappa = corr.factor, corr.kappa
    except InputError:  # non-convex on average: no linear preconditioner, plain (B4)
        s, kappa = 1.0, 0.0
    Z = kick_noise_for(var_p, kappa, delta, gamma)
    # coefficients whose Greville abscissa is off the grid are not seen by the data: U_c is continued there with
    # constant, stable curvature (_continued) and the update is held at its nearest inside value (_held)
    t = np.asarray(knots[0], dtype=float)
    grev = np.array([t[j + 1:j + 4].mean() for j in range(ct.size)])
    inside = (grev >= x.min()) & (grev <= x.max())
    kappa_max = (1.0 + math.exp(-gamma * delta)) / delta ** 2  # half the map's stability limit
    coef = _continued(s * ct, inside, grev, kappa_max)
    history, converged, se = [], False, np.zeros_like(x)
    it, alpha = 0, 1.0
    for it in range(1, int(max_iter) + 1):
        fit = learn(coef, Z)
        F = ev(np.asarray(fit.coef_mean, dtype=float))
        upd = _aligned(T - F, w)
        gx = np.asarray(fit.grid, dtype=float).reshape(-1)
        se = np.interp(x, gx, (np.asarray(fit.U_upper) - np.asarray(fit.U_lower)) / (2 * Z94))
        rms_upd = float(np.sqrt(np.mean(upd[reg] ** 2)))
        rms_se = float(np.sqrt(np.mean(se[reg] ** 2)))
        vp = 1.0 / float(fit.beta["beta_hat"])
        history.append({"iteration": it, "kick_noise": Z, "var_p": vp, "update_rms": rms_upd, "mc_error_rms": rms_se,
                        "update_max": float(np.max(np.abs(upd[reg])))})
        if history[:-1] and rms_upd > history[-2]["update_rms"]:
            alpha *= 0.5  # the update grew: damp it
        coef = _continued(coef + alpha * _held(s * (ct - np.asarray(fit.coef_mean, dtype=float)), inside),
                          inside, grev, kappa_max)
        # (B3) rescaling, at most x2 per run: var(p) of a non-linear map is not proportional to Z
        Z_used, Z = Z, Z * float(np.clip(var_p / vp, 0.5, 2.0))
        if it >= min_iter and rms_upd <= rms_se:
            converged = True
            break
    shift = _aligned(ev(coef) - T, w)
    return FixedPointCorrection(grid=x, correction=shift, correction_se=s * se, coef_shift=coef - ct, factor=s, Z=Z_used,
                                iterations=it, converged=converged, size=float(np.max(np.abs(shift[reg]))),
                                history=history, seconds=time.perf_counter() - t0)


def damped_white_learner(sim, sim_kw: dict, *, knots, steps: int, seed: int, control=None):
    """learn(coef, Z) for :func:`fixed_point_correction`: the V-run's settings (``sim_kw``, keyword arguments of
    :func:`bayescg.simulate.simulate`; its histogram grid ``sim.hist_edges``) with integrator "damped_white",
    ``steps`` steps, kick variance Z, on the spline U_c; fitted by MAP + Laplace with the same knots."""
    from .fit import fit_effective_potential
    from .simulate import simulate
    from .splines import clamped_knots, spline_potential

    e = np.asarray(sim.hist_edges[0], dtype=float)
    kw = dict(sim_kw, steps=int(steps), seed=int(seed), bins=e.size - 1, hist_range=[(float(e[0]), float(e[-1]))],
              integrator="damped_white")
    t = [clamped_knots(e[0], e[-1], int(knots))]

    def learn(coef, Z):
        ws = simulate(spline_potential(t, coef), sim.delta, kick_noise=float(Z), control=control, **kw)
        return fit_effective_potential(ws, knots=knots, method="map", seed=seed, draws=400)
    return learn


def corrected_fit(raw, fp: FixedPointCorrection, reference=None, rng_seed: int = 1):
    """The learned U_k: ``raw`` (FitResult, 1D) + the fixed-point correction, with its band.

    Band (94 %): the raw posterior band mapped through the linearised inverse of U -> L_delta[U] (the raw
    draws' deviations from their mean scaled by the Jacobian factor s, exact for quadratics), combined in
    quadrature at each point with Z94 x the correction's Monte Carlo standard error.  So it is a Bayesian
    posterior interval for the raw learned potential plus a frequentist Monte Carlo error of the correction
    (approximately Gaussian, pointwise); it does not hold the modelling error of treating the unresolved
    scales as white noise.  The stored draws carry the Monte Carlo error as one standard-normal multiple of
    correction_se per draw (a smooth, fully correlated perturbation), so their pointwise quantiles match the
    band approximately.
    """
    import dataclasses

    from .fit import score_reference
    from .splines import SplineRep

    s, C, se = fp.factor, fp.correction, fp.correction_se
    mean = raw.U_mean + C
    draws = None
    if raw.U_draws is not None:
        dev = s * (np.asarray(raw.U_draws) - raw.U_mean)
        z = np.random.default_rng(rng_seed).standard_normal(dev.shape[0])
        draws = mean + dev + z[:, None] * se
        lo_d, hi_d = np.quantile(mean + dev, [0.03, 0.97], axis=0)
    else:
        lo_d, hi_d = mean - s * (raw.U_mean - raw.U_lower), mean + s * (raw.U_upper - raw.U_mean)
    lo = mean - np.sqrt((mean - lo_d) ** 2 + (Z94 * se) ** 2)
    hi = mean + np.sqrt((hi_d - mean) ** 2 + (Z94 * se) ** 2)
    m0 = float(mean.min())
    coef = np.asarray(raw.coef_mean, dtype=float) + fp.coef_shift
    x = raw.grid.reshape(-1)
    coef = coef + float(np.mean(mean - m0 - SplineRep(raw.knots, coef).value(x)))
    out = dataclasses.replace(
        raw, U_mean=mean - m0, U_lower=lo - m0, U_upper=hi - m0, coef_mean=coef,
        U_draws=None if draws is None else draws - m0, reference_rmse=None, reference_coverage=None,
        reference_grid=None,
        band=(f"{raw.band}, corrected for finite delta: raw deviations x {s:.4f} (Jacobian of the correction) "
              "and the correction's Monte Carlo error added in quadrature (bayescg.bias.corrected_fit)"))
    if reference is not None and raw.cell_points is not None:
        score_reference(out, reference, SplineRep(raw.knots, coef).value(raw.cell_points[:, 0]))
    return out
