"""Chunk drivers: walkers in parallel (numba prange), streaming per-walker accumulators.

Everything a walker touches lives in its own rows (state, xoshiro state, accumulators), so a
walker's result does not depend on the thread that runs it or on the number of threads, and
sums are combined over walkers afterwards in a fixed order.

Integrator codes: ``DAMPED`` (3.2), ``LANGEVIN`` (4.2, BAOAB), ``HAMILTONIAN`` (4.1).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types

from .damped import damped_step, damped_step_1d
from .hamiltonian import verlet_step
from .langevin import baoab_step

DAMPED = 0
LANGEVIN = 1
HAMILTONIAN = 2

#: Type of a gradient kernel grad(q, out) on C-contiguous float64 vectors.  The drivers take
#: it as a first-class function (an indirect call), so they compile once, are cached on disk,
#: and a new potential costs only the compilation of its own small kernel.
GRAD_SIG = types.void(types.float64[::1], types.float64[::1])
GRAD_TYPE = types.FunctionType(GRAD_SIG)

_i8, _f8, _b1 = types.int64, types.float64, types.boolean
_V8, _M8, _T8, _Q8 = types.float64[::1], types.float64[:, ::1], types.float64[:, :, ::1], types.float64[:, :, :, ::1]
_Vi, _Mi = types.int64[::1], types.int64[:, ::1]
_Mu = types.uint64[:, ::1]

_RUN_SIG = types.void(GRAD_TYPE, _i8, _M8, _M8, _M8, _Mu, _M8, _M8, _M8, _f8, _b1,
                      _i8, _i8, _i8, _i8, _i8, _V8, _V8, _i8, _i8, _f8, _f8, _i8,
                      _T8, _Q8, _Mi, _Vi, _T8, _T8, _Vi, _M8, _M8, _Vi, _Vi, _Vi)
_INIT_SIG = types.void(GRAD_TYPE, _M8, _M8)
_REC_SIG = types.void(GRAD_TYPE, _i8, _M8, _M8, _M8, _Mu, _M8, _M8, _M8, _f8, _b1, _i8, _i8, _i8,
                      _T8, _T8, _Vi)
_BARE1_SIG = types.void(GRAD_TYPE, _V8, _V8, _f8, _f8, _f8, _i8)
_BARE_SIG = types.void(GRAD_TYPE, _M8, _M8, _M8, _M8, _f8, _b1, _i8)


@njit
def _step(grad, kind, qw, pw, gw, tmp, z, A, E, L, delta, diag, s):
    if kind == DAMPED:
        damped_step(grad, qw, pw, gw, tmp, A, E, delta, diag)
    elif kind == LANGEVIN:
        baoab_step(grad, qw, pw, gw, A, E, L, delta, diag, s, z, tmp)
    else:
        verlet_step(grad, qw, pw, gw, A, delta, diag)


@njit
def _finite(x):
    # written as a comparison so that NaN and +-inf both fail
    return abs(x) < np.inf


@njit(_RUN_SIG, parallel=True, cache=True)
def run_chunk(grad, kind, q, p, g, rng, A, E, L, delta, diag,
              step0, nsteps, acc_start, minmax_start,
              batch_len, hist_lo, hist_inv, nbins, stride,
              p_tol, q_tol, window,
              bp, bpp, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
              still, trapped_at, blown_at):
    """Advance every live walker by ``nsteps`` steps (global per-walker steps step0 ..).

    Shapes: q, p, g (W, d) state (g = grad U(q), used by Langevin); rng (W, 4) uint64;
    A, E, L (d, d) (E = expm(-Gamma A delta) for DAMPED, the OU map F for LANGEVIN; L the OU
    Cholesky factor).  Steps s >= acc_start are accumulated with k = s - acc_start:
    bp (W, B, d) and bpp (W, B, d, d) batch sums of p and p p^T (batch min(k // batch_len, B-1));
    hist (W, nbins**d) for d <= 2 or (W, d*nbins) per-coordinate marginals for d = 3, counted
    only when every coordinate is inside [lo, lo + nbins/inv), else outside (W,) += 1;
    samples (W, S, d) every ``stride`` steps (nstored (W,)).  Steps minmax_start <= s <
    acc_start update qmin/qmax (W, d) (pilot range of the histogram).

    Trap detection (DAMPED/HAMILTONIAN): max|p| <= p_tol and max|dq| <= q_tol (1 + |q|) for
    ``window`` consecutive steps marks the walker trapped (trapped_at = first such step); it
    then stops.  A non-finite q or p sets blown_at to the step and stops the walker.
    """
    W = q.shape[0]
    d = q.shape[1]
    B = bp.shape[1]
    S = samp_q.shape[1]
    for w in prange(W):
        if trapped_at[w] >= 0 or blown_at[w] >= 0:
            continue
        qw = q[w].copy()
        pw = p[w].copy()
        gw = g[w].copy()
        qold = np.empty(d)
        tmp = np.empty(d)
        z = np.empty(d)
        s = rng[w]
        cnt = still[w]
        check_trap = kind != LANGEVIN
        # d = 1 damped fast path: scalar A, E and p in registers (about 2x the generic loop)
        fast1 = d == 1 and kind == DAMPED
        a1 = A[0, 0]
        e1 = E[0, 0]
        for st in range(step0, step0 + nsteps):
            for i in range(d):
                qold[i] = qw[i]
            if fast1:
                pw[0] = damped_step_1d(grad, qw, pw[0], gw, a1, e1, delta)
            else:
                _step(grad, kind, qw, pw, gw, tmp, z, A, E, L, delta, diag, s)
            ok = True
            for i in range(d):
                if not (_finite(qw[i]) and _finite(pw[i])):
                    ok = False
            if not ok:
                blown_at[w] = st
                break
            if check_trap:
                small = True
                for i in range(d):
                    if abs(pw[i]) > p_tol or abs(qw[i] - qold[i]) > q_tol * (1.0 + abs(qw[i])):
                        small = False
                if small:
                    cnt += 1
                    if cnt >= window:
                        trapped_at[w] = st - window + 1
                        break
                else:
                    cnt = 0
            if st >= acc_start:
                k = st - acc_start
                b = k // batch_len
                if b >= B:
                    b = B - 1
                for i in range(d):
                    bp[w, b, i] += pw[i]
                    for j in range(d):
                        bpp[w, b, i, j] += pw[i] * pw[j]
                inside = True
                flat = 0
                for i in range(d):
                    x = (qw[i] - hist_lo[i]) * hist_inv[i]
                    if x >= 0.0 and x < nbins:
                        flat = flat * nbins + int(x)
                    else:
                        inside = False
                if inside:
                    if d <= 2:
                        hist[w, flat] += 1
                    else:
                        for i in range(d):
                            hist[w, i * nbins + int((qw[i] - hist_lo[i]) * hist_inv[i])] += 1
                else:
                    outside[w] += 1
                if S > 0 and k % stride == 0:
                    j = k // stride
                    if j < S:
                        for i in range(d):
                            samp_q[w, j, i] = qw[i]
                            samp_p[w, j, i] = pw[i]
                        nstored[w] = j + 1
            elif st >= minmax_start:
                for i in range(d):
                    if qw[i] < qmin[w, i]:
                        qmin[w, i] = qw[i]
                    if qw[i] > qmax[w, i]:
                        qmax[w, i] = qw[i]
        still[w] = cnt
        for i in range(d):
            q[w, i] = qw[i]
            p[w, i] = pw[i]
            g[w, i] = gw[i]


@njit(_INIT_SIG, parallel=True, cache=True)
def init_grad(grad, q, g):
    """g[w] = grad U(q[w]) for every walker. q, g: (W, d)."""
    for w in prange(q.shape[0]):
        grad(q[w], g[w])


@njit(_REC_SIG, parallel=True, cache=True)
def record_chunk(grad, kind, q, p, g, rng, A, E, L, h, diag, nrec, every, rec0, out_q, out_p, blown_at):
    """Advance each trajectory by nrec * every steps, storing state after each ``every`` steps.

    q, p, g (M, d); out_q, out_p (n, M, d) are written at rows rec0 + 1 .. rec0 + nrec.
    A non-finite state sets blown_at[m] to the (global) step and stops that trajectory.
    """
    M = q.shape[0]
    d = q.shape[1]
    for m in prange(M):
        if blown_at[m] >= 0:
            continue
        qw = q[m].copy()
        pw = p[m].copy()
        gw = g[m].copy()
        tmp = np.empty(d)
        z = np.empty(d)
        s = rng[m]
        bad = False
        for r in range(nrec):
            for k in range(every):
                _step(grad, kind, qw, pw, gw, tmp, z, A, E, L, h, diag, s)
            for i in range(d):
                if not (_finite(qw[i]) and _finite(pw[i])):
                    bad = True
            if bad:
                blown_at[m] = (rec0 + r + 1) * every
                break
            for i in range(d):
                out_q[rec0 + r + 1, m, i] = qw[i]
                out_p[rec0 + r + 1, m, i] = pw[i]
        for i in range(d):
            q[m, i] = qw[i]
            p[m, i] = pw[i]
            g[m, i] = gw[i]


@njit(_BARE1_SIG, parallel=True, cache=True)
def damped_bare_1d(grad, q, p, a, e, delta, nsteps):
    """The bare map (3.2) for d = 1, no statistics: the benchmark's kernel. q, p: (W,)."""
    W = q.shape[0]
    for w in prange(W):
        qb = np.empty(1)
        gb = np.empty(1)
        qb[0] = q[w]
        pw = p[w]
        for _ in range(nsteps):
            pw = damped_step_1d(grad, qb, pw, gb, a, e, delta)
        q[w] = qb[0]
        p[w] = pw


@njit(_BARE_SIG, parallel=True, cache=True)
def damped_bare(grad, q, p, A, E, delta, diag, nsteps):
    """The bare map (3.2) in d dimensions, no statistics (benchmark). q, p: (W, d)."""
    W = q.shape[0]
    d = q.shape[1]
    for w in prange(W):
        qw = q[w].copy()
        pw = p[w].copy()
        gw = np.empty(d)
        tmp = np.empty(d)
        for _ in range(nsteps):
            damped_step(grad, qw, pw, gw, tmp, A, E, delta, diag)
        for i in range(d):
            q[w, i] = qw[i]
            p[w, i] = pw[i]


def specialized(kernel):
    """A lazily compiled copy of ``kernel`` that specializes on the gradient dispatcher, so
    LLVM can inline the gradient (no indirect call); compiles once per potential and process.
    Used by the benchmark to measure what the indirect call costs."""
    return njit(parallel=True)(kernel.py_func)
