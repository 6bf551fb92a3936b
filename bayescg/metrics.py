"""Comparison metrics between a surrogate and the full model (the potential paper, Section 4).

All functions take plain arrays.  Trajectory ensembles are ``q: (n, M, d)`` (n record times,
M trajectories, d coordinates), as :func:`bayescg.simulate.run_trajectories` returns them.

* equilibrium law: Wasserstein-1 distance between pooled late-time q samples
  (:func:`equilibrium_w1`; 1D exact via ``scipy.stats.wasserstein_distance``, d >= 2 sliced);
* mean path (4.3): ``qbar(t_n) = (1/M) sum_l q^(l)(t_n)`` and its max abs error over time
  (:func:`mean_path_max_error`, the other path linearly interpolated onto the first one's times);
* normalized ACF (4.4) with the paper's time-and-ensemble averages (:func:`normalized_acf`) and
  its RMS error over a lag window (:func:`acf_l2_error`);
* phase portrait: symmetric mean point-to-curve distance between two (q, p) orbits
  (:func:`phase_portrait_distance`).
"""
from __future__ import annotations

import math

import numpy as np
from scipy import stats as _st

from .errors import InputError

__all__ = [
    "as_ensemble", "wasserstein1", "sliced_wasserstein1", "equilibrium_w1", "late_samples",
    "mean_path", "mean_path_se", "interpolate_path", "mean_path_max_error", "normalized_acf",
    "acf_l2_error", "point_to_curve_distances", "phase_portrait_distance", "density_on_bins",
]


def as_ensemble(q, name: str = "q") -> np.ndarray:
    """Coerce trajectories to float64 (n, M, d); (n, M) is read as d = 1."""
    q = np.asarray(q, dtype=float)
    if q.ndim == 2:
        q = q[:, :, None]
    if q.ndim != 3 or min(q.shape) < 1:
        raise InputError(f"{name} must have shape (times, trajectories, d), got {q.shape}")
    return q


def _samples(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1:
        raise InputError(f"{name} must be samples of shape (n,) or (n, d), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{name} contains non-finite values")
    return x


# --------------------------------------------------------------------------------------------------
# equilibrium law
# --------------------------------------------------------------------------------------------------
def wasserstein1(a, b) -> float:
    """W1 between two 1D empirical laws a (n,), b (m,) (same units as the samples)."""
    a = _samples(a, "a")
    b = _samples(b, "b")
    if a.shape[1] != 1 or b.shape[1] != 1:
        raise InputError("wasserstein1 takes 1D samples; use sliced_wasserstein1 for d >= 2")
    return float(_st.wasserstein_distance(a[:, 0], b[:, 0]))


def sliced_wasserstein1(a, b, n_directions: int = 64, seed: int = 0) -> float:
    """Sliced W1: the mean over ``n_directions`` random unit vectors u of W1(a.u, b.u).

    a (n, d), b (m, d).  Directions are drawn from ``numpy.random.default_rng(seed)``, so the
    number is reproducible; for d = 1 this is the exact W1.
    """
    a = _samples(a, "a")
    b = _samples(b, "b")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"samples of different dimension: {a.shape[1]} and {b.shape[1]}")
    if a.shape[1] == 1:
        return wasserstein1(a, b)
    u = np.random.default_rng(seed).standard_normal((n_directions, a.shape[1]))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return float(np.mean([_st.wasserstein_distance(a @ v, b @ v) for v in u]))


def equilibrium_w1(a, b, n_directions: int = 64, seed: int = 0) -> dict:
    """W1 between equilibrium samples a (n, d) and b (m, d).

    Returns ``{"w1": float, "per_coordinate": [d floats]}``; ``w1`` is the exact W1 for d = 1
    and the sliced W1 (:func:`sliced_wasserstein1`) for d >= 2.
    """
    a = _samples(a, "a")
    b = _samples(b, "b")
    per = [float(_st.wasserstein_distance(a[:, i], b[:, i])) for i in range(a.shape[1])]
    w = per[0] if a.shape[1] == 1 else sliced_wasserstein1(a, b, n_directions, seed)
    return {"w1": w, "per_coordinate": per}


def late_samples(times, q, fraction: float = 0.5, max_samples: int | None = 400_000,
                 seed: int = 0) -> np.ndarray:
    """Pooled q samples (k, d) from record times t >= (1 - fraction) * t_end, all trajectories.

    Non-finite rows (blown-up trajectories) are dropped.  With ``max_samples`` the pool is
    thinned uniformly at random (seeded) to at most that many rows.
    """
    q = as_ensemble(q)
    times = np.asarray(times, dtype=float)
    if times.shape != (q.shape[0],):
        raise InputError(f"times has shape {times.shape}, q has {q.shape[0]} records")
    if not 0 < fraction <= 1:
        raise InputError(f"fraction must be in (0, 1], got {fraction}")
    t0 = times[-1] - fraction * (times[-1] - times[0])
    x = q[times >= t0].reshape(-1, q.shape[2])
    x = x[np.all(np.isfinite(x), axis=1)]
    if max_samples is not None and x.shape[0] > max_samples:
        idx = np.random.default_rng(seed).choice(x.shape[0], max_samples, replace=False)
        x = x[np.sort(idx)]
    return x


