"""Walker loops and their parallel drivers (numba prange over walkers or blocks of LANES walkers).

Two loops, both calling the shared per-step bookkeeping of :mod:`bayescg.kernels.accumulate`:

* :func:`walker_loop`: one walker at a time, any d, any registered integrator (its ``step`` chosen by
  code through :data:`bayescg.kernels.registry.step`);
* :func:`lane_block`: LANES walkers advanced together, d = 1, 2, for integrators with ``lanes=True``
  (the map (3.2), with the white kick when stochastic).  Their gradients are one call of the potential's
  SIMD lane kernel (or interleaved calls of an array kernel); per walker the arithmetic is the step's,
  operation for operation, so with an array kernel both loops give the same bits.

Drivers (compiled for fixed signatures on first call, cached on disk; the gradient is a first-class
function, so one compiled driver serves every potential): :data:`run_chunk`, :func:`lanes_chunk`
(one per gradient convention and d, compiled when first used), :data:`record_chunk`, :data:`init_grad`.
"""
from __future__ import annotations

import threading
import warnings

import numpy as np
from numba import njit, prange, types
from numba.core.errors import NumbaExperimentalFeatureWarning
from numba.extending import overload

from .accumulate import clock_advance, clock_start, observe
from .registry import step
from .rng import fill_normal
from .state import (CONSTS_T, GRAD_TYPE, GRADL_TYPE, GRID_T, LANES, LANES_TAG, LIVE, PLAN_T, STATS_T,
                    WALKERS_T)


class _Lazy:
    """A driver compiled for its fixed signature on first call (then cached on disk), so that importing
    bayescg does not compile every driver.  First-class function types are "experimental" in numba:
    their warning is silenced here, around compilation and calls, not for the whole process."""

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
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
                        self._jit = njit(self.sig, parallel=True, cache=True)(self.py_func)
        return self._jit

    def __call__(self, *args):
        fn = self.compiled()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
            return fn(*args)


def _convention(grad):
    """Typing-time calling convention of ``grad`` (a numba type): "lanes" (g(S)) or "array" (g(q, out))."""
    if isinstance(grad, types.FunctionType):
        return "lanes" if len(grad.signature.args) == 1 else "array"
    if isinstance(grad, types.Dispatcher) and getattr(grad.dispatcher, LANES_TAG, False):
        return "lanes"
    return "array"


def grad_block(grad, S, nl, alive, qb, gb):
    """S[(d + i) LANES + l] = dV/dq_i at (S[i LANES + l])_i for the live lanes l < nl (every lane for a
    lane kernel); qb, gb (d,) scratch."""


@overload(grad_block, jit_options={"inline": "always"})
def _ov_grad_block(grad, S, nl, alive, qb, gb):
    if _convention(grad) == "lanes":
        return lambda grad, S, nl, alive, qb, gb: grad(S)

    def impl(grad, S, nl, alive, qb, gb):
        d = qb.shape[0]
        for l in range(nl):
            if alive[l]:
                for i in range(d):
                    qb[i] = S[i * LANES + l]
                grad(qb, gb)
                for i in range(d):
                    S[(d + i) * LANES + l] = gb[i]
    return impl


def lane_vec(X, l, dims):
    """(X[0, l], ..., X[d - 1, l]) as a d-tuple, d = len(dims) (a compile-time constant)."""


@overload(lane_vec, jit_options={"inline": "always"})
def _ov_lane_vec(X, l, dims):
    if dims.count == 1:
        return lambda X, l, dims: (X[0, l],)
    if dims.count == 2:
        return lambda X, l, dims: (X[0, l], X[1, l])
    raise TypeError("lane loops are for d = 1, 2")  # pragma: no cover


def lane_mat(M, dims):
    """The (d, d) array M as a d x d tuple (in registers for the whole block), d = len(dims)."""


@overload(lane_mat, jit_options={"inline": "always"})
def _ov_lane_mat(M, dims):
    if dims.count == 1:
        return lambda M, dims: ((M[0, 0],),)
    if dims.count == 2:
        return lambda M, dims: ((M[0, 0], M[0, 1]), (M[1, 0], M[1, 1]))
    raise TypeError("lane loops are for d = 1, 2")  # pragma: no cover


