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
(the inverse Jacobian of U -> L_delta[U] on quadratics, where (B4) is exact in one step); in 1D the step's
curvature is preconditioned locally instead, by the inverse derivative of (B1) at U_c''(q) (the walls of a
quartic, where delta^2 U'' approaches the stability limit, respond 2-3x more strongly than the wells), and a
safeguard returns to the best iterate with half the step whenever the residual grows.  The white-kick run
reproduces the V-run's kinetic temperature: on the linear map (B1) the discrete Lyapunov equation gives

    var(p) = 2 delta Z / ((1 - E) (2 (1 + E) - delta^2 kappa)),                         (B3)

which sets Z from the measured var(p) and kappa = s kappa_raw; after every white run Z is rescaled by the
ratio of target to measured var(p) (exact for the linear map, where var(p) is proportional to Z).
All white runs use the same seed (common random numbers), so the iteration is deterministic and stops when
the update is below the Monte Carlo error of L_delta[U_c].

Mass and d >= 2.  In 1D, A = M^-1 = a reduces to M = I by p' = sqrt(a) p (delta' = delta sqrt(a), friction
gamma sqrt(a), E unchanged, temperature 1 / beta_hat = a var(p)).  For d = 2 (and non-diagonal A, Gamma) the
linear-map law is solved numerically (:func:`linear_map_covariance`, discrete Lyapunov): the learned curvature
matrix Cov_q^-1 Tr(A Cov_p) / d, its inverse by Newton's method, a scalar Jacobian factor Tr(A K) / Tr(A K_raw)
and Z = z shape at the run's temperature.  In d >= 2 the learned U depends on Z's shape, not only its size
(:func:`learned_hessian_of`), so the shape is the V-run's measured kick covariance when V is known
(pipeline.correct_finite_delta), else the symmetrised friction (the fluctuation-dissipation shape of a
calibrated run, Gamma = Z / 2).  The white fits' Monte Carlo error is read on the learned U's points from their
spline draws (:func:`band_sd_at`): the sparse 2D fit reports on its own data region.

