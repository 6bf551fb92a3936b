"""Statistics of trajectories of the damped map (3.2): errors, autocorrelation, temperature, normality.

All functions take plain arrays; :func:`equilibrium_summary` takes any object with the fields of
``bayescg.simulate.SimulationResult`` (duck typing).  Conventions:

* batch means: a series of length n is cut into B contiguous batches; the spread of the batch means
  estimates the standard error of the mean of an autocorrelated series;
* integrated autocorrelation time (IAT) ``tau = 1 + 2 sum_{t>=1} rho_t`` by Geyer's initial monotone
  sequence estimator, pooled over walkers; the effective sample size is ``n / tau``;
* kinetic inverse temperature (3.5): ``beta_hat = d / Tr(A Cov p)`` with A = M^-1 (equipartition
  E[p^T A p] = d / beta; 1 / var(p) for d = 1 and M = 1; after the stage-2 calibration Cov(p) = I / beta);
* configurational inverse temperature: ``beta_conf = E[Lap U] / E[|grad U|^2]`` (integration by parts
  under exp(-beta U) gives E[|grad U|^2] = E[Lap U] / beta).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np
from scipy import stats as _st

from .errors import InputError

__all__ = [
    "batch_means", "batch_means_se", "autocorrelation", "integrated_autocorrelation_time",
    "pooled_iat", "thinning_stride", "beta_from_momenta", "beta_from_second_moments",
    "normality_univariate", "mardia_test", "henze_zirkler_test", "normality_test",
    "configurational_beta", "EquilibriumSummary", "equilibrium_summary", "effective_iat_steps", "p2_iat_steps",
    "walker_count_variance", "histogram_variance_inflation",
]


# --------------------------------------------------------------------------------------------------
# batch means
# --------------------------------------------------------------------------------------------------
def batch_means(x, n_batches: int = 20) -> np.ndarray:
    """Means of ``n_batches`` contiguous batches of ``x`` along axis 0.

    x: (n, ...) -> (B, ...).  Trailing ``n mod B`` samples are dropped (from the start, so the most
    equilibrated end is kept).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim == 0 or x.shape[0] < 2 * n_batches or n_batches < 2:
        raise InputError(f"batch means need at least {2 * max(n_batches, 2)} samples, got {x.shape[:1]}")
    m = x.shape[0] // n_batches
    x = x[x.shape[0] - m * n_batches:]
    return x.reshape((n_batches, m) + x.shape[1:]).mean(axis=1)


