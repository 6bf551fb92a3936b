"""The bare map (3.2), no statistics: the benchmark's numba kernels (not used by bayescg itself).

They reuse the production lane step (bayescg.kernels.loops.lane_drift / lane_kick_drift, the arithmetic
simulate() runs) and the registered "damped" step, so the C comparison checks the production arithmetic.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from bayescg.kernels.loops import _Lazy, grad_block, lane_drift, lane_kick_drift, lane_mat
from bayescg.kernels.registry import INTEGRATORS
from bayescg.kernels.state import CONSTS_T, GRAD_TYPE, GRADL_TYPE, LANES

_damped_step = INTEGRATORS["damped"].step


@njit
def bare_block(grad, w0, nl, q, p, c, nsteps, dims):
    """nsteps of (3.2) for walkers w0 .. w0 + nl - 1 (q, p (W, d), d = len(dims)), lane arithmetic."""
    d = len(dims)
    A = lane_mat(c.A, dims)
    E = lane_mat(c.E, dims)
    L = lane_mat(c.L, dims)
    h = 0.5 * c.delta
    qb = np.empty(d)
    gb = np.empty(d)
    z = np.empty(d)
    T = np.empty(d)
    rng = np.ones((1, 4), dtype=np.uint64)  # unused: no white kick
    Sg = np.zeros(2 * d * LANES)
    X = np.empty((d, LANES))
    Pm = np.empty((d, LANES))
    alive = np.zeros(LANES, dtype=np.bool_)
    for l in range(nl):
        alive[l] = True
        for i in range(d):
            X[i, l] = q[w0 + l, i]
            Pm[i, l] = p[w0 + l, i]
            Sg[i * LANES + l] = X[i, l]
    for l in range(nl, LANES):
        for i in range(d):
            Sg[i * LANES + l] = Sg[i * LANES]
    for _ in range(nsteps):
        lane_drift(Sg, X, Pm, nl, alive, h, A, c.diag)
        grad_block(grad, Sg, nl, alive, qb, gb)
        lane_kick_drift(Sg, X, Pm, T, z, nl, alive, h, c.delta, A, E, L, c.diag, False, rng, 0)
    for l in range(nl):
        for i in range(d):
            q[w0 + l, i] = X[i, l]
            p[w0 + l, i] = Pm[i, l]


def _bare1(grad, q, p, c, nsteps):
    W = q.shape[0]
    for blk in prange((W + LANES - 1) // LANES):
        bare_block(grad, blk * LANES, min(LANES, W - blk * LANES), q, p, c, nsteps, (0,))


def _bare2(grad, q, p, c, nsteps):
    W = q.shape[0]
    for blk in prange((W + LANES - 1) // LANES):
        bare_block(grad, blk * LANES, min(LANES, W - blk * LANES), q, p, c, nsteps, (0, 0))


@njit
def _bare_walker(grad, w, q, p, c, nsteps):
    d = q.shape[1]
    qw = q[w].copy()
    pw = p[w].copy()
    gw = np.empty(d)
    tmp = np.empty(d)
    z = np.empty(d)
    s = np.ones(4, dtype=np.uint64)
    for _ in range(nsteps):
        _damped_step(grad, c, qw, pw, gw, tmp, z, s)
    for i in range(d):
        q[w, i] = qw[i]
        p[w, i] = pw[i]


def _bare_nd(grad, q, p, c, nsteps):
    """One walker at a time, the registered damped step (any d)."""
    for w in prange(q.shape[0]):
        _bare_walker(grad, w, q, p, c, nsteps)


_M8 = types.float64[:, ::1]
damped_bare_1d = _Lazy(types.void(GRADL_TYPE, _M8, _M8, CONSTS_T, types.int64), _bare1)
damped_bare_2d = _Lazy(types.void(GRADL_TYPE, _M8, _M8, CONSTS_T, types.int64), _bare2)
damped_bare = _Lazy(types.void(GRAD_TYPE, _M8, _M8, CONSTS_T, types.int64), _bare_nd)