What the white model leaves out (measured, benchmarks/calibration/FDELTA.md): the micro-scale kicks of Test 1
are white (lag-1 autocorrelation 0.000 +- 0.002 about the corrected U) but not Gaussian (excess kurtosis -0.75);
white runs driven by the recorded kicks resampled i.i.d. learn the V-run's curvature 1.0917, Gaussian ones
1.094-1.095.  :func:`white_noise_check` measures the whiteness on every corrected run that knows V.  The double
well's kicks at delta 0.3 are coloured (autocorrelation 0.025 at lag 2): white kicks of any shape learn its walls
~0.015 too low, so the kick-shape step (:func:`apply_kick_shape`) gives the recorded kicks the measured lag-1..3
autocorrelation by a moving average (:func:`ma_taps`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from numba import njit

from .errors import InputError, SimulationError
from .kernels.rng import next_u64, normal_pair
from .kernels.state import LANES


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
# the linear map in d dimensions with mass: (B1)-(B3) by a numerical discrete Lyapunov solution
# --------------------------------------------------------------------------------------------------
def linear_map_covariance(K, A, E, delta, Z):
    """Stationary (Cov q, Cov p) (d, d) of the white-kick map (3.2) on U = q^T K q / 2:

        q' = q + (delta/2) A p,  p_{n+1} = E p - delta K q' + xi,  q_{n+1} = q' + (delta/2) A p_{n+1},

    xi ~ N(0, delta Z); K, A = M^-1, E = expm(-Gamma A delta), Z: (d, d).  InputError if the map is unstable."""
    from scipy.linalg import solve_discrete_lyapunov

    K, A, E, Z = (np.atleast_2d(np.asarray(m, dtype=float)) for m in (K, A, E, Z))
    d, h = K.shape[0], 0.5 * float(delta)
    I = np.eye(d)
    # p_{n+1} = P_q q + P_p p + xi with P_q = -delta K, P_p = E - delta h K A; q_{n+1} = q + h A p + h A p_{n+1}
    Pq, Pp = -delta * K, E - delta * h * K @ A
    T = np.block([[I + h * A @ Pq, h * A + h * A @ Pp], [Pq, Pp]])
    if np.max(np.abs(np.linalg.eigvals(T))) >= 1.0:
        raise InputError(f"the damped map is unstable at delta = {delta} for the curvature matrix {K.tolist()}")
    B = np.vstack([h * A, I])
    C = solve_discrete_lyapunov(T, delta * B @ Z @ B.T)
    C = 0.5 * (C + C.T)
    return C[:d, :d], C[d:, d:]


def learned_hessian_of(K, A, E, delta, Z=None):
    """The curvature matrix the recipe learns on U = q^T K q / 2 (any d, M): Cov_q^-1 Tr(A Cov_p) / d, the
    d-dimensional (B1); temperature 1 / beta_hat = Tr(A Cov p) / d.

    Z (d, d): the kick noise's covariance (default I).  The law is linear in Z, so only its shape matters, but
    in d >= 2 it does matter: unless Z has the fluctuation-dissipation shape Z = 2 Gamma / beta (any A), even
    as delta -> 0 the stationary law is not Gibbs (e.g. diagonal K, Gamma: the axes run at temperatures
    Z_ii / (2 Gamma_ii)), and at finite delta the O(delta) bias depends on the shape too.  E.g. K = diag(1, 3),
    A = I, Gamma = diag(0.2, 1), delta 0.05 learns diag(1.027, 3.019) with Z = 2 Gamma but diag(0.61, 8.93) with
    Z = I (this function; a direct simulation checks it in tests/test_bias_fixed_point.py)."""
    K = np.atleast_2d(np.asarray(K, dtype=float))
    Z = np.eye(K.shape[0]) if Z is None else np.atleast_2d(np.asarray(Z, dtype=float))
    Cq, Cp = linear_map_covariance(K, A, E, delta, Z)
    return np.linalg.inv(Cq) * np.trace(np.atleast_2d(A) @ Cp) / K.shape[0]


def hessian_for_learned(K_raw, A, E, delta, iters: int = 60, Z=None):
    """The symmetric curvature matrix K whose learned curvature (:func:`learned_hessian_of` with kick covariance
    Z, default I) is K_raw: the d-dimensional inverse (B2).  Newton's method on the d (d + 1) / 2 entries
    (finite-difference Jacobian, step halved while the map is unstable or the residual grows), from K_raw; at
    most ``iters`` steps.  A non-equilibrium Z shape makes learned(K) far from K, so a plain fixed point
    K <- K + (K_raw - learned(K)) can diverge there.  InputError when no K is found."""
    K_raw = np.atleast_2d(np.asarray(K_raw, dtype=float))
    K_raw = 0.5 * (K_raw + K_raw.T)
    d = K_raw.shape[0]
    iu = np.triu_indices(d)
    tol = 1e-11 * float(np.max(np.abs(K_raw)))

    def mat(v):
        K = np.zeros((d, d))
        K[iu] = v
        return K + np.triu(K, 1).T

    def res(v):
        return (learned_hessian_of(mat(v), A, E, delta, Z) - K_raw)[iu]

    v = K_raw[iu].copy()
    r = res(v)
    for _ in range(int(iters)):
        if np.max(np.abs(r)) <= tol:
            break
        h = 1e-7 * max(1.0, float(np.max(np.abs(v))))
        J = np.column_stack([(res(v + h * e) - r) / h for e in np.eye(v.size)])
        dv = np.linalg.solve(J, -r)
        t = 1.0
        while True:
            try:
                r_new = res(v + t * dv)
                if np.max(np.abs(r_new)) < np.max(np.abs(r)):
                    break
            except InputError:  # the step left the map's stability region
                pass
            t *= 0.5
            if t < 1e-4:
                raise InputError(f"no curvature matrix learns {K_raw.tolist()} at delta = {delta}")
        v, r = v + t * dv, r_new
    if np.max(np.abs(r)) > 1e3 * tol:
        raise InputError(f"no curvature matrix learns {K_raw.tolist()} at delta = {delta} (residual "
                         f"{np.max(np.abs(r)):.2g})")
    return mat(v)


def kick_noise_matrix(temperature, K, A, E, delta, shape):
    """Z = z ``shape`` (d, d) with z such that the linear map on curvature K has Tr(A Cov p) / d =
    ``temperature`` (the d-dimensional (B3); Cov p is linear in Z)."""
    K = np.atleast_2d(np.asarray(K, dtype=float))
    shape = np.atleast_2d(np.asarray(shape, dtype=float))
    _, Cp = linear_map_covariance(K, A, E, delta, shape)
    t1 = float(np.trace(np.atleast_2d(A) @ Cp)) / K.shape[0]
    if not (temperature > 0 and t1 > 0):
        raise InputError(f"no white-kick noise for temperature {temperature}")
    return shape * (float(temperature) / t1)


def mean_hessian(points, U, weights):
    """The curvature matrix (d, d) of the weighted least-squares quadratic c + b.q + q^T K q / 2 through U at
    ``points`` (G, d) with ``weights`` (G,) >= 0: the mean curvature of U under the weights (exact for
    quadratics).  InputError when the points do not determine a quadratic."""
    X = np.asarray(points, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    u = np.asarray(U, dtype=float).reshape(-1)
    w = np.sqrt(np.clip(np.asarray(weights, dtype=float).reshape(-1), 0, None))
    d = X.shape[1]
    pairs = [(i, j) for i in range(d) for j in range(i, d)]
    D = np.column_stack([np.ones(len(u)), X] + [X[:, i] * X[:, j] * (0.5 if i == j else 1.0) for i, j in pairs])
    if (w > 0).sum() < D.shape[1]:
        raise InputError("mean_hessian: too few weighted points for a quadratic fit")
    c = np.linalg.lstsq(D * w[:, None], u * w, rcond=None)[0]
    K = np.zeros((d, d))
    for k, (i, j) in enumerate(pairs):
        K[i, j] = K[j, i] = c[1 + d + k]
    return K


# --------------------------------------------------------------------------------------------------
# position-wise correction (B3)-(B4)
# --------------------------------------------------------------------------------------------------
Z94 = 1.8807936081512509  # standard-normal quantile of 0.97: half-width of a 94 % interval in sd


@dataclass
class FixedPointCorrection:
    """Result of (B4) on a 1D learned U.

    grid (G,): the points of the learned U; correction (G,): U_c - L_delta[V] (count-weighted mean 0, so it
    moves the shape, not the arbitrary constant); correction_se (G,): its Monte Carlo standard error (1D, converged:
    the last white-kick fit's posterior draws propagated through the final (B4) step; otherwise that fit's Laplace
    band mapped through the Jacobian s); coef_shift (m,): the same correction in
    spline coefficients; size: max |correction| over the mass region; history: one row per white run; seconds: the
    fixed point's wall time; seconds_total: the whole correction's (fixed point, white-noise check, kick-shape step),
    set by pipeline.correct_finite_delta, which also puts each step's own ``seconds`` in its dict.
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
    # converged, or stopped at max_iter with the returned iterate's residual inside the 95 % range of its Monte Carlo
    # law (history's mc_rms_q95): then nothing says it is off the fixed point
    residual_consistent: bool = True
    white_noise_check: dict | None = None  # residual_kick_correlation of U_raw and of U_c (white_noise_check())
    kick_shape: dict | None = None  # apply_kick_shape's summary (1D, when V is known)
    # correction_significance(): RMS of the correction against RMS of its Monte Carlo se over the mass region; below
    # the threshold the correction is not applied (applied False: U is U_raw, the band keeps the correction's se)
    significance: dict | None = None
    applied: bool = True
    seconds_total: float | None = None

    def to_dict(self) -> dict:
        return {"method": self.method, "iterations": self.iterations, "converged": self.converged,
                "residual_consistent": self.residual_consistent,
                "white_noise_check": self.white_noise_check, "kick_shape": self.kick_shape,
                "size": self.size, "jacobian_factor": self.factor, "kick_noise": np.asarray(self.Z).tolist(),
                "history": list(self.history), "seconds": self.seconds, "seconds_total": self.seconds_total,
                "correction_se_max": float(np.max(self.correction_se)) if self.correction_se.size else None,
                "significance": self.significance, "applied": self.applied}


def correction_significance(fp: FixedPointCorrection, region, min_ratio: float) -> dict:
    """Is the correction larger than its own Monte Carlo error?  ratio = RMS of the correction / RMS of its se over
    the mass ``region`` (G,) bool.  A correction that is pure Monte Carlo noise with the stated se has E[ratio^2] = 1
    whatever the number of independent modes k in it, and ratio^2 ~ chi^2_k / k; P(ratio > 2) <= P(chi^2_1 > 4)
    = 0.046, so ``min_ratio`` 2 applies such a correction about 5 % of the time at most.  Measured: the 1D studies'
    corrections stand 7-50x above their se (benchmarks/calibration/RESULTS.md); (4.8) at 2e6 steps 0.1-1.0x, where
    applying it made the per-seed RMSE against V_0 worse on most seeds."""
    reg = np.asarray(region, bool) if region is not None and np.any(region) else np.ones(len(fp.correction), bool)
    rc = float(np.sqrt(np.mean(np.asarray(fp.correction)[reg] ** 2)))
    rs = float(np.sqrt(np.mean(np.asarray(fp.correction_se)[reg] ** 2)))
    ratio = rc / rs if rs > 0 else math.inf
    return {"rms_correction": rc, "rms_se": rs, "ratio": ratio, "min_ratio": float(min_ratio),
            "significant": bool(ratio >= min_ratio)}


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


def stable_continuation_1d(coef, inside, grev, kappa_max):
    """coef with the entries outside ``inside`` replaced by a constant-curvature continuation of the inside ones
    (curvature at each end from its last three inside coefficients, clipped to [0, kappa_max]; where U_c falls
    outwards at an end, at least the median curvature of the inside coefficients and enough to turn uphill before the
    last coefficient, so that the continuation confines).

    Where the run had no data the fitted spline is the prior's and can be steep enough to make the map unstable
    (delta^2 U'' > 2 (1 + E)), which heats the white-kick walkers that stray there."""
    idx = np.flatnonzero(inside)
    out = np.asarray(coef, dtype=float).copy()
    if idx.size < 3:
        return out
    # curvature of the inside coefficients (second divided differences over the Greville abscissae): the floor of an
    # end's continuation curvature where U_c falls outwards there, so that the continuation still confines
    ci, gi = out[idx], grev[idx]
    kin = 2 * np.diff(np.diff(ci) / np.diff(gi)) / (gi[2:] - gi[:-2])
    k_floor = float(np.clip(np.median(kin), 0.0, kappa_max))
    for step, ends in ((1, idx[-3:]), (-1, idx[:3][::-1])):
        a, b, c = ends  # c is the outermost inside coefficient
        s1 = (out[b] - out[a]) / (grev[b] - grev[a])
        s2 = (out[c] - out[b]) / (grev[c] - grev[b])
        k = float(np.clip(2 * (s2 - s1) / (grev[c] - grev[a]), 0.0, kappa_max))
        if s2 * step <= 0:  # U_c falls (or is flat) outwards at this end: a curvature at most ~0 would not confine
            # (on (4.7) at delta 0.1309 the walkers ran off to +inf and emptied the histogram); at least the inside's
            # median curvature, and enough to turn uphill within a quarter of the way to the last coefficient
            room = abs(grev[-1 if step == 1 else 0] - grev[c])
            k = float(min(max(k, k_floor, 2 * abs(s2) / max(0.5 * room, 1e-300)), kappa_max)) if room > 0 else k
        j = c + step
        while 0 <= j < out.size:
            prev, pp = j - step, j - 2 * step
            slope = (out[prev] - out[pp]) / (grev[prev] - grev[pp])
            out[j] = out[prev] + (slope + 0.5 * k * (grev[j] - grev[pp])) * (grev[j] - grev[prev])
            j += step
    return out


#: coverage of the true U_k by the corrected 94 % band, measured by the 1D replicate studies
#: (benchmarks/calibration/replicates.py --corrected, 50 seeds; RESULTS.md): quoted by the band text and learn's summary
# measured with correction_min_iterations 4, the raw part's factor max(s, 1) and the pointwise band calibration
# (2026-12-04, pointwise_ab.py): Test 1 0.944 (4e6, 100 seeds) and 0.894 (2e7, 60 seeds), double well 0.933 (delta
# 0.25, 50 seeds); the double well at delta 0.3 (96 fits) 0.856 before the kick colour was modelled, 0.917 with it
# (2026-12-05, FDELTA.md)
CORRECTED_BAND_COVERAGE = "0.89-0.94"
#: the same at ten times the 4e6 of those studies, where the white-kick model's error is most of the error: Test 1 at
#: delta 0.5-0.35 and the double well at 0.3-0.21, 4e7 steps x delta_0 / delta, MAP, 24 learns
#: (benchmarks/calibration/DELTA_CHECK.md, 2026-12-06)
CORRECTED_BAND_COVERAGE_LARGE = "0.69 on average (0.46-0.95) over 24 learns at 4e7 steps"
#: the smallest budget of those 24 learns (steps at the larger delta of each pair): from it on, a 1D learn warns that its
#: corrected band holds the correction's Monte Carlo error but not its model error (pipeline.large_budget_warning)
LARGE_BUDGET_STEPS = 40_000_000
#: the same for the band learn reports in 2D (benchmarks/calibration/RESULTS.md: 40 seeds of (4.8), stage 1 per seed;
#: results/effective/RESULTS.md: the paper-budget runs, lead 738a6db, 2026-12-05)
CORRECTED_BAND_COVERAGE_2D = ("0.95 over 40 seeds of (4.8) at 2e6 steps; single runs at 1e8: 0.93 ((4.8)), "
                              "0.53 ((4.9) Mueller-Brown)")


def data_coefficients_2d(knots, grid, weights):
    """(m,) bool: the 2D spline coefficients (flattened a * my + b) whose B-spline support holds a grid point
    with counts (weight > 0); the others are set by the prior alone and do not change U on the data."""
    from .splines import design_matrix

    g = np.asarray(grid, dtype=float)
    return design_matrix(g[np.asarray(weights, dtype=float).reshape(-1) > 0], knots).sum(axis=0) > 0


def min_curvature_continuation_2d(coef, inside, shape):
    """coef (m,) with the entries outside ``inside`` replaced by the minimum-curvature continuation of the inside
    ones: argmin of the tensor second-difference penalty (splines.tensor_penalty) with the inside entries fixed.

    The 2D analogue of :func:`stable_continuation_1d`.  Where the run had no data the fitted spline is the prior's and can be
    far steeper than the map's stability limit 2 (1 + E) / delta^2 (measured on (4.9) Mueller-Brown at 4e6 steps:
    largest Hessian eigenvalue 5.7e3 in the box against the limit 1.5e3, 410 on the data), which heats the
    white-kick walkers that stray there.  The continuation is smooth (bounded second differences) and, past the
    histogram box, the white learner's quadratic wall confines it."""
    from .splines import tensor_penalty

    c = np.asarray(coef, dtype=float).reshape(-1).copy()
    o = ~np.asarray(inside, dtype=bool)
    if not o.any() or o.all():
        return c
    # the pure second differences and the twist (mixed differences): without the twist the corner coefficients are
    # free to make U_xy large, and the spline's continuation past the box (each 1D basis continued linearly) is then
    # a saddle dx dy U_xy that the wall cannot hold (measured on (4.9): a white walker ran out along (1, -1))
    D1 = [np.diff(np.eye(m), axis=0) for m in shape]
    P = tensor_penalty(*shape) + 2.0 * np.kron(D1[0].T @ D1[0], D1[1].T @ D1[1])
    c[o] = np.linalg.solve(P[np.ix_(o, o)] + 1e-10 * np.eye(int(o.sum())), -P[np.ix_(o, ~o)] @ c[~o])
    return c


def quadratic_coef_2d(knots, mu, K, n: int = 41):
    """Spline coefficients (m,) on the 2D ``knots`` of the quadratic (q - mu)^T K (q - mu) / 2.

    A cubic spline reproduces 1, x - mu_x and (x - mu_x)^2 exactly, and the tensor coefficients of f(x) g(y) are the
    outer product of the 1D ones, so the quadratic's are three outer products of 1D least-squares fits on ``n``
    points over each knot range (exact up to round-off; one dense 2D least-squares fit of n^2 points x m
    coefficients took ~4.6 s at 27 x 27 coefficients)."""
    from .splines import design_matrix_1d

    K = np.asarray(K, dtype=float)
    one, lin, sq = [], [], []
    for t, m0 in zip(knots, np.asarray(mu, dtype=float)):
        t = np.asarray(t, dtype=float)
        x = np.linspace(t[0], t[-1], n)
        c = np.linalg.lstsq(design_matrix_1d(x, t), np.column_stack([np.ones(n), x - m0, (x - m0) ** 2]),
                            rcond=None)[0]
        one.append(c[:, 0])
        lin.append(c[:, 1])
        sq.append(c[:, 2])
    c = (0.5 * K[0, 0] * np.outer(sq[0], one[1]) + 0.5 * K[1, 1] * np.outer(one[0], sq[1])
         + 0.5 * (K[0, 1] + K[1, 0]) * np.outer(lin[0], lin[1]))
    return c.reshape(-1)


def data_gaussian_2d(grid, weights, temperature):
    """(mu, K): the count-weighted mean of the grid points (G, d) and the curvature K = temperature Sigma^-1 of the
    Gibbs potential of the Gaussian with the points' count-weighted covariance Sigma (the confining quadratic that
    has the data's first two moments at the run's temperature 1 / beta)."""
    x = np.asarray(grid, dtype=float)
    w = np.asarray(weights, dtype=float).reshape(-1)
    w = w / w.sum()
    mu = w @ x
    dx = x - mu
    cov = (dx * w[:, None]).T @ dx
    return mu, float(temperature) * np.linalg.inv(cov)


def stable_continuation_2d(coef, inside, shape, knots, mu, K):
    """coef (m,) with the entries outside ``inside`` (coefficients no counted grid point sees) continued towards the
    confining quadratic Q = (q - mu)^T K (q - mu) / 2 (:func:`data_gaussian_2d`: the Gaussian of the data at the
    run's temperature): the deviation coef - Q is continued harmonically (bounded by its values at the data's
    edge), so off the data U_c is Q (positive definite curvature) plus a bounded deviation.

    Why: :func:`min_curvature_continuation_2d` alone continues U_c itself with minimum curvature, i.e. about linearly; where U_c
    falls outwards at the data's edge (between the wells of a multi-well U, or on a raw U whose edge cells are
    noisy) the continuation keeps falling until the white learner's wall, and the white walkers heat or blow up
    there (measured on (4.9) Mueller-Brown at 1e8 steps: a walker blew up at step 2142)."""
    c = np.asarray(coef, dtype=float).reshape(-1).copy()
    Q = quadratic_coef_2d(knots, mu, K)
    o = ~np.asarray(inside, dtype=bool)
    if not o.any() or o.all():
        return c
    # the deviation h = coef - Q off the data: the discrete harmonic extension of its inside values (membrane
    # penalty, first differences), so it is bounded by its values at the data's edge (maximum principle) and Q's
    # curvature wins away from the data; a minimum-curvature (thin-plate) extension of h would continue h's edge
    # slope linearly, which on a U falling outwards beats Q over the box (measured in the test of this function)
    D1 = [np.diff(np.eye(m), axis=0) for m in shape]
    L = np.kron(D1[0].T @ D1[0], np.eye(shape[1])) + np.kron(np.eye(shape[0]), D1[1].T @ D1[1])
    h = c - Q
    h[o] = np.linalg.solve(L[np.ix_(o, o)] + 1e-10 * np.eye(int(o.sum())), -L[np.ix_(o, ~o)] @ h[~o])
    return Q + h


def max_hessian_on_region(knots, coef, points, *, wall: float = 0.0, margin: float = 0.1):
    """The largest Hessian eigenvalue of the 2D spline (knots, coef) (with the quadratic ``wall`` past its box, as
    the white-kick runs see it) on the walkers' region: the data points (P, 2) and the same points moved by
    ``margin`` of the data's extent along +-x, +-y (where walkers that leave the data go first).  Central
    differences of the gradient.  The damped map is stable where it is below 2 (1 + E) / delta^2."""
    from .splines import SplineRep

    rep = SplineRep(knots, np.asarray(coef, dtype=float), wall=float(wall))
    P0 = np.asarray(points, dtype=float)
    ext = P0.max(axis=0) - P0.min(axis=0)
    shifts = [np.zeros(2)] + [sgn * margin * ext[i] * np.eye(2)[i] for i in range(2) for sgn in (-1.0, 1.0)]
    P = np.concatenate([P0 + sh for sh in shifts])
    h = 1e-4 * float(np.min(ext))
    H = np.empty((len(P), 2, 2))
    for i in range(2):
        e = np.zeros(2)
        e[i] = h
        H[:, i, :] = (rep.gradient(P + e) - rep.gradient(P - e)) / (2 * h)
    return float(np.linalg.eigvalsh(0.5 * (H + H.transpose(0, 2, 1))).max())


def hessian_extremes_2d(knots, coef, wall: float = 0.0, n: int = 121, margin: float = 0.25):
    """(largest Hessian eigenvalue over the box extended by ``margin`` of its size on each side, smallest one
    outside the box) of the 2D spline (knots, coef) with the quadratic ``wall`` past the box (as the white-kick
    runs see it; central differences of the gradient on an n x n grid).  The damped map is stable where the
    largest is below 2 (1 + E) / delta^2; outside the box the smallest must be > 0 (else an unbounded saddle)."""
    from .splines import SplineRep

    rep = SplineRep(knots, np.asarray(coef, dtype=float), wall=float(wall))
    lo = [float(np.asarray(t)[0]) for t in knots]
    hi = [float(np.asarray(t)[-1]) for t in knots]
    xs = [np.linspace(a - margin * (b - a), b + margin * (b - a), n) for a, b in zip(lo, hi)]
    P = np.stack(np.meshgrid(*xs, indexing="ij"), axis=-1).reshape(-1, 2)
    h = 1e-4 * min(b - a for a, b in zip(lo, hi))
    H = np.empty((len(P), 2, 2))
    for i in range(2):
        e = np.zeros(2)
        e[i] = h
        H[:, i, :] = (rep.gradient(P + e) - rep.gradient(P - e)) / (2 * h)
    ev = np.linalg.eigvalsh(0.5 * (H + H.transpose(0, 2, 1)))
    out = np.any((P < np.array(lo) - 2 * h) | (P > np.array(hi) + 2 * h), axis=1)
    return float(ev.max()), float(ev[out].min()) if out.any() else float("inf")


def max_hessian_2d(knots, coef, n: int = 121):
    """The largest Hessian eigenvalue of the 2D spline (knots, coef) on an n x n grid over its box."""
    return hessian_extremes_2d(knots, coef, 0.0, n, 0.0)[0]


def fixed_point_start(x, T, var_p, delta, gamma, mass, friction, noise_shape=None):
    """(s, Z, kappa_max, E) that start (B4): the Jacobian factor s of (B2), the white-kick variance Z of (B3) and,
    in 1D, half the map's stability limit on U'' (None in d >= 2).

    1D with inverse mass a and friction g reduces to M = I by p' = sqrt(a) p: delta' = delta sqrt(a),
    gamma' = g sqrt(a) (E = exp(-g a delta) kept), temperature var(p') = a var(p) = 1 / beta_hat, Z = Z' / sqrt(a).
    d >= 2: the numerical Lyapunov law (:func:`linear_map_covariance`) on the mean curvature matrix
    (:func:`mean_hessian`) with the kick covariance's shape ``noise_shape`` (the measured Z; default the
    symmetrised friction, the fluctuation-dissipation shape Z = 2 Gamma / beta of a calibrated run),
    s = Tr(A K) / Tr(A K_raw) (scalar), Z = z shape at the run's temperature.
    A non-convex average gives s = 1 and Z from the momentum part alone (K = 0)."""
    from scipy.linalg import expm

    d = 1 if x.ndim == 1 else x.shape[1]
    A = np.eye(d) if mass is None else np.atleast_2d(np.asarray(mass, dtype=float))
    G = gamma * np.eye(d) if friction is None else np.atleast_2d(np.asarray(friction, dtype=float))
    E = expm(-G @ A * delta)
    if d == 1:
        a, g = float(A[0, 0]), float(G[0, 0])
        de, ge = delta * math.sqrt(a), g * math.sqrt(a)
        try:
            corr = learned_U_correction(x, T, 1.0 / var_p, de, ge)
            s, kappa = corr.factor, corr.kappa
        except InputError:  # non-convex on average: no linear preconditioner, plain (B4)
            s, kappa = 1.0, 0.0
        Z = kick_noise_for(var_p, kappa, de, ge) / math.sqrt(a)
        return s, Z, (1.0 + math.exp(-ge * de)) / de ** 2, E
    u = T - T.min()
    shape = 0.5 * (G + G.T) if noise_shape is None else np.atleast_2d(np.asarray(noise_shape, dtype=float))
    if shape.shape != (d, d) or np.min(np.linalg.eigvalsh(0.5 * (shape + shape.T))) <= 0:
        raise InputError(f"the kick noise shape must be a positive definite ({d}, {d}) matrix, got {shape.tolist()}")
    try:
        K_raw = mean_hessian(x, u, np.exp(-u / var_p))
        if np.min(np.linalg.eigvalsh(K_raw)) <= 0:
            raise InputError("non-convex mean curvature")
        K = hessian_for_learned(K_raw, A, E, delta, Z=shape)
        s = float(np.trace(A @ K) / np.trace(A @ K_raw))
        Z = kick_noise_matrix(var_p, K, A, E, delta, shape)
    except InputError:
        s = 1.0
        from scipy.linalg import solve_discrete_lyapunov
        Cp = solve_discrete_lyapunov(E, delta * shape)
        Z = shape * (var_p / (np.trace(A @ Cp) / d))
    return s, Z, None, E


def _about_centre(g, x, w):
    """The double integral of g (G,) on the grid x (G,) (trapezoid) with value and slope 0 at the count-weighted
    centre (weights w, sum 1); g is taken as 0 in cells without counts (w = 0)."""
    h = np.diff(x)
    i0 = int(np.clip(np.searchsorted(x, float(w @ x)), 0, x.size - 1))
    g = np.where(w > 0, g, 0.0)  # no data, no curvature information: continued linearly there

    def integral(f):
        c = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * h)])
        return c - c[i0]
    return integral(integral(g))


