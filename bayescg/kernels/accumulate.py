"""Per-step bookkeeping shared by every walker loop: blow-up and trap detection, batch sums (p, p p^T,
p^3, p^4, q, q^2), the histogram with per-batch cell counts, sample storage, the burn-in range.

One home for all of it: :mod:`bayescg.kernels.loops`' generic loop passes a walker's state as arrays,
the lane loops (loops.block_1d, block_2d) use close_batch and the clock (and write count_cell's three
lines inline).  They are plain njit functions
(LLVM inlines them): numba-level inlining of functions taking arrays inside the per-lane loop measured
up to 3x slower (reference counting of the array arguments at every call).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .jit import inner
from .state import BLOWN, CELL_BLOCK, CELL_SHIFT, LIVE, TRAPPED

#: "never": steps left in the last batch (it absorbs the remainder).
NEVER = 1 << 62


@inner
def clock_start(step0, acc_start, batch_len, B, stride):
    """(b, bleft, sleft, j) at the first accumulated step of a chunk: batch index, steps left in it,
    steps to the next sample and its index (integer divisions once per chunk, not per step)."""
    k0 = max(step0, acc_start) - acc_start
    b = min(k0 // batch_len, B - 1)
    bleft = (b + 1) * batch_len - k0 if b < B - 1 else NEVER
    sleft = (stride - k0 % stride) % stride
    j = (k0 + stride - 1) // stride
    return b, bleft, sleft, j


@inner
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


@inner
def _finite(v):
    ok = True
    for i in range(len(v)):
        ok = ok and abs(v[i]) < np.inf  # a comparison, so that NaN and +-inf both fail
    return ok


@inner
def at_rest(qv, pv, qo, p_tol, q_tol):
    """max|p| <= p_tol and max|q - q_old| <= q_tol (1 + |q|) (a fixed point of the map)."""
    for i in range(len(qv)):
        if abs(pv[i]) > p_tol or abs(qv[i] - qo[i]) > q_tol * (1.0 + abs(qv[i])):
            return False
    return True


@inner
def add_moments(bp, bpp, bpk, bq, bqq, w, b, qv, pv):
    """Batch sums of p, p p^T, p_i^3, p_i^4, q, q_i^2 of walker w in batch b (arrays of state.Stats)."""
    d = len(qv)
    for i in range(d):
        pi = pv[i]
        qi = qv[i]
        bp[w, b, i] += pi
        for k in range(d):
            bpp[w, b, i, k] += pi * pv[k]
        p2 = pi * pi
        bpk[w, b, i, 0] += p2 * pi
        bpk[w, b, i, 1] += p2 * p2
        bq[w, b, i] += qi
        bqq[w, b, i] += qi * qi


@inner
def count_cell(hcur, hvis, nvis, w, c):
    """Count a step of walker w in cell c of its open batch (hcur[w, c] += 1), listing c in hvis[w] at its
    first visit in the batch, so that close_batch touches only the visited cells.  The lane loops write
    the same count inline (branch-free): a call per lane and step of the earlier keyed count_cell measured
    2D 15.6 against 19.9 M steps/s with its body inline (benchmarks/RESULTS.md)."""
    k = hcur[w, c]
    if k == 0:
        hvis[w, nvis[w]] = c
        nvis[w] += 1
    hcur[w, c] = k + 1


@inner
def close_batch_scan(hist, hcur, hs1, hs2, hblk, nblk, w, lin):
    """close_batch without the list of visited cells: every cell of walker w's row is scanned (d = 1 lane
    loop, whose C = bins cells cost less to scan once per batch than a list entry per step: 1D one-thread rate
    ~79 against ~70 M steps/s with the list, measured by helper engine, benchmarks/ENGINE_AB.md).  Each cell's
    sums still grow in batch order, and cells are independent, so the bits equal close_batch's.  (Kept in
    the 2D-indexed form: written out on row views like close_batch, the 1D lane loop measured ~1.5 ns per
    step slower in engine_overhead.py.)"""
    fl = float(lin)
    for c in range(hcur.shape[1]):
        n = hcur[w, c]
        if n != 0:
            j = block_slot(hblk, nblk, w, c)
            hist[w, c] += float(n)
            hs1[w, j] += fl * float(n)
            hs2[w, j] += float(n) * float(n)
            hcur[w, c] = 0


@inner
def close_batch(hist, hcur, hvis, hs1, hs2, hblk, nblk, w, nv, lin):
    """Move walker w's counts of its just finished batch (nv visited cells listed in hvis[w], lin in-grid
    steps) into hist += n, hs1 += lin n, hs2 += n^2 (at the cell's place in its block's slot, block_slot),
    and clear them.  Once per walker and batch, in batch order per cell (so the float sums have a fixed
    order).  Written out on walker w's rows with unsigned cell indices (no negative-index wraparound):
    a 2D batch closes about one cell per four steps, so this is per-step cost of long runs; a scratch
    benchmark of random-walk batches (~4000 cells each) measured ~9-10 ns per closed cell like this,
    ~14 with block_slot and the cell update as njit calls, ~49 with them inlined by numba (reference
    counting of the row views at each inlined call), and the dense 2D-indexed close before hblk ~13.5."""
    fl = float(lin)
    hi, hc, hv, h1, h2, hb = hist[w], hcur[w], hvis[w], hs1[w], hs2[w], hblk[w]
    for i in range(nv):
        c = np.uint64(hv[i])
        n = float(hc[c])
        k = c >> np.uint64(CELL_SHIFT)
        if hb[k] == 0:
            nblk[w] += 1
            hb[k] = nblk[w]
        j = ((np.uint64(hb[k]) - np.uint64(1)) << np.uint64(CELL_SHIFT)) | (c & np.uint64(CELL_BLOCK - 1))
        hi[c] += n
        h1[j] += fl * n
        h2[j] += n * n
        hc[c] = 0


@inner
def block_slot(hblk, nblk, w, c):
    """Index of cell c (>= 0) in walker w's rows of hs1, hs2 (state.Stats.hblk); the cell's block is given
    the next slot at its first use (close_batch does the same, written out)."""
    k = c >> CELL_SHIFT
    if hblk[w, k] == 0:
        nblk[w] += 1
        hblk[w, k] = nblk[w]
    return (hblk[w, k] - 1) * CELL_BLOCK + (c & (CELL_BLOCK - 1))


@inner
def mark_open(hvis, hblk, nblk, w, nv):
    """Give slots to the blocks of walker w's open batch cells (the nv listed in hvis[w]); the loops call it
    at the end of every chunk, so that hblk covers every counted cell whenever a chunk has ended (at
    checkpoints and at flush_cells)."""
    for i in range(nv):
        block_slot(hblk, nblk, w, hvis[w, i])


@inner
def mark_open_scan(hcur, hblk, nblk, w):
    """mark_open without the list (d = 1 lane loop): the blocks of every cell of walker w's row with an
    open count (C = bins cells, once per chunk)."""
    for c in range(hcur.shape[1]):
        if hcur[w, c] != 0:
            block_slot(hblk, nblk, w, c)


@inner
def add_hist(hcur, hvis, nvis, bout, w, b, qv, lo, inv, nb):
    """Count q in its cell (d <= 3: the joint cell; d > 3: each coordinate's marginal cell) when every
    coordinate is on the grid (lo, inv (d,), nb bins), else bout[w, b] += 1."""
    d = len(qv)
    inside = True
    flat = 0
    for i in range(d):
        y = (qv[i] - lo[i]) * inv[i]
        if y >= 0.0 and y < nb:
            flat = flat * nb + int(y)
        else:
            inside = False
    if not inside:
        bout[w, b] += 1
    elif d <= 3:
        count_cell(hcur, hvis, nvis, w, flat)
    else:
        for i in range(d):
            count_cell(hcur, hvis, nvis, w, i * nb + int((qv[i] - lo[i]) * inv[i]))


@inner
def observe(bp, bpp, bpk, bq, bqq, hcur, hvis, nvis, bout, samp_q, samp_p, nstored, qmin, qmax,
            blown_at, trapped_at, ctl, lo, inv, w, st, acc, b, store, j, qv, pv, qo, cnt):
    """Everything after walker w's step ``st`` (qv, pv its new state, qo its previous q; cnt its count of
    consecutive at-rest steps).  Returns (status, cnt): BLOWN (non-finite state; blown_at set), TRAPPED
    (at rest for ``window`` steps; trapped_at set to the first of them) or LIVE.  Accumulated steps (acc)
    go into batch b's sums and the histogram, and into sample j when ``store``; burn-in steps from
    minmax_start on update the range of q.  The first 14 arguments are state.Stats' arrays in field order
    without hist, hs1, hs2, hblk, nblk (the closed batches' sums and their block slots, for close_batch):
    the loops unpack the tuples once, because reading a NamedTuple's (or unpacking a tuple's) arrays inside
    the step loop measured 3-10x slower (numba reference counting in the loop).
    ctl: the scalars (check_trap, p_tol, q_tol, window, minmax_start, nbins) of state.Plan/Grid;
    lo, inv: the grid's lower edges and bins per unit (d,).  (At most 30 arguments: CPython passes more
    as *args, which numba cannot inline.)
    """
    check_trap, p_tol, q_tol, window, minmax_start, nb = ctl
    if not (_finite(qv) and _finite(pv)):
        blown_at[w] = st
        return BLOWN, cnt
    if check_trap:
        if at_rest(qv, pv, qo, p_tol, q_tol):
            cnt += 1
            if cnt >= window:
                trapped_at[w] = st - window + 1
                return TRAPPED, cnt
        else:
            cnt = 0
    if acc:
        add_moments(bp, bpp, bpk, bq, bqq, w, b, qv, pv)
        add_hist(hcur, hvis, nvis, bout, w, b, qv, lo, inv, nb)
        if store:
            for i in range(len(qv)):
                samp_q[w, j, i] = qv[i]
                samp_p[w, j, i] = pv[i]
            nstored[w] = j + 1
    elif st >= minmax_start:
        for i in range(len(qv)):
            if qv[i] < qmin[w, i]:
                qmin[w, i] = qv[i]
            if qv[i] > qmax[w, i]:
                qmax[w, i] = qv[i]
    return LIVE, cnt


def flush_cells(S, lens, good, N, K):
    """(whist (ng, C) float64, counts (C,) int64, hvar (C,)) over the good walkers (bool (W,)), each
    walker's open batch added, after a complete run, when every walker's open batch is the last one: whist
    the per-walker cell counts of all batches, counts = sum_w whist (exact integers), hvar = sum_{w,b}
    (n_wbc - l_wb N_c / N)^2 (SimulationResult.hist_count_var).  When every walker is good, whist IS
    S.hist, completed in place (so call it once, at the end of a run): a second (W, C) array's pages cost
    as much as the flush (~3 us per 4 KiB page first touched); otherwise whist is a new array and S is not
    changed.

    lens (B,): batch lengths.  With l_wb = lens[b] - bout[w, b] (in-grid steps of walker w in batch b),
    N = sum l_wb and K = sum l_wb^2 over the good walkers (numpy sums, passed in): hvar = S2 - 2 f S1 + f^2 K
    with f = N_c / N (0 when N = 0), S1[c] = sum_w hs1[w, c] + l_wB n_wBc and S2[c] = sum_w hs2[w, c] +
    n_wBc^2 (B the open batch), summed over walkers in walker order (numpy's axis-0 order) and evaluated
    operation for operation as the numpy expression did, so the bits are those of the numpy form.

    One numba pass over the blocks of cells in S.hblk only: a cell a walker never counted holds
    zeros and adds +0.0 to sums that are +0.0 or positive, which changes no bit, so skipping it gives the
    full pass's bits, and hvar of a cell no walker counted is 0.  On a 2D grid of 200^2 cells the full pass
    (and the numpy form's (W, C) and (C,) temporaries) faulted in every page of the cell arrays: most of a
    short run's time, at ~3 us per 4 KiB page first touched (benchmarks/RESULTS.md)."""
    good = np.asarray(good, dtype=np.bool_)
    C = S.hist.shape[1]
    ng = int(good.sum())
    whist = S.hist if ng == S.hist.shape[0] else np.zeros((ng, C))
    counts = np.zeros(C, dtype=np.int64)
    S1 = np.zeros(C)
    S2 = np.zeros(C)
    anyw = np.zeros(S.hblk.shape[1], dtype=np.uint8)
    _flush(S.hist, S.hcur, S.hs1, S.hs2, S.hblk, S.bout[:, -1].copy(), int(lens[-1]), good, float(N), float(K),
           whist, counts, S1, S2, anyw)
    return whist, counts, S2


@njit(cache=True, nogil=True)
def _flush(hist, hcur, hs1, hs2, hblk, bout_last, len_last, good, N, K, whist, counts, S1, S2, anyw):
    """flush_cells' pass; anyw (blocks,) scratch: the blocks any good walker counted.  hvar is left in S2.
    whist may be hist itself (then k = w: each cell is read before it is written)."""
    C = hist.shape[1]
    k = 0
    for w in range(hist.shape[0]):
        if not good[w]:
            continue
        lin = float(len_last - bout_last[w])
        for blk in range(hblk.shape[1]):
            s = hblk[w, blk]
            if s == 0:
                continue
            anyw[blk] = 1
            off = (s - 1 - blk) * CELL_BLOCK  # cell c's index in the rows of hs1, hs2: off + c
            for c in range(blk * CELL_BLOCK, min(C, (blk + 1) * CELL_BLOCK)):
                n = float(hcur[w, c])
                t = hist[w, c] + n
                whist[k, c] = t
                counts[c] += int(t)
                S1[c] += hs1[w, off + c] + lin * n
                S2[c] += hs2[w, off + c] + n * n
        k += 1
    for blk in range(anyw.shape[0]):
        if anyw[blk] == 0:
            continue
        for c in range(blk * CELL_BLOCK, min(C, (blk + 1) * CELL_BLOCK)):
            f = float(counts[c]) / N if N > 0 else 0.0
            S2[c] = (S2[c] - (2.0 * f) * S1[c]) + (f * f) * K
