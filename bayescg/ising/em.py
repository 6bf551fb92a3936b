"""Learning (theta_c, theta_cf) by expectation-maximization: Monte Carlo EM and exact EM.

Marginal likelihood of one fine configuration (X summed out; slides, "Expectation maximization"):

    log p(x | theta) = log sum_X exp(-beta U_c(X)) prod_r p_cf(x_r | X_r) - log Z_c(theta_c)     (E1)

Both terms are partition functions of coarse chains (the first with emission factors), computed
exactly by :mod:`bayescg.ising.chain`.  Gradients (Fisher identity, slides "Derivatives"):

    d/dtheta_c  = beta A^T ( <T(X)>_q(X|x) - <T(X)>_p_c )                                       (E2)
    d/dtheta_cf = <n_agree>_q / theta_cf - <n_dis>_q / (1 - theta_cf)

with T the term sums of (C1) and A the design matrix (coarse.CoarseModel.design).

* :func:`mc_em` is the slides' algorithm: E-step S_q samples of X | x per data point, M-step a
  Robbins-Monro step on theta_c with S_c samples of p_c (both from persistent single-site Gibbs
  chains, numba), theta_cf set to its closed-form maximizer (mean agreement under q).  Our one
  change: the theta_c step is preconditioned by the sample covariance of the coarse statistics
  (the Fisher matrix; the slides' "second order derivatives"), which makes the step scale-free.
  Convergence (:func:`mc_converged`): every 10 iterations the last 2 W iterates (W = ``window``)
  are split in two halves; the run stops when no half-to-half drift is detectable against the
  Monte Carlo error (|mean_2 - mean_1| < 2 se, se from batch means, so autocorrelation counts)
  and the Monte Carlo standard error of the estimate is below ``tol``.  The estimate is the
  average of those 2 W iterates; if the test never passes within ``iterations``, the Polyak
  average over the last half, with ``converged = False``.
* :func:`exact_em` does the same EM with exact expectations (forward recursion, expectation
  semiring) and an exact Newton M-step, iterated to convergence.

Both maximize the likelihood times an optional Normal(0, prior_sd) penalty on theta_c
(``prior_sd = inf``: plain maximum likelihood), theta_cf in (0.5, 1).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numba
import numpy as np

from ..errors import ConvergenceError, InputError
from ..runtime import begin_stage
from .chain import log_partition, moments
from .coarse import CoarseModel
from .kernel import FastLoglik  # noqa: F401  (re-exported: the exact likelihood kernel lives in kernel.py)

THETA_CF_RANGE = (0.5 + 1e-9, 1.0 - 1e-9)


@dataclass
class PointEstimate:
    theta_c: np.ndarray
    theta_cf: float
    iterations: int
    seconds: float
    loglik: float
    history: list = field(default_factory=list)  # (seconds, theta_c..., theta_cf) per iteration
    converged: bool = True
    mc_se: list | None = None  # Monte Carlo standard error of (theta_c..., theta_cf) (mc_em only)


def marginal_loglik(cm: CoarseModel, x, theta_c, theta_cf) -> np.ndarray:
    """Pointwise exact log p(x_i | theta) of (E1): x (S_f, n_f) -> (S_f,).
    theta_c (K,), theta_cf scalar; or theta_c (P, K), theta_cf (P,) -> (P, S_f)."""
    tc = np.asarray(theta_c, float)
    tf = np.asarray(theta_cf, float)
    if tc.ndim == 1:
        return marginal_loglik(cm, x, tc[None], tf.reshape(1))[0]
    out = np.empty((tc.shape[0], np.shape(x)[0]))
    for p in range(tc.shape[0]):
        coef = cm.coef(tc[p])
        em = cm.emissions(x, float(tf[p]))
        out[p] = log_partition(cm.structure, coef, em) - log_partition(cm.structure, coef)
    return out


def gradient(cm: CoarseModel, x, theta_c, theta_cf):
    """Exact total log-likelihood, its gradient (K+1,) by (E2), per-point q-expectations."""
    A, _ = cm.design
    T = A.shape[0]
    coef = cm.coef(theta_c)
    lq, Mq, _ = moments(cm.structure, coef, em_features=cm.em_features(x),
                        em_coef=[np.log(theta_cf), np.log1p(-theta_cf)])
    lz, Mp, Cp = moments(cm.structure, coef)
    g_c = cm.beta * A.T @ (Mq[:, :T].sum(0) - len(x) * Mp[0, :T])
    na, nd = Mq[:, T].sum(), Mq[:, T + 1].sum()
    g_cf = na / theta_cf - nd / (1 - theta_cf)
    return float(lq.sum() - len(x) * lz[0]), np.append(g_c, g_cf), Mq, (Mp[0, :T], Cp[0, :T, :T])


def _newton_coarse(cm: CoarseModel, target, theta0, n_data, prior_sd, tol=1e-10, max_iter=50):
    """Maximize n_data (beta A^T target . theta - log Z_c) - |theta|^2 / (2 prior_sd^2) by damped
    Newton with exact moments; target (T,) are mean term sums per configuration."""
    A, _ = cm.design
    T = A.shape[0]
    prec = 0.0 if not np.isfinite(prior_sd) else 1.0 / prior_sd ** 2
    th = np.array(theta0, float)

    def obj(t):
        return n_data * (cm.beta * (A.T @ target) @ t - float(log_partition(cm.structure, cm.coef(t)))) \
            - 0.5 * prec * t @ t

    f = obj(th)
    for _ in range(max_iter):
        _, M, C = moments(cm.structure, cm.coef(th))
        g = n_data * cm.beta * A.T @ (target - M[0, :T]) - prec * th
        H = n_data * cm.beta ** 2 * A.T @ C[0, :T, :T] @ A + prec * np.eye(len(th))
        step = np.linalg.solve(H + 1e-12 * np.eye(len(th)), g)
        a = 1.0
        while True:
            new = th + a * step
            fn = obj(new)
            if np.isfinite(fn) and fn >= f - 1e-12 * abs(f):
                break
            a *= 0.5
            if a < 1e-8:
                return th
        th, f_old, f = new, f, fn
        if np.max(np.abs(a * step)) < tol or abs(f - f_old) < tol * max(1.0, abs(f)):
            break
    return th


def exact_em(cm: CoarseModel, x, *, theta_c0=None, theta_cf0=0.8, prior_sd=np.inf, max_iter=500,
             tol=1e-9, control=None) -> PointEstimate:
    """EM with exact E-step (forward-backward expectations) and exact Newton M-step."""
    t0 = time.perf_counter()
    th = np.zeros(cm.K) if theta_c0 is None else np.array(theta_c0, float)
    tf = float(theta_cf0)
    A, _ = cm.design
    T = A.shape[0]
    ll_old = -np.inf
    hist = []
    it = 0
    converged = False
    for it in range(1, max_iter + 1):
        ll, _, Mq, _ = gradient(cm, x, th, tf)
        # M-step: theta_cf closed form; theta_c exact Newton on the expected complete log-lik
        tf = float(np.clip(Mq[:, T].sum() / (len(x) * cm.n_f), *THETA_CF_RANGE))
        th = _newton_coarse(cm, Mq[:, :T].mean(0), th, len(x), prior_sd)
        hist.append((time.perf_counter() - t0, *th, tf))
        if control is not None and it % 20 == 0:
            control.tick(it, note=f"EM iteration {it}, log-likelihood {ll:.6g}")  # raises Interrupted after Ctrl-C
        if abs(ll - ll_old) < tol * max(1.0, abs(ll)):
            converged = True
            break
        ll_old = ll
    ll = float(marginal_loglik(cm, x, th, tf).sum())
    return PointEstimate(th, tf, it, time.perf_counter() - t0, ll, hist, converged)


def map_exact(cm: CoarseModel, x, *, theta_c0=None, theta_cf0=0.8, prior_sd=np.inf, fast=None) -> PointEstimate:
    """Direct maximization of the exact marginal likelihood (E1) with gradients (E2), L-BFGS in
    (theta_c, logit(2 theta_cf - 1)).  Used to polish and to check EM.  fast: the data's
    :class:`~bayescg.ising.kernel.FastLoglik` (built when None; the numba kernel of (E1)-(E2))."""
    from scipy.optimize import minimize

    t0 = time.perf_counter()
    fast = FastLoglik(cm, x) if fast is None else fast
    prec = 0.0 if not np.isfinite(prior_sd) else 1.0 / prior_sd ** 2
    K = cm.K

    def unpack(z):
        u = 1.0 / (1.0 + np.exp(-z[K]))
        return z[:K], 0.5 + 0.5 * u, u

    def f(z):
        th, tf, u = unpack(z)
        tf = float(np.clip(tf, *THETA_CF_RANGE))
        ll, g = fast(th, tf)
        gz = np.append(g[:K] - prec * th, g[K] * 0.5 * u * (1 - u))
        return -(ll - 0.5 * prec * th @ th), -gz

    z0 = np.zeros(K + 1) if theta_c0 is None else np.append(theta_c0, 0.0)
    u0 = np.clip(2 * theta_cf0 - 1, 1e-6, 1 - 1e-6)
    z0[K] = np.log(u0 / (1 - u0))
    res = minimize(f, z0, jac=True, method="L-BFGS-B", options={"maxiter": 500, "gtol": 1e-8})
    th, tf, _ = unpack(res.x)
    return PointEstimate(np.array(th), float(tf), int(res.nit), time.perf_counter() - t0, -float(res.fun), [])


# --- Monte Carlo EM --------------------------------------------------------------------------
def _terms_array(cm: CoarseModel):
    terms = cm.structure.terms
    w = max(len(D) for D in terms)
    arr = -np.ones((len(terms), w), dtype=np.int64)
    for k, D in enumerate(terms):
        arr[k, : len(D)] = D
    return arr


@numba.njit(cache=True)
def gibbs_sweeps(X, terms, coef, em, chain_row, periodic, sweeps, seed):
    """Single-site Gibbs (heat-bath) sweeps of coarse chains under (C1) times emissions.

    X (M, n) int8 in/out; terms (T, w) offsets padded with -1; coef (T,); em (R, n, 2) emission
    log-factors, row chain_row[m] for chain m (R = 1 and zeros for p_c).  Updates X in place
    (sequential scan, numpy's legacy seeded stream inside numba) and returns it.
    """
    np.random.seed(seed)
    M, n = X.shape
    T, w = terms.shape
    for _ in range(sweeps):
        for m in range(M):
            row = chain_row[m]
            for r in range(n):
                lo = em[row, r, 1] - em[row, r, 0]
                for k in range(T):
                    maxd = 0
                    for q in range(w):
                        if terms[k, q] > maxd:
                            maxd = terms[k, q]
                    for q in range(w):
                        d = terms[k, q]
                        if d < 0:
                            continue
                        t = r + d  # anchor whose monomial contains site r at offset d
                        if periodic:
                            t = t % n
                        elif t >= n or t - maxd < 0:
                            continue
                        prod = 1.0
                        for q2 in range(w):
                            d2 = terms[k, q2]
                            if d2 < 0 or q2 == q:
                                continue
                            s = t - d2
                            if periodic:
                                s = (s + n) % n
                            prod *= X[m, s]
                        lo += 2.0 * coef[k] * prod
                p_up = 1.0 / (1.0 + np.exp(-lo))
                X[m, r] = 1 if np.random.random() < p_up else -1
    return X


def _batch_se(v, batches=5):
    """Standard error of the mean of v (n, P) from ``batches`` batch means (autocorrelation-aware)."""
    b = np.array_split(np.asarray(v, float), batches)
    means = np.array([c.mean(0) for c in b])
    return means.std(0, ddof=1) / np.sqrt(batches)


def mc_converged(iterates, window: int, tol: float):
    """Convergence test of Monte Carlo EM on the last 2 ``window`` iterates (n, P): returns
    (converged, estimate (P,), mc_se (P,)).  Converged when the two halves' means differ by less
    than 2 standard errors of the difference (no drift detectable against the Monte Carlo error)
    and the standard error of the estimate (their overall mean) is below ``tol``."""
    it = np.asarray(iterates, float)
    if len(it) < 2 * window:
        return False, it[len(it) // 2:].mean(0), _batch_se(it[len(it) // 2:]) if len(it) >= 10 else None
    a, b = it[-2 * window:-window], it[-window:]
    se_a, se_b = _batch_se(a), _batch_se(b)
    drift = np.abs(b.mean(0) - a.mean(0))
    se = _batch_se(it[-2 * window:], batches=10)
    ok = bool(np.all(drift < 2.0 * np.sqrt(se_a ** 2 + se_b ** 2) + 1e-12) and np.all(se < tol))
    return ok, it[-2 * window:].mean(0), se


def mc_em(cm: CoarseModel, x, *, iterations=200, S_q=50, S_c=200, sweeps=1, seed=0, theta_c0=None,
          theta_cf0=0.8, prior_sd=np.inf, step0=1.0, decay=0.75, offset=10.0, ridge=1e-2, max_step=0.5,
          window=25, tol=0.02, control=None) -> PointEstimate:
    """Monte Carlo EM of the slides (see module docstring).

    ``iterations`` is the maximum; the run stops earlier when :func:`mc_converged` (``window``,
    ``tol`` in the units of theta_c and theta_cf) passes, checked every 10 iterations.
    x (S_f, n_f) data; S_q persistent E-step chains per data point, S_c persistent chains of
    p_c, ``sweeps`` Gibbs sweeps per iteration; Robbins-Monro gains
    a_t = step0 ((1 + offset) / (t + 1 + offset))^decay; the Newton-type step is regularized by
    ``ridge`` and capped at ``max_step`` per component.  ``history`` records (seconds, theta)
    per iteration (benchmarks).
    """
    if S_q < 1 or S_c < 2 or iterations < 1:
        raise InputError("mc_em needs S_q >= 1, S_c >= 2 and iterations >= 1")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    x = np.asarray(x)
    N = len(x)
    A, _ = cm.design
    T = A.shape[0]
    terms = _terms_array(cm)
    th = np.zeros(cm.K) if theta_c0 is None else np.array(theta_c0, float)
    tf = float(theta_cf0)
    agree = cm.agree_counts(x)  # (N, n_c, 2)
    # E-step chains start at the majority map (a cheap, data-informed start)
    Xq = np.repeat(cm.majority(x, rng), S_q, axis=0).astype(np.int8)
    rows = np.repeat(np.arange(N), S_q)
    Xc = np.where(rng.random((S_c, cm.n_c)) < 0.5, -1, 1).astype(np.int8)
    zero_em = np.zeros((1, cm.n_c, 2))
    zero_rows = np.zeros(S_c, dtype=np.int64)
    prec = 0.0 if not np.isfinite(prior_sd) else 1.0 / prior_sd ** 2
    iters = []
    hist = []
    # progress in iterations; the ETA is for the maximum (the convergence test usually stops it earlier)
    begin_stage(control, f"MC-EM (at most {iterations} iterations)", iterations)
    for it in range(iterations):
        coef = cm.coef(th)
        em = cm.emissions_from_counts(agree, tf)
        gibbs_sweeps(Xq, terms, coef, em, rows, cm.periodic, sweeps, int(rng.integers(2 ** 31)))
        gibbs_sweeps(Xc, terms, coef, zero_em, zero_rows, cm.periodic, sweeps, int(rng.integers(2 ** 31)))
        Tq = cm.term_sums(Xq).mean(0)  # mean over all N*S_q samples = (1/N) sum_i <T>_q_i
        Tc_all = cm.term_sums(Xc)
        Tc = Tc_all.mean(0)
        Cc = np.atleast_2d(np.cov(Tc_all.T))
        # theta_cf: exact maximizer of the expected complete log-likelihood under the samples
        Xup = np.repeat(Xq, cm.level, axis=1)
        tf = float(np.clip(np.mean(Xup * x[rows] > 0), *THETA_CF_RANGE))
        # theta_c: preconditioned Robbins-Monro step with per-configuration gradient
        g = cm.beta * A.T @ (Tq - Tc) - prec * th / N
        # ridge and step cap: with nearly frozen sample chains the sample Fisher matrix is
        # singular and an unguarded Newton step would jump to another mode
        H = cm.beta ** 2 * A.T @ Cc @ A + (prec / N + ridge) * np.eye(cm.K)
        gain = step0 * ((1.0 + offset) / (it + 1.0 + offset)) ** decay
        step = gain * np.linalg.solve(H, g)
        th = th + step * min(1.0, max_step / max(np.max(np.abs(step)), 1e-300))
        iters.append(np.append(th, tf))
        hist.append((time.perf_counter() - t0, *th, tf))
        if control is not None and it % 10 == 0:
            control.tick(it, note=f"MC-EM iteration {it} of at most {iterations}, theta_cf {tf:.4f}")
        if (it + 1) % 10 == 0 and it + 1 >= 2 * window:
            converged, avg, se = mc_converged(iters, window, tol)
            if converged:
                break
    converged, avg, se = mc_converged(iters, window, tol)
    if not converged:  # Polyak average over the last half
        avg = np.array(iters)[len(iters) // 2:].mean(0)
    ll = float(marginal_loglik(cm, x, avg[:-1], avg[-1]).sum())
    return PointEstimate(avg[:-1], float(avg[-1]), len(iters), time.perf_counter() - t0, ll, hist, converged,
                         None if se is None else [float(v) for v in se])

