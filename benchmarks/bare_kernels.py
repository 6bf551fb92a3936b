"""The bare map (3.2), no statistics: the benchmark's numba kernels (not used by bayescg itself).

1D: the lane arithmetic of bayescg.kernels.loops.block_1d written out; 2D: the production lane step
(bayescg.kernels.loops.drift2_lanes / kick_drift2_lanes); nd: the registered "damped" step.  So the C
comparison checks the arithmetic simulate() runs.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from bayescg.kernels.loops import _Lazy, drift2_lanes, grad_block, kick_drift2_lanes
from bayescg.kernels.registry import INTEGRATORS
from bayescg.kernels.state import CONSTS_T, GRAD_TYPE, GRADL_TYPE, LANES

_damped_step = INTEGRATORS["damped"].step


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


def _damped_bare_1d(grad, q, p, a, e, delta, nsteps):
    """The bare map (3.2) for d = 1, no statistics (the benchmark's kernel): blocks of LANES
    walkers with the arithmetic of _block_damped_1d; ``grad`` any convention (the benchmark
    passes the lane kernel). q, p: (W,)."""
    W = q.shape[0]
    nblocks = (W + LANES - 1) // LANES
    h = 0.5 * delta
    for blk in prange(nblocks):
        w0 = blk * LANES
        nl = min(LANES, W - w0)
        qb = np.empty(1)
        gb = np.empty(1)
        G = np.zeros(2 * LANES)
        alive = np.zeros(LANES, dtype=np.bool_)
        x = np.empty(LANES)
        v = np.empty(LANES)
        for l in range(nl):
            x[l] = q[w0 + l]
            v[l] = p[w0 + l]
            alive[l] = True
            G[l] = x[l]
        for l in range(nl, LANES):
            G[l] = G[0]
        for _ in range(nsteps):
            for l in range(nl):
                G[l] = x[l] + h * a * v[l]
            grad_block(grad, G, nl, alive, qb, gb)
            for l in range(nl):
                v[l] = e * v[l] - delta * G[LANES + l]
                x[l] = G[l] + h * a * v[l]
        for l in range(nl):
            q[w0 + l] = x[l]
            p[w0 + l] = v[l]




def _damped_bare_2d(grad, q, p, A, E, delta, diag, nsteps):
    """The bare map (3.2) for d = 2, no statistics (the benchmark's kernel): blocks of LANES
    walkers with the arithmetic of _block_damped_2d; ``grad`` any convention (the benchmark
    passes the lane kernel). q, p: (W, 2); A, E: (2, 2)."""
    W = q.shape[0]
    nblocks = (W + LANES - 1) // LANES
    a00, a01, a10, a11 = A[0, 0], A[0, 1], A[1, 0], A[1, 1]
    e00, e01, e10, e11 = E[0, 0], E[0, 1], E[1, 0], E[1, 1]
    h = 0.5 * delta
    for blk in prange(nblocks):
        w0 = blk * LANES
        nl = min(LANES, W - w0)
        qb = np.empty(2)
        gb = np.empty(2)
        G = np.zeros(4 * LANES)
        alive = np.zeros(LANES, dtype=np.bool_)
        x = np.zeros(LANES)  # zeros: the padding lanes are computed too (loops.keep)
        y = np.zeros(LANES)
        u = np.zeros(LANES)
        v = np.zeros(LANES)
        for l in range(nl):
            x[l] = q[w0 + l, 0]
            y[l] = q[w0 + l, 1]
            u[l] = p[w0 + l, 0]
            v[l] = p[w0 + l, 1]
            alive[l] = True
            G[l] = x[l]
            G[LANES + l] = y[l]
        for l in range(nl, LANES):
            G[l] = G[0]
            G[LANES + l] = G[LANES]
        for _ in range(nsteps):
            drift2_lanes(G, x, y, u, v, alive, h, a00, a01, a10, a11, diag)
            grad_block(grad, G, nl, alive, qb, gb)
            kick_drift2_lanes(G, x, y, u, v, alive, h, delta, a00, a01, a10, a11, e00, e01, e10, e11, diag)
        for l in range(nl):
            q[w0 + l, 0] = x[l]
            q[w0 + l, 1] = y[l]
            p[w0 + l, 0] = u[l]
            p[w0 + l, 1] = v[l]




def _damped_bare(grad, q, p, c, nsteps):
    """The bare map (3.2) in d dimensions, one walker at a time with the registered damped step. q, p: (W, d)."""
    for w in prange(q.shape[0]):
        _bare_walker(grad, w, q, p, c, nsteps)


_V8, _M8, _f8, _i8, _b1 = types.float64[::1], types.float64[:, ::1], types.float64, types.int64, types.boolean
damped_bare_1d = _Lazy(types.void(GRADL_TYPE, _V8, _V8, _f8, _f8, _f8, _i8), _damped_bare_1d)
damped_bare_2d = _Lazy(types.void(GRADL_TYPE, _M8, _M8, _M8, _M8, _f8, _b1, _i8), _damped_bare_2d)
damped_bare = _Lazy(types.void(GRAD_TYPE, _M8, _M8, CONSTS_T, _i8), _damped_bare)
