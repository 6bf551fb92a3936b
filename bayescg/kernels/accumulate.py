"""Chunk drivers: walkers in parallel (numba prange), streaming per-walker accumulators.

Everything a walker touches lives in its own rows (state, xoshiro state, accumulators), so a
walker's result does not depend on the thread that runs it or on the number of threads, and
sums are combined over walkers afterwards in a fixed order.

Integrator codes: ``DAMPED`` (3.2), ``LANGEVIN`` (4.2, BAOAB), ``HAMILTONIAN`` (4.1),
``DAMPED_WHITE`` ((3.2) with a white kick, kernels.damped_white).
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
from numba import njit, prange, types
from numba.extending import overload
from numba.core.errors import NumbaExperimentalFeatureWarning

# first-class function types are marked experimental in numba; they are what keeps one compiled,
# cached driver for all potentials (tested against the specialized drivers, bit for bit)
warnings.filterwarnings("ignore", category=NumbaExperimentalFeatureWarning)

from .damped import damped_step
from .damped_white import damped_white_step
from .hamiltonian import verlet_step
from .langevin import baoab_step

DAMPED = 0
LANGEVIN = 1
HAMILTONIAN = 2
DAMPED_WHITE = 3

#: Type of a gradient kernel grad(q, out) on C-contiguous float64 vectors.  The drivers take
#: it as a first-class function (an indirect call), so they compile once, are cached on disk,
#: and a new potential costs only the compilation of its own small kernel.
GRAD_SIG = types.void(types.float64[::1], types.float64[::1])
GRAD_TYPE = types.FunctionType(GRAD_SIG)
#: Scalar gradient kernels of expression potentials (Potential.grad_scalar, the lane kernels'
#: exact fallback): g(x) -> dV/dx for d = 1, g(x, y) -> (dV/dx, dV/dy) for d = 2.
GRAD1_SIG = types.float64(types.float64)
GRAD2_SIG = types.UniTuple(types.float64, 2)(types.float64, types.float64)
#: Lane kernels of expression potentials (Potential.grad_lanes): g(S) with S (2 d LANES,)
#: holding q_i of lane l at S[i LANES + l] and writing dV/dq_i to S[(d + i) LANES + l]; one call
#: evaluates LANES walkers, and its loop over lanes compiles to SIMD code (kernels.fastmath).
GRADL_SIG = types.void(types.float64[::1])
GRADL_TYPE = types.FunctionType(GRADL_SIG)
#: Attribute set on lane kernel dispatchers so that the specialized drivers, which see a
#: dispatcher rather than a function type, can tell the two calling conventions apart.
LANES_TAG = "_bayescg_lanes_grad"

_i8, _f8, _b1 = types.int64, types.float64, types.boolean
_V8, _M8, _T8, _Q8 = types.float64[::1], types.float64[:, ::1], types.float64[:, :, ::1], types.float64[:, :, :, ::1]
_Vi, _Mi = types.int64[::1], types.int64[:, ::1]
_Mu = types.uint64[:, ::1]

_RUN_SIG = types.void(GRAD_TYPE, _i8, _M8, _M8, _M8, _Mu, _M8, _M8, _M8, _f8, _b1,
                      _i8, _i8, _i8, _i8, _i8, _V8, _V8, _i8, _i8, _f8, _f8, _i8,
                      _T8, _Q8, _T8, _T8, _Mi, _Vi, _T8, _T8, _Vi, _M8, _M8, _Vi, _Vi, _Vi)
_INIT_SIG = types.void(GRAD_TYPE, _M8, _M8)
_REC_SIG = types.void(GRAD_TYPE, _i8, _M8, _M8, _M8, _Mu, _M8, _M8, _M8, _f8, _b1, _i8, _i8, _i8,
                      _T8, _T8, _Vi)
_BARE1_SIG = types.void(GRADL_TYPE, _V8, _V8, _f8, _f8, _f8, _i8)
_BARE2_SIG = types.void(GRADL_TYPE, _M8, _M8, _M8, _M8, _f8, _b1, _i8)
_D1_SIG = types.void(GRADL_TYPE, _M8, _M8, _f8, _f8, _f8, _i8, _i8, _i8, _i8, _i8, _f8, _f8, _i8, _i8, _f8, _f8, _i8,
                     _T8, _Q8, _T8, _T8, _Mi, _Vi, _T8, _T8, _Vi, _M8, _M8, _Vi, _Vi, _Vi)
_D2_SIG = types.void(GRADL_TYPE, _M8, _M8, _M8, _M8, _f8, _b1, _i8, _i8, _i8, _i8, _i8, _V8, _V8, _i8, _i8, _f8, _f8,
                     _i8, _T8, _Q8, _T8, _T8, _Mi, _Vi, _T8, _T8, _Vi, _M8, _M8, _Vi, _Vi, _Vi)
_BARE_SIG = types.void(GRAD_TYPE, _M8, _M8, _M8, _M8, _f8, _b1, _i8)


class _Lazy:
    """A driver compiled for its fixed signature on first call (then cached on disk), so that
    importing bayescg does not compile every driver (~40 s of CPU on a cold cache)."""

    def __init__(self, sig, fn):
        self.sig = sig
        self.py_func = fn
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self._jit = None
        self._lock = threading.Lock()

    def compiled(self):
        if self._jit is None:
            with self._lock:
                if self._jit is None:
                    with warnings.catch_warnings():  # first-class function types are "experimental"
                        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
                        self._jit = njit(self.sig, parallel=True, cache=True)(self.py_func)
        return self._jit

    def __call__(self, *args):
        return self.compiled()(*args)



def _convention(grad):
    """Typing-time calling convention of the gradient ``grad`` (a numba type):
    "lanes" (g(S), GRADL_SIG) or "array" (g(q, out), GRAD_SIG)."""
    if isinstance(grad, types.FunctionType):
        return "lanes" if len(grad.signature.args) == 1 else "array"
    if isinstance(grad, types.Dispatcher) and getattr(grad.dispatcher, LANES_TAG, False):
        return "lanes"
    return "array"


def grad_block1(grad, S, nl, alive, qb, gb):
    """d = 1: S[LANES + l] = dV/dq(S[l]) for the live lanes l < nl (every lane for a lane kernel)."""


def grad_block2(grad, S, nl, alive, qb, gb):
    """d = 2: S[2 LANES + l], S[3 LANES + l] = grad V(S[l], S[LANES + l]) for the live lanes l < nl."""


@overload(grad_block1, jit_options={"inline": "always"})
def _ov_grad_block1(grad, S, nl, alive, qb, gb):
    conv = _convention(grad)
    if conv == "lanes":
        return lambda grad, S, nl, alive, qb, gb: grad(S)

    def impl(grad, S, nl, alive, qb, gb):
        for l in range(nl):
            if alive[l]:
                qb[0] = S[l]
                grad(qb, gb)
                S[LANES + l] = gb[0]
    return impl


@overload(grad_block2, jit_options={"inline": "always"})
def _ov_grad_block2(grad, S, nl, alive, qb, gb):
    conv = _convention(grad)
    if conv == "lanes":
        return lambda grad, S, nl, alive, qb, gb: grad(S)

    def impl(grad, S, nl, alive, qb, gb):
        for l in range(nl):
            if alive[l]:
                qb[0] = S[l]
                qb[1] = S[LANES + l]
                grad(qb, gb)
                S[2 * LANES + l] = gb[0]
                S[3 * LANES + l] = gb[1]
    return impl


@njit
def _step(grad, kind, qw, pw, gw, tmp, z, A, E, L, delta, diag, s):
    if kind == DAMPED:
        damped_step(grad, qw, pw, gw, tmp, A, E, delta, diag)
    elif kind == LANGEVIN:
        baoab_step(grad, qw, pw, gw, A, E, L, delta, diag, s, z, tmp)
    elif kind == DAMPED_WHITE:
        damped_white_step(grad, qw, pw, gw, tmp, z, A, E, L, delta, diag, s)
    else:
        verlet_step(grad, qw, pw, gw, A, delta, diag)


@njit
def _finite(x):
    # written as a comparison so that NaN and +-inf both fail
    return abs(x) < np.inf


_NEVER = 1 << 62


@njit
def _counters(step0, nsteps, acc_start, batch_len, B, stride):
    """Batch index, steps left in it, steps to the next sample and its index at the first
    accumulated step of a chunk (integer divisions once per chunk, not per step)."""
    k0 = max(step0, acc_start) - acc_start
    b = min(k0 // batch_len, B - 1)
    bleft = (b + 1) * batch_len - k0 if b < B - 1 else _NEVER
    sleft = (stride - k0 % stride) % stride
    j = (k0 + stride - 1) // stride
    return b, bleft, sleft, j


#: Walkers advanced together by one thread in the d = 1 and d = 2 damped loops.  With a lane
#: kernel their gradients are one SIMD evaluation (8 doubles = one AVX-512 register, two AVX2
#: ones); with scalar or array kernels they are interleaved calls that the CPU overlaps.
#: Results do not depend on it (every walker's arithmetic is its own).
LANES = 8


@njit
def _block_damped_1d(grad, w0, nl, q, p, a, e, delta, step0, nsteps, acc_start, minmax_start,
                     batch_len, lo, inv, nbins, stride, p_tol, q_tol, window,
                     bp, bpp, bq, bqq, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
                     still, trapped_at, blown_at):
    """d = 1 damped map (3.2) for walkers w0 .. w0 + nl - 1 (nl <= LANES), advanced together step
    by step: positions of all lanes, one gradient call for the block (lane kernel; or one call
    per walker for an array kernel), then momenta and positions.  Per walker the arithmetic is
    exactly damped_step's (same operations in the same order), and the accumulators are those of
    _walker_generic, so with an array kernel results equal the one-walker-at-a-time loop bit for
    bit (with a lane kernel they differ only through its exp/sin/cos)."""
    B = bp.shape[1]
    S = samp_q.shape[1]
    qb = np.empty(1)
    gb = np.empty(1)
    G = np.zeros(2 * LANES)  # gradient scratch: positions, then gradients (lane kernel layout)
    h = 0.5 * delta
    x = np.empty(LANES)
    v = np.empty(LANES)
    xo = np.empty(LANES)
    sp = np.zeros(LANES)
    spp = np.zeros(LANES)
    sq = np.zeros(LANES)
    sqq = np.zeros(LANES)
    cnt = np.zeros(LANES, dtype=np.int64)
    alive = np.zeros(LANES, dtype=np.bool_)
    # all walkers of a chunk share the step counters, so batch and sample positions are common
    b, bleft, sleft, j = _counters(step0, nsteps, acc_start, batch_len, B, stride)
    nalive = 0
    for l in range(nl):
        w = w0 + l
        alive[l] = trapped_at[w] < 0 and blown_at[w] < 0
        nalive += alive[l]
        x[l] = q[w, 0]
        v[l] = p[w, 0]
        cnt[l] = still[w]
        G[l] = x[l]
        sp[l] = bp[w, b, 0]
        spp[l] = bpp[w, b, 0, 0]
        sq[l] = bq[w, b, 0]
        sqq[l] = bqq[w, b, 0]
    for l in range(nl, LANES):  # padding lanes of a lane kernel: any finite point
        G[l] = G[0]
    for st in range(step0, step0 + nsteps):
        if nalive == 0:
            break
        for l in range(nl):
            if alive[l]:
                xo[l] = x[l]
                G[l] = x[l] + h * a * v[l]
        grad_block1(grad, G, nl, alive, qb, gb)
        for l in range(nl):
            if alive[l]:
                v[l] = e * v[l] - delta * G[LANES + l]
                x[l] = G[l] + h * a * v[l]
        acc = st >= acc_start
        sample = False
        if acc:
            bleft -= 1
            sample = S > 0 and sleft == 0
        for l in range(nl):
            if not alive[l]:
                continue
            w = w0 + l
            xl = x[l]
            vl = v[l]
            if not (abs(xl) < np.inf and abs(vl) < np.inf):
                blown_at[w] = st
                alive[l] = False
                nalive -= 1
                continue
            if abs(vl) <= p_tol and abs(xl - xo[l]) <= q_tol * (1.0 + abs(xl)):
                cnt[l] += 1
                if cnt[l] >= window:
                    trapped_at[w] = st - window + 1
                    alive[l] = False
                    nalive -= 1
                    continue
            else:
                cnt[l] = 0
            if acc:
                sp[l] += vl
                spp[l] += vl * vl
                sq[l] += xl
                sqq[l] += xl * xl
                y = (xl - lo) * inv
                if y >= 0.0 and y < nbins:
                    hist[w, int(y)] += 1
                else:
                    outside[w] += 1
                if sample and j < S:
                    samp_q[w, j, 0] = xl
                    samp_p[w, j, 0] = vl
                    nstored[w] = j + 1
            elif st >= minmax_start:
                if xl < qmin[w, 0]:
                    qmin[w, 0] = xl
                if xl > qmax[w, 0]:
                    qmax[w, 0] = xl
        if acc:
            if sample:
                j += 1
                sleft = stride
            if S > 0:
                sleft -= 1
            if bleft == 0:
                for l in range(nl):
                    w = w0 + l
                    bp[w, b, 0] = sp[l]
                    bpp[w, b, 0, 0] = spp[l]
                    bq[w, b, 0] = sq[l]
                    bqq[w, b, 0] = sqq[l]
                b += 1
                for l in range(nl):
                    w = w0 + l
                    sp[l] = bp[w, b, 0]
                    spp[l] = bpp[w, b, 0, 0]
                    sq[l] = bq[w, b, 0]
                    sqq[l] = bqq[w, b, 0]
                bleft = batch_len if b < B - 1 else _NEVER
    for l in range(nl):
        w = w0 + l
        bp[w, b, 0] = sp[l]
        bpp[w, b, 0, 0] = spp[l]
        bq[w, b, 0] = sq[l]
        bqq[w, b, 0] = sqq[l]
        still[w] = cnt[l]
        q[w, 0] = x[l]
        p[w, 0] = v[l]


@njit(inline="always")
def _drift2_lanes(G, x, y, u, v, nl, alive, h, a00, a01, a10, a11, diag):
    """First half-drift of (3.2) for the live lanes of a d = 2 block, into G's position rows."""
    for l in range(nl):
        if not alive[l]:
            continue
        pu = u[l]
        pv = v[l]
        if diag:
            G[l] = x[l] + h * a00 * pu
            G[LANES + l] = y[l] + h * a11 * pv
        else:
            G[l] = x[l] + h * (a00 * pu + a01 * pv)
            G[LANES + l] = y[l] + h * (a10 * pu + a11 * pv)


