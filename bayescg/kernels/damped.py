"""Damped Störmer-Verlet map (3.2) with exact friction, one step per call.

    q_{n+1/2} = q_n + (delta/2) A p_n
    p_{n+1}   = E p_n - delta grad V(q_{n+1/2}),      E = expm(-Gamma A delta)
    q_{n+1}   = q_{n+1/2} + (delta/2) A p_{n+1}

A = M^-1 (d, d) SPD, Gamma (d, d) SPD; E is computed once in Python (scipy.linalg.expm).
With E = I this is the Hamiltonian Störmer-Verlet (position Verlet) step of (4.1).
No random numbers: the noise comes from the under-resolved scales of V.
Registered as ``"damped"`` in :mod:`bayescg.kernels.registry` (lane loop: yes).
"""
from __future__ import annotations

from .jit import inner


def constants(d, delta, A, G, beta, Z):
    """(E, L) of the step: E = expm(-Gamma A delta); no noise."""
    import numpy as np
    from scipy.linalg import expm

    return expm(-G @ A * delta), np.zeros((d, d))


@inner
def drift(q, p, A, h, diag):
    """q += h A p (diag: only A's diagonal is used). q, p: (d,), A: (d, d)."""
    d = q.shape[0]
    if diag:
        for i in range(d):
            q[i] += h * A[i, i] * p[i]
    else:
        for i in range(d):
            s = 0.0
            for j in range(d):
                s += A[i, j] * p[j]
            q[i] += h * s


@inner
def kick_friction(p, g, E, delta, tmp, diag):
    """p <- E p - delta g. p, g, tmp: (d,), E: (d, d)."""
    d = p.shape[0]
    if diag:
        for i in range(d):
            p[i] = E[i, i] * p[i] - delta * g[i]
    else:
        for i in range(d):
            s = 0.0
            for j in range(d):
                s += E[i, j] * p[j]
            tmp[i] = s - delta * g[i]
        for i in range(d):
            p[i] = tmp[i]


@inner
def step(grad, c, q, p, g, tmp, z, s):
    """One step of (3.2) in place on q, p (d,); c: state.Consts; g, tmp, z (d,) work arrays; s unused."""
    h = 0.5 * c.delta
    drift(q, p, c.A, h, c.diag)
    grad(q, g)
    kick_friction(p, g, c.E, c.delta, tmp, c.diag)
    drift(q, p, c.A, h, c.diag)