def batch_means_se(batches) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error from batch means ``batches`` (B, ...): se = sd(batches) / sqrt(B)."""
    b = np.asarray(batches, dtype=float)
    if b.shape[0] < 2:
        raise InputError("need at least 2 batches for a standard error")
    return b.mean(axis=0), b.std(axis=0, ddof=1) / math.sqrt(b.shape[0])


# --------------------------------------------------------------------------------------------------
# autocorrelation
# --------------------------------------------------------------------------------------------------
def _autocov(x: np.ndarray, mean: float) -> np.ndarray:
    """Biased autocovariance c_t = (1/n) sum_{s} (x_s - m)(x_{s+t} - m), t = 0..n-1, by FFT."""
    n = x.size
    y = x - mean
    nfft = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(y, nfft)
    return np.fft.irfft(f * np.conj(f), nfft)[:n] / n


def autocorrelation(x) -> np.ndarray:
    """Normalised autocorrelation rho_t of a 1D series x (n,), t = 0..n-1."""
    x = np.asarray(x, dtype=float).ravel()
    c = _autocov(x, x.mean())
    return c / c[0] if c[0] > 0 else np.zeros_like(c)


def integrated_autocorrelation_time(chains) -> float:
    """Integrated autocorrelation time tau = 1 + 2 sum rho_t (in units of the sampling interval).

    chains: (n,) or a list of 1D arrays (one per walker, lengths may differ).  Autocovariances are
    computed around the pooled mean, averaged over walkers weighted by length, and summed with
    Geyer's initial monotone sequence: pair sums Gamma_k = rho_{2k} + rho_{2k+1} are kept while
    positive and forced non-increasing (Geyer 1992).  A constant series gives tau = 1.
    """
    if isinstance(chains, np.ndarray) and chains.ndim == 1:
        chains = [chains]
    chains = [np.asarray(c, dtype=float).ravel() for c in chains if np.size(c) >= 4]
    if not chains:
        raise InputError("integrated autocorrelation time needs a series of at least 4 samples")
    mean = np.concatenate(chains).mean()
    nmax = max(c.size for c in chains)
    acc = np.zeros(nmax)
    weight = np.zeros(nmax)
    for c in chains:
        a = _autocov(c, mean)
        acc[: c.size] += a * c.size
        weight[: c.size] += c.size
    cov = acc / np.maximum(weight, 1)
    if cov[0] <= 0:
        return 1.0
    rho = cov / cov[0]
    # Geyer initial monotone sequence
    npairs = (nmax - 1) // 2
    tau = -1.0
    prev = np.inf
    for k in range(npairs):
        g = rho[2 * k] + rho[2 * k + 1]
        if g <= 0:
            break
        g = min(g, prev)
        prev = g
        tau += 2.0 * g
    return float(max(tau, 1.0 / nmax))


def pooled_iat(samples, walker=None) -> float:
    """Largest IAT over the columns of samples (n, d) [or (n,)], pooled over walkers (``walker`` (n,))."""
    x = np.asarray(samples, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if walker is None:
        walker = np.zeros(x.shape[0], dtype=int)
    walker = np.asarray(walker)
    ids = np.unique(walker)
    taus = []
    for j in range(x.shape[1]):
        taus.append(integrated_autocorrelation_time([x[walker == w, j] for w in ids]))
    return float(max(taus))


def thinning_stride(tau: float) -> int:
    """Stride that makes thinned samples nearly independent: ceil(tau) (tau = IAT in samples)."""
    if not np.isfinite(tau) or tau <= 0:
        raise InputError(f"IAT must be positive and finite, got {tau}")
    return max(1, int(math.ceil(tau)))


def thin_samples(x, walker, stride):
    if walker is None:
        return x[::stride]
    parts = [x[walker == w][::stride] for w in np.unique(walker)]
    return np.concatenate(parts, axis=0)


# --------------------------------------------------------------------------------------------------
# temperature
# --------------------------------------------------------------------------------------------------
def beta_from_momenta(p, walker=None, n_batches: int = 20, mass=None) -> tuple[float, float]:
    """Kinetic inverse temperature (3.5) and its standard error from momenta p (n,) or (n, d).

    beta_hat = d / Tr(A Cov(p)) (equipartition E[p^T A p] = d / beta; A = M^-1 (d, d) ``mass``, default I).
    The se follows from the delta method, se(beta) = beta^2 se(v) / d with v = Tr(A Cov p), se(v) from batch
    means of (p - mean)^T A (p - mean) (contiguous batches per walker, pooled).
    """
    p = np.asarray(p, dtype=float)
    if p.ndim == 1:
        p = p[:, None]
    d = p.shape[1]
    A = np.eye(d) if mass is None else np.atleast_2d(np.asarray(mass, dtype=float))
    dp = p - p.mean(axis=0)
    sq = np.einsum("ni,ij,nj->n", dp, A, dp)
    v = sq.mean() * p.shape[0] / max(p.shape[0] - 1, 1)
    if v <= 0:
        raise InputError("momenta have zero variance (all walkers trapped?)")
    if walker is None:
        b = batch_means(sq, n_batches)
    else:
        walker = np.asarray(walker)
        b = np.concatenate([batch_means(sq[walker == w], max(2, n_batches // len(np.unique(walker))))
                            for w in np.unique(walker)])
    _, se_v = batch_means_se(b)
    beta = d / v
    return float(beta), float(beta ** 2 * se_v / d)


def beta_from_second_moments(second_moment_batches, mean=None) -> tuple[float, float]:
    """beta_hat = d / Tr(E[p p^T] - m m^T) and se from batch means of p p^T (B, d, d)."""
    b = np.asarray(second_moment_batches, dtype=float)
    d = b.shape[-1]
    tr = np.trace(b, axis1=-2, axis2=-1)
    m2 = 0.0 if mean is None else float(np.dot(mean, mean))
    v_mean, v_se = batch_means_se(tr)
    v = float(v_mean) - m2
    if v <= 0:
        raise InputError("momentum second moment is not positive")
    beta = d / v
    return beta, float(beta ** 2 * v_se / d)


def configurational_beta(q, gradient: Callable, laplacian: Callable | None = None,
                         h: float = 1e-4) -> tuple[float, float]:
    """Configurational inverse temperature beta_conf = E[Lap U] / E[|grad U|^2] and its se.

    q: (n, d) or (n,) samples (nearly independent: thin first).  gradient(q (n, d)) -> (n, d);
    laplacian(q) -> (n,) or, if None, by central differences of the gradient with step h.
    The se is from the delta method for a ratio of means of independent-sample averages.
    """
    q = np.asarray(q, dtype=float)
    if q.ndim == 1:
        q = q[:, None]
    g = np.asarray(gradient(q), dtype=float).reshape(q.shape)
    if laplacian is None:
        lap = np.zeros(q.shape[0])
        for j in range(q.shape[1]):
            e = np.zeros(q.shape[1])
            e[j] = h
            lap += (np.asarray(gradient(q + e)).reshape(q.shape)[:, j]
                    - np.asarray(gradient(q - e)).reshape(q.shape)[:, j]) / (2 * h)
    else:
        lap = np.asarray(laplacian(q), dtype=float).ravel()
    g2 = (g ** 2).sum(axis=1)
    a, b = lap.mean(), g2.mean()
    if b <= 0:
        raise InputError("E|grad U|^2 is zero: configurational temperature undefined")
    n = q.shape[0]
    cov = np.cov(np.vstack([lap, g2])) / n
    r = a / b
    var = (cov[0, 0] - 2 * r * cov[0, 1] + r * r * cov[1, 1]) / b ** 2
    return float(r), float(math.sqrt(max(var, 0.0)))


# --------------------------------------------------------------------------------------------------
# normality
# --------------------------------------------------------------------------------------------------
def normality_univariate(x) -> tuple[float, float]:
    """D'Agostino-Pearson K^2 test of a 1D sample (n >= 20): (statistic, p-value)."""
    x = np.asarray(x, dtype=float).ravel()
    if x.size < 20:
        raise InputError(f"normality test needs at least 20 samples, got {x.size}")
    r = _st.normaltest(x)
    return float(r.statistic), float(r.pvalue)


