"""Hamiltonian Störmer-Verlet (position Verlet) step for (4.1): dq = A p dt, dp = -grad U dt.

    q += (h/2) A p;  p -= h grad U(q);  q += (h/2) A p

Symplectic, time-reversible, order 2; it is (3.2) with E = I.
"""
from __future__ import annotations

from numba import njit

from .damped import drift


@njit
def verlet_step(grad, q, p, g, A, h, diag):
    """One step in place on q, p (d,); g is a (d,) work array."""
    drift(q, p, A, 0.5 * h, diag)
    grad(q, g)
    for i in range(p.shape[0]):
        p[i] -= h * g[i]
    drift(q, p, A, 0.5 * h, diag)