def local_curvature_step(r, kappa, x, w, s, delta_e, E):
    """The 1D local correction to the preconditioned (B4) step: s r + I[(P - s) r''], in U on the grid x (G,).

    r (G,): the residual L_delta[V] - L_delta[U_c]; kappa (G,): U_c'' (clipped to the map's stable range by the
    caller).  Locally (B1) maps U'' = k to k_raw = 4 k / D, D = 2 (1 + E) - delta^2 k, whose derivative is
    J(k) = 8 (1 + E) / D^2; the inverse Jacobian P = 1 / J differs from the global factor s by up to 2.5x on the
    quartic walls (delta^2 U'' ~ 1.6 at |q| ~ 2.5 for delta 0.3), where the global step overshoots (s J > 2).
    I[g] is the double integral of g about the count-weighted centre (value and slope 0 there), so the update's
    curvature is P r'' while its level and tilt keep the global step's.  On a quadratic, P is constant."""
    D = 2.0 * (1.0 + E) - delta_e ** 2 * kappa
    P = D * D / (8.0 * (1.0 + E))
    return _about_centre((P - s) * _grid_curvature(r, x), x, w)


def local_start(T, x, w, s, delta_e, E, kappa_max):
    """The 1D start U_c^0 - s T (G,): (B2) applied to the curvature point by point, U_c^0'' = k(T''),
    k(k_raw) = k_raw (1 + E) / (2 + delta^2 k_raw / 2) (the inverse of (B1)), level and tilt from s T.  On the
    walls of a quartic (B1) inflates the curvature 2-3x where the global s shrinks it by ~8 %; starting there
    heats the white runs (their var(p) 3 % above the V-run's at the same Z)."""
    kr = np.clip(_grid_curvature(T, x), 0.0, None)
    k = kr * (1.0 + E) / (2.0 + 0.5 * delta_e ** 2 * kr)
    # (B1) is the law of a stable oscillation: where T is not convex there is none, and the point-by-point
    # inverse amplifies a noisy T's negative curvature (a 2e5-step learn's T'' = -4 at delta 0.5 sent the white
    # walkers off the grid); there the start keeps s T
    return _about_centre(np.where(_grid_curvature(T, x) > 0, k - s * kr, 0.0), x, w)


def _grid_curvature(u, x):
    h = np.diff(x)
    hl, hr = h[:-1], h[1:]
    k = np.empty_like(u)
    k[1:-1] = 2.0 * (hl * u[2:] - (hl + hr) * u[1:-1] + hr * u[:-2]) / (hl * hr * (hl + hr))
    k[0], k[-1] = k[1], k[-2]
    return k


def _coef_draws(fit):
    """(S, m) float array: a fit's per-draw spline coefficients (``fit.arviz_extras['coef_draws']``), or None."""
    cd = (getattr(fit, "arviz_extras", None) or {}).get("coef_draws")
    return None if cd is None else np.asarray(cd, dtype=float)


def band_sd_at(fit, points, weights):
    """The pointwise sd (G,) of a fit's U at ``points`` (G, d) other than its own report grid: its per-draw
    spline coefficients (``fit.arviz_extras['coef_draws']``, (S, m)) evaluated there, aligned to the same
    ``weights``-weighted mean (G,) (the draws carry the fit's band calibration, as its U_draws), and
    the 94 % equal-tailed half-width / Z94 (as the 1D path's band).  Where the fit had no data the draws carry the
    prior's spread, so the sd is large there, as it should be."""
    from .splines import design_matrix

    cd = _coef_draws(fit)
    if cd is None:
        raise InputError("the white-kick fit has no per-draw spline coefficients (arviz_extras['coef_draws'])")
    w = np.asarray(weights, dtype=float).reshape(-1)
    w = w / w.sum()
    U = design_matrix(np.asarray(points, dtype=float), fit.knots) @ cd.T  # (G, S)
    U = U - (w @ U)[None, :]
    lo, hi = np.quantile(U, [0.03, 0.97], axis=1)
    return (hi - lo) / (2 * Z94)


