"""The damped map (3.2) with a white Gaussian kick: (3.2) driven by explicit noise.

    q_{n+1/2} = q_n + (delta/2) A p_n
    p_{n+1}   = E p_n - delta grad U(q_{n+1/2}) + xi_n,   xi_n ~ N(0, delta Z),  E = expm(-Gamma A delta)
    q_{n+1}   = q_{n+1/2} + (delta/2) A p_{n+1}

Z = Sigma Sigma^T is the paper's noise covariance (Theorem 3.1: Z = delta E[g g^T] of the unresolved
gradient g), so this map on a smooth U mimics what (3.2) does on V = U + micro-scales; the finite-delta
correction runs it on candidate U's.  L (d, d) is the lower Cholesky factor of delta Z, computed once
in Python; the normals come from the walker's xoshiro stream (kernels.rng), so results depend only on
the seed.  Registered as ``"damped_white"`` in :mod:`bayescg.kernels.registry` (lane loop: yes, with
its white kick; the same arithmetic as :func:`step`).
"""
from __future__ import annotations

from .damped import drift, kick_friction
from .jit import inner
from .rng import fill_normal


def constants(d, delta, A, G, beta, Z):
    """(E, L): the friction map of (3.2) and the Cholesky factor of delta Z."""
    import numpy as np
    from scipy.linalg import expm

    return expm(-G @ A * delta), np.linalg.cholesky(delta * Z)


@inner
def white_kick(p, L, s, z):
    """p += L z with z ~ N(0, I) from the xoshiro state s; L lower triangular. p, z: (d,), L: (d, d)."""
    fill_normal(s, z)
    for i in range(p.shape[0]):
        acc = 0.0
        for j in range(i + 1):
            acc += L[i, j] * z[j]
        p[i] += acc


@inner
def step(grad, c, q, p, g, tmp, z, s):
    """One step in place on q, p (d,); c: state.Consts (L = chol(delta Z)); g, tmp, z (d,) work arrays."""
    h = 0.5 * c.delta
    drift(q, p, c.A, h, c.diag)
    grad(q, g)
    kick_friction(p, g, c.E, c.delta, tmp, c.diag)
    white_kick(p, c.L, s, z)
    drift(q, p, c.A, h, c.diag)