@njit(inline="always")
def _kick_drift2_lanes(G, x, y, u, v, nl, alive, h, delta, a00, a01, a10, a11, e00, e01, e10, e11, diag):
    """Friction kick with G's gradient rows and second half-drift of (3.2) for the live lanes."""
    for l in range(nl):
        if not alive[l]:
            continue
        pu = u[l]
        pv = v[l]
        xm = G[l]
        ym = G[LANES + l]
        gx = G[2 * LANES + l]
        gy = G[3 * LANES + l]
        if diag:
            pu2 = e00 * pu - delta * gx
            pv2 = e11 * pv - delta * gy
            x[l] = xm + h * a00 * pu2
            y[l] = ym + h * a11 * pv2
        else:
            pu2 = (e00 * pu + e01 * pv) - delta * gx
            pv2 = (e10 * pu + e11 * pv) - delta * gy
            x[l] = xm + h * (a00 * pu2 + a01 * pv2)
            y[l] = ym + h * (a10 * pu2 + a11 * pv2)
        u[l] = pu2
        v[l] = pv2


@njit
def _block_damped_2d(grad, w0, nl, q, p, A, E, delta, diag, step0, nsteps, acc_start, minmax_start,
                     batch_len, hist_lo, hist_inv, nbins, stride, p_tol, q_tol, window,
                     bp, bpp, bq, bqq, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
                     still, trapped_at, blown_at):
    """d = 2 damped map (3.2) for walkers w0 .. w0 + nl - 1, advanced together as in
    _block_damped_1d, with A and E (full 2x2 or diagonal) in scalars.  The arithmetic is
    damped_step's, operation for operation (diagonal: q += h A_ii p_i; full: q_i += h (A_i0 p_0 +
    A_i1 p_1)), so with an array kernel results equal _walker_generic's bit for bit."""
    B = bp.shape[1]
    S = samp_q.shape[1]
    qb = np.empty(2)
    gb = np.empty(2)
    G = np.zeros(4 * LANES)  # gradient scratch: x, y, then dV/dx, dV/dy (lane kernel layout)
    h = 0.5 * delta
    a00 = A[0, 0]
    a01 = A[0, 1]
    a10 = A[1, 0]
    a11 = A[1, 1]
    e00 = E[0, 0]
    e01 = E[0, 1]
    e10 = E[1, 0]
    e11 = E[1, 1]
    lo0 = hist_lo[0]
    lo1 = hist_lo[1]
    inv0 = hist_inv[0]
    inv1 = hist_inv[1]
    x = np.empty(LANES)
    y = np.empty(LANES)
    u = np.empty(LANES)
    v = np.empty(LANES)
    xo = np.empty(LANES)
    yo = np.empty(LANES)
    s0 = np.zeros(LANES)
    s1 = np.zeros(LANES)
    s00 = np.zeros(LANES)
    s01 = np.zeros(LANES)
    s11 = np.zeros(LANES)
    r0 = np.zeros(LANES)
    r1 = np.zeros(LANES)
    r00 = np.zeros(LANES)
    r11 = np.zeros(LANES)
    cnt = np.zeros(LANES, dtype=np.int64)
    alive = np.zeros(LANES, dtype=np.bool_)
    b, bleft, sleft, j = _counters(step0, nsteps, acc_start, batch_len, B, stride)
    nalive = 0
    for l in range(nl):
        w = w0 + l
        alive[l] = trapped_at[w] < 0 and blown_at[w] < 0
        nalive += alive[l]
        x[l] = q[w, 0]
        y[l] = q[w, 1]
        u[l] = p[w, 0]
        v[l] = p[w, 1]
        cnt[l] = still[w]
        G[l] = x[l]
        G[LANES + l] = y[l]
        s0[l] = bp[w, b, 0]
        s1[l] = bp[w, b, 1]
        s00[l] = bpp[w, b, 0, 0]
        s01[l] = bpp[w, b, 0, 1]
        s11[l] = bpp[w, b, 1, 1]
        r0[l] = bq[w, b, 0]
        r1[l] = bq[w, b, 1]
        r00[l] = bqq[w, b, 0]
        r11[l] = bqq[w, b, 1]
    for l in range(nl, LANES):  # padding lanes of a lane kernel: any finite point
        G[l] = G[0]
        G[LANES + l] = G[LANES]
    for st in range(step0, step0 + nsteps):
        if nalive == 0:
            break
        for l in range(nl):
            xo[l] = x[l]
            yo[l] = y[l]
        _drift2_lanes(G, x, y, u, v, nl, alive, h, a00, a01, a10, a11, diag)
        grad_block2(grad, G, nl, alive, qb, gb)
        _kick_drift2_lanes(G, x, y, u, v, nl, alive, h, delta, a00, a01, a10, a11, e00, e01, e10, e11, diag)
        acc = st >= acc_start
        sample = False
        if acc:
            bleft -= 1
            sample = S > 0 and sleft == 0
        for l in range(nl):
            if not alive[l]:
                continue
            w = w0 + l
            xl = x[l]
            yl = y[l]
            ul = u[l]
            vl = v[l]
            if not (abs(xl) < np.inf and abs(yl) < np.inf and abs(ul) < np.inf and abs(vl) < np.inf):
                blown_at[w] = st
                alive[l] = False
                nalive -= 1
                continue
            if (abs(ul) <= p_tol and abs(vl) <= p_tol and abs(xl - xo[l]) <= q_tol * (1.0 + abs(xl))
                    and abs(yl - yo[l]) <= q_tol * (1.0 + abs(yl))):
                cnt[l] += 1
                if cnt[l] >= window:
                    trapped_at[w] = st - window + 1
                    alive[l] = False
                    nalive -= 1
                    continue
            else:
                cnt[l] = 0
            if acc:
                s0[l] += ul
                s1[l] += vl
                s00[l] += ul * ul
                s01[l] += ul * vl
                s11[l] += vl * vl
                r0[l] += xl
                r1[l] += yl
                r00[l] += xl * xl
                r11[l] += yl * yl
                c0 = (xl - lo0) * inv0
                c1 = (yl - lo1) * inv1
                if c0 >= 0.0 and c0 < nbins and c1 >= 0.0 and c1 < nbins:
                    hist[w, int(c0) * nbins + int(c1)] += 1
                else:
                    outside[w] += 1
                if sample and j < S:
                    samp_q[w, j, 0] = xl
                    samp_q[w, j, 1] = yl
                    samp_p[w, j, 0] = ul
                    samp_p[w, j, 1] = vl
                    nstored[w] = j + 1
            elif st >= minmax_start:
                if xl < qmin[w, 0]:
                    qmin[w, 0] = xl
                if xl > qmax[w, 0]:
                    qmax[w, 0] = xl
                if yl < qmin[w, 1]:
                    qmin[w, 1] = yl
                if yl > qmax[w, 1]:
                    qmax[w, 1] = yl
        if acc:
            if sample:
                j += 1
                sleft = stride
            if S > 0:
                sleft -= 1
            if bleft == 0:
                for l in range(nl):
                    _store2(bp, bpp, w0 + l, b, s0[l], s1[l], s00[l], s01[l], s11[l])
                    _store2q(bq, bqq, w0 + l, b, r0[l], r1[l], r00[l], r11[l])
                b += 1
                for l in range(nl):
                    w = w0 + l
                    s0[l] = bp[w, b, 0]
                    s1[l] = bp[w, b, 1]
                    s00[l] = bpp[w, b, 0, 0]
                    s01[l] = bpp[w, b, 0, 1]
                    s11[l] = bpp[w, b, 1, 1]
                    r0[l] = bq[w, b, 0]
                    r1[l] = bq[w, b, 1]
                    r00[l] = bqq[w, b, 0]
                    r11[l] = bqq[w, b, 1]
                bleft = batch_len if b < B - 1 else _NEVER
    for l in range(nl):
        w = w0 + l
        _store2(bp, bpp, w, b, s0[l], s1[l], s00[l], s01[l], s11[l])
        _store2q(bq, bqq, w, b, r0[l], r1[l], r00[l], r11[l])
        still[w] = cnt[l]
        q[w, 0] = x[l]
        q[w, 1] = y[l]
        p[w, 0] = u[l]
        p[w, 1] = v[l]