def _step_se(fit, apply, max_draws: int = 200):
    """Pointwise se (G,) of ``apply(coef)`` (G,) over the white fit's per-draw spline coefficients (band-calibrated,
    as band_sd_at): 94 % equal-tailed half-width / Z94, like the bands."""
    cd = _coef_draws(fit)
    if cd is None or cd.ndim != 2 or len(cd) < 10:
        raise InputError("the white-kick fit has no per-draw spline coefficients (arviz_extras['coef_draws'])")
    cd = cd[np.linspace(0, len(cd) - 1, min(max_draws, len(cd))).round().astype(int)]
    V = np.array([apply(c) for c in cd])
    lo, hi = np.quantile(V, [0.03, 0.97], axis=0)
    return (hi - lo) / (2 * Z94)


def _setup_1d(knots, ct, x, w, T, s, kappa_max, delta, gamma, mass, friction):
    """(cont, step, start coefficients) of (B4) in 1D.  Coefficients whose Greville abscissa is off the grid are
    not seen by the data: U_c is continued there with constant, stable curvature (stable_continuation_1d) and the update is
    held at its nearest inside value (_held); step(c, fc) is (B4) with the local preconditioner, in coefficients;
    the start is s x U_raw plus the local start (local_start)."""
    from .splines import SplineRep, design_matrix

    t = np.asarray(knots[0], dtype=float)
    grev = np.array([t[j + 1:j + 4].mean() for j in range(ct.size)])
    inside = (grev >= x.min()) & (grev <= x.max())
    cont = lambda c: stable_continuation_1d(c, inside, grev, kappa_max)  # noqa: E731
    a = 1.0 if mass is None else float(np.atleast_2d(mass)[0, 0])
    g1 = gamma if friction is None else float(np.atleast_2d(friction)[0, 0])
    de, Ee = delta * math.sqrt(a), math.exp(-g1 * a * delta)
    B = design_matrix(x, knots)

    def ev(c):
        return SplineRep(knots, c).value(x)

    def step(c, fc):
        dc = ct - fc
        kap = np.clip(_grid_curvature(ev(c), x), -kappa_max, kappa_max)
        extra = local_curvature_step(ev(dc), kap, x, w, s, de, Ee)
        return _held(s * dc + np.linalg.lstsq(B, extra, rcond=None)[0], inside)

    coef = cont(s * ct + np.linalg.lstsq(B, local_start(T, x, w, s, de, Ee, kappa_max), rcond=None)[0])
    return cont, step, coef


def _setup_2d(knots, ct, x, w, T, s, var_p, delta, gamma, mass, friction, noise_shape, continuation,
              refuse_unstable):
    """(cont, step, start coefficients, region_hess, checks) of (B4) in d >= 2.  Coefficients seen by no data are
    continued towards the data's Gaussian (``continuation`` "stable", confining: stable_continuation_2d) or with
    minimum curvature (min_curvature_continuation_2d); a continued start whose Hessian on the walkers' region exceeds the damped
    map's stability limit 2 (1 + E) / delta^2 is refused (InputError) when ``refuse_unstable``; checks: the
    curvatures and the limit, recorded in the first history row."""
    inside = data_coefficients_2d(knots, x, w)
    shape2 = tuple(len(t) - 4 for t in knots)
    if continuation == "stable":  # towards the data's Gaussian (confining), see stable_continuation_2d
        mu_d, K_d = data_gaussian_2d(x, w, var_p)
        cont = lambda c: stable_continuation_2d(c, inside, shape2, knots, mu_d, K_d)  # noqa: E731
    else:
        cont = lambda c: min_curvature_continuation_2d(c, inside, shape2)  # noqa: E731
    E2 = fixed_point_start(x, T, var_p, delta, gamma, mass, friction, noise_shape)[3]
    lim2 = 2.0 * (1.0 + float(np.min(np.real(np.linalg.eigvals(E2))))) / delta ** 2
    wall2 = 1.0 / delta ** 2  # the white learner's wall (damped_white_learner)
    kmax_raw = hessian_extremes_2d(knots, ct, wall2)[0]
    kmax_cont, kmin_out = hessian_extremes_2d(knots, cont(s * ct), wall2)
    pts = x[w > 0]
    region_hess = lambda c: max_hessian_on_region(knots, c, pts, wall=wall2)  # noqa: E731
    kreg_start = region_hess(cont(s * ct))
    if refuse_unstable and kreg_start > lim2:
        raise InputError(
            f"refused: the continued start U_c has largest Hessian eigenvalue {kreg_start:.4g} on the walkers' "
            f"region, above the damped map's stability limit 2 (1 + E) / delta^2 = {lim2:.4g}; white-kick runs "
            "on it would heat or blow up, so the 2D correction is not applied")
    # recorded, not refused: a curvature above the limit on a small patch need not heat the run (the slow test
    # x^2/2 + 3 y^2/2 at delta 0.4: 25.2 after the continuation, limit 24; 204 without it, and it passed on
    # main); a white run that heats up or blows up is caught by the temperature guard of the iteration or the
    # engine's blow-up error, and learn keeps the raw U with a warning

    def step(c, fc):
        return s * (ct - fc)

    checks = dict(max_curvature_raw=kmax_raw, max_curvature_continued=kmax_cont, stability_limit=lim2,
                  min_curvature_past_box=kmin_out, max_curvature_walkers_region=kreg_start,
                  continuation=continuation, coefficients_continued=int((~inside).sum()))
    return cont, step, cont(s * ct), region_hess, checks


def _run_candidate(learn, coef, Z, var_p, *, check_temperature: bool, limit=None):
    """(fit, var_p of the fit, failure): one white-kick run and fit of the candidate U_c (coefficients ``coef``,
    kick variance Z) for (B4).  failure (str or None): the run blew up (SimulationError), or, with
    check_temperature (d >= 2), ran at a temperature outside 0.5-2x the V-run's var_p, or, with limit =
    (largest_hessian(coef), stability limit), the candidate's curvature on the walkers' region exceeds the limit
    (then it is not run)."""
    if limit is not None:
        kreg = limit[0](coef)
        if kreg > limit[1]:
            return None, None, (f"candidate's largest Hessian eigenvalue {kreg:.4g} on the walkers' region > "
                                f"stability limit {limit[1]:.4g}")
    try:
        fit = learn(coef, Z)
    except SimulationError as exc:
        return None, None, f"white-kick run failed: {exc}"
    vp = 1.0 / float(fit.beta["beta_hat"])
    if check_temperature and not 0.5 < vp / var_p < 2.0:
        return fit, vp, f"white-kick run's temperature {vp:.3g} far from the run's {var_p:.3g}"
    return fit, vp, None


def _null_rms_quantile(fit, B, w, reg, level: float = 0.95):
    """The ``level`` quantile of the residual's RMS over the region ``reg`` (G,) at an exact fixed point: there
    L_delta[V] - L_delta[U_c] is the white fit's Monte Carlo error alone, whose law is its posterior draws (per-draw
    spline coefficients, :func:`_coef_draws`, evaluated by the design matrix B (G, m) of the grid (they carry the band
    calibration), each aligned to the weights w (G,)) less their mean.  None without draws."""
    cd = _coef_draws(fit)
    if cd is None or len(cd) < 20:
        return None
    cd = cd - cd.mean(axis=0)
    D = B @ cd.T  # (G, S)
    D = D - (w @ D)[None, :]
    return float(np.quantile(np.sqrt(np.mean(D[reg] ** 2, axis=0)), level))


def _fit_sd_on(fit, x, w):
    """(G,): the white fit's posterior sd of U on the grid x (G,) or (G, d): its band's half-width / Z94 in 1D; in
    d >= 2 from its spline draws (:func:`band_sd_at`), since its report grid is its own data region."""
    if x.ndim > 1:
        return band_sd_at(fit, x, w)
    half = (np.asarray(fit.U_upper) - np.asarray(fit.U_lower)) / (2 * Z94)
    return np.interp(x, np.asarray(fit.grid, dtype=float).reshape(-1), half)


