"""Walker loops and their drivers (serial nogil loops over ranges of walkers or of blocks of LANES walkers, run
on threads by :func:`spread`).

* :func:`walker_loop`: one walker at a time, any d, any registered integrator (its ``step`` chosen by
  code through :data:`bayescg.kernels.registry.step`), with the shared per-step bookkeeping
  :func:`bayescg.kernels.accumulate.observe`;
* :func:`block_1d`, :func:`block_2d`: LANES walkers advanced together, d = 1, 2, for integrators with
  ``lanes=True`` (the map (3.2), with the white kick when ``noisy``).  Their gradients are one call of the
  potential's SIMD lane kernel (or interleaved calls of an array kernel); per walker the arithmetic is the
  registered step's, operation for operation, so with an array kernel both loops give the same bits
  (tests/test_engine_accumulators.py).  They keep lane state and the open batch's sums in one lane buffer (rows of LANES, so that
  LLVM vectorizes the sums over the lanes: batch_sums) and share the histogram/cell counting
  (accumulate.count_cell) and batch clock; they are written per d because
  a generic lane loop (helpers inlined by numba, NamedTuple fields read in the loop) ran 2-6x slower.

Drivers (compiled for fixed signatures on first call, cached on disk; the gradient is a first-class
function, so one compiled driver serves every potential; the typed state of :mod:`bayescg.kernels.state`
in, unpacked once per block; no numba parallel backend, whose parfor passes made the 1D lane driver the
largest single cost of a cold run): :data:`run_chunk`, :func:`lanes_chunk` (one per gradient convention and d,
compiled when first used), :func:`record_chunk_for` (one per integrator), :data:`init_grad`.
"""
from __future__ import annotations

import threading
import types as pytypes
import warnings
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit, types
from numba.core.errors import NumbaExperimentalFeatureWarning
from numba.core.registry import CPUDispatcher as Dispatcher
from numba.extending import overload

from .accumulate import (NEVER, clock_advance, clock_start, close_batch, close_batch_scan, mark_open, mark_open_scan,
                         observe)
from .jit import Inner, inner
from .registry import step
from .rng import fill_normal, lanes_normal
from .state import (CONSTS_T, GRAD_TYPE, GRADL_TYPE, GRID_T, LANES, LANES_TAG, LIVE, PLAN_T, STATS_T,
                    WALKERS_T)


class _Lazy:
    """A driver compiled for its fixed signature on first call (then cached on disk), so that importing
    bayescg does not compile every driver.  First-class function types are "experimental" in numba:
    their warning is silenced here, around compilation and calls, not for the whole process.

    With ``items`` (a function of the call's arguments giving a count n), ``fn`` is a serial driver whose
    last two parameters are a range lo, hi of items (blocks of walkers, walkers); it is compiled without
    numba's parallel backend (``nogil``; a parfor driver took ~10x longer to compile, see
    benchmarks/RESULTS_END_TO_END.md) and a call runs items 0 .. n - 1 as :func:`spread` does.  Without
    ``items`` (the bare benchmark kernels) ``fn`` is a prange loop compiled with ``parallel=True``."""

    def __init__(self, sig, fn, items=None):
        self.sig = sig
        self.py_func = fn
        self.items = items
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__
        self._jit = None
        self._lock = threading.Lock()

    def _opts(self):
        return dict(parallel=True) if self.items is None else dict(nogil=True)

    def compiled(self):
        if self._jit is None:
            with self._lock:
                if self._jit is None:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
                        self._jit = njit(self.sig, cache=True, **self._opts())(self.py_func)
        return self._jit

    def cached(self):
        """True when the driver is compiled in this process or its machine code is in numba's disk cache (so
        :meth:`compiled` loads it in well under a second), False when the first call compiles it (~10 s), None
        when numba's cache cannot be asked (its index is numba's private API: then nothing is announced)."""
        if self._jit is not None:
            return True
        try:
            disp = njit(cache=True, **self._opts())(self.py_func)  # lazy: nothing is compiled or loaded here
            cache = disp._cache
            return cache._index_key(self.sig, disp.targetctx.codegen()) in cache._cache_file._load_index()
        except Exception:  # noqa: BLE001 - another numba version or no cache directory
            return None

    def __call__(self, *args):
        fn = self.compiled()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
            if self.items is None:
                return fn(*args)
            spread(fn, self.items(*args), args)