def _standardize(x):
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    n, d = x.shape
    if n < d + 2:
        raise InputError(f"need more than {d + 1} samples for a {d}-dimensional normality test")
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n  # MLE covariance (Mardia 1970; Henze & Zirkler 1990)
    try:
        ch = np.linalg.cholesky(s)
    except np.linalg.LinAlgError:
        raise InputError("sample covariance is singular: normality test undefined") from None
    return np.linalg.solve(ch, xc.T).T  # rows y_j with y_j^T y_k = (x_j-m)^T S^-1 (x_k-m)


def mardia_test(x) -> dict:
    """Mardia's multivariate skewness and kurtosis tests (Mardia 1970).

    x: (n, d).  b1 = (1/n^2) sum_{jk} g_jk^3, n b1 / 6 ~ chi2(d(d+1)(d+2)/6);
    b2 = (1/n) sum_j g_jj^2, (b2 - d(d+2)) / sqrt(8 d (d+2) / n) ~ N(0, 1);  g_jk = y_j . y_k.
    Returns dict(skewness=b1, kurtosis=b2, p_skewness, p_kurtosis, statistic, pvalue) where the
    combined p-value is the Bonferroni min(1, 2 min(p_skew, p_kurt)).
    """
    y = _standardize(x)
    n, d = y.shape
    b1 = 0.0
    for i in range(0, n, 1024):  # chunks keep memory at O(1024 n)
        b1 += float(((y[i:i + 1024] @ y.T) ** 3).sum())
    b1 /= n * n
    b2 = float(((y * y).sum(axis=1) ** 2).mean())
    dfree = d * (d + 1) * (d + 2) / 6
    p_skew = float(_st.chi2.sf(n * b1 / 6, dfree))
    zk = (b2 - d * (d + 2)) / math.sqrt(8 * d * (d + 2) / n)
    p_kurt = float(2 * _st.norm.sf(abs(zk)))
    return dict(skewness=b1, kurtosis=b2, p_skewness=p_skew, p_kurtosis=p_kurt,
                statistic=float(n * b1 / 6), pvalue=min(1.0, 2 * min(p_skew, p_kurt)))