def fixed_point_correction(knots, coef_target, learn, *, grid, weights, region, var_p, delta, gamma,
                           mass=None, friction=None, max_iter: int = 6, min_iter: int = 1,
                           noise_shape=None, continuation: str = "stable",
                           refuse_unstable: bool = True, final_step: str = "se") -> FixedPointCorrection:
    """Iterate (B4) from the learned U_raw = L_delta[V] (spline ``coef_target`` (m,) on ``knots``, d = 1, 2).

    learn(coef (m,), Z) -> FitResult: runs the white-kick map on the spline U_c with coefficients ``coef`` and
    kick variance Z (float in 1D, (d, d) in 2D) and fits it with the same recipe, knots and histogram grid (its
    ``coef_mean``, ``beta['beta_hat']`` and band are used).  grid (G,) or (G, d), weights (G,) >= 0 (count
    weights of the grid points, for the alignment), region (G,) bool (mass region, where convergence and size
    are measured); var_p: the V-run's temperature 1 / beta_hat = Tr(A Cov p) / d (var(p) for M = I, d = 1);
    mass: A = M^-1 (d, d) (default I); friction: Gamma (d, d) (default gamma I), as in the V-run.

    The step: in 1D the preconditioner is local (:func:`local_curvature_step`: the inverse derivative of (B1) at the
    candidate's curvature U_c''(q)); in d >= 2 the global factor s.  Safeguard: the residual of every evaluated
    iterate (the update's RMS over the region, aligned) is kept; when it exceeds the best one so far, the
    iteration goes back to the best iterate with half the step (and halves again on every further growth).
    Stops after the first iteration >= ``min_iter`` (at most ``max_iter``) whose residual is below the RMS Monte
    Carlo error of L_delta[U_c] (its last update is then applied: ``converged``); otherwise returns the best evaluated
    iterate (``history`` marks it ``returned``; ``residual_consistent``: its residual RMS is inside the 95 % range of
    its Monte Carlo law, history's ``mc_rms_q95``, so nothing says it is off the fixed point).
    final_step (1D, converged): "se" (default): when that last update is a full step (alpha = 1), correction_se is
    the white fit's posterior draws propagated through it (the local
    preconditioner's gain is up to 2.5x s on the walls), else s x the fit's band; "full": the update is also taken
    in full after a backtrack (alpha < 1), with the propagated se (fresh seeds: no coverage gain, per-fit RMSE
    +9 % on the double well); "legacy": se = s x the fit's band always.
    noise_shape (d, d), d >= 2: the shape of the white kicks' covariance (e.g. the V-run's measured kick
    covariance, :func:`residual_kick_correlation`'s Z_matrix); default the symmetrised friction (see fixed_point_start).
    continuation (d >= 2): "stable" (default; coefficients no data see pulled towards the data's Gaussian,
    :func:`stable_continuation_2d`) or "min_curvature" (:func:`min_curvature_continuation_2d` alone).  refuse_unstable (d >= 2): the
    start is refused (InputError, the caller keeps the raw U) when its largest Hessian eigenvalue on the walkers'
    region (:func:`max_hessian_on_region`) exceeds the map's stability limit 2 (1 + E) / delta^2; a later candidate
    above it is not run but backtracked like a blow-up.
    Backtracking on failures: a white run that blows up (SimulationError) or, in d >= 2, runs at a temperature
    outside 0.5-2x the V-run's, goes back to the best iterate with half the step (at most down to 1/16, then the
    best iterate is returned); a failure of the start itself raises.
    """
    import time

    from .splines import SplineRep, design_matrix

    t0 = time.perf_counter()
    x = np.asarray(grid, dtype=float)
    if len(knots) == 1:
        x = x.reshape(-1)
    w = np.asarray(weights, dtype=float).reshape(-1)
    w = w / w.sum()
    reg = np.asarray(region, dtype=bool).reshape(-1)
    if not reg.any():
        reg = np.ones_like(reg)
    ct = np.asarray(coef_target, dtype=float).reshape(-1)
    ev = lambda c: SplineRep(knots, c).value(x)  # noqa: E731
    T = ev(ct)
    s, Z, kappa_max, _ = fixed_point_start(x, T, var_p, delta, gamma, mass, friction, noise_shape)
    if x.ndim == 1:
        cont, step, coef = _setup_1d(knots, ct, x, w, T, s, kappa_max, delta, gamma, mass, friction)
    else:
        cont, step, coef, region_hess, checks = _setup_2d(knots, ct, x, w, T, s, var_p, delta, gamma, mass,
                                                          friction, noise_shape, continuation, refuse_unstable)
        lim2 = checks["stability_limit"]
    Bx = design_matrix(x, knots)  # the grid's spline design, for the residual's Monte Carlo range (mc_rms_q95)
    history, converged, se = [], False, np.zeros(len(x))
    it, alpha, best = 0, 1.0, None
    for it in range(1, int(max_iter) + 1):
        # the start is always run; later candidates past the stability limit are not (d >= 2)
        limit = (region_hess, lim2) if x.ndim > 1 and refuse_unstable and best is not None else None
        fit, vp, failure = _run_candidate(learn, coef, Z, var_p, check_temperature=x.ndim > 1, limit=limit)
        if failure is not None:
            # a white run that blew up (or heated, or a candidate past the stability limit): back to the best
            # iterate with half the step; without a good iterate yet (the start itself) the correction fails
            if best is None or alpha < 1.0 / 16:
                if best is None:
                    raise (SimulationError if "failed" in failure else InputError)(
                        f"{failure} (iteration {it}, the start): the correction is not applied")
                history.append({"iteration": it, "failed": failure, "alpha": alpha})
                break
            history.append({"iteration": it, "failed": failure, "alpha": alpha, "backtrack_to": best["it"]})
            alpha *= 0.5
            coef = cont(best["coef"] + alpha * best["step"])
            Z = best["Z_next"]
            continue
        fc = np.asarray(fit.coef_mean, dtype=float)
        c_eval, fit_eval = coef, fit  # the evaluated iterate and its white fit (for the final step at convergence)
        upd = _aligned(T - ev(fc), w)
        se = _fit_sd_on(fit, x, w)
        rms_upd = float(np.sqrt(np.mean(upd[reg] ** 2)))
        rms_se = float(np.sqrt(np.mean(se[reg] ** 2)))
        history.append({"iteration": it, "kick_noise": np.asarray(Z).tolist(), "var_p": vp,
                        "update_rms": rms_upd, "mc_error_rms": rms_se, "update_max": float(np.max(np.abs(upd[reg]))),
                        "mc_rms_q95": _null_rms_quantile(fit, Bx, w, reg), "alpha": alpha})
        # (B3) rescaling, at most x2 per run: the temperature of a non-linear map is not proportional to Z
        Z_next = Z * float(np.clip(var_p / vp, 0.5, 2.0))
        if best is None or rms_upd <= best["rms"]:
            best = {"rms": rms_upd, "coef": coef, "Z": Z, "se": se, "it": it, "step": step(coef, fc),
                    "Z_next": Z_next}
            coef = cont(coef + alpha * best["step"])
            Z_used, Z = Z, Z_next
        else:  # the residual grew: back to the best iterate with half the step
            alpha *= 0.5
            history[-1]["backtrack_to"] = best["it"]
            coef = cont(best["coef"] + alpha * best["step"])
            Z_used, Z = Z, best["Z_next"]
        if it >= min(min_iter, max_iter) and rms_upd <= rms_se:
            converged = True
            break
    se_out = s * se
    full_step_taken = converged and x.ndim == 1 and alpha == 1.0 and np.allclose(coef, cont(c_eval + step(c_eval, fc)))
    full = converged and x.ndim == 1 and (final_step == "full" or (final_step == "se" and full_step_taken))
    if full and _coef_draws(fit_eval) is not None:
        # the last white fit's noise reaches U_c through the full (B4) step, whose local gain P(q) is not s on the
        # flanks: propagate that fit's posterior draws through the same step (measured: the correction's spread over
        # correction seeds was 1.2-2.7x s x se).  "full" also takes the step in full after a backtrack (alpha < 1);
        # "se" (default) keeps the shortened step and its s x se there (the gap it leaves is of that order: on the
        # 50-seed study those seeds' errors were 0.97 of their band sd, the full-step seeds' 2.0)
        coef = cont(c_eval + step(c_eval, fc))
        se_out = _step_se(fit_eval, lambda cd: _aligned(ev(cont(c_eval + step(c_eval, cd))), w))
        history[-1]["final_step"] = "full step, se propagated"
    consistent = converged
    if not converged:  # return the best evaluated iterate, not an unverified step
        coef, Z_used, se = best["coef"], best["Z"], best["se"]
        se_out = s * se
        row = history[best["it"] - 1]
        row["returned"] = True
        # the stop rule (residual RMS <= its Monte Carlo sd's RMS) fails about half the time at an exact fixed point;
        # what says the iterate is off the fixed point is a residual outside the Monte Carlo law's 95 % range
        consistent = row.get("mc_rms_q95") is not None and row["update_rms"] <= row["mc_rms_q95"]
    if x.ndim > 1 and history:  # the continuation past the data and the stability check (d >= 2)
        history[0].update(checks)
    shift = _aligned(ev(coef) - T, w)
    return FixedPointCorrection(grid=x, correction=shift, correction_se=se_out, coef_shift=coef - ct, factor=s,
                                Z=Z_used, iterations=it, converged=converged,
                                size=float(np.max(np.abs(shift[reg]))), history=history,
                                seconds=time.perf_counter() - t0, residual_consistent=bool(consistent))


def residual_kick_correlation(q, p, grad_U, *, delta, A, E, max_lag: int = 3, return_kicks: bool = False,
                              cells=None):
    """Is the noise the correction models as white actually white?  From consecutive frames q, p (n, W, d) of
    the damped map (3.2) on V (one step apart), the residual kicks of the candidate U_c (``grad_U``:
    (N, d) -> (N, d)),

        r_n = p_{n+1} - E p_n + delta grad U_c(q_n + (delta/2) A p_n) = -delta grad (V - U_c)(q_{n+1/2}),

    are what (B4) replaces by white N(0, delta Z).  Returns their lag-1..max_lag autocorrelations ``rho``
    (pooled over walkers and components, each with the white-noise standard error 1 / sqrt(N)), the kick variance
    per unit step ``Z_measured`` = Var(r) / delta (trace / d), the full matrix ``Z_matrix`` (d, d) of the part of
    the kicks not explained by a smooth function of q_{n+1/2} (:func:`kick_covariance`: local linear fits in cells of
    q, pooled; insensitive to a smooth misfit of U_c, also on multi-well runs), ``Z_matrix_cubic`` (the same about
    one global cubic polynomial of q_{n+1/2}, the estimator before: on (4.9) Mueller-Brown it keeps the misfit) and
    ``n``; Z_matrix is None when no cell allows a local fit (walkers trapped at a point), ``Z_matrix_error`` says so.  A step that resolves part of V - U_c
    (the scale treated as noise) gives rho_1 far from 0: the kicks of successive steps then share the same
    resolved feature of V - U_c.  return_kicks: return r (n - 1, W, d) itself instead; "both": (statistics, r).
    cells: :func:`kick_covariance`'s cells per axis (default: its rule, which depends on the positions only, so a
    second candidate on the same frames can pass the first's ``Z_matrix_cells``)."""
    q = np.asarray(q, dtype=float)
    p = np.asarray(p, dtype=float)
    if q.ndim != 3 or q.shape != p.shape or q.shape[0] < max_lag + 3:
        raise InputError("residual_kick_correlation needs q, p of shape (n >= max_lag + 3, W, d)")
    n, W, d = q.shape
    A = np.atleast_2d(np.asarray(A, dtype=float))
    E = np.atleast_2d(np.asarray(E, dtype=float))
    qh = q[:-1] + 0.5 * delta * np.einsum("ij,nwj->nwi", A, p[:-1])
    g = np.asarray(grad_U(qh.reshape(-1, d)), dtype=float).reshape(qh.shape)
    r = p[1:] - np.einsum("ij,nwj->nwi", E, p[:-1]) + delta * g
    if return_kicks == "both":  # the statistics and the kicks from one evaluation of grad U_c
        return _kick_statistics(qh, r, delta=delta, max_lag=max_lag, cells=cells), r
    if return_kicks:
        return r
    return _kick_statistics(qh, r, delta=delta, max_lag=max_lag, cells=cells)


def _kick_statistics(qh, r, *, delta, max_lag, cells=None):
    """The statistics of :func:`residual_kick_correlation` from the half-step positions qh and kicks r (n - 1, W, d)
    (r is not modified)."""
    W, d = r.shape[1], r.shape[2]
    r = r - r.mean(axis=0)
    v = np.mean(r * r, axis=0)  # (W, d)
    rho = [float(np.sum(np.mean(r[k:] * r[:-k], axis=0)) / np.sum(v)) for k in range(1, max_lag + 1)]
    N = r.shape[0] * W * d
    # Z_matrix: covariance of the kicks about their regression on a cubic polynomial of q_{n+1/2}: the smooth misfit
    # -delta grad (V_smooth - U_c)(q_{n+1/2}) (large when U_c is the raw U of a non-Gibbs run) is a smooth function
    # of q_{n+1/2}, the micro-scale kicks are uncorrelated with it.  The plain Cov(r) holds the misfit (measured on
    # a (4.8)-like run about its raw U: Z_yy / Z_xx 1.32 against the micro-scales' 0.5); differences of r do not
    # remove it at finite delta (the misfit correlates r_n with xi_{n-1} at O(delta^2 dK))
    X = qh.reshape(-1, d)
    try:
        Zloc = kick_covariance(X, r.reshape(-1, d), delta=delta, cells=cells)
    except InputError as exc:  # the other statistics stand; Z_matrix None says why not (Z_matrix_error)
        Zloc = {"Z": None, "cells": None, "error": str(exc)}
    X = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-300)
    cols = [np.ones(len(X))] + [X[:, i] for i in range(d)]
    cols += [X[:, i] * X[:, j] for i in range(d) for j in range(i, d)]
    cols += [X[:, i] * X[:, j] * X[:, k] for i in range(d) for j in range(i, d) for k in range(j, d)]
    D = np.column_stack(cols)
    e = r.reshape(-1, d) - D @ np.linalg.lstsq(D, r.reshape(-1, d), rcond=None)[0]
    Zm = e.T @ e / ((len(e) - D.shape[1]) * delta)
    return {"rho": rho, "rho_se": 1.0 / math.sqrt(N), "Z_measured": float(np.sum(v) / W / d / delta), "n": int(N),
            "Z_matrix": None if Zloc["Z"] is None else np.asarray(Zloc["Z"]).tolist(), "Z_matrix_cells": Zloc["cells"],
            "Z_matrix_error": Zloc.get("error"),
            "Z_matrix_cubic": (0.5 * (Zm + Zm.T)).tolist()}


