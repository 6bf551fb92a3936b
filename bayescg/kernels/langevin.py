"""Kinetic Langevin (4.2) by BAOAB splitting with an exact Ornstein-Uhlenbeck step.

    dq = A p dt,   dp = (-grad U(q) - Gamma A p) dt + Sigma dW,   Sigma Sigma^T = 2 Gamma / beta,

with A = M^-1 and Gamma SPD.  Fluctuation-dissipation: the OU part dp = -Gamma A p dt + Sigma dW
has stationary covariance C solving Gamma A C + C A Gamma = Sigma Sigma^T; C = A^-1 / beta
does when Sigma Sigma^T = 2 Gamma / beta, so exp(-beta (p^T A p / 2 + U(q))) is invariant.
(The paper's (4.2) is the case beta = 1.)

One step of size h:  B: p -= h/2 grad U(q);  A: q += h/2 A p;  O: p <- F p + L z;
A: q += h/2 A p;  B: p -= h/2 grad U(q);  with F = expm(-Gamma A h), z ~ N(0, I) and
L L^T = C - F C F^T (the exact OU transition covariance; C from the Lyapunov equation).
F and L are computed once in Python.  BAOAB has weak order 2 for finite-time expectations;
its invariant law has O(h^2) error in general, the q-marginal error is O(h^2) with a small
constant (and vanishes to leading order in the high-friction limit, Leimkuhler & Matthews
2013); for quadratic U the q-marginal is exact.  The gradient at the end of a step is reused
at the start of the next (one gradient per step); ``g`` carries it.
Registered as ``"langevin"`` in :mod:`bayescg.kernels.registry` (reuses_grad: g is computed before the first step).
"""
from __future__ import annotations

from .damped import drift
from .jit import inner
from .rng import fill_normal


def constants(d, delta, A, G, beta, Z):
    """(F, L): F = expm(-Gamma A h) and L L^T = C - F C F^T with C the stationary OU covariance."""
    import numpy as np
    from scipy.linalg import cholesky, expm, solve_continuous_lyapunov

    E = expm(-G @ A * delta)
    # stationary OU covariance: (G A) C + C (G A)^T = 2 G / beta; C = A^-1 / beta
    C = solve_continuous_lyapunov(G @ A, 2.0 * G / beta)
    cov = C - E @ C @ E.T
    cov = 0.5 * (cov + cov.T)
    try:
        L = cholesky(cov, lower=True)
    except np.linalg.LinAlgError:  # numerically semidefinite (tiny delta): clip eigenvalues
        w, V = np.linalg.eigh(cov)
        w = np.clip(w, 0.0, None)
        L = np.linalg.cholesky(V @ np.diag(w) @ V.T + 1e-300 * np.eye(d) + 1e-16 * np.trace(cov) * np.eye(d))
    return E, L


@inner
def ou_step(p, F, L, s, z, tmp):
    """p <- F p + L z with z ~ N(0, I) drawn from the xoshiro state s. All (d,) / (d, d)."""
    d = p.shape[0]
    fill_normal(s, z)
    for i in range(d):
        acc = 0.0
        for j in range(d):
            acc += F[i, j] * p[j]
        for j in range(i + 1):  # L lower triangular
            acc += L[i, j] * z[j]
        tmp[i] = acc
    for i in range(d):
        p[i] = tmp[i]


@inner
def step(grad, c, q, p, g, tmp, z, s):
    """One BAOAB step in place (c: state.Consts with E = F, L, delta = h); on entry g = grad U(q),
    on exit g = grad U(q_new)."""
    d = q.shape[0]
    hh = 0.5 * c.delta
    for i in range(d):
        p[i] -= hh * g[i]
    drift(q, p, c.A, hh, c.diag)
    ou_step(p, c.E, c.L, s, z, tmp)
    drift(q, p, c.A, hh, c.diag)
    grad(q, g)
    for i in range(d):
        p[i] -= hh * g[i]