@njit
def _store2(bp, bpp, w, b, s0, s1, s00, s01, s11):
    bp[w, b, 0] = s0
    bp[w, b, 1] = s1
    bpp[w, b, 0, 0] = s00
    bpp[w, b, 0, 1] = s01
    bpp[w, b, 1, 0] = s01
    bpp[w, b, 1, 1] = s11


@njit
def _store2q(bq, bqq, w, b, r0, r1, r00, r11):
    bq[w, b, 0] = r0
    bq[w, b, 1] = r1
    bqq[w, b, 0] = r00
    bqq[w, b, 1] = r11


@njit
def _walker_generic(grad, kind, w, q, p, g, rng, A, E, L, delta, diag, step0, nsteps, acc_start,
                    minmax_start, batch_len, hist_lo, hist_inv, nbins, stride, p_tol, q_tol, window,
                    bp, bpp, bq, bqq, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
                    still, trapped_at, blown_at):
    """Any d and integrator, one walker; see run_chunk."""
    d = q.shape[1]
    B = bp.shape[1]
    S = samp_q.shape[1]
    qw = q[w].copy()
    pw = p[w].copy()
    gw = g[w].copy()
    qold = np.empty(d)
    tmp = np.empty(d)
    z = np.empty(d)
    s = rng[w]
    cnt = still[w]
    check_trap = kind == DAMPED or kind == HAMILTONIAN  # noise-driven walkers cannot come to rest
    b, bleft, sleft, j = _counters(step0, nsteps, acc_start, batch_len, B, stride)
    for st in range(step0, step0 + nsteps):
        for i in range(d):
            qold[i] = qw[i]
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
                    break
            if small:
                cnt += 1
                if cnt >= window:
                    trapped_at[w] = st - window + 1
                    break
            else:
                cnt = 0
        if st >= acc_start:
            for i in range(d):
                bp[w, b, i] += pw[i]
                for k in range(d):
                    bpp[w, b, i, k] += pw[i] * pw[k]
                bq[w, b, i] += qw[i]
                bqq[w, b, i] += qw[i] * qw[i]
            bleft -= 1
            if bleft == 0:
                b += 1
                bleft = batch_len if b < B - 1 else _NEVER
            inside = True
            flat = 0
            for i in range(d):
                y = (qw[i] - hist_lo[i]) * hist_inv[i]
                if y >= 0.0 and y < nbins:
                    flat = flat * nbins + int(y)
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
            if S > 0:
                if sleft == 0:
                    if j < S:
                        for i in range(d):
                            samp_q[w, j, i] = qw[i]
                            samp_p[w, j, i] = pw[i]
                        nstored[w] = j + 1
                    j += 1
                    sleft = stride
                sleft -= 1
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