#: the cell-count rule of :func:`kick_covariance`: on average at least this many samples per parameter of a cell's
#: local fit (1 + d), i.e. the local fits spend at most 1 % of the samples' degrees of freedom
KICK_SAMPLES_PER_PARAMETER = 100


def kick_covariance(qh, r, *, delta, cells=None, min_per_parameter: int = KICK_SAMPLES_PER_PARAMETER,
                    local: str = "linear") -> dict:
    """The covariance per unit step of the kicks r (N, d) that is not explained by a smooth function of the
    positions qh (N, d) where they act: a local estimate.  The box of qh is cut into ``cells`` equal-width cells per
    axis; in each cell the kicks' local mean (``local="mean"``) or linear fit in q (``"linear"``) is removed, and the
    within-cell covariances are pooled weighted by their degrees of freedom (count - parameters): Z = sum e e^T /
    (sum (n_c - k) delta).

    Why local: about the raw U of a multi-well run the kicks hold the misfit -delta grad (V_smooth - U_raw)(q), a
    function of q that a single global cubic does not follow (on (4.9) Mueller-Brown the cubic's residual gave
    Z_yy 0.104-0.107 against the micro-scales' 0.0258), while inside a small cell it is nearly linear.

    The cell-count rule (fixed in advance, from the data only; ``cells=None``): the largest number of cells per
    axis k (2 <= k <= 256) at which the occupied cells hold on average at least ``min_per_parameter`` (100) samples
    per parameter of their local fit (1 + d for "linear", 1 for "mean").  Reason: smaller cells only lower the
    misfit's bias (O(h^2) for a linear fit); what more cells cost is the degrees of freedom their fits spend, and at
    100 samples per parameter that is at most 1 % of the samples, so the variance of the estimate is within ~1 % of
    the unbinned one.  Cells with fewer samples than parameters + 1 are left out.

    Returns Z (d, d), cells (k per axis), occupied (cells used), n (samples used), dof."""
    qh = np.asarray(qh, dtype=float)
    r = np.asarray(r, dtype=float)
    if qh.ndim == 1:
        qh = qh[:, None]
    if r.ndim == 1:
        r = r[:, None]
    keep = np.all(np.isfinite(qh), axis=1) & np.all(np.isfinite(r), axis=1)
    qh, r = qh[keep], r[keep]
    N, d = qh.shape
    if local not in ("mean", "linear"):
        raise InputError(f"kick_covariance: local must be 'mean' or 'linear', got {local!r}")
    npar = 1 + d if local == "linear" else 1
    if N < 4 * (npar + 1):
        raise InputError(f"kick_covariance needs more samples than {N}")
    lo, hi = qh.min(axis=0), qh.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    u = (qh - lo) / span  # in [0, 1]: the cell search below cuts it at up to ~100 k per axis (2D)

    def index(k):
        ij = np.minimum((u * k).astype(np.int64), k - 1)
        flat = ij[:, 0].copy()
        for i in range(1, d):
            flat = flat * k + ij[:, i]
        return flat

    if cells is None:
        k = 1
        for kk in range(2, 257):
            if kk ** d * min_per_parameter * npar <= N:  # at most kk^d cells are occupied: the rule holds uncounted
                k = kk
                continue
            occ = int(np.count_nonzero(np.bincount(index(kk))))
            if N / occ >= min_per_parameter * npar:
                k = kk
            elif occ > N / (min_per_parameter * npar) * 4:  # far past the rule: larger k only adds cells
                break
    else:
        k = int(cells)
        if k < 1:
            raise InputError(f"kick_covariance: cells must be >= 1, got {cells}")
    cid = index(k)
    _, inv, cnt = np.unique(cid, return_inverse=True, return_counts=True)
    C = cnt.size
    # local design: 1 (mean) or [1, q - centre] (linear; centred per cell for conditioning)
    if local == "linear":
        cen = np.stack([np.bincount(inv, qh[:, i], C) / cnt for i in range(d)], axis=1)
        X = np.concatenate([np.ones((N, 1)), (qh - cen[inv]) / span], axis=1)
    else:
        X = np.ones((N, 1))
    XtX = np.zeros((C, npar, npar))
    Xtr = np.zeros((C, npar, d))
    for a in range(npar):
        for b in range(a, npar):
            XtX[:, a, b] = XtX[:, b, a] = np.bincount(inv, X[:, a] * X[:, b], C)
        for j in range(d):
            Xtr[:, a, j] = np.bincount(inv, X[:, a] * r[:, j], C)
    ok = cnt >= npar + 1
    ok &= np.linalg.cond(XtX) < 1e10
    beta = np.zeros((C, npar, d))
    beta[ok] = np.linalg.solve(XtX[ok], Xtr[ok])
    e = r - np.einsum("na,naj->nj", X, beta[inv])
    use = ok[inv]
    dof = float(np.sum(cnt[ok] - npar))
    if dof <= 0:  # e.g. walkers trapped at a point: no cell where the kicks' positions spread enough for a fit
        raise InputError(f"kick_covariance: no cell of the {N} kicks' positions (span {float(np.max(hi - lo)):.3g}) "
                         "allows a local fit")
    Zm = e[use].T @ e[use] / (dof * delta)
    return {"Z": 0.5 * (Zm + Zm.T), "cells": int(k), "occupied": int(ok.sum()), "n": int(use.sum()), "dof": dof,
            "local": local}


RHO_TOL = 0.1  # |lag-1 autocorrelation| of the residual kicks above which the white-noise model is flagged
#: |f - 1| of :func:`kick_colour` above which the residual kicks are called coloured.  Set after measuring three learns
#: (4e6 steps, FDELTA.md): the double well at delta 0.3, f = 1.065 (lag 2: 0.026, 15 se), whose corrected U keeps a
#: white-model bias of ~0.01 RMS, against 1.006 (double well, delta 0.25) and 0.997 (Test 1, delta 0.5)
COLOUR_TOL = 0.02


def kick_colour(rho, rho_se) -> dict:
    """Are the residual kicks coloured?  f = 1 + 2 sum_k rho_k over the measured lags (the kicks' long-run variance
    over their variance: the momentum diffusion they give relative to white kicks of the same variance), with the
    white-noise standard error 2 sqrt(K) rho_se.  ``flag``: |f - 1| > COLOUR_TOL and > 4 se.  The fixed point matches
    the temperature with white kicks, not this colour, so a flagged f means a model error the band does not hold."""
    rho = np.asarray(rho, dtype=float)
    f = 1.0 + 2.0 * float(rho.sum())
    se = 2.0 * math.sqrt(len(rho)) * float(rho_se)
    return {"diffusion_factor": f, "diffusion_factor_se": se, "tol": COLOUR_TOL,
            "flag": bool(abs(f - 1.0) > COLOUR_TOL and abs(f - 1.0) > 4.0 * se)}


def ma_taps(rho) -> np.ndarray:
    """Taps c (K + 1,) of the moving average x_n = sum_j c_j e_{n-j} (e i.i.d. with unit variance; sum c^2 = 1, so x
    has unit variance too) whose autocorrelation at lags 1..K is ``rho`` (K,): the invertible solution, found by
    Newton's method from c = (1, rho) (for |rho| << 1 the taps are ~ rho).  InputError when no moving average has
    these autocorrelations (the spectrum 1 + 2 sum_k rho_k cos(k w) is not positive for every w)."""
    from scipy.optimize import fsolve

    rho = np.asarray(rho, dtype=float).reshape(-1)
    if rho.size == 0:
        return np.ones(1)
    w = np.linspace(0.0, math.pi, 4097)
    if not np.all(np.isfinite(rho)) or np.min(1.0 + 2.0 * np.cos(np.outer(w, np.arange(1, rho.size + 1))) @ rho) <= 0:
        raise InputError(f"no moving average has the autocorrelations {np.round(rho, 4).tolist()} (its spectrum "
                         "would be negative)")
    K = rho.size

    def eqs(c):
        g = np.array([c[: K + 1 - k] @ c[k:] for k in range(K + 1)])
        return np.concatenate([[g[0] - 1.0], g[1:] - rho])

    c = fsolve(eqs, np.concatenate([[1.0], rho]) / math.sqrt(1.0 + rho @ rho), xtol=1e-13)
    if np.max(np.abs(eqs(c))) > 1e-9 or c[0] <= 0:
        raise InputError(f"moving-average taps for the autocorrelations {np.round(rho, 4).tolist()} did not converge")
    return c / math.sqrt(c @ c)


def colour_taps(check) -> tuple:
    """(taps or None, summary): the moving average (:func:`ma_taps`) that gives the kick-shape step's recorded kicks
    the colour :func:`white_noise_check` measured (lags 1..3 of the residual kicks about U_c), or None and why not.
    Only a colour that :func:`kick_colour` flags (|f - 1| > COLOUR_TOL and > 4 se; below it the effect on U is
    under ~0.002 RMS by the double well's 0.065 -> 0.004) is modelled: the moving average costs the coupled maps
    ~30 % more.  Not when the check's ``flag`` is up: a lag-1 autocorrelation above RHO_TOL says the step resolves part of
    V - U_c, so the correlation belongs to a resolved scale, which the learned U keeps, not to noise (Test 1 at
    delta 0.065, rho_1 0.42: modelled as colour, the corrected U moved 0.023 -> 0.067 RMS from U_1)."""
    rho = [float(r) for r in np.ravel(check["corrected"]["rho"])]
    col = check["colour"]
    if not col["flag"]:  # white within COLOUR_TOL (or within 4 se): nothing to model, and the white maps are cheaper
        return None, {"modelled": False, "rho": rho, "reason": f"white: momentum diffusion {col['diffusion_factor']:.3f} "
                      f"+- {col['diffusion_factor_se']:.3f} of white kicks' (tolerance {COLOUR_TOL})"}
    if check.get("flag"):
        return None, {"modelled": False, "rho": rho, "reason": f"lag-1 autocorrelation {rho[0]:.2f} > {RHO_TOL}: the "
                      "step resolves part of what is treated as noise, so its correlation is not a noise colour"}
    try:
        taps = ma_taps(rho)
    except InputError as exc:  # the shape step still runs; learn's colour warning says what is missing
        return None, {"modelled": False, "rho": rho, "reason": str(exc)}
    return taps, {"modelled": True, "rho": rho, "taps": taps.tolist()}