def henze_zirkler_test(x) -> tuple[float, float]:
    """Henze-Zirkler test of multivariate normality (Henze & Zirkler 1990): (HZ, p-value).

    HZ = (1/n) sum_{jk} e^{-b^2 D_jk/2} - 2 (1+b^2)^{-d/2} sum_j e^{-b^2 D_j / (2(1+b^2))}
         + n (1+2b^2)^{-d/2},  D_jk = |y_j - y_k|^2, D_j = |y_j|^2,
    b = ((2d+1) n / 4)^{1/(d+4)} / sqrt(2); HZ is n times the N(0, b^2 I)-weighted L2 distance of the
    empirical characteristic function of the standardized data to exp(-|t|^2/2).  The p-value uses the
    log-normal approximation of the null law with the exact first two moments.
    """
    y = _standardize(x)
    n, d = y.shape
    b = ((2 * d + 1) * n / 4) ** (1 / (d + 4)) / math.sqrt(2)
    b2 = b * b
    nrm = (y * y).sum(axis=1)
    s = 0.0
    for i in range(0, n, 1024):
        dij = nrm[i:i + 1024, None] + nrm[None, :] - 2 * y[i:i + 1024] @ y.T
        s += float(np.exp(-0.5 * b2 * np.maximum(dij, 0.0)).sum())
    hz = (s / n - 2 * (1 + b2) ** (-d / 2) * np.exp(-b2 * nrm / (2 * (1 + b2))).sum()
          + n * (1 + 2 * b2) ** (-d / 2))
    a = 1 + 2 * b2
    w = (1 + b2) * (1 + 3 * b2)
    b4, b8 = b2 * b2, b2 ** 4
    mu = 1 - a ** (-d / 2) * (1 + d * b2 / a + d * (d + 2) * b4 / (2 * a * a))
    si2 = (2 * (1 + 4 * b2) ** (-d / 2)
           + 2 * a ** (-d) * (1 + 2 * d * b4 / a ** 2 + 3 * d * (d + 2) * b8 / (4 * a ** 4))
           - 4 * w ** (-d / 2) * (1 + 3 * d * b4 / (2 * w) + d * (d + 2) * b8 / (2 * w * w)))
    pmu = math.log(math.sqrt(mu ** 4 / (si2 + mu ** 2)))
    psi = math.sqrt(math.log((si2 + mu ** 2) / mu ** 2))
    p = float(_st.lognorm.sf(hz, psi, scale=math.exp(pmu)))
    return float(hz), p


def normality_test(p, max_points: int = 5000, seed: int = 0) -> dict:
    """Normality test of (decorrelated) momenta p (n,) or (n, d) -> {statistic, pvalue, test}.

    d = 1: D'Agostino-Pearson; d >= 2: Henze-Zirkler (at most 2000 points, O(n^2)).  If there are more
    points than allowed, a random subset (fixed seed) is used.
    """
    p = np.asarray(p, dtype=float)
    if p.ndim == 2 and p.shape[1] == 1:
        p = p[:, 0]
    cap = max_points if p.ndim == 1 else min(max_points, 2000)
    if p.shape[0] > cap:
        idx = np.sort(np.random.default_rng(seed).choice(p.shape[0], cap, replace=False))
        p = p[idx]
    if p.ndim == 1:
        s, pv = normality_univariate(p)
        return dict(statistic=s, pvalue=pv, test="dagostino-pearson", n=int(p.size))
    s, pv = henze_zirkler_test(p)
    return dict(statistic=s, pvalue=pv, test="henze-zirkler", n=int(p.shape[0]))


# --------------------------------------------------------------------------------------------------
# summary of a simulation
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class EquilibriumSummary:
    """Equilibrium statistics of one simulation (see :func:`equilibrium_summary`).

    iat: integrated autocorrelation time in stored samples (max over q and p components);
    iat_steps: the IAT in integrator steps used for n_eff (see ``n_eff_method``);
    q_iat_steps: the simulator's streaming batch-means IAT of q in steps (NaN when absent);
    n_eff: effective number of independent samples of the trajectory;
    n_eff_factor: n_eff / (number of histogram counts), the tempering factor of the histogram likelihood;
    n_eff_method: "stored" (stored samples / iat) or which estimates entered (see :func:`effective_iat_steps`).
    """

    beta_hat: float
    beta_hat_se: float
    normality: dict
    iat: float
    iat_steps: float
    n_eff: float
    n_eff_factor: float
    stride: int
    n_samples: int
    q_iat_steps: float = float("nan")
    n_eff_method: str = "stored"

    @property
    def normality_statistic(self) -> float:
        return float(self.normality["statistic"])

    @property
    def normality_pvalue(self) -> float:
        return float(self.normality["pvalue"])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: Stored-sample IAT (in stored samples) from which that estimate is taken as resolved (see equilibrium_summary).
RESOLVED_IAT = 3.0


def p2_iat_steps(beta_hat, beta_hat_se, momentum_covariance, accumulated_steps, mass=None):
    """IAT in steps of p^T A p implied by the simulator's batch-means standard error of beta_hat.

    beta_hat = d / v with v = E[p^T A p] (zero-mean p, A = M^-1 ``mass``, default I), so se(v) = d se(beta) /
    beta^2 (delta method); with N pooled steps, se(v)^2 = tau var(p^T A p) / N and, p being Gaussian (normality
    is tested), var(p^T A p) = 2 Tr((A C)^2): tau = N se(v)^2 / (2 Tr (A C)^2).  None when any input is missing
    or not finite.
    """
    try:
        C = np.atleast_2d(np.asarray(momentum_covariance, dtype=float))
        if mass is not None:
            C = np.atleast_2d(np.asarray(mass, dtype=float)) @ C
        b, se, n = float(beta_hat), float(beta_hat_se), float(accumulated_steps)
    except (TypeError, ValueError):
        return None
    if not (np.isfinite(b) and b > 0 and np.isfinite(se) and se > 0 and n > 0 and np.all(np.isfinite(C))):
        return None
    var = 2.0 * float(np.trace(C @ C))
    if var <= 0:
        return None
    sev = C.shape[0] * se / b ** 2
    return n * sev ** 2 / var