@njit
def walker_loop(grad, kind, w, Wk, S, c, P, G):
    """Advance walker w by P.nsteps steps of integrator ``kind`` (any d), with the shared bookkeeping."""
    d = Wk.q.shape[1]
    B = S.bp.shape[1]
    ns = S.samp_q.shape[1]
    qw = Wk.q[w].copy()
    pw = Wk.p[w].copy()
    gw = Wk.g[w].copy()
    qo = np.empty(d)
    tmp = np.empty(d)
    z = np.empty(d)
    s = Wk.rng[w]
    cnt = Wk.still[w]
    b, bleft, sleft, j = clock_start(P.step0, P.acc_start, P.batch_len, B, P.stride)
    for st in range(P.step0, P.step0 + P.nsteps):
        for i in range(d):
            qo[i] = qw[i]
        step(kind, grad, c, qw, pw, gw, tmp, z, s)
        acc = st >= P.acc_start
        sample = acc and ns > 0 and sleft == 0
        status, cnt = observe(Wk, S, P, G, w, st, acc, b, sample and j < ns, j, qw, pw, qo, cnt)
        if status != LIVE:
            break
        if acc:
            b, bleft, sleft, j = clock_advance(b, bleft, sleft, j, sample, P.batch_len, B, P.stride, ns)
    Wk.still[w] = cnt
    for i in range(d):
        Wk.q[w, i] = qw[i]
        Wk.p[w, i] = pw[i]
        Wk.g[w, i] = gw[i]


@njit(inline="always")
def lane_drift(Sg, X, Pm, nl, alive, h, A, diag):
    """First half-drift of (3.2) for the live lanes, into the gradient buffer's position rows."""
    d = len(A)
    for l in range(nl):
        if not alive[l]:
            continue
        for i in range(d):
            if diag:
                Sg[i * LANES + l] = X[i, l] + h * A[i][i] * Pm[i, l]
            else:
                s = A[i][0] * Pm[0, l]
                for k in range(1, d):
                    s += A[i][k] * Pm[k, l]
                Sg[i * LANES + l] = X[i, l] + h * s


@njit(inline="always")
def lane_kick_drift(Sg, X, Pm, T, z, nl, alive, h, delta, A, E, L, diag, noisy, rng, w0):
    """Friction kick with the buffer's gradients, the white kick L z (when noisy; z from walker w0 + l's
    stream), and the second half-drift of (3.2), for the live lanes."""
    d = len(A)
    for l in range(nl):
        if not alive[l]:
            continue
        for i in range(d):
            gi = Sg[(d + i) * LANES + l]
            if diag:
                T[i] = E[i][i] * Pm[i, l] - delta * gi
            else:
                s = E[i][0] * Pm[0, l]
                for k in range(1, d):
                    s += E[i][k] * Pm[k, l]
                T[i] = s - delta * gi
        if noisy:
            fill_normal(rng[w0 + l], z)
            for i in range(d):
                acc = 0.0
                for k in range(i + 1):
                    acc += L[i][k] * z[k]
                T[i] += acc
        for i in range(d):
            Pm[i, l] = T[i]
        for i in range(d):
            if diag:
                X[i, l] = Sg[i * LANES + l] + h * A[i][i] * Pm[i, l]
            else:
                s = A[i][0] * Pm[0, l]
                for k in range(1, d):
                    s += A[i][k] * Pm[k, l]
                X[i, l] = Sg[i * LANES + l] + h * s