def check_frames(potential, sim, *, steps_per_walker: int = 20_000, walkers: int = 16, seed: int = 7):
    """(q, p, A, E): a fresh stretch of the V-run for the kick statistics -- ``walkers`` trajectories (n, W, d) of the
    damped map on ``potential`` (the run's delta, mass A, friction) started from the run's final walker states, one
    frame per step, walkers that trap dropped; E = exp(-Gamma A delta) (d, d)."""
    from .simulate import EngineOptions, run_trajectories

    # only walkers that still move: one at a fixed point of the map (trap detection) kicks by a constant, which
    # would distort the kicks' shape (on (4.7) at delta 0.1309, 44 % trapped, it emptied the kick-shape histogram)
    moving = ~np.asarray(getattr(sim, "trapped", np.zeros(sim.final_q.shape[0], bool)), dtype=bool)
    idx = np.flatnonzero(moving & np.all(np.isfinite(sim.final_q), axis=1))[:int(walkers)]
    if idx.size < 2:
        raise SimulationError(f"white-noise check: {idx.size} walker(s) of the V-run were not trapped (need 2)")
    q0, p0 = sim.final_q[idx], sim.final_p[idx]
    A, G = np.asarray(sim.mass, dtype=float), np.asarray(sim.friction, dtype=float)
    from scipy.linalg import expm

    E = expm(-G @ A * sim.delta)
    _, q, p = run_trajectories(potential, sim.delta, steps_per_walker * sim.delta, q0, p0, integrator="damped",
                               friction=G, mass=A, seed=seed, record_every=sim.delta)
    # and drop a walker that falls into one during this stretch (the engine's criterion: |p| <= p_tol over its last
    # trap_window frames)
    opt = EngineOptions()
    keep = np.max(np.abs(p[-opt.trap_window:]), axis=(0, 2)) > opt.p_tol
    if keep.sum() < 2:
        raise SimulationError(f"white-noise check: {int((~keep).sum())} of {keep.size} walkers fell into fixed points "
                              "of the map during the check")
    if not keep.all():  # (copying only when needed keeps the arrays, and so the kicks' rounding, as they were)
        q, p = q[:, keep], p[:, keep]
    return q, p, A, E


def white_noise_check(potential, sim, knots, coef_raw, coef_corrected, *, frames=None, raw=None, **frame_kw):
    """(dict, kicks): :func:`residual_kick_correlation` of the raw U and of the corrected U_c (splines on ``knots``) on
    ``frames`` = :func:`check_frames` (potential, sim, **frame_kw) (computed here when not given).  Adds ``flag``:
    |rho_1| of U_c above RHO_TOL (and above 4 standard errors), i.e. the step resolves part of what (B4) treats as
    white noise, so the corrected U is the potential at the scale the step resolves, not a coarser truncation; and
    ``colour`` (:func:`kick_colour` of U_c's lags 1-3): kicks correlated across steps, which the white model misses.
    kicks (n - 1, W, d): the residual kicks of U_c (for :func:`kick_shape_shift`).  raw: the raw U's statistics on
    the same ``frames`` when the caller has them (2D learn measures the V-run's kick covariance from them)."""
    from .splines import SplineRep

    q, p, A, E = frames if frames is not None else check_frames(potential, sim, **frame_kw)
    out = {}
    out["raw"] = raw if raw is not None else residual_kick_correlation(q, p, SplineRep(knots, coef_raw).gradient,
                                                                       delta=sim.delta, A=A, E=E)
    # the corrected U_c's statistics and its kicks (for the kick-shape step) from one pass over the frames; the same
    # positions, so the raw run's cells per axis (the cell rule reads the positions only)
    out["corrected"], kicks = residual_kick_correlation(q, p, SplineRep(knots, coef_corrected).gradient,
                                                        delta=sim.delta, A=A, E=E, return_kicks="both",
                                                        cells=out["raw"]["Z_matrix_cells"])
    r1, se = out["corrected"]["rho"][0], out["corrected"]["rho_se"]
    out["flag"] = bool(abs(r1) > RHO_TOL and abs(r1) > 4 * se)
    out["rho_tol"] = RHO_TOL
    out["colour"] = kick_colour(out["corrected"]["rho"], se)
    return out, kicks