def effective_iat_steps(q_iat_steps, accumulated_steps, iat_stored: float, stride: int,
                        q2_iat_steps=None, p2_iat=None) -> tuple[float, str]:
    """IAT in steps behind the histogram's n_eff, and which estimates gave it.

    The counts of the histogram are correlated through every slow observable of q, odd (q: hopping between
    wells) and even (q^2: energy).  Each available IAT estimate is a lower bound on that relevant IAT, so
    the largest is taken:
      * ``q_iat_steps`` (simulator, streaming batch means of q over every post-burn-in step);
      * ``q2_iat_steps`` (the same for q_i^2, when the simulator provides it);
      * ``p2_iat`` (IAT of |p|^2 from the batch-means se of beta_hat, :func:`p2_iat_steps`): energy, an even mode;
      * the stored-sample estimate iat_stored * stride, only when resolved (iat_stored >= RESOLVED_IAT):
        otherwise it is just the storage stride, a cap, not an estimate.
    The q-only streaming IAT alone is not enough: for an underdamped oscillation the autocorrelation of q
    changes sign and its IAT is tiny (Test 1, delta 0.5: 0.38 steps, while q^2 has 9.9 and |p|^2 about 20 steps;
    bands built on 0.38 covered U_0 at 25 % of points, on 20 at 99 %).  Without an even-moment estimate (no q^2
    or |p|^2 IAT, stored estimate unresolved) the stored cap stays in force (n_eff = number of stored samples).
    Returns (iat_steps, method) with method naming the estimates used.
    """
    stored = float(iat_stored) * max(int(stride), 1)
    resolved = iat_stored >= RESOLVED_IAT

    def ok(x):
        return x is not None and np.isfinite(x) and x > 0

    if not (ok(q_iat_steps) and ok(accumulated_steps)):
        return stored, "stored"
    cands = {"streaming q": max(float(q_iat_steps), 1.0)}
    if ok(q2_iat_steps):
        cands["streaming q^2"] = max(float(q2_iat_steps), 1.0)
    if ok(p2_iat):
        cands["streaming |p|^2"] = max(float(p2_iat), 1.0)
    if resolved:
        cands["stored"] = stored
    elif len(cands) == 1:
        cands["stored cap (no even-moment IAT)"] = stored
    name = max(cands, key=cands.get)
    return cands[name], f"max of {', '.join(cands)}: {name}"


#: Fewest independent walkers (clusters) from which a walker-to-walker variance is used.
MIN_WALKERS = 4


def walker_count_variance(walker_counts) -> np.ndarray | None:
    """Var of each histogram cell's total count from W independent walkers (clusters), shape of one histogram.

    walker_counts: (W, *cells) counts of each walker.  Residuals r_wc = n_wc - l_w N_c / N (l_w the walker's
    counts in the grid, N_c / N the pooled fraction) are independent over walkers with mean ~0, so
    Var(N_c) = W / (W - 1) sum_w r_wc^2 (the W / (W - 1) for the pooled fraction estimated from the same
    walkers).  The contract's batch-means ``hist_count_var`` is the same sum over walker-batches.  None when
    fewer than :data:`MIN_WALKERS` walkers.
    """
    n = np.asarray(walker_counts, dtype=float)
    W = n.shape[0]
    if W < MIN_WALKERS:
        return None
    flat = n.reshape(W, -1)
    tot = flat.sum(axis=0)
    N = tot.sum()
    r = flat - flat.sum(axis=1, keepdims=True) * (tot / N)[None, :]
    return (W / (W - 1) * (r ** 2).sum(axis=0)).reshape(n.shape[1:])


