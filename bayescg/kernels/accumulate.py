"""Per-step bookkeeping shared by every walker loop: blow-up and trap detection, batch sums (p, p p^T,
p^3, p^4, q, q^2), the histogram with per-batch cell counts, sample storage, the burn-in range.

One home for all of it: :mod:`bayescg.kernels.loops`' generic loop passes a walker's state as arrays,
its lane loop as d-tuples (d a compile-time constant there); these helpers are inlined into both.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .state import BLOWN, LIVE, TRAPPED

#: "never": steps left in the last batch (it absorbs the remainder).
NEVER = 1 << 62
_LOW32 = (1 << 32) - 1


@njit(inline="always")
def clock_start(step0, acc_start, batch_len, B, stride):
    """(b, bleft, sleft, j) at the first accumulated step of a chunk: batch index, steps left in it,
    steps to the next sample and its index (integer divisions once per chunk, not per step)."""
    k0 = max(step0, acc_start) - acc_start
    b = min(k0 // batch_len, B - 1)
    bleft = (b + 1) * batch_len - k0 if b < B - 1 else NEVER
    sleft = (stride - k0 % stride) % stride
    j = (k0 + stride - 1) // stride
    return b, bleft, sleft, j


@njit(inline="always")
def clock_advance(b, bleft, sleft, j, sample, batch_len, B, stride, nsamp):
    """The counters after an accumulated step (``sample``: this step was a sample step)."""
    if sample:
        j += 1
        sleft = stride
    if nsamp > 0:
        sleft -= 1
    bleft -= 1
    if bleft == 0:
        b += 1
        bleft = batch_len if b < B - 1 else NEVER
    return b, bleft, sleft, j


@njit(inline="always")
def _finite(v):
    ok = True
    for i in range(len(v)):
        ok = ok and abs(v[i]) < np.inf  # a comparison, so that NaN and +-inf both fail
    return ok


@njit(inline="always")
def at_rest(qv, pv, qo, p_tol, q_tol):
    """max|p| <= p_tol and max|q - q_old| <= q_tol (1 + |q|) (a fixed point of the map)."""
    for i in range(len(qv)):
        if abs(pv[i]) > p_tol or abs(qv[i] - qo[i]) > q_tol * (1.0 + abs(qv[i])):
            return False
    return True


@njit(inline="always")
def add_moments(S, w, b, qv, pv):
    """Batch sums of p, p p^T, p_i^3, p_i^4, q, q_i^2 of walker w in batch b."""
    d = len(qv)
    for i in range(d):
        pi = pv[i]
        qi = qv[i]
        S.bp[w, b, i] += pi
        for k in range(d):
            S.bpp[w, b, i, k] += pi * pv[k]
        p2 = pi * pi
        S.bpk[w, b, i, 0] += p2 * pi
        S.bpk[w, b, i, 1] += p2 * p2
        S.bq[w, b, i] += qi
        S.bqq[w, b, i] += qi * qi


@njit(inline="always")
def _count_cell(S, w, c, b, batch_len):
    """hist[w, c] += 1 and the per-batch count of the cell: when the cell's last batch is an earlier
    (finished, so of length batch_len) one, its count n enters hs1 += l n, hs2 += n^2 first."""
    S.hist[w, c] += 1
    k = S.hkey[w, c]
    tag = (b + 1) << 32
    if k < tag:
        if k != 0:
            hb = (k >> 32) - 1
            n = float(k & _LOW32)
            S.hs1[w, c] += float(batch_len - S.bout[w, hb]) * n
            S.hs2[w, c] += n * n
        k = tag
    S.hkey[w, c] = k + 1


@njit(inline="always")
def add_hist(S, w, b, qv, G, batch_len):
    """Count q in its cell (d <= 2: the joint cell; d = 3: each coordinate's marginal cell) when every
    coordinate is on the grid, else bout[w, b] += 1."""
    d = len(qv)
    nb = G.nbins
    inside = True
    flat = 0
    for i in range(d):
        y = (qv[i] - G.lo[i]) * G.inv[i]
        if y >= 0.0 and y < nb:
            flat = flat * nb + int(y)
        else:
            inside = False
    if not inside:
        S.bout[w, b] += 1
    elif d <= 2:
        _count_cell(S, w, flat, b, batch_len)
    else:
        for i in range(d):
            _count_cell(S, w, i * nb + int((qv[i] - G.lo[i]) * G.inv[i]), b, batch_len)


@njit(inline="always")
def observe(Wk, S, P, G, w, st, acc, b, store, j, qv, pv, qo, cnt):
    """Everything after walker w's step ``st`` (qv, pv its new state, qo its previous q; cnt its count of
    consecutive at-rest steps).  Returns (status, cnt): BLOWN (non-finite state; blown_at set), TRAPPED
    (at rest for P.window steps; trapped_at set to the first of them) or LIVE.  Accumulated steps (acc)
    go into batch b's sums and the histogram, and into sample j when ``store``; burn-in steps from
    P.minmax_start on update the range of q."""
    if not (_finite(qv) and _finite(pv)):
        Wk.blown_at[w] = st
        return BLOWN, cnt
    if P.check_trap:
        if at_rest(qv, pv, qo, P.p_tol, P.q_tol):
            cnt += 1
            if cnt >= P.window:
                Wk.trapped_at[w] = st - P.window + 1
                return TRAPPED, cnt
        else:
            cnt = 0
    if acc:
        add_moments(S, w, b, qv, pv)
        add_hist(S, w, b, qv, G, P.batch_len)
        if store:
            for i in range(len(qv)):
                S.samp_q[w, j, i] = qv[i]
                S.samp_p[w, j, i] = pv[i]
            S.nstored[w] = j + 1
    elif st >= P.minmax_start:
        for i in range(len(qv)):
            if qv[i] < S.qmin[w, i]:
                S.qmin[w, i] = qv[i]
            if qv[i] > S.qmax[w, i]:
                S.qmax[w, i] = qv[i]
    return LIVE, cnt


def flush_cells(S, lens):
    """(hs1, hs2) (W, C) with each cell's last, still open batch added (numpy; S is not changed).

    lens (B,): batch lengths.  With l_wb = lens[b] - bout[w, b] (in-grid steps of walker w in batch b),
    hs1[w, c] = sum_b l_wb n_wbc and hs2[w, c] = sum_b n_wbc^2."""
    k = S.hkey
    used = k != 0
    hb = np.where(used, (k >> 32) - 1, 0)
    n = np.where(used, k & _LOW32, 0).astype(float)
    lin = (np.asarray(lens, dtype=np.int64)[None, :] - S.bout).astype(float)
    return S.hs1 + np.take_along_axis(lin, hb, axis=1) * n, S.hs2 + n * n