def coupled_maps(x0, inv_h, tab_g, delta, a, E, kick_a, kick_b, n, burn, walkers, seed, lo, hi, hist, mom, taps=None):
    """Two copies (c = 0, 1) of the 1D map (3.2) with inverse mass a on a tabulated gradient (tab_g at
    x0 + j / inv_h, linear interpolation, linear continuation off the table), kicked by kick_a[k] and kick_b[k]
    with the same random index k each step (quantile coupling when both tables are sorted), from the same start,
    ``walkers`` walkers of ``n`` steps.  ``taps`` (K + 1,) with sum taps^2 = 1 (:func:`ma_taps`): copy 0's kick is
    instead the moving average sum_j taps[j] kick_a[k_{n-j}] of its last K + 1 draws (the same variance, the
    autocorrelation the taps give, shape nearly kept: excess kurtosis x sum taps^4), copy 1's stays white; None or
    [1]: both white.  hist (2, bins): counts of q after ``burn`` steps on [lo, hi) (added to); mom (2, walkers, 20,
    2): batch sums of p, p^2 (added to).  Walker w draws its start (q, p ~ N(0, 1)) and its indices from its own
    xoshiro stream (kernels.rng, SeedSequence(seed).spawn(walkers)[w]): the result does not depend on the number of
    threads (:func:`_coupled_lanes` runs blocks of LANES walkers in parallel)."""
    from .kernels.rng import seed_states

    from .kernels.loops import spread

    taps = np.ones(1) if taps is None else np.ascontiguousarray(taps, dtype=float)
    if taps.ndim != 1 or taps.size < 1 or abs(float(taps @ taps) - 1.0) > 1e-9:
        raise InputError("coupled_maps: taps must be a 1D array with sum of squares 1")
    hw = np.zeros((int(walkers), 2, hist.shape[1]))  # per-walker counts: threads never write the same row
    spread(_coupled_lanes, -(-int(walkers) // LANES),
           (float(x0), float(inv_h), np.ascontiguousarray(tab_g, dtype=float), float(delta), float(a), float(E),
            # the two tables side by side: a step reads both at one index, from one cache line (320,000 kicks
            # are 5 MB, far past the caches)
            np.ascontiguousarray(np.stack([np.asarray(kick_a, dtype=float), np.asarray(kick_b, dtype=float)], axis=1)),
            taps, int(n),
            int(burn), seed_states(int(seed), int(walkers)), float(lo), float(hi), hw, mom))
    hist += hw.sum(axis=0)


_BATCHES = 20  # batches per walker of coupled_maps' momentum sums


@njit(cache=True, nogil=True, inline="always")
def _kick_index(rng, w, fk, nk):
    """A uniform index below nk into the recorded kicks: the 53 high bits of the next draw of walker w's stream (row w
    of the table ``rng``) times fk = nk 2^-53, floored (nk - 1 at most)."""
    return min(int(np.float64(np.int64(next_u64(rng, w) >> np.uint64(11))) * fk), nk - 1)


@njit(nogil=True, cache=True)
def _coupled_lanes(x0, inv_h, tab_g, delta, a, E, kicks, taps, n, burn, rng, lo, hi, hist, mom, blk0, blk1):
    """The loop of :func:`coupled_maps` over blocks blk0 .. blk1 - 1: a thread advances LANES walkers x 2 copies
    together step by step (16 independent recurrences, so the table look-ups of one overlap the others' latency);
    hist (W, 2, bins).  Serial and nogil, run on threads by loops.spread (a prange loop took ~2 s CPU more to
    compile, cold start); blocks write disjoint walkers' rows.  kicks (nk, 2): kick_a and kick_b side by side."""
    L = LANES
    W = rng.shape[0]
    nt, nk = tab_g.size, kicks.shape[0]
    K = taps.size
    bins = hist.shape[2]
    per = max((n - burn) // _BATCHES, 1)
    scale = bins / (hi - lo)
    h = 0.5 * delta * a
    fk = nk / 9007199254740992.0  # nk 2^-53: a 53-bit uniform times nk
    for blk in range(blk0, blk1):
        w0 = blk * L
        nl = min(L, W - w0)
        q = np.empty((2, L))
        p = np.empty((2, L))
        sp = np.zeros((2, L))
        spp = np.zeros((2, L))
        kk = np.zeros(L, dtype=np.int64)
        ka = np.zeros(L)
        past = np.zeros((K, L))  # copy 0's last K draws of kick_a (a ring over steps), for the moving average
        lag = np.zeros(K, dtype=np.int64)  # this step's row of the draw of j steps ago
        for l in range(nl):
            z0, z1 = normal_pair(rng, w0 + l)
            q[0, l] = z0
            q[1, l] = z0
            p[0, l] = z1
            p[1, l] = z1
        if K > 1:  # start the moving average in its stationary law: K - 1 earlier draws, the oldest first
            for l in range(nl):
                for j in range(K - 1, 0, -1):  # row K - j holds the draw of j steps before the first step
                    past[K - j, l] = kicks[_kick_index(rng, w0 + l, fk, nk), 0]
        b, left = 0, per
        for i in range(n):
            for l in range(nl):
                kk[l] = _kick_index(rng, w0 + l, fk, nk)
            if K == 1:
                for l in range(nl):
                    ka[l] = kicks[kk[l], 0]
            else:
                slot = i % K
                for j in range(K):  # the ring's index arithmetic once per step, not per lane
                    lag[j] = slot - j + K if slot < j else slot - j
                for l in range(nl):
                    past[slot, l] = kicks[kk[l], 0]
                for l in range(nl):
                    acc = 0.0
                    for j in range(K):
                        acc += taps[j] * past[lag[j], l]
                    ka[l] = acc
            for c in range(2):
                for l in range(nl):
                    qh = q[c, l] + h * p[c, l]
                    u = (qh - x0) * inv_h
                    j = min(max(int(math.floor(u)), 0), nt - 2)
                    f = u - j
                    kick = ka[l] if c == 0 else kicks[kk[l], 1]
                    pn = E * p[c, l] - delta * ((1.0 - f) * tab_g[j] + f * tab_g[j + 1]) + kick
                    p[c, l] = pn
                    q[c, l] = qh + h * pn
            if i >= burn:
                for c in range(2):
                    for l in range(nl):
                        cell = int(math.floor((q[c, l] - lo) * scale))
                        if 0 <= cell < bins:
                            hist[w0 + l, c, cell] += 1
                        sp[c, l] += p[c, l]
                        spp[c, l] += p[c, l] * p[c, l]
                left -= 1
                if left == 0 and b < _BATCHES - 1:  # batch b is complete
                    for c in range(2):
                        for l in range(nl):
                            mom[c, w0 + l, b, 0] += sp[c, l]
                            mom[c, w0 + l, b, 1] += spp[c, l]
                            sp[c, l] = 0.0
                            spp[c, l] = 0.0
                    b += 1
                    left = per
        for c in range(2):
            for l in range(nl):
                mom[c, w0 + l, b, 0] += sp[c, l]
                mom[c, w0 + l, b, 1] += spp[c, l]


def kick_shape_shift(knots, coef, kicks, *, edges, delta, a, E, steps: int, n_eff_factor: float, knots_n,
                     walkers: int = 16, seeds=(1, 2), taps=None):
    """What the shape and the colour of the kicks (not their variance) change in the learned U (1D): L_kicks[U_c] -
    L_gauss[U_c], from paired runs of the map on U_c (spline ``coef`` on ``knots``) driven by the recorded
    residual kicks ``kicks`` (n,) resampled i.i.d. -- filtered by the moving average ``taps`` (:func:`ma_taps`) when
    given, so that they carry the measured colour -- and by white Gaussian kicks of the same variance,
    quantile-coupled (both tables sorted, the same random index each step) so that the difference has a small
    Monte Carlo error;
    both fitted by the same recipe (MAP, ``knots_n`` break points, histogram ``edges``, n_eff = ``n_eff_factor``
    x counts).  Returns (grid (G,), shift (G,) aligned to count-weighted mean 0, se (G,) from the spread over
    ``seeds``, excess kurtosis of the kicks)."""
    from scipy import stats as st

    from .fit import fit_effective_potential
    from .splines import SplineRep

    e = np.asarray(edges, dtype=float)
    r = np.sort(np.asarray(kicks, dtype=float).reshape(-1) - np.mean(kicks))
    gq = np.sort(st.norm.ppf((np.arange(r.size) + 0.5) / r.size) * r.std())
    gq *= r.std() / gq.std()  # the same variance exactly: only the shape differs
    pad = 0.5 * (e[-1] - e[0])
    xs = np.linspace(e[0] - pad, e[-1] + pad, 20001)
    tab = SplineRep(knots, coef).gradient(xs).reshape(-1)
    n = int(steps) // int(walkers)
    shifts, G = [], 0.5 * (e[1:] + e[:-1])
    for sd in seeds:
        hist = np.zeros((2, e.size - 1))
        mom = np.zeros((2, int(walkers), 20, 2))
        coupled_maps(xs[0], 1.0 / (xs[1] - xs[0]), tab, float(delta), float(a), float(E), r, gq, n, n // 10,
                      int(walkers), int(sd), float(e[0]), float(e[-1]), hist, mom, taps=taps)
        Us = []
        for c in range(2):
            m = (n - n // 10) // 20
            mp, mp2 = mom[c, :, :, 0] / m, mom[c, :, :, 1] / m
            v = a * (mp2.mean() - mp.mean() ** 2)
            se_v = a * mp2.ravel().std(ddof=1) / math.sqrt(mp2.size)
            f = fit_effective_potential({"counts": hist[c], "edges": [e], "beta_hat": 1 / v, "beta_hat_se": se_v / v ** 2,
                                         "n_eff_factor": n_eff_factor}, knots=knots_n, method="map", draws=50,
                                        calibrate_band=False, predictive=False)
            Us.append(SplineRep(f.knots, f.coef_mean).value(G))
        d = Us[0] - Us[1]
        w = hist[1] / hist[1].sum()
        shifts.append(d - float(w @ d))
    shifts = np.array(shifts)
    se = shifts.std(axis=0, ddof=1) / math.sqrt(len(seeds)) if len(seeds) > 1 else np.zeros(G.size)
    return G, shifts.mean(axis=0), se, float(st.kurtosis(r))


def apply_kick_shape(corr: FixedPointCorrection, target, sim, kicks, *, steps: int, seeds=(1, 2), check=None) -> None:
    """Complete the 1D fixed point (B4) for the shape and the colour of the noise, in place on ``corr``: the white
    runs solve L_gauss[U] = L_delta[V]; with the recorded kicks the equation is L_kicks[U] = L_delta[V], i.e.
    L_gauss[U] = L_delta[V] - (L_kicks[U] - L_gauss[U]).  The bracket (:func:`kick_shape_shift` at U_c) is a
    small, smooth term, so one preconditioned step U_c <- U_c - s x shift completes it (first order in the
    shift).  ``check``: :func:`white_noise_check`'s result, whose autocorrelation of the residual kicks is given
    to the recorded kicks by a moving average (:func:`colour_taps`) -- kicks correlated across steps diffuse the
    momentum differently at each orbit frequency, which white kicks of any shape miss (a double well at delta 0.3:
    rho_2 0.025, benchmarks/calibration/FDELTA.md).  Its Monte Carlo error (spread over ``seeds``) joins
    ``correction_se`` in quadrature; the result is summarised in ``corr.kick_shape`` (``colour``: the taps used,
    or why none were)."""
    from .splines import design_matrix

    taps, colour = colour_taps(check) if check is not None else (None, None)

    A = np.asarray(sim.mass, dtype=float)
    G = np.asarray(sim.friction, dtype=float)
    a, E = float(A[0, 0]), math.exp(-float(G[0, 0]) * float(A[0, 0]) * sim.delta)
    coef_c = np.asarray(target.coef_mean, dtype=float) + corr.coef_shift
    n_eff_factor = float(target.n_eff) / float(np.sum(sim.hist_counts))
    knots_n = len(np.unique(target.knots[0]))
    gx, shift, se, kurt = kick_shape_shift(target.knots, coef_c, kicks, edges=sim.hist_edges[0], delta=sim.delta,
                                           a=a, E=E, steps=steps, n_eff_factor=n_eff_factor, knots_n=knots_n,
                                           seeds=seeds, taps=taps)
    x = np.asarray(corr.grid, dtype=float)
    sh, sse = np.interp(x, gx, shift), np.interp(x, gx, se)
    B = design_matrix(gx, target.knots)
    dcoef = np.linalg.lstsq(B, shift, rcond=None)[0]
    s = corr.factor
    corr.coef_shift = corr.coef_shift - s * dcoef
    w = np.clip(np.asarray(target.grid_weights, dtype=float), 0, None)
    w = w / w.sum()
    corr.correction = _aligned(corr.correction - s * sh, w)
    corr.correction_se = np.sqrt(corr.correction_se ** 2 + (s * sse) ** 2)
    reg = np.asarray(target.mass_region, dtype=bool)
    corr.size = float(np.max(np.abs(corr.correction[reg])))
    corr.kick_shape = {"excess_kurtosis": kurt, "shift_max": float(np.max(np.abs(sh[reg]))),
                       "shift_se_max": float(np.max(sse[reg])), "steps": int(steps), "seeds": list(seeds),
                       "colour": colour}
    corr.method += ("; + the recorded kicks' shape " + ("and colour " if taps is not None else "")
                    + "(bayescg.bias.apply_kick_shape)")


def damped_white_learner(sim, sim_kw: dict, *, knots, steps: int, seed: int, control=None):
    """learn(coef, Z) for :func:`fixed_point_correction`: the V-run's settings (``sim_kw``, keyword arguments of
    :func:`bayescg.simulate.simulate`, with its mass and friction; its histogram grid ``sim.hist_edges``, d = 1, 2)
    with integrator "damped_white", ``steps`` steps, kick variance Z, on the spline U_c; fitted by MAP + Laplace
    with the same knots (``knots``: the fit's break points per dimension, an int)."""
    from .fit import fit_effective_potential
    from .simulate import simulate
    from .splines import clamped_knots, spline_potential

    es = [np.asarray(e, dtype=float) for e in sim.hist_edges]
    if len({e.size for e in es}) != 1:
        raise InputError("the white-kick learner needs the same number of bins in every dimension")
    kw = dict(sim_kw, steps=int(steps), seed=int(seed), bins=es[0].size - 1,
              hist_range=[(float(e[0]), float(e[-1])) for e in es], integrator="damped_white")
    t = [clamped_knots(e[0], e[-1], int(knots)) for e in es]
    # d >= 2 has no stable continuation of U_c past the data (1D: bias.stable_continuation_1d): the spline's linear continuation
    # past the box can slope downhill outwards (measured: (4.8) walkers ran to -inf), so a quadratic wall holds them;
    # stiffness 1 / delta^2, a quarter of the map's stability limit, acting only outside the histogram box
    wall = 1.0 / sim.delta ** 2 if len(es) > 1 else 0.0

    def learn(coef, Z):
        ws = simulate(spline_potential(t, coef, wall=wall), sim.delta, kick_noise=Z if len(es) > 1 else float(Z),
                      control=control, **kw)
        return fit_effective_potential(ws, knots=knots, method="map", seed=seed, draws=400, predictive=False)
    return learn


def corrected_fit(raw, fp: FixedPointCorrection, reference=None, rng_seed: int = 1):
    """The learned U_k: ``raw`` (FitResult) + the fixed-point correction, with its band.  ``fp.applied`` False
    (:func:`correction_significance`: the correction is within its Monte Carlo error): U is the raw U and the band is
    built the same way, so it keeps the correction's Monte Carlo error as the bound on the bias left in U.

    Band (94 %): the raw posterior band carried to U_c (the raw draws' deviations from their mean scaled by
    max(s, 1), s the Jacobian factor of the linearised inverse of U -> L_delta[U]), combined in quadrature at each
    point with Z94 x the correction's Monte Carlo standard error.  Why not s: s is U_c's response to a curvature-like
    change of the raw U; to the raw fit's noise it was measured between s and 1 (pointwise regression over seeds of
    the correction on the raw U: 1 - 0.082 on Test 1 at 4e6 steps, where s = 0.913; 1 - 0.011 at 2e7; double well
    1 - 0.005 and 1 - 0.057; benchmarks/calibration/band_factor_whatif.py), so the band does not claim the
    shrinkage.  So it is a Bayesian posterior interval for the raw learned potential plus a frequentist Monte Carlo
    error of the correction
    (approximately Gaussian, pointwise); it does not hold the modelling error of treating the unresolved
    scales as white noise.  The stored draws carry the Monte Carlo error as one standard-normal multiple of
    correction_se per draw (a smooth, fully correlated perturbation), so their pointwise quantiles match the
    band approximately.
    """
    import dataclasses

    from .fit import score_reference
    from .splines import SplineRep

    s, C, se = fp.factor, fp.correction, fp.correction_se
    if not fp.applied:
        C = np.zeros_like(C)
    k = max(float(s), 1.0)  # the raw noise's gain into U_c: between s and 1 (docstring)
    mean = raw.U_mean + C
    draws = None
    if raw.U_draws is not None:
        dev = k * (np.asarray(raw.U_draws) - raw.U_mean)
        z = np.random.default_rng(rng_seed).standard_normal(dev.shape[0])
        draws = mean + dev + z[:, None] * se
        lo_d, hi_d = np.quantile(mean + dev, [0.03, 0.97], axis=0)
    else:
        lo_d, hi_d = mean - k * (raw.U_mean - raw.U_lower), mean + k * (raw.U_upper - raw.U_mean)
    lo = mean - np.sqrt((mean - lo_d) ** 2 + (Z94 * se) ** 2)
    hi = mean + np.sqrt((hi_d - mean) ** 2 + (Z94 * se) ** 2)
    m0 = float(mean.min())
    coef = np.asarray(raw.coef_mean, dtype=float) + (fp.coef_shift if fp.applied else 0.0)
    x = raw.grid[:, 0] if raw.dim == 1 else raw.grid
    coef = coef + float(np.mean(mean - m0 - SplineRep(raw.knots, coef).value(x)))
    out = dataclasses.replace(
        raw, U_mean=mean - m0, U_lower=lo - m0, U_upper=hi - m0, coef_mean=coef,
        U_draws=None if draws is None else draws - m0, reference_rmse=None, reference_coverage=None,
        reference_grid=None,
        band=(f"{raw.band}, " + ("corrected for finite delta" if fp.applied else
                                 "finite-delta correction within its Monte Carlo error, not applied (U is U_raw)")
              + f": raw deviations x {k:.4f} (max(s, 1), s = {s:.4f} the "
              "Jacobian of the correction) and the correction's Monte Carlo error added in quadrature "
              "(bayescg.bias.corrected_fit). "
              "Known limit: the correction keeps a systematic error of 0.5-1.2 seed-to-seed sd (the "
              "white-kick model resamples the kicks independently of the state q, p), so this band covers the true U_k "
              f"less often than nominal: {CORRECTED_BAND_COVERAGE} instead of 0.94 in the 1D replicate studies of "
              "benchmarks/calibration/RESULTS.md, and less at larger budgets, where that error is a larger share of "
              f"the band (Test 1: 0.94 at 4e6 steps, 0.89 at 2e7; Test 1 and a double well: "
              f"{CORRECTED_BAND_COVERAGE_LARGE}; 2D: {CORRECTED_BAND_COVERAGE_2D})"))
    if reference is not None and raw.cell_points is not None:
        score_reference(out, reference, SplineRep(raw.knots, coef).value(
            raw.cell_points[:, 0] if raw.dim == 1 else raw.cell_points))
    return out