def _run_chunk(grad, kind, q, p, g, rng, A, E, L, delta, diag,
              step0, nsteps, acc_start, minmax_start,
              batch_len, hist_lo, hist_inv, nbins, stride,
              p_tol, q_tol, window,
              bp, bpp, bq, bqq, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
              still, trapped_at, blown_at):
    """Advance every live walker by ``nsteps`` steps (global per-walker steps step0 ..).

    Shapes: q, p, g (W, d) state (g = grad U(q), used by Langevin); rng (W, 4) uint64;
    A, E, L (d, d) (E = expm(-Gamma A delta) for DAMPED, the OU map F for LANGEVIN; L the OU
    Cholesky factor).  Steps s >= acc_start are accumulated with k = s - acc_start:
    bp (W, B, d) and bpp (W, B, d, d) batch sums of p and p p^T (batch min(k // batch_len, B-1));
    bq, bqq (W, B, d) the same batches' sums of q and of q_i^2 (autocorrelation time of q);
    hist (W, nbins**d) for d <= 2 or (W, d*nbins) per-coordinate marginals for d = 3, counted
    only when every coordinate is inside [lo, lo + nbins/inv), else outside (W,) += 1;
    samples (W, S, d) every ``stride`` steps (nstored (W,)).  Steps minmax_start <= s <
    acc_start update qmin/qmax (W, d) (pilot range of the histogram).

    Trap detection (DAMPED/HAMILTONIAN): max|p| <= p_tol and max|dq| <= q_tol (1 + |q|) for
    ``window`` consecutive steps marks the walker trapped (trapped_at = first such step); it
    then stops.  A non-finite q or p sets blown_at to the step and stops the walker.

    Paths: the damped map in d = 1 and d = 2 runs blocks of LANES walkers with scalar state
    (_block_damped_1d/_2d); everything else runs one walker at a time (_walker_generic).  All
    paths do the same arithmetic, so they give the same bits.  (simulate() sends d = 1, 2 damped
    runs of expression potentials to damped_chunk_1d/_2d with the SIMD lane kernel instead.)
    """
    W = q.shape[0]
    d = q.shape[1]
    if d == 1 and kind == DAMPED:
        nblocks = (W + LANES - 1) // LANES
        for blk in prange(nblocks):
            w0 = blk * LANES
            _block_damped_1d(grad, w0, min(LANES, W - w0), q, p, A[0, 0], E[0, 0], delta, step0, nsteps,
                             acc_start, minmax_start, batch_len, hist_lo[0], hist_inv[0], nbins, stride,
                             p_tol, q_tol, window, bp, bpp, bq, bqq, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
                             still, trapped_at, blown_at)
        return
    if d == 2 and kind == DAMPED:
        nblocks = (W + LANES - 1) // LANES
        for blk in prange(nblocks):
            w0 = blk * LANES
            _block_damped_2d(grad, w0, min(LANES, W - w0), q, p, A, E, delta, diag, step0, nsteps,
                             acc_start, minmax_start, batch_len, hist_lo, hist_inv, nbins, stride,
                             p_tol, q_tol, window, bp, bpp, bq, bqq, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
                             still, trapped_at, blown_at)
        return
    for w in prange(W):
        if trapped_at[w] >= 0 or blown_at[w] >= 0:
            continue
        _walker_generic(grad, kind, w, q, p, g, rng, A, E, L, delta, diag, step0, nsteps, acc_start,
                        minmax_start, batch_len, hist_lo, hist_inv, nbins, stride, p_tol, q_tol, window,
                        bp, bpp, bq, bqq, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
                        still, trapped_at, blown_at)