@njit
def lane_block(grad, w0, nl, Wk, S, c, noisy, P, G, dims):
    """Walkers w0 .. w0 + nl - 1 (nl <= LANES) advanced together by P.nsteps steps of the lane scheme
    (c: state.Consts; noisy: with the white kick; d = len(dims) = 1 or 2, a compile-time constant):
    positions of all lanes, one gradient call for the block, then momenta and positions; then the shared
    bookkeeping per lane."""
    d = len(dims)
    A = lane_mat(c.A, dims)
    E = lane_mat(c.E, dims)
    L = lane_mat(c.L, dims)
    diag = c.diag
    B = S.bp.shape[1]
    ns = S.samp_q.shape[1]
    qb = np.empty(d)
    gb = np.empty(d)
    z = np.empty(d)
    T = np.empty(d)
    Sg = np.zeros(2 * d * LANES)  # gradient buffer: positions, then gradients (lane kernel layout)
    h = 0.5 * c.delta
    X = np.empty((d, LANES))
    Pm = np.empty((d, LANES))
    Xo = np.empty((d, LANES))
    cnt = np.zeros(LANES, dtype=np.int64)
    alive = np.zeros(LANES, dtype=np.bool_)
    # all walkers of a block share the step counters, so batch and sample positions are common
    b, bleft, sleft, j = clock_start(P.step0, P.acc_start, P.batch_len, B, P.stride)
    nalive = 0
    for l in range(nl):
        w = w0 + l
        alive[l] = Wk.trapped_at[w] < 0 and Wk.blown_at[w] < 0
        nalive += alive[l]
        cnt[l] = Wk.still[w]
        for i in range(d):
            X[i, l] = Wk.q[w, i]
            Pm[i, l] = Wk.p[w, i]
            Sg[i * LANES + l] = X[i, l]
    for l in range(nl, LANES):  # padding lanes of a lane kernel: any finite point
        for i in range(d):
            Sg[i * LANES + l] = Sg[i * LANES]
    for st in range(P.step0, P.step0 + P.nsteps):
        if nalive == 0:
            break
        for l in range(nl):
            for i in range(d):
                Xo[i, l] = X[i, l]
        lane_drift(Sg, X, Pm, nl, alive, h, A, diag)
        grad_block(grad, Sg, nl, alive, qb, gb)
        lane_kick_drift(Sg, X, Pm, T, z, nl, alive, h, c.delta, A, E, L, diag, noisy, Wk.rng, w0)
        acc = st >= P.acc_start
        sample = acc and ns > 0 and sleft == 0
        store = sample and j < ns
        for l in range(nl):
            if not alive[l]:
                continue
            status, cnt[l] = observe(Wk, S, P, G, w0 + l, st, acc, b, store, j, lane_vec(X, l, dims),
                                     lane_vec(Pm, l, dims), lane_vec(Xo, l, dims), cnt[l])
            if status != LIVE:
                alive[l] = False
                nalive -= 1
        if acc:
            b, bleft, sleft, j = clock_advance(b, bleft, sleft, j, sample, P.batch_len, B, P.stride, ns)
    for l in range(nl):
        w = w0 + l
        Wk.still[w] = cnt[l]
        for i in range(d):
            Wk.q[w, i] = X[i, l]
            Wk.p[w, i] = Pm[i, l]


def _run_chunk(grad, kind, Wk, S, c, P, G):
    """Advance every live walker by P.nsteps steps of integrator ``kind`` (registry code) with
    walker_loop; shapes in state.Walkers / state.Stats."""
    for w in prange(Wk.q.shape[0]):
        if Wk.trapped_at[w] >= 0 or Wk.blown_at[w] >= 0:
            continue
        walker_loop(grad, kind, w, Wk, S, c, P, G)


def _lanes_chunk1(grad, Wk, S, c, noisy, P, G):
    """Advance every live walker (d = 1) by P.nsteps steps of the lane scheme, blocks of LANES walkers."""
    W = Wk.q.shape[0]
    nblocks = (W + LANES - 1) // LANES
    for blk in prange(nblocks):
        w0 = blk * LANES
        lane_block(grad, w0, min(LANES, W - w0), Wk, S, c, noisy, P, G, (0,))


