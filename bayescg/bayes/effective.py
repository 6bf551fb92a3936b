"""PyMC model of the effective potential U_k from a histogram of q and the momenta (3.5), (3.6), (3.9).

Law (3.9) with the correct sign: log pi(q) = -log Z - beta U_k(q).  For histogram cells j with centres
x_j and volumes w_j inside the histogram box, the probability of cell j given that q is in the box is

    pi_j = exp(eta_j) / sum_i exp(eta_i),   eta_j = -f(x_j) + log w_j,   f = beta U_k,

(midpoint rule; the log-sum-exp is the log normaliser over the grid).  The counts are multinomial
given their total (equivalently Poisson with the total profiled out).

Parameterisation.  f = beta U is written on a clamped cubic B-spline basis (tensor product in 2D),
f(x) = B(x) a.  The data determine f, the momenta determine beta, and U = f / beta, so the beta
uncertainty reaches U.  The likelihood does not see constants (B has rows summing to one), so the
coefficients are a = Q b with Q an orthonormal basis of the sum-to-zero subspace: the constant is fixed
exactly and b is identified.  Smoothness: P-spline random-walk prior of second order,
log p(b | tau) = (r/2) log tau - (tau/2) b^T Q^T P Q b (r = rank), with sigma_rw = tau^-1/2 ~ HalfNormal(1)
(f is in units of kT, so second differences of coefficients are O(knot spacing^2)); a weak ridge N(0, 100^2)
on b makes the prior proper in the penalty's null space (linear trends), which the data identify.

Temperature.  With momenta p ~ N(0, I / beta), d components and n independent samples the likelihood of
beta is beta^{nd/2} exp(-beta S/2), S = sum |p|^2.  We use the effective count nu = n d implied by the
measured beta_hat and its (batch-means) standard error, nu = 2 (beta_hat / se)^2 and S = nu / beta_hat, so the
autocorrelation of the trajectory is respected; prior beta ~ Gamma(1, 1e-3) (nearly flat).

Effective sample size.  Histogram counts of an autocorrelated trajectory are not independent.  The
multinomial log-likelihood is multiplied by n_eff_factor = n_eff / n (a tempered, "power" likelihood),
which gives the posterior width of n_eff independent samples; bands are then honest rather than
n / n_eff times too narrow.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .. import splines
from ..errors import InputError


@dataclasses.dataclass
class EffectiveBasis:
    """Spline basis over the histogram cells.

    knots: list of d knot vectors; Bs: list of d design matrices (bins_i, m_i) at cell centres;
    Q: (m, m - 1) orthonormal sum-to-zero basis; P: (m, m) difference penalty; centres: list of d
    arrays of cell centres; log_volume: (bins,)*d log cell volumes.
    """

    knots: list
    degree: int
    Bs: list
    Q: np.ndarray
    P: np.ndarray
    centres: list
    log_volume: np.ndarray

    @property
    def dim(self) -> int:
        return len(self.knots)

    @property
    def n_coef(self) -> int:
        return self.Q.shape[0]

    def coefficients(self, b) -> np.ndarray:
        """a = Q b; b: (..., m - 1) -> (..., m)."""
        return np.asarray(b) @ self.Q.T

    def evaluate(self, a, points) -> np.ndarray:
        """f(points) for coefficients a (..., m); points (n,) or (n, d) -> (..., n)."""
        x = splines.design_matrix(np.asarray(points, dtype=float), self.knots, self.degree)
        return np.asarray(a) @ x.T


def _sum_to_zero_basis(m: int) -> np.ndarray:
    # columns orthonormal and orthogonal to the ones vector (QR of [1 | I])
    q, _ = np.linalg.qr(np.column_stack([np.ones(m), np.eye(m)[:, : m - 1]]))
    return q[:, 1:m]


def effective_basis(edges, knots, degree: int = 3, order: int = 2) -> EffectiveBasis:
    """Basis over the histogram box given by ``edges`` (list of d edge arrays); knots: int or list per dim."""
    edges = [np.asarray(e, dtype=float) for e in edges]
    d = len(edges)
    if d not in (1, 2):
        raise InputError(f"effective potentials are fitted for d = 1 or 2, got d = {d}")
    kn = [int(knots)] * d if np.isscalar(knots) else [int(k) for k in knots]
    if len(kn) != d or min(kn) < 4:
        raise InputError(f"need at least 4 knots per dimension, got {knots}")
    tvec = [splines.clamped_knots(e[0], e[-1], k, degree) for e, k in zip(edges, kn)]
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    Bs = [splines.design_matrix_1d(c, t, degree) for c, t in zip(centres, tvec)]
    ms = [b.shape[1] for b in Bs]
    if d == 1:
        P = splines.difference_penalty(ms[0], order)
        logv = np.log(np.diff(edges[0]))
    else:
        P = splines.tensor_penalty(ms[0], ms[1], order)
        logv = np.log(np.diff(edges[0]))[:, None] + np.log(np.diff(edges[1]))[None, :]
    Q = _sum_to_zero_basis(int(np.prod(ms)))
    return EffectiveBasis(knots=tvec, degree=degree, Bs=Bs, Q=Q, P=P, centres=centres, log_volume=logv)


def momenta_likelihood_params(beta_hat: float, beta_hat_se: float) -> tuple[float, float]:
    """(nu, S) with nu = 2 (beta_hat / se)^2 effective momentum components and S = nu / beta_hat."""
    if not (np.isfinite(beta_hat) and beta_hat > 0 and np.isfinite(beta_hat_se) and beta_hat_se > 0):
        raise InputError(f"need a positive beta_hat and standard error, got {beta_hat} +- {beta_hat_se}")
    nu = 2.0 * (beta_hat / beta_hat_se) ** 2
    return nu, nu / beta_hat


def build_effective_potential_model(counts, edges, *, knots=40, momenta_stats=None, n_eff_factor: float = 1.0,
                                    beta: float | None = None, basis: EffectiveBasis | None = None,
                                    degree: int = 3, sigma_rw_scale: float = 1.0, ridge_sd: float = 100.0,
                                    whitening=None):
    """pm.Model of f = beta U on a B-spline basis given histogram ``counts`` (bins,)*d with ``edges``.

    momenta_stats: dict with ``beta_hat`` and ``beta_hat_se`` (the momentum likelihood, see module doc),
    or None with a fixed ``beta``.  n_eff_factor in (0, 1]: tempering of the histogram likelihood.
    whitening: optional reparameterisation of b for NUTS (same posterior, better geometry):
      * a tuple (b0, W): b = b0 + W z (constant Jacobian; W ~ H^-1/2 at the MAP);
      * an :class:`AdaptiveWhitening` (see :func:`adaptive_whitening`): b = V [c / (lam + sigma^-2)
        + (lam + sigma^-2)^-1/2 z], which follows the conditional mode and width of b as the smoothing scale
        sigma_rw changes (removes the funnel between sigma_rw and the prior-dominated coefficients); its
        log-Jacobian -1/2 sum log(lam + sigma^-2) is added to the density.
    Free variables: ``b`` (or ``z``), ``sigma_rw``, ``beta``.
    """
    import pymc as pm
    import pytensor.tensor as pt

    counts = np.asarray(counts, dtype=float)
    if basis is None:
        basis = effective_basis(edges, knots, degree)
    if counts.shape != basis.log_volume.shape:
        raise InputError(f"counts have shape {counts.shape}, edges imply {basis.log_volume.shape}")
    if np.any(counts < 0) or not np.all(np.isfinite(counts)) or counts.sum() <= 0:
        raise InputError("histogram counts must be finite, non-negative and not all zero")
    if not 0 < n_eff_factor <= 1:
        raise InputError(f"n_eff_factor must be in (0, 1], got {n_eff_factor}")
    m = basis.n_coef
    P_b = basis.Q.T @ basis.P @ basis.Q
    rank = penalty_rank(P_b)
    with pm.Model() as model:
        sigma_rw = pm.HalfNormal("sigma_rw", sigma_rw_scale)
        if whitening is None:
            b = pm.Normal("b", 0.0, ridge_sd, shape=m - 1)
        elif isinstance(whitening, AdaptiveWhitening):
            z = pm.Flat("z", shape=m - 1)
            prec = whitening.lam + 1.0 / sigma_rw ** 2
            b = pt.dot(whitening.V, whitening.c / prec + z / pt.sqrt(prec))
            pm.Potential("jacobian", -0.5 * pt.sum(pt.log(prec)))
            pm.Potential("ridge", -0.5 * pt.sum(b ** 2) / ridge_sd ** 2)
        else:
            b0, W = (np.asarray(x, dtype=float) for x in whitening)
            z = pm.Flat("z", shape=m - 1)
            b = b0 + pt.dot(W, z)
            pm.Potential("ridge", -0.5 * pt.sum(b ** 2) / ridge_sd ** 2)
        tau = 1.0 / sigma_rw ** 2
        pm.Potential("smoothness", 0.5 * rank * pt.log(tau) - 0.5 * tau * pt.dot(b, pt.dot(P_b, b)))
        a = pt.dot(basis.Q, b)
        if basis.dim == 1:
            f = pt.dot(basis.Bs[0], a)
        else:
            C = a.reshape((basis.Bs[0].shape[1], basis.Bs[1].shape[1]))
            f = pt.dot(pt.dot(basis.Bs[0], C), basis.Bs[1].T)
        eta = -f + basis.log_volume
        logpi = eta - pt.logsumexp(eta)
        pm.Potential("histogram", n_eff_factor * pt.sum(counts * logpi))
        if momenta_stats is not None:
            nu, S = momenta_likelihood_params(float(momenta_stats["beta_hat"]), float(momenta_stats["beta_hat_se"]))
            beta_rv = pm.Gamma("beta", alpha=1.0, beta=1e-3)
            pm.Potential("momenta", 0.5 * nu * pt.log(beta_rv) - 0.5 * beta_rv * S)
        elif beta is None or not beta > 0:
            raise InputError("give momenta_stats or a positive fixed beta")
    return model


@dataclasses.dataclass
class AdaptiveWhitening:
    """b = V [c / (lam + sigma^-2) + (lam + sigma^-2)^-1/2 z]; V^T H_data V = diag(lam), V^T P~ V = I."""

    V: np.ndarray
    lam: np.ndarray
    c: np.ndarray

    def b_of(self, z, sigma):
        """Coefficients b for draws z (S, m-1) and sigma (S,)."""
        prec = self.lam[None, :] + 1.0 / np.asarray(sigma, dtype=float).reshape(-1, 1) ** 2
        return (self.c[None, :] / prec + np.asarray(z) / np.sqrt(prec)) @ self.V.T


def adaptive_whitening(basis: EffectiveBasis, b_map, sigma_map, H_data, ridge_sd: float = 100.0) -> AdaptiveWhitening:
    """Generalised eigenbasis of (H_data, P~) with P~ = P_b + (sigma_map / ridge_sd)^2 I, so that
    H_data + P~ / sigma^2 = V^-T diag(lam + sigma^-2) V^-1 is the (Laplace) posterior precision of b given sigma
    (exact at sigma_map); c = V^T g with g the precision times the MAP, so the centre is the MAP at sigma_map."""
    from scipy.linalg import eigh

    P_b = basis.Q.T @ basis.P @ basis.Q
    Pt = P_b + (sigma_map / ridge_sd) ** 2 * np.eye(P_b.shape[0])
    lam, V = eigh(0.5 * (H_data + H_data.T), Pt)
    lam = np.maximum(lam, 0.0)
    g = (H_data + Pt / sigma_map ** 2) @ b_map
    return AdaptiveWhitening(V=V, lam=lam, c=V.T @ g)


def penalty_rank(P_b) -> int:
    return int(np.linalg.matrix_rank(P_b, tol=1e-9 * np.abs(P_b).max()))


def f_cells(basis: EffectiveBasis, a) -> np.ndarray:
    """f = B a on all histogram cells, a (m,) -> (bins,)*d (separable product in 2D)."""
    if basis.dim == 1:
        return basis.Bs[0] @ a
    C = a.reshape(basis.Bs[0].shape[1], basis.Bs[1].shape[1])
    return basis.Bs[0] @ C @ basis.Bs[1].T


def _xt(basis, v):
    """X^T v for a cell array v (bins,)*d -> (m,)."""
    if basis.dim == 1:
        return basis.Bs[0].T @ v
    return (basis.Bs[0].T @ v @ basis.Bs[1]).ravel()


def _xtwx(basis, w):
    """X^T diag(w) X (m, m) for cell weights w (bins,)*d, by separability in 2D."""
    if basis.dim == 1:
        X = basis.Bs[0]
        return X.T @ (w[:, None] * X)
    Bx, By = basis.Bs
    t = np.einsum("ia,ic,ij->acj", Bx, Bx, w)
    return np.einsum("acj,jb,jd->abcd", t, By, By).reshape(Bx.shape[1] * By.shape[1], -1)


def map_estimate(basis: EffectiveBasis, counts, n_eff_factor: float = 1.0, *, sigma_rw_scale: float = 1.0,
                 ridge_sd: float = 100.0, newton_steps: int = 60):
    """MAP of (b, sigma_rw) of the model above (the beta part is separate and conjugate) -> (b, sigma, H).

    Alternates Newton steps in b (the conditional log posterior is concave) with the closed-form update
    of sigma_rw given b (a quadratic equation from d/d sigma of the HalfNormal + penalty terms).  H is the
    Hessian of -log p(b | sigma, data) at the MAP (used for the Laplace band and for NUTS whitening) and
    H_data its likelihood part; returns (b, sigma, H, H_data).
    """
    counts = np.asarray(counts, dtype=float)
    Q = basis.Q
    P_b = Q.T @ basis.P @ Q
    r = penalty_rank(P_b)
    n = counts.sum()
    b = np.zeros(Q.shape[1])
    sigma = 0.1
    logv = basis.log_volume

    def parts(b):
        eta = -f_cells(basis, Q @ b) + logv
        lse = eta.max() + np.log(np.exp(eta - eta.max()).sum())
        pi = np.exp(eta - lse)
        return eta, lse, pi

    def objective(b, sigma):
        eta, lse, _ = parts(b)
        return (-n_eff_factor * np.sum(counts * (eta - lse)) + 0.5 * b @ P_b @ b / sigma ** 2
                + 0.5 * b @ b / ridge_sd ** 2)

    H = None
    for _ in range(newton_steps):
        eta, lse, pi = parts(b)
        g = n_eff_factor * Q.T @ _xt(basis, counts - n * pi) + P_b @ b / sigma ** 2 + b / ridge_sd ** 2
        xtp = _xt(basis, pi)
        H = Q.T @ (n_eff_factor * n * (_xtwx(basis, pi) - np.outer(xtp, xtp))) @ Q + P_b / sigma ** 2 \
            + np.eye(len(b)) / ridge_sd ** 2
        H = 0.5 * (H + H.T)
        step = np.linalg.solve(H, g)
        f0 = objective(b, sigma)
        t = 1.0
        while objective(b - t * step, sigma) > f0 + 1e-12 * abs(f0) and t > 1e-6:
            t *= 0.5
        b = b - t * step
        # sigma | b: maximise -r log sigma - q / (2 sigma^2) - sigma^2 / (2 s^2)  (tau = sigma^-2)
        qf = float(b @ P_b @ b)
        s2 = sigma_rw_scale ** 2
        # stationarity: sigma^4 / s^2 + r sigma^2 - qf = 0
        new_sigma = math.sqrt((-r + math.sqrt(r * r + 4 * qf / s2)) / (2 / s2)) if qf > 0 else 1e-6
        converged = abs(new_sigma - sigma) < 1e-6 * sigma and t * np.abs(step).max() < 1e-8
        sigma = max(new_sigma, 1e-8)
        if converged:
            break
    eta, lse, pi = parts(b)
    xtp = _xt(basis, pi)
    Hd = Q.T @ (n_eff_factor * n * (_xtwx(basis, pi) - np.outer(xtp, xtp))) @ Q
    Hd = 0.5 * (Hd + Hd.T)
    H = Hd + P_b / sigma ** 2 + np.eye(len(b)) / ridge_sd ** 2
    return b, sigma, H, Hd