run_chunk = _Lazy(_RUN_SIG, _run_chunk)


def damped_1d_chunk(grad, q, p, a, e, delta, step0, nsteps, acc_start, minmax_start, batch_len, lo, inv, nbins,
                    stride, p_tol, q_tol, window, bp, bpp, bq, bqq, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
                    still, trapped_at, blown_at):
    """run_chunk restricted to the d = 1 damped map, for a lane kernel (Potential.grad_lanes;
    the other conventions work too).  a, e: A and E (scalars); lo, inv: the histogram's lower
    edge and bins per unit.  Compiled once for GRADL_TYPE (damped_chunk_1d, cached) or per
    gradient by :func:`specialized`.  With the same gradient values, the same bits as run_chunk."""
    W = q.shape[0]
    nblocks = (W + LANES - 1) // LANES
    for blk in prange(nblocks):
        w0 = blk * LANES
        _block_damped_1d(grad, w0, min(LANES, W - w0), q, p, a, e, delta, step0, nsteps, acc_start, minmax_start,
                         batch_len, lo, inv, nbins, stride, p_tol, q_tol, window,
                         bp, bpp, bq, bqq, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
                         still, trapped_at, blown_at)


damped_chunk_1d = _Lazy(_D1_SIG, damped_1d_chunk)