def _lanes_chunk2(grad, Wk, S, c, noisy, P, G):
    """_lanes_chunk1 for d = 2 (the dimension is a compile-time constant of the lane loop; parallel
    drivers cannot take it as a tuple argument)."""
    W = Wk.q.shape[0]
    nblocks = (W + LANES - 1) // LANES
    for blk in prange(nblocks):
        w0 = blk * LANES
        lane_block(grad, w0, min(LANES, W - w0), Wk, S, c, noisy, P, G, (0, 0))


def _init_grad(grad, q, g):
    """g[w] = grad U(q[w]) for every walker. q, g: (W, d)."""
    for w in prange(q.shape[0]):
        grad(q[w], g[w])


@njit
def record_one(grad, kind, m, Wk, c, nrec, every, rec0, out_q, out_p):
    """Trajectory m of _record_chunk."""
    d = Wk.q.shape[1]
    qw = Wk.q[m].copy()
    pw = Wk.p[m].copy()
    gw = Wk.g[m].copy()
    tmp = np.empty(d)
    z = np.empty(d)
    s = Wk.rng[m]
    for r in range(nrec):
        for k in range(every):
            step(kind, grad, c, qw, pw, gw, tmp, z, s)
        bad = False
        for i in range(d):
            if not (abs(qw[i]) < np.inf and abs(pw[i]) < np.inf):
                bad = True
        if bad:
            Wk.blown_at[m] = (rec0 + r + 1) * every
            break
        for i in range(d):
            out_q[rec0 + r + 1, m, i] = qw[i]
            out_p[rec0 + r + 1, m, i] = pw[i]
    for i in range(d):
        Wk.q[m, i] = qw[i]
        Wk.p[m, i] = pw[i]
        Wk.g[m, i] = gw[i]


def _record_chunk(grad, kind, Wk, c, nrec, every, rec0, out_q, out_p):
    """Advance each trajectory by nrec * every steps, storing the state after each ``every`` steps at
    rows rec0 + 1 .. rec0 + nrec of out_q, out_p (n, M, d).  A non-finite state sets blown_at[m] to the
    (global) step and stops that trajectory.  (Writes through the tuple happen in record_one: numba's
    parallel loop body does not write through a tuple's arrays reliably.)"""
    for m in prange(Wk.q.shape[0]):
        if Wk.blown_at[m] >= 0:
            continue
        record_one(grad, kind, m, Wk, c, nrec, every, rec0, out_q, out_p)


_i8, _T8 = types.int64, types.float64[:, :, ::1]
run_chunk = _Lazy(types.void(GRAD_TYPE, _i8, WALKERS_T, STATS_T, CONSTS_T, PLAN_T, GRID_T), _run_chunk)
init_grad = _Lazy(types.void(GRAD_TYPE, types.float64[:, ::1], types.float64[:, ::1]), _init_grad)
record_chunk = _Lazy(types.void(GRAD_TYPE, _i8, WALKERS_T, CONSTS_T, _i8, _i8, _i8, _T8, _T8), _record_chunk)
_LANE_DRIVERS: dict = {}


def lanes_chunk(lane_kernel: bool, d: int):
    """The lane driver for a lane kernel (Potential.grad_lanes) or an array kernel, d = 1 or 2: called
    as f(grad, walkers, stats, consts, noisy, plan, grid).  Each of the four is compiled when first used."""
    key = (bool(lane_kernel), int(d))
    fn = _LANE_DRIVERS.get(key)
    if fn is None:
        gt = GRADL_TYPE if lane_kernel else GRAD_TYPE
        fn = _LANE_DRIVERS.setdefault(key, _Lazy(types.void(gt, WALKERS_T, STATS_T, CONSTS_T, types.boolean, PLAN_T,
                                                            GRID_T), _lanes_chunk1 if d == 1 else _lanes_chunk2))
    return fn


_SPECIALIZED: dict = {}


def specialized(kernel):
    """A lazily compiled copy of driver ``kernel`` (e.g. ``_lanes_chunk1``) that specializes on the
    gradient dispatcher, so LLVM can inline the gradient (no indirect call).  Each new gradient costs a
    full compile (~10 s), so simulate() uses it only for long runs; results are the same bits."""
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