def density_on_bins(x, edges) -> np.ndarray:
    """Normalized histogram density of 1D samples x on ``edges`` (counts outside are kept in the
    normalization, so the density integrates to the fraction inside)."""
    x = np.asarray(x, dtype=float).ravel()
    counts, _ = np.histogram(x, bins=edges)
    return counts / (max(x.size, 1) * np.diff(edges))


# --------------------------------------------------------------------------------------------------
# mean path (4.3)
# --------------------------------------------------------------------------------------------------
def mean_path(q) -> np.ndarray:
    """Mean trajectory (4.3): q (n, M, d) -> (n, d), averaged over trajectories (NaN-aware)."""
    q = as_ensemble(q)
    return np.nanmean(q, axis=1)


def mean_path_se(q) -> np.ndarray:
    """Standard error of the mean path: sd over trajectories / sqrt(M), (n, d)."""
    q = as_ensemble(q)
    m = np.sum(np.isfinite(q), axis=1)
    return np.nanstd(q, axis=1, ddof=1) / np.sqrt(np.maximum(m, 1))


def interpolate_path(t_src, y_src, t_dst) -> np.ndarray:
    """Linear interpolation of y_src (n, d) at times t_src (n,) onto t_dst (k,) -> (k, d).

    t_dst must lie within [t_src[0], t_src[-1]] (up to 1e-9 relative); no extrapolation.
    """
    t_src = np.asarray(t_src, dtype=float)
    t_dst = np.asarray(t_dst, dtype=float)
    y = np.asarray(y_src, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if t_src.shape[0] != y.shape[0] or t_src.shape[0] < 2:
        raise InputError(f"t_src ({t_src.shape}) and y_src ({y.shape}) do not match")
    if np.any(np.diff(t_src) <= 0):
        raise InputError("t_src must be strictly increasing")
    tol = 1e-9 * max(1.0, abs(t_src[-1]))
    if t_dst.min() < t_src[0] - tol or t_dst.max() > t_src[-1] + tol:
        raise InputError(f"cannot extrapolate: target times [{t_dst.min()}, {t_dst.max()}] outside "
                         f"[{t_src[0]}, {t_src[-1]}]")
    return np.stack([np.interp(t_dst, t_src, y[:, i]) for i in range(y.shape[1])], axis=1)


def mean_path_max_error(t_a, path_a, t_b, path_b) -> float:
    """max over t in t_a (within the common time range) and coordinates of |path_a - path_b|,
    with path_b (n_b, d) linearly interpolated onto t_a.  Units of q."""
    t_a = np.asarray(t_a, dtype=float)
    t_b = np.asarray(t_b, dtype=float)
    pa = np.asarray(path_a, dtype=float).reshape(t_a.shape[0], -1)
    keep = (t_a >= t_b[0] - 1e-12) & (t_a <= t_b[-1] + 1e-9 * max(1.0, abs(t_b[-1])))
    if keep.sum() < 1:
        raise InputError("the two mean paths have no common time range")
    pb = interpolate_path(t_b, path_b, np.clip(t_a[keep], t_b[0], t_b[-1]))
    return float(np.max(np.abs(pa[keep] - pb)))


# --------------------------------------------------------------------------------------------------
# normalized ACF (4.4)
# --------------------------------------------------------------------------------------------------
def normalized_acf(q, max_lag: int, start: int = 0) -> np.ndarray:
    """Normalized ACF (4.4) per coordinate at lags 0..max_lag (in records): (max_lag + 1, d).

    With records n = start .. n_end - 1 of every trajectory l and lag k (N_k = n_end - start - k
    pairs per trajectory), the paper's time-and-ensemble averages are

        E~[q]       = (1/(M N_k)) sum_l sum_n q_n^(l),
        E~[q_.+k]   = (1/(M N_k)) sum_l sum_n q_(n+k)^(l),
        E~[q q_.+k] = (1/(M N_k)) sum_l sum_n q_n^(l) q_(n+k)^(l),   n = start .. n_end - 1 - k,

    and ACF(k) = (E~[q q_.+k] - E~[q] E~[q_.+k]) / Cov~(q), Cov~ the variance over all records
    n >= start and all trajectories.  ACF(0) = 1 up to the difference of the two variance
    estimates (exactly 1 at lag 0).  Sums of lagged products use FFTs over time (exact up to
    rounding).  Trajectories with non-finite values are dropped.
    """
    q = as_ensemble(q)
    q = q[start:]
    n = q.shape[0]
    if not 0 <= max_lag < n:
        raise InputError(f"max_lag must be in [0, {n - 1}] for {n} records, got {max_lag}")
    good = np.all(np.isfinite(q), axis=(0, 2))
    if not good.any():
        raise InputError("every trajectory contains non-finite values")
    q = q[:, good, :]
    M = q.shape[1]
    # centre by the global mean first (ACF is shift invariant; this keeps the products small)
    q = q - q.mean(axis=(0, 1), keepdims=True)
    nfft = 1 << int(math.ceil(math.log2(2 * n)))
    f = np.fft.rfft(q, n=nfft, axis=0)
    prod = np.fft.irfft(f * np.conj(f), n=nfft, axis=0)[: max_lag + 1].sum(axis=1)  # (L+1, d)
    csum = np.concatenate([np.zeros((1, q.shape[2])), np.cumsum(q.sum(axis=1), axis=0)])  # (n+1, d)
    lags = np.arange(max_lag + 1)
    nk = (n - lags)[:, None].astype(float)
    head = csum[n - lags]                 # sum_{n=0}^{n-k-1}
    tail = csum[n] - csum[lags]           # sum_{n=k}^{n-1}
    cov_k = prod / (M * nk) - (head / (M * nk)) * (tail / (M * nk))
    var = q.reshape(-1, q.shape[2]).var(axis=0)
    if np.any(var <= 0):
        raise InputError("q has zero variance; the normalized ACF is undefined")
    acf = cov_k / var
    acf[0] = 1.0
    return acf


def acf_l2_error(lags_a, acf_a, lags_b, acf_b, tau_max: float | None = None) -> float:
    """RMS difference of two ACFs over the lag window [0, tau_max]:

        sqrt( (1/tau_max) int_0^tau_max |acf_a(tau) - acf_b(tau)|^2 dtau )

    (trapezoid rule on lags_a, acf_b linearly interpolated; averaged over coordinates).  The
    L2 norm divided by sqrt(window length), so it is dimensionless and comparable across T.
    lags_*: (L,) in time units; acf_*: (L,) or (L, d).
    """
    la = np.asarray(lags_a, dtype=float)
    lb = np.asarray(lags_b, dtype=float)
    a = np.asarray(acf_a, dtype=float).reshape(la.shape[0], -1)
    if tau_max is None:
        tau_max = min(la[-1], lb[-1])
    if tau_max <= 0:
        raise InputError(f"tau_max must be > 0, got {tau_max}")
    keep = la <= tau_max * (1 + 1e-12)
    la, a = la[keep], a[keep]
    if la.shape[0] < 2:
        raise InputError("need at least two lags in the window")
    b = interpolate_path(lb, acf_b, np.clip(la, lb[0], lb[-1]))
    diff2 = np.mean((a - b) ** 2, axis=1)
    return float(math.sqrt(np.trapezoid(diff2, la) / (la[-1] - la[0])))


# --------------------------------------------------------------------------------------------------
# phase portrait
# --------------------------------------------------------------------------------------------------
def point_to_curve_distances(points, curve, chunk: int = 512) -> np.ndarray:
    """Euclidean distance of each point (n, k) to the polyline through curve (m, k), m >= 2."""
    x = np.asarray(points, dtype=float)
    c = np.asarray(curve, dtype=float)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1] or c.shape[0] < 2:
        raise InputError(f"points (n, k) and curve (m >= 2, k) expected, got {x.shape} and {c.shape}")
    a = c[:-1]
    seg = c[1:] - c[:-1]                                   # (m-1, k)
    len2 = np.maximum(np.einsum("ij,ij->i", seg, seg), 1e-300)
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], chunk):
        xs = x[s:s + chunk]                                # (c, k)
        rel = xs[:, None, :] - a[None, :, :]               # (c, m-1, k)
        t = np.clip(np.einsum("cmk,mk->cm", rel, seg) / len2, 0.0, 1.0)
        d = rel - t[:, :, None] * seg[None, :, :]
        out[s:s + chunk] = np.sqrt(np.min(np.einsum("cmk,cmk->cm", d, d), axis=1))
    return out


def phase_portrait_distance(orbit_a, orbit_b) -> dict:
    """Distance between two phase-space orbits (n, k) and (m, k), e.g. k = 2 for (q, p) in 1D.

    ``mean``: symmetric mean point-to-curve distance
    (mean_x dist(x, curve_b) + mean_y dist(y, curve_a)) / 2, each orbit read as the polyline
    through its recorded points, so unequal sampling densities do not bias it; ``hausdorff``:
    the max of the same distances.  Units of (q, p).
    """
    a = np.asarray(orbit_a, dtype=float)
    b = np.asarray(orbit_b, dtype=float)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise InputError("orbits contain non-finite values")
    dab = point_to_curve_distances(a, b)
    dba = point_to_curve_distances(b, a)
    return {"mean": float(0.5 * (dab.mean() + dba.mean())),
            "hausdorff": float(max(dab.max(), dba.max()))}