def damped_2d_chunk(grad, q, p, A, E, delta, diag, step0, nsteps, acc_start, minmax_start, batch_len, hist_lo,
                    hist_inv, nbins, stride, p_tol, q_tol, window, bp, bpp, bq, bqq, hist, outside, samp_q, samp_p,
                    nstored, qmin, qmax, still, trapped_at, blown_at):
    """run_chunk restricted to the d = 2 damped map, for a lane kernel (Potential.grad_lanes;
    the other conventions work too).  Compiled once for GRADL_TYPE (damped_chunk_2d, cached) or
    per gradient by :func:`specialized`.  With the same gradient values, the same bits as run_chunk."""
    W = q.shape[0]
    nblocks = (W + LANES - 1) // LANES
    for blk in prange(nblocks):
        w0 = blk * LANES
        _block_damped_2d(grad, w0, min(LANES, W - w0), q, p, A, E, delta, diag, step0, nsteps,
                         acc_start, minmax_start, batch_len, hist_lo, hist_inv, nbins, stride,
                         p_tol, q_tol, window, bp, bpp, bq, bqq, hist, outside, samp_q, samp_p, nstored, qmin, qmax,
                         still, trapped_at, blown_at)


damped_chunk_2d = _Lazy(_D2_SIG, damped_2d_chunk)