def histogram_variance_inflation(counts, count_var) -> float:
    """tau_hist = sum_c Var(N_c) / sum_c N p_c (1 - p_c): the measured variance of the cell counts over the
    multinomial variance of N independent samples, summed over the cells (each cell weighted by its multinomial
    variance, so the cells that hold the data dominate).  The histogram likelihood is tempered by 1 / tau_hist:
    a power likelihood whose count variance matches the measured one in total (n_eff = N / tau_hist).

    Only the diagonal of the count covariance enters: correlations between cells (slow modes of q that move
    many cells together) are not seen here; :func:`bayescg.fit.fit_effective_potential` checks the band of U
    against them (walker-clustered sandwich).
    """
    c = np.asarray(counts, dtype=float).ravel()
    v = np.asarray(count_var, dtype=float).ravel()
    N = c.sum()
    mult = float(np.sum(c * (1.0 - c / N)))
    if not (N > 0 and mult > 0 and np.all(np.isfinite(v))):
        return float("nan")
    return float(v.sum() / mult)


def equilibrium_summary(sim, max_points: int = 5000) -> EquilibriumSummary:
    """beta_hat (3.5), normality of p on IAT-thinned samples, IAT and effective sample size of ``sim``.

    ``sim`` needs samples_q (n, d), samples_p (n, d), sample_walker (n,), sample_stride and
    optionally beta_hat / beta_hat_se (used when present: computed over all steps by the simulator),
    hist_counts, q_iat_steps, q2_iat_steps and accumulated_steps (streaming IATs: :func:`effective_iat_steps`).
    n_eff = N / tau_hist (:func:`histogram_variance_inflation`) when the cell-count variance is known
    (``hist_count_var`` batch means, else ``walker_hist_counts`` with >= MIN_WALKERS walkers); otherwise
    accumulated_steps / iat_steps with streaming IATs, else n_stored / iat.
    """
    q = np.asarray(sim.samples_q, dtype=float)
    p = np.asarray(sim.samples_p, dtype=float)
    if q.ndim == 1:
        q, p = q[:, None], p[:, None]
    walker = np.asarray(getattr(sim, "sample_walker", np.zeros(q.shape[0], dtype=int)))
    if q.shape[0] < 40:
        raise InputError(f"only {q.shape[0]} stored samples: too few for equilibrium statistics")
    tau = max(pooled_iat(q, walker), pooled_iat(p, walker))
    stride = thinning_stride(tau)
    sample_stride = int(getattr(sim, "sample_stride", 1) or 1)
    q_iat = getattr(sim, "q_iat_steps", None)
    acc = getattr(sim, "accumulated_steps", None)
    beta = getattr(sim, "beta_hat", None)
    beta_se = getattr(sim, "beta_hat_se", None)
    p2 = None
    if beta is None or not np.isfinite(beta):
        beta, beta_se = beta_from_momenta(p, walker, mass=getattr(sim, "mass", None))
    elif getattr(sim, "momentum_covariance", None) is not None:
        # the simulator's se covers all steps
        p2 = p2_iat_steps(beta, beta_se, sim.momentum_covariance, acc, mass=getattr(sim, "mass", None))
    iat_steps, method = effective_iat_steps(q_iat, acc, tau, sample_stride, getattr(sim, "q2_iat_steps", None), p2)
    n_eff = float(acc) / iat_steps if method != "stored" else q.shape[0] / tau
    counts = getattr(sim, "hist_counts", None)
    # the histogram's own effective size: variance of its cell counts (batch means from the simulator, else
    # the walker-to-walker spread); the IAT rules above stay only as the fallback (one walker, no batches)
    cvar = getattr(sim, "hist_count_var", None)
    cname = "batch means of the cell counts"
    if cvar is None and getattr(sim, "walker_hist_counts", None) is not None:
        cvar, cname = walker_count_variance(sim.walker_hist_counts), "walker-to-walker variance of the cell counts"
    if counts is not None and cvar is not None and not getattr(sim, "hist_marginal", False):
        th = histogram_variance_inflation(counts, cvar)
        if np.isfinite(th) and th > 0:
            iat_steps, method = max(th, 1.0), f"histogram: {cname} (tau_hist = {th:.3g})"
            n_eff = float(np.sum(counts)) / iat_steps
    pt = thin_samples(p, walker, stride)
    if pt.shape[0] < 20:
        # fewer than 20 independent points: test all stored points; positive correlation makes the test
        # anti-conservative (p-values too small), which errs towards "not Gaussian / not converged"
        pt = p
    norm = normality_test(pt, max_points=max_points)
    total = float(np.sum(counts)) if counts is not None else float(q.shape[0])
    factor = min(1.0, n_eff / total) if total > 0 else 1.0
    return EquilibriumSummary(beta_hat=float(beta), beta_hat_se=float(beta_se), normality=norm,
                              iat=float(tau), iat_steps=float(iat_steps),
                              n_eff=float(n_eff), n_eff_factor=float(factor), stride=stride,
                              n_samples=int(q.shape[0]),
                              q_iat_steps=float(q_iat) if q_iat is not None else float("nan"),
                              n_eff_method=method)


