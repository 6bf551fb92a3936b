"""Hamiltonian Störmer-Verlet (position Verlet) step for (4.1): dq = A p dt, dp = -grad U dt.

    q += (h/2) A p;  p -= h grad U(q);  q += (h/2) A p

Symplectic, time-reversible, order 2; it is (3.2) with E = I.
Registered as ``"hamiltonian"`` in :mod:`bayescg.kernels.registry`.
"""
from __future__ import annotations

from .damped import drift
from .jit import inner


def constants(d, delta, A, G, beta, Z):
    """(E, L) = (I, 0): no friction, no noise."""
    import numpy as np

    return np.eye(d), np.zeros((d, d))


@inner
def step(grad, c, q, p, g, tmp, z, s):
    """One step in place on q, p (d,); c: state.Consts (delta = h); g a (d,) work array."""
    drift(q, p, c.A, 0.5 * c.delta, c.diag)
    grad(q, g)
    for i in range(p.shape[0]):
        p[i] -= c.delta * g[i]
    drift(q, p, c.A, 0.5 * c.delta, c.diag)