def _init_grad(grad, q, g):
    """g[w] = grad U(q[w]) for every walker. q, g: (W, d)."""
    for w in prange(q.shape[0]):
        grad(q[w], g[w])


init_grad = _Lazy(_INIT_SIG, _init_grad)


def _record_chunk(grad, kind, q, p, g, rng, A, E, L, h, diag, nrec, every, rec0, out_q, out_p, blown_at):
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


record_chunk = _Lazy(_REC_SIG, _record_chunk)


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
            grad_block1(grad, G, nl, alive, qb, gb)
            for l in range(nl):
                v[l] = e * v[l] - delta * G[LANES + l]
                x[l] = G[l] + h * a * v[l]
        for l in range(nl):
            q[w0 + l] = x[l]
            p[w0 + l] = v[l]


damped_bare_1d = _Lazy(_BARE1_SIG, _damped_bare_1d)


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
        x = np.empty(LANES)
        y = np.empty(LANES)
        u = np.empty(LANES)
        v = np.empty(LANES)
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
            _drift2_lanes(G, x, y, u, v, nl, alive, h, a00, a01, a10, a11, diag)
            grad_block2(grad, G, nl, alive, qb, gb)
            _kick_drift2_lanes(G, x, y, u, v, nl, alive, h, delta, a00, a01, a10, a11, e00, e01, e10, e11, diag)
        for l in range(nl):
            q[w0 + l, 0] = x[l]
            q[w0 + l, 1] = y[l]
            p[w0 + l, 0] = u[l]
            p[w0 + l, 1] = v[l]


damped_bare_2d = _Lazy(_BARE2_SIG, _damped_bare_2d)


def _damped_bare(grad, q, p, A, E, delta, diag, nsteps):
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


damped_bare = _Lazy(_BARE_SIG, _damped_bare)


_SPECIALIZED: dict = {}


def specialized(kernel):
    """A lazily compiled copy of ``kernel`` that specializes on the gradient dispatcher, so
    LLVM can inline the gradient (no indirect call).  Each new gradient costs a full compile
    (~10 s), so simulate() uses it only for long runs; the arithmetic, and so every result,
    is the same as the first-class-function driver's."""
    fn = _SPECIALIZED.get(kernel)
    if fn is None:
        jitted = njit(parallel=True)(getattr(kernel, "py_func", kernel))

        def fn(*args):
            with warnings.catch_warnings():  # compiling with first-class functions warns
                warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
                return jitted(*args)

        fn.jitted = jitted
        _SPECIALIZED[kernel] = fn
    return fn