# --------------------------------------------------------------------------------------------------
# shape of the momentum law: effect sizes with batch-means (jackknife) standard errors
# --------------------------------------------------------------------------------------------------
def moment_batches(x, walker=None, n_batches: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per-walker batch means of x_i^k, k = 1..4, from samples: the stand-in for the simulator's streamed
    ``SimulationResult.p_moment_batches`` when only stored samples exist.

    x: (n,) or (n, d) samples, in time order within each walker; walker: (n,) ids (default: one walker).
    Each walker's series is cut into ``min(n_batches, n_w // 2)`` contiguous batches (the remainder dropped from
    its start, as in :func:`batch_means`).  Returns ``(M, counts)``: M (W, B, d, 4) batch means with B the largest
    batch count of any walker, counts (W, B) samples per batch (0 where a walker has fewer batches).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    walker = np.zeros(x.shape[0], dtype=int) if walker is None else np.asarray(walker)
    ids = np.unique(walker)
    parts = []
    for w in ids:
        xs = x[walker == w]
        b = min(int(n_batches), xs.shape[0] // 2)
        if b < 1:
            continue
        m = xs.shape[0] // b
        xs = xs[xs.shape[0] - m * b:].reshape(b, m, x.shape[1])
        parts.append(np.stack([(xs ** k).mean(axis=1) for k in (1, 2, 3, 4)], axis=-1))
    if not parts:
        raise InputError("moment batches need at least 2 samples of some walker")
    B = max(p.shape[0] for p in parts)
    M = np.zeros((len(parts), B, x.shape[1], 4))
    counts = np.zeros((len(parts), B))
    for i, (w, p) in enumerate(zip(ids, parts)):
        M[i, :p.shape[0]] = p
        counts[i, :p.shape[0]] = (walker == w).sum() // p.shape[0]
    return M, counts


def _skew_kurt(raw):
    """Skewness and excess kurtosis (..., d) from pooled raw moments raw (..., d, 4) of x^1..x^4."""
    m1, m2, m3, m4 = (raw[..., k] for k in range(4))
    c2 = m2 - m1 ** 2
    c3 = m3 - 3 * m1 * m2 + 2 * m1 ** 3
    c4 = m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4
    with np.errstate(divide="ignore", invalid="ignore"):
        return c3 / c2 ** 1.5, c4 / c2 ** 2 - 3.0


def _jackknife_se(stat, blocks, weights):
    """Delete-one-block jackknife se of ``stat(pooled)`` where pooled = weighted mean of blocks (n, ...)."""
    n = blocks.shape[0]
    wsum = weights.sum()
    total = np.tensordot(weights, blocks, axes=1)
    keep = weights > 0
    loo = (total[None] - weights[keep].reshape((-1,) + (1,) * (blocks.ndim - 1)) * blocks[keep]) \
        / (wsum - weights[keep]).reshape((-1,) + (1,) * (blocks.ndim - 1))
    vals = np.asarray(stat(loo))
    k = int(keep.sum())
    if k < 2:
        return np.full(vals.shape[1:], np.nan)
    return np.sqrt((k - 1) / k * ((vals - vals.mean(axis=0)) ** 2).sum(axis=0))


def shape_effects(moment_batches_, counts=None) -> dict:
    """Skewness and excess kurtosis per coordinate, with standard errors, from batch moments.

    moment_batches_: (W, B, d, 4) batch means of x_i^k (k = 1..4) of W walkers (``SimulationResult.p_moment_batches``
    of the untrapped walkers, or :func:`moment_batches`); counts: (W, B) or (B,) samples per batch (default equal).
    The estimates use the pooled moments.  Their standard error is the larger of two delete-one jackknifes: over
    all W*B batches (batch means: valid when a batch is much longer than the autocorrelation time) and over the W
    walkers (covers what persists within a walker, e.g. walkers stuck in different regions; only with W >= 4).
    Returns dict(skewness (d,), skewness_se (d,), excess_kurtosis (d,), excess_kurtosis_se (d,), batches=W*B).
    For a Gaussian law both effects are 0; for a variance mixture of Gaussians (temperature varying with q)
    the excess kurtosis is 3 CV(T)^2.
    """
    M = np.asarray(moment_batches_, dtype=float)
    if M.ndim != 4 or M.shape[-1] != 4:
        raise InputError(f"moment batches must have shape (walkers, batches, d, 4), got {M.shape}")
    W, B, d, _ = M.shape
    if counts is None:
        counts = np.ones((W, B))
    counts = np.broadcast_to(np.asarray(counts, dtype=float), (W, B))
    pooled = np.tensordot(counts.ravel(), M.reshape(W * B, d, 4), axes=1) / counts.sum()
    skew, kurt = _skew_kurt(pooled)

    def stat(raw):
        s, k = _skew_kurt(raw)
        return np.stack([s, k], axis=-2)  # (..., 2, d)

    se = _jackknife_se(stat, M.reshape(W * B, d, 4), counts.ravel())
    if W >= 4:
        wc = counts.sum(axis=1)
        wm = np.einsum("wb,wbdk->wdk", counts, M) / np.where(wc > 0, wc, 1.0)[:, None, None]
        se = np.fmax(se, _jackknife_se(stat, wm, wc))
    return dict(skewness=skew, skewness_se=se[0], excess_kurtosis=kurt, excess_kurtosis_se=se[1],
                batches=int((counts > 0).sum()))


def mardia_kurtosis_effect(x, walker=None, n_batches: int = 32) -> dict:
    """Multivariate shape effects of samples x (n, d) with jackknife (batch-means) standard errors.

    kurtosis_effect = 3 (b2 / (d (d + 2)) - 1) with Mardia's b2 = E[((x - m)^T S^-1 (x - m))^2]: 0 for a Gaussian,
    equal to the common excess kurtosis of the coordinates for an isotropic variance mixture (3 CV(T)^2) and to
    3 sum_i kappa_i / (d (d + 2)) for independent coordinates with excess kurtoses kappa_i; invariant under
    x -> A x + b.  skewness_effect = sqrt(b1) with Mardia's b1 = sum_{abc} E[y_a y_b y_c]^2 (y = S^-1/2 (x - m)),
    |skewness| for d = 1.  Per-batch moment tensors of x (centred at the pooled mean) are jackknifed over all
    walker batches and over walkers, the larger se is kept (see :func:`shape_effects`).
    """
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    n, d = x.shape
    walker = np.zeros(n, dtype=int) if walker is None else np.asarray(walker)
    xc = x - x.mean(axis=0)
    blocks, weights, owner = [], [], []
    for i, w in enumerate(np.unique(walker)):
        xs = xc[walker == w]
        b = min(int(n_batches), xs.shape[0] // 2)
        if b < 1:
            continue
        m = xs.shape[0] // b
        xs = xs[xs.shape[0] - m * b:].reshape(b, m, d)
        t2 = np.einsum("bna,bnc->bac", xs, xs) / m
        t3 = np.einsum("bna,bnc,bne->bace", xs, xs, xs) / m
        t4 = np.einsum("bna,bnc,bne,bnf->bacef", xs, xs, xs, xs) / m
        blocks.append(np.concatenate([t2.reshape(b, -1), t3.reshape(b, -1), t4.reshape(b, -1)], axis=1))
        weights += [m] * b
        owner += [i] * b
    if not blocks:
        raise InputError("Mardia effects need at least 2 samples of some walker")
    blocks = np.concatenate(blocks)
    weights = np.asarray(weights, dtype=float)
    owner = np.asarray(owner)

    def stat(flat):
        flat = np.atleast_2d(flat)
        t2 = flat[:, :d * d].reshape(-1, d, d)
        t3 = flat[:, d * d:d * d + d ** 3].reshape(-1, d, d, d)
        t4 = flat[:, d * d + d ** 3:].reshape(-1, d, d, d, d)
        si = np.linalg.inv(t2)
        b2 = np.einsum("kab,kce,kacbe->k", si, si, t4)
        b1 = np.einsum("kad,kbe,kcf,kabc,kdef->k", si, si, si, t3, t3)
        return np.stack([3.0 * (b2 / (d * (d + 2)) - 1.0), np.sqrt(np.maximum(b1, 0.0))], axis=-1)

    est = stat(np.tensordot(weights, blocks, axes=1) / weights.sum())[0]
    se = _jackknife_se(stat, blocks, weights)
    nw = owner.max() + 1
    if nw >= 4:
        wsum = np.bincount(owner, weights, minlength=nw)
        wb = np.stack([np.tensordot(weights[owner == i], blocks[owner == i], axes=1) / wsum[i] for i in range(nw)])
        se = np.fmax(se, _jackknife_se(stat, wb, wsum))
    return dict(kurtosis_effect=float(est[0]), kurtosis_effect_se=float(se[0]),
                skewness_effect=float(est[1]), skewness_effect_se=float(se[1]), batches=int(blocks.shape[0]))