def spread(fn, n: int, args) -> None:
    """fn(*args, lo, hi) for contiguous parts [lo, hi) of items 0 .. n - 1, one part per thread
    (numba.get_num_threads() of them, the engine's one thread setting), in a ThreadPoolExecutor; ``fn``
    must release the GIL (nogil).  Every item writes only its own rows, so results do not depend on the
    number of threads or the parts.  An exception in a part is raised here after all parts have ended."""
    nt = max(1, min(numba.get_num_threads(), n))
    if nt == 1:
        fn(*args, 0, n)
        return
    cuts = [(k * n) // nt for k in range(nt + 1)]
    with ThreadPoolExecutor(max_workers=nt, thread_name_prefix="bayescg-engine") as ex:
        futures = [ex.submit(fn, *args, cuts[k], cuts[k + 1]) for k in range(nt)]
    for f in futures:
        f.result()


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


@inner
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
    # everything the step loop reads, out of the tuples once (field reads of the big tuples inside the
    # loop measured several times slower)
    bp, bpp, bpk, bq, bqq, hist, hcur, hvis, nvis, hs1, hs2, hblk, nblk, bout, samp_q, samp_p, nstored, qmin, qmax = S
    blown_at, trapped_at = Wk.blown_at, Wk.trapped_at
    acc_start, batch_len, stride, minmax_start = P.acc_start, P.batch_len, P.stride, P.minmax_start
    ctl = (P.check_trap, P.p_tol, P.q_tol, P.window, minmax_start, G.nbins)
    lo, inv = G.lo, G.inv
    b, bleft, sleft, j = clock_start(P.step0, acc_start, batch_len, B, stride)
    for st in range(P.step0, P.step0 + P.nsteps):
        for i in range(d):
            qo[i] = qw[i]
        step(kind, grad, c, qw, pw, gw, tmp, z, s)
        acc = st >= acc_start
        sample = acc and ns > 0 and sleft == 0
        status, cnt = observe(bp, bpp, bpk, bq, bqq, hcur, hvis, nvis, bout, samp_q, samp_p, nstored, qmin, qmax,
                              blown_at, trapped_at, ctl, lo, inv, w, st, acc, b, sample and j < ns, j, qw, pw, qo, cnt)
        if status != LIVE:
            break
        if acc:
            if bleft == 1:  # batch b ends with this step
                close_batch(hist, hcur, hvis, hs1, hs2, hblk, nblk, w, nvis[w], batch_len - bout[w, b])
                nvis[w] = 0
            b, bleft, sleft, j = clock_advance(b, bleft, sleft, j, sample, batch_len, B, stride, ns)
    mark_open(hvis, hblk, nblk, w, nvis[w])
    Wk.still[w] = cnt
    for i in range(d):
        Wk.q[w, i] = qw[i]
        Wk.p[w, i] = pw[i]
        Wk.g[w, i] = gw[i]


@inner
def lane_checked(finite, at_rest_now, l, w, st, cnt, window, alive, blown_at, trapped_at):
    """1.0 when lane l (walker w) counts step ``st``, else 0.0 with the lane retired (alive[l] False): blown up
    (a non-finite state; blown_at[w] = st) or at rest (at_rest_now: trap detection on and |p|, |dq| below their
    tolerances) for ``window`` consecutive steps (trapped_at[w] = the first of them).  cnt[l] counts consecutive
    at-rest steps.  The lane blocks' form of accumulate.observe's checks."""
    if not finite:
        blown_at[w] = st
        alive[l] = False
        return 0.0
    if at_rest_now:
        cnt[l] += 1
        if cnt[l] >= window:
            trapped_at[w] = st - window + 1
            alive[l] = False
            return 0.0
    else:
        cnt[l] = 0
    return 1.0


@inner
def block_1d(grad, w0, nl, q, p, rng, a, e, l00, noisy, delta, step0, nsteps, acc_start, minmax_start,
             batch_len, lo, inv, nbins, stride, check_trap, p_tol, q_tol, window,
             bp, bpp, bpk, bq, bqq, hist, hcur, hvis, nvis, hs1, hs2, hblk, nblk, bout, samp_q, samp_p, nstored,
             qmin, qmax, still, trapped_at, blown_at):
    """d = 1 damped map (3.2) for walkers w0 .. w0 + nl - 1 (nl <= LANES), advanced together step
    by step: positions of all lanes, one gradient call for the block (lane kernel; or one call
    per walker for an array kernel), then momenta and positions.  Per walker the arithmetic is
    exactly the registered step's (same operations in the same order), and the accumulators are those of
    walker_loop, so with an array kernel results equal the one-walker-at-a-time loop bit for
    bit (with a lane kernel they differ only through its exp/sin/cos).  Per step: the map, the lanes'
    checks (blow-up, trap) into ok, the batch sums of every lane at once (batch_sums), then the cell counts."""
    B = bp.shape[1]
    S = samp_q.shape[1]
    qb = np.empty(1)
    gb = np.empty(1)
    G = np.zeros(2 * LANES)  # gradient scratch: positions, then gradients (lane kernel layout)
    h = 0.5 * delta
    Z = np.zeros((3 + nsum(1)) * LANES)  # lane buffer, rows as in batch_sums (zeros: padding lanes stay finite)
    x = Z[:LANES]
    v = Z[LANES:2 * LANES]
    ok = Z[2 * LANES:3 * LANES]  # 1.0: the lane's step is counted (live, finite, not trapped)
    xo = np.empty(LANES)
    # the white kicks: the lanes' xoshiro states transposed, drawn for the lanes together (rng.lanes_normal)
    ts = np.zeros((4, LANES), dtype=np.uint64)
    zl = np.empty(LANES)
    rl = np.empty(LANES, dtype=np.uint64)
    one = np.empty(4, dtype=np.uint64)
    cnt = np.zeros(LANES, dtype=np.int64)
    alive = np.zeros(LANES, dtype=np.bool_)
    # all walkers of a chunk share the step counters, so batch and sample positions are common
    b, bleft, sleft, j = clock_start(step0, acc_start, batch_len, B, stride)
    nalive = 0
    for l in range(nl):
        w = w0 + l
        for k in range(4):
            ts[k, l] = rng[w, k]
        alive[l] = trapped_at[w] < 0 and blown_at[w] < 0
        nalive += alive[l]
        x[l] = q[w, 0]
        v[l] = p[w, 0]
        cnt[l] = still[w]
        G[l] = x[l]
        load_sums(Z, 1, l, bp, bpp, bq, bqq, bpk, w, b)
    for l in range(nl, LANES):  # padding lanes of a lane kernel: any finite point
        G[l] = G[0]
    for st in range(step0, step0 + nsteps):
        if nalive == 0:
            break
        for l in range(nl):
            if alive[l]:
                xo[l] = x[l]
                G[l] = x[l] + h * a * v[l]
        grad_block(grad, G, nl, alive, qb, gb)
        if noisy:  # the white kick, as damped_white.white_kick does it (each live lane's next normal)
            lanes_normal(ts, alive, zl, rl, one)
            for l in range(nl):
                if alive[l]:
                    v[l] = e * v[l] - delta * G[LANES + l]
                    v[l] += 0.0 + l00 * zl[l]
                    x[l] = G[l] + h * a * v[l]
        else:
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
            ok[l] = 0.0
            if alive[l]:
                xl = x[l]
                vl = v[l]
                ok[l] = lane_checked(abs(xl) < np.inf and abs(vl) < np.inf,
                                     check_trap and abs(vl) <= p_tol and abs(xl - xo[l]) <= q_tol * (1.0 + abs(xl)),
                                     l, w0 + l, st, cnt, window, alive, blown_at, trapped_at)
                nalive -= not alive[l]
        if acc:
            batch_sums(Z, 1)
            for l in range(nl):
                if ok[l] == 0.0:
                    continue
                w = w0 + l
                xl = x[l]
                y = (xl - lo) * inv
                if y >= 0.0 and y < nbins:
                    hcur[w, int(y)] += 1  # no visited-cell list in 1D: close_batch_scan
                else:
                    bout[w, b] += 1
                if sample and j < S:
                    samp_q[w, j, 0] = xl
                    samp_p[w, j, 0] = v[l]
                    nstored[w] = j + 1
            if sample:
                j += 1
                sleft = stride
            if S > 0:
                sleft -= 1
            if bleft == 0:
                for l in range(nl):
                    w = w0 + l
                    close_batch_scan(hist, hcur, hs1, hs2, hblk, nblk, w, batch_len - bout[w, b])
                    store_sums(Z, 1, l, bp, bpp, bq, bqq, bpk, w, b)
                b += 1
                for l in range(nl):
                    load_sums(Z, 1, l, bp, bpp, bq, bqq, bpk, w0 + l, b)
                bleft = batch_len if b < B - 1 else NEVER
        elif st >= minmax_start:
            for l in range(nl):
                if ok[l] == 0.0:
                    continue
                w = w0 + l
                xl = x[l]
                if xl < qmin[w, 0]:
                    qmin[w, 0] = xl
                if xl > qmax[w, 0]:
                    qmax[w, 0] = xl
    for l in range(nl):
        w = w0 + l
        store_sums(Z, 1, l, bp, bpp, bq, bqq, bpk, w, b)
        still[w] = cnt[l]
        nvis[w] = 0  # no visited-cell list in 1D (close_batch_scan)
        mark_open_scan(hcur, hblk, nblk, w)
        q[w, 0] = x[l]
        p[w, 0] = v[l]
        for k in range(4):
            rng[w, k] = ts[k, l]


@inner
def keep(a, new, old):
    """new where a, else old: the d = 2 lane loops compute every lane and keep a dead lane's values with this
    select, so that their stores are plain vector stores.  Written as stores under ``if alive[l]`` they were
    masked stores (vmaskmovpd: slow on AMD, and the scalar loads of x, y, u, v that follow cannot take their
    data from such a store); engine_overhead.py 2D marginal ~1.2 ns per walker-step less.  (In 1D the same
    change made LLVM unroll the lane loops fully and leave them scalar, 1D ~0.7 ns slower, so block_1d keeps
    its branches.)"""
    return new if a else old


@njit(inline="always")
def drift2_lanes(G, x, y, u, v, alive, h, a00, a01, a10, a11, diag):
    """First half-drift of (3.2) for the live lanes of a d = 2 block, into G's position rows (a dead or
    padding lane's unchanged: keep)."""
    for l in range(LANES):
        pu = u[l]
        pv = v[l]
        if diag:
            gx = x[l] + h * a00 * pu
            gy = y[l] + h * a11 * pv
        else:
            gx = x[l] + h * (a00 * pu + a01 * pv)
            gy = y[l] + h * (a10 * pu + a11 * pv)
        G[l] = keep(alive[l], gx, G[l])
        G[LANES + l] = keep(alive[l], gy, G[LANES + l])


@njit(inline="always")
def kick_drift2_lanes(G, x, y, u, v, alive, h, delta, a00, a01, a10, a11, e00, e01, e10, e11, diag):
    """Friction kick with G's gradient rows and second half-drift of (3.2) for the live lanes (a dead or
    padding lane's state unchanged: keep)."""
    for l in range(LANES):
        pu = u[l]
        pv = v[l]
        xm = G[l]
        ym = G[LANES + l]
        gx = G[2 * LANES + l]
        gy = G[3 * LANES + l]
        if diag:
            pu2 = e00 * pu - delta * gx
            pv2 = e11 * pv - delta * gy
            x2 = xm + h * a00 * pu2
            y2 = ym + h * a11 * pv2
        else:
            pu2 = (e00 * pu + e01 * pv) - delta * gx
            pv2 = (e10 * pu + e11 * pv) - delta * gy
            x2 = xm + h * (a00 * pu2 + a01 * pv2)
            y2 = ym + h * (a10 * pu2 + a11 * pv2)
        a = alive[l]
        x[l] = keep(a, x2, x[l])
        y[l] = keep(a, y2, y[l])
        u[l] = keep(a, pu2, pu)
        v[l] = keep(a, pv2, pv)


@inner
def kick_white_drift2_lanes(G, x, y, u, v, nl, alive, h, delta, a00, a01, a10, a11, e00, e01, e10, e11, diag,
                            rng, w0, z, l00, l10, l11):
    """kick_drift2_lanes with the white kick of damped_white between the friction kick and the drift
    (z from walker w0 + l's stream, as damped_white.white_kick does it)."""
    for l in range(nl):
        if not alive[l]:
            continue
        pu = u[l]
        pv = v[l]
        gx = G[2 * LANES + l]
        gy = G[3 * LANES + l]
        if diag:
            pu2 = e00 * pu - delta * gx
            pv2 = e11 * pv - delta * gy
        else:
            pu2 = (e00 * pu + e01 * pv) - delta * gx
            pv2 = (e10 * pu + e11 * pv) - delta * gy
        fill_normal(rng, z, w0 + l)  # the table and the row: no row view per draw
        pu2 += 0.0 + l00 * z[0]
        pv2 += (0.0 + l10 * z[0]) + l11 * z[1]
        if diag:
            x[l] = G[l] + h * a00 * pu2
            y[l] = G[LANES + l] + h * a11 * pv2
        else:
            x[l] = G[l] + h * (a00 * pu2 + a01 * pv2)
            y[l] = G[LANES + l] + h * (a10 * pu2 + a11 * pv2)
        u[l] = pu2
        v[l] = pv2


@inner
def regular2(Z, xo, yo, alive, check_trap, p_tol, q_tol):
    """True when no live lane of a d = 2 block (positions, momenta in Z's first rows, previous positions
    xo, yo) needs lane_checked this step: every live lane is finite and, with trap detection on, not at
    rest.  Such a step changes no lane's status (ok keeps the live lanes' 1.0) and sets the live lanes'
    at-rest counts to 0.  The lanes' checks are the per-step cost of block_2d's scalar check loop (~20 %
    of its perf samples); written with non-short-circuit & and | over a fixed LANES, this test vectorizes."""
    odd = False
    for l in range(LANES):
        xl = Z[l]
        yl = Z[LANES + l]
        ul = Z[2 * LANES + l]
        vl = Z[3 * LANES + l]
        fin = (abs(xl) < np.inf) & (abs(yl) < np.inf) & (abs(ul) < np.inf) & (abs(vl) < np.inf)
        rest = ((abs(ul) <= p_tol) & (abs(vl) <= p_tol) & (abs(xl - xo[l]) <= q_tol * (1.0 + abs(xl)))
                & (abs(yl - yo[l]) <= q_tol * (1.0 + abs(yl))))
        odd = odd | (alive[l] & ((not fin) | (check_trap & rest)))
    return not odd


@inner
def block_2d(grad, w0, nl, q, p, rng, A, E, L, noisy, delta, diag, step0, nsteps, acc_start, minmax_start,
             batch_len, hist_lo, hist_inv, nbins, stride, check_trap, p_tol, q_tol, window,
             bp, bpp, bpk, bq, bqq, hist, hcur, hvis, nvis, hs1, hs2, hblk, nblk, bout, samp_q, samp_p, nstored,
             qmin, qmax, still, trapped_at, blown_at):
    """d = 2 damped map (3.2) for walkers w0 .. w0 + nl - 1, advanced together as in
    block_1d, with A and E (full 2x2 or diagonal) in scalars.  The arithmetic is
    damped_step's, operation for operation (diagonal: q += h A_ii p_i; full: q_i += h (A_i0 p_0 +
    A_i1 p_1)), so with an array kernel results equal walker_loop's bit for bit."""
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
    Z = np.zeros((5 + nsum(2)) * LANES)  # lane buffer, rows as in batch_sums (zeros: padding lanes stay finite)
    x = Z[:LANES]
    y = Z[LANES:2 * LANES]
    u = Z[2 * LANES:3 * LANES]
    v = Z[3 * LANES:4 * LANES]
    ok = Z[4 * LANES:5 * LANES]  # 1.0: the lane's step is counted (live, finite, not trapped)
    xo = np.empty(LANES)
    yo = np.empty(LANES)
    z = np.empty(2)
    l00 = L[0, 0]
    l10 = L[1, 0]
    l11 = L[1, 1]
    cnt = np.zeros(LANES, dtype=np.int64)
    nv = np.zeros(LANES, dtype=np.int64)  # cells visited in the open batch (state.Stats.nvis)
    alive = np.zeros(LANES, dtype=np.bool_)
    b, bleft, sleft, j = clock_start(step0, acc_start, batch_len, B, stride)
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
        nv[l] = nvis[w]
        G[l] = x[l]
        G[LANES + l] = y[l]
        load_sums(Z, 2, l, bp, bpp, bq, bqq, bpk, w, b)
    for l in range(nl, LANES):  # padding lanes of a lane kernel: any finite point
        G[l] = G[0]
        G[LANES + l] = G[LANES]
    for l in range(nl):  # ok = the live lanes after every step's checks (regular2 steps leave it)
        ok[l] = 1.0 if alive[l] else 0.0
    czero = False  # the live lanes' at-rest counts are all 0
    for st in range(step0, step0 + nsteps):
        if nalive == 0:
            break
        for l in range(nl):
            xo[l] = x[l]
            yo[l] = y[l]
        drift2_lanes(G, x, y, u, v, alive, h, a00, a01, a10, a11, diag)
        grad_block(grad, G, nl, alive, qb, gb)
        if noisy:
            kick_white_drift2_lanes(G, x, y, u, v, nl, alive, h, delta, a00, a01, a10, a11, e00, e01, e10, e11,
                                    diag, rng, w0, z, l00, l10, l11)
        else:
            kick_drift2_lanes(G, x, y, u, v, alive, h, delta, a00, a01, a10, a11, e00, e01, e10, e11, diag)
        acc = st >= acc_start
        sample = False
        if acc:
            bleft -= 1
            sample = S > 0 and sleft == 0
        if regular2(Z, xo, yo, alive, check_trap, p_tol, q_tol):
            if not czero:
                for l in range(nl):
                    if alive[l]:
                        cnt[l] = 0
                czero = True
        else:
            czero = False
            for l in range(nl):
                ok[l] = 0.0
                if not alive[l]:
                    continue
                xl = x[l]
                yl = y[l]
                ul = u[l]
                vl = v[l]
                ok[l] = lane_checked(abs(xl) < np.inf and abs(yl) < np.inf and abs(ul) < np.inf and abs(vl) < np.inf,
                                     check_trap and (abs(ul) <= p_tol and abs(vl) <= p_tol
                                                     and abs(xl - xo[l]) <= q_tol * (1.0 + abs(xl))
                                                     and abs(yl - yo[l]) <= q_tol * (1.0 + abs(yl))),
                                     l, w0 + l, st, cnt, window, alive, blown_at, trapped_at)
                nalive -= not alive[l]
        if acc:
            batch_sums(Z, 2)
            for l in range(nl):
                if ok[l] == 0.0:
                    continue
                w = w0 + l
                xl = x[l]
                yl = y[l]
                c0 = (xl - lo0) * inv0
                c1 = (yl - lo1) * inv1
                if c0 >= 0.0 and c0 < nbins and c1 >= 0.0 and c1 < nbins:
                    c = int(c0) * nbins + int(c1)  # accumulate.count_cell, inline
                    k = hcur[w, c]
                    hvis[w, nv[l]] = c
                    nv[l] += k == 0
                    hcur[w, c] = k + 1
                else:
                    bout[w, b] += 1
                if sample and j < S:
                    samp_q[w, j, 0] = xl
                    samp_q[w, j, 1] = yl
                    samp_p[w, j, 0] = u[l]
                    samp_p[w, j, 1] = v[l]
                    nstored[w] = j + 1
            if sample:
                j += 1
                sleft = stride
            if S > 0:
                sleft -= 1
            if bleft == 0:
                for l in range(nl):
                    close_batch(hist, hcur, hvis, hs1, hs2, hblk, nblk, w0 + l, nv[l], batch_len - bout[w0 + l, b])
                    nv[l] = 0
                    store_sums(Z, 2, l, bp, bpp, bq, bqq, bpk, w0 + l, b)
                b += 1
                for l in range(nl):
                    load_sums(Z, 2, l, bp, bpp, bq, bqq, bpk, w0 + l, b)
                bleft = batch_len if b < B - 1 else NEVER
        elif st >= minmax_start:
            for l in range(nl):
                if ok[l] == 0.0:
                    continue
                w = w0 + l
                xl = x[l]
                yl = y[l]
                if xl < qmin[w, 0]:
                    qmin[w, 0] = xl
                if xl > qmax[w, 0]:
                    qmax[w, 0] = xl
                if yl < qmin[w, 1]:
                    qmin[w, 1] = yl
                if yl > qmax[w, 1]:
                    qmax[w, 1] = yl
    for l in range(nl):
        w = w0 + l
        store_sums(Z, 2, l, bp, bpp, bq, bqq, bpk, w, b)
        still[w] = cnt[l]
        nvis[w] = nv[l]
        mark_open(hvis, hblk, nblk, w, nv[l])
        q[w, 0] = x[l]
        q[w, 1] = y[l]
        p[w, 0] = u[l]
        p[w, 1] = v[l]


#: The lane loops' buffer Z ((2 d + 1 + nsum(d)) LANES,), lane l of row k at k LANES + l: positions q_0 ..
#: q_{d-1}, momenta p_0 .. p_{d-1}, ok, then the open batch's sums (state.Stats' arrays) of p_i (bp), p_i p_k
#: for i <= k (bpp), q_i (bq), q_i^2 (bqq), p_i^3 (bpk[i, 0]), p_i^4 (bpk[i, 1]).  One array, so that LLVM
#: sees that the rows do not overlap and vectorizes batch_sums over the lanes.
@njit(inline="always")
def nsum(d):
    """Rows of batch sums in the lane buffer for dimension d (6 for d = 1, 13 for d = 2)."""
    return 5 * d + d * (d + 1) // 2


@njit(inline="always")
def masked(m, v):
    """v where m, else +0.0.  Callers load v unconditionally (as this call's argument): a load written
    inside the condition (``Z[k] if m else 0.0``) is one LLVM cannot speculate, so the branch stayed and
    batch_sums ran as scalar branchy code (~20 % of block_2d's samples); with the load outside it is a
    select and the lane loop vectorizes (engine_overhead.py marginal, 1D 20.8-21.2 -> 19.2-19.9 ns per
    walker-step, 2D 45.2-47.6 -> 44.9-46.0)."""
    return v if m else 0.0


@njit(inline="always")
def batch_sums(Z, d):
    """Add lane l's step to its batch sums (rows of Z as above) where ok[l] = 1, for every lane at once.  A
    lane not counted adds +0.0 (its inputs are selected to 0 by masked), which leaves a sum unchanged bit for
    bit (a sum that starts at +0.0 is never -0.0); branch-free over a fixed LANES (d is a constant of the
    caller, so the loops over i, k unroll).  The p_i p_k rows are written in two loop shapes that compute the
    same values: which shape LLVM vectorizes cleanly depends on d (checked in the generated code): for d = 2
    the nested ``range(i, d)`` loop came out with masked stores (vmaskmovpd, slow on AMD), the flat loop over
    d^2 pairs as plain vector adds; for d = 1 the flat loop let LLVM unroll the lane loop fully and leave it
    scalar, the nested one vectorized."""
    for l in range(LANES):
        m = Z[2 * d * LANES + l] != 0.0
        r = 2 * d + 1
        for i in range(d):
            Z[r * LANES + l] += masked(m, Z[(d + i) * LANES + l])
            r += 1
        if d == 1:  # loop shapes chosen for LLVM's vectorizer (see the docstring)
            for i in range(d):
                pi = masked(m, Z[(d + i) * LANES + l])
                for k in range(i, d):
                    Z[r * LANES + l] += pi * masked(m, Z[(d + k) * LANES + l])
                    r += 1
        else:
            for t in range(d * d):
                i = t // d
                k = t % d
                if k >= i:
                    Z[r * LANES + l] += masked(m, Z[(d + i) * LANES + l]) * masked(m, Z[(d + k) * LANES + l])
                    r += 1
        for i in range(d):
            Z[r * LANES + l] += masked(m, Z[i * LANES + l])
            r += 1
        for i in range(d):
            qi = masked(m, Z[i * LANES + l])
            Z[r * LANES + l] += qi * qi
            r += 1
        for i in range(d):
            pi = masked(m, Z[(d + i) * LANES + l])
            p2 = pi * pi
            Z[r * LANES + l] += p2 * pi
            Z[(r + d) * LANES + l] += p2 * p2
            r += 1


@inner
def load_sums(Z, d, l, bp, bpp, bq, bqq, bpk, w, b):
    """Lane l's sums in Z (rows as batch_sums) = walker w's batch b sums in the state.Stats arrays."""
    r = 2 * d + 1
    for i in range(d):
        Z[r * LANES + l] = bp[w, b, i]
        r += 1
    for i in range(d):
        for k in range(i, d):
            Z[r * LANES + l] = bpp[w, b, i, k]
            r += 1
    for i in range(d):
        Z[r * LANES + l] = bq[w, b, i]
        Z[(r + d) * LANES + l] = bqq[w, b, i]
        Z[(r + 2 * d) * LANES + l] = bpk[w, b, i, 0]
        Z[(r + 3 * d) * LANES + l] = bpk[w, b, i, 1]
        r += 1


@inner
def store_sums(Z, d, l, bp, bpp, bq, bqq, bpk, w, b):
    """The inverse of load_sums (bpp's symmetric entries written twice)."""
    r = 2 * d + 1
    for i in range(d):
        bp[w, b, i] = Z[r * LANES + l]
        r += 1
    for i in range(d):
        for k in range(i, d):
            bpp[w, b, i, k] = Z[r * LANES + l]
            bpp[w, b, k, i] = Z[r * LANES + l]
            r += 1
    for i in range(d):
        bq[w, b, i] = Z[r * LANES + l]
        bqq[w, b, i] = Z[(r + d) * LANES + l]
        bpk[w, b, i, 0] = Z[(r + 2 * d) * LANES + l]
        bpk[w, b, i, 1] = Z[(r + 3 * d) * LANES + l]
        r += 1


def _run_chunk(grad, kind, Wk, S, c, P, G, w0, w1):
    """Advance live walkers w0 .. w1 - 1 by P.nsteps steps of integrator ``kind`` (registry code) with
    walker_loop; shapes in state.Walkers / state.Stats."""
    for w in range(w0, w1):
        if Wk.trapped_at[w] >= 0 or Wk.blown_at[w] >= 0:
            continue
        walker_loop(grad, kind, w, Wk, S, c, P, G)


def lanes_chunk1(grad, Wk, S, c, noisy, P, G, b0, b1):
    """Advance the live walkers (d = 1) of blocks b0 .. b1 - 1 (LANES walkers each) by P.nsteps steps of
    the lane scheme."""
    W = Wk.q.shape[0]
    for blk in range(b0, b1):
        w0 = blk * LANES
        block_1d(grad, w0, min(LANES, W - w0), Wk.q, Wk.p, Wk.rng, c.A[0, 0], c.E[0, 0], c.L[0, 0], noisy, c.delta,
                 P.step0, P.nsteps, P.acc_start, P.minmax_start, P.batch_len, G.lo[0], G.inv[0], G.nbins, P.stride,
                 P.check_trap, P.p_tol, P.q_tol, P.window, S.bp, S.bpp, S.bpk, S.bq, S.bqq, S.hist, S.hcur, S.hvis,
                 S.nvis, S.hs1, S.hs2, S.hblk, S.nblk, S.bout, S.samp_q, S.samp_p, S.nstored, S.qmin, S.qmax,
                 Wk.still, Wk.trapped_at, Wk.blown_at)


def lanes_chunk2(grad, Wk, S, c, noisy, P, G, b0, b1):
    """lanes_chunk1 for d = 2."""
    W = Wk.q.shape[0]
    for blk in range(b0, b1):
        w0 = blk * LANES
        block_2d(grad, w0, min(LANES, W - w0), Wk.q, Wk.p, Wk.rng, c.A, c.E, c.L, noisy, c.delta, c.diag,
                 P.step0, P.nsteps, P.acc_start, P.minmax_start, P.batch_len, G.lo, G.inv, G.nbins, P.stride,
                 P.check_trap, P.p_tol, P.q_tol, P.window, S.bp, S.bpp, S.bpk, S.bq, S.bqq, S.hist, S.hcur, S.hvis,
                 S.nvis, S.hs1, S.hs2, S.hblk, S.nblk, S.bout, S.samp_q, S.samp_p, S.nstored, S.qmin, S.qmax,
                 Wk.still, Wk.trapped_at, Wk.blown_at)


def _init_grad(grad, q, g, w0, w1):
    """g[w] = grad U(q[w]) for walkers w0 .. w1 - 1. q, g: (W, d)."""
    for w in range(w0, w1):
        grad(q[w], g[w])


@inner
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


def _record_chunk(grad, kind, Wk, c, nrec, every, rec0, out_q, out_p, m0, m1):
    """Advance trajectories m0 .. m1 - 1 by nrec * every steps each, storing the state after each ``every``
    steps at rows rec0 + 1 .. rec0 + nrec of out_q, out_p (n, M, d).  A non-finite state sets blown_at[m] to
    the (global) step and stops that trajectory."""
    for m in range(m0, m1):
        if Wk.blown_at[m] >= 0:
            continue
        record_one(grad, kind, m, Wk, c, nrec, every, rec0, out_q, out_p)


def _walkers(grad, kind, Wk, *rest):
    """Work items of run_chunk and record_chunk: their walkers (trajectories)."""
    return Wk.q.shape[0]


def _blocks(grad, Wk, *rest):
    """Work items of a lane driver: its blocks of LANES walkers."""
    return -(-Wk.q.shape[0] // LANES)


def _rows(grad, q, g):
    """Work items of init_grad: the rows of q."""
    return q.shape[0]


_i8, _T8 = types.int64, types.float64[:, :, ::1]
run_chunk = _Lazy(types.void(GRAD_TYPE, _i8, WALKERS_T, STATS_T, CONSTS_T, PLAN_T, GRID_T, _i8, _i8), _run_chunk, _walkers)
init_grad = _Lazy(types.void(GRAD_TYPE, types.float64[:, ::1], types.float64[:, ::1], _i8, _i8), _init_grad, _rows)
_RECORD_SIG = types.void(GRAD_TYPE, _i8, WALKERS_T, CONSTS_T, _i8, _i8, _i8, _T8, _T8, _i8, _i8)
_LANE_DRIVERS: dict = {}
_RECORD_DRIVERS: dict = {}


def record_chunk_for(code: int):
    """The trajectory-recording driver (``_record_chunk``: f(grad, code, walkers, consts, nrec, every, rec0,
    out_q, out_p, w0, w1)) compiled for the integrator of registry code ``code`` only: its record_one calls
    that integrator's step directly instead of registry.step's chain over every integrator, so a run compiles
    one scheme, not four (cold start: the white-noise check's damped
    trajectories compiled record_chunk in 3.9 s CPU).  The same step function, so the same arithmetic.
    Each copy has its own name (``_record_chunk_<integrator>``), hence its own numba cache file."""
    fn = _RECORD_DRIVERS.get(int(code))
    if fn is None:
        from .registry import INTEGRATORS

        name = list(INTEGRATORS)[int(code)]
        this = INTEGRATORS[name].step

        @njit(inline="always")
        def one(kind, grad, c, q, p, g, tmp, z, s):
            this(grad, c, q, p, g, tmp, z, s)

        py = record_one.py_func
        rec = inner(pytypes.FunctionType(py.__code__, dict(py.__globals__, step=one), py.__name__, py.__defaults__))
        drv = pytypes.FunctionType(_record_chunk.__code__, dict(_record_chunk.__globals__, record_one=rec),
                                   f"_record_chunk_{name}", _record_chunk.__defaults__)
        drv.__qualname__ = f"_record_chunk_{name}"
        drv.__doc__ = _record_chunk.__doc__
        fn = _RECORD_DRIVERS.setdefault(int(code), _Lazy(_RECORD_SIG, drv, _walkers))
    return fn


def lanes_chunk(lane_kernel: bool, d: int):
    """The lane driver for a lane kernel (Potential.grad_lanes) or an array kernel, d = 1 or 2: called
    as f(grad, walkers, stats, consts, noisy, plan, grid).  Each of the four is compiled when first used."""
    key = (bool(lane_kernel), int(d))
    fn = _LANE_DRIVERS.get(key)
    if fn is None:
        gt = GRADL_TYPE if lane_kernel else GRAD_TYPE
        fn = _LANE_DRIVERS.setdefault(key, _Lazy(types.void(gt, WALKERS_T, STATS_T, CONSTS_T, types.boolean, PLAN_T,
                                                            GRID_T, _i8, _i8), lanes_chunk1 if d == 1 else lanes_chunk2,
                                                 _blocks))
    return fn


_SPECIALIZED: dict = {}


def specialized(kernel):
    """A lazily compiled copy of driver ``kernel`` that specializes on the gradient dispatcher, so LLVM can
    inline the gradient (no indirect call).  ``kernel``: a threaded driver (a :class:`_Lazy` with items, e.g.
    ``lanes_chunk(False, 1)``; the copy runs on threads as it does) or a prange function (the benchmarks'
    bare kernels; compiled with ``parallel=True``).  Each new gradient costs a full compile (~10 s), so
    simulate() uses it only for long runs; results are the same bits.

    The copy calls its own copies of the njit functions it calls directly (block_1d ...), which only ever see
    dispatcher-typed gradients.  Sharing them with the production drivers failed: typing a call with a
    dispatcher argument rates every compiled overload of the callee, and for an overload whose gradient
    parameter is a first-class function type numba compiles the dispatcher for that type's signature
    (``Dispatcher.can_convert_to``); an array kernel g(q, out) met against the lane drivers' g(S)
    raised numba's "Signature mismatch" TypeError (not a NumbaError, so not treated as "no conversion")."""
    key = getattr(kernel, "py_func", kernel)
    fn = _SPECIALIZED.get(key)
    if fn is None:
        items = getattr(kernel, "items", None)
        py = key
        env = dict(py.__globals__)
        for name in py.__code__.co_names:
            f = env.get(name)
            if isinstance(f, Inner):
                env[name] = f.copy()
            elif isinstance(f, Dispatcher):
                env[name] = njit(**{k: v for k, v in f.targetoptions.items() if k != "nopython"})(f.py_func)
        opts = dict(parallel=True) if items is None else dict(nogil=True)
        jitted = njit(**opts)(pytypes.FunctionType(py.__code__, env, py.__name__, py.__defaults__, py.__closure__))

        def fn(*args):
            with warnings.catch_warnings():  # compiling with first-class functions warns
                warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
                if items is None:
                    return jitted(*args)
                spread(jitted, items(*args), args)

        fn.jitted = jitted
        _SPECIALIZED[key] = fn
    return fn
