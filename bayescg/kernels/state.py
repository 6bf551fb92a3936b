"""Typed walker state, accumulators and constants of the simulation kernels (NamedTuples of arrays).

Everything a walker touches lives in its own rows (state, xoshiro state, accumulators), so a walker's
result does not depend on the thread that runs it, and sums over walkers are taken afterwards in a
fixed order.  The drivers in :mod:`bayescg.kernels.loops` take these tuples (not positional lists);
their numba types, from prototypes, make the drivers' explicit signatures.

Shapes: W walkers, d dimensions, B batches, C histogram cells (bins**d for d <= 3, d * bins marginal
cells for d = 3), S stored samples per walker.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import typeof, types

#: Walkers advanced together by one thread in the lane loop.  With a lane kernel their gradients
#: are one SIMD evaluation (8 doubles = one AVX-512 register, two AVX2 ones); with array kernels
#: they are interleaved calls that the CPU overlaps.  Results do not depend on it.
LANES = 8

#: Type of a gradient kernel grad(q, out) on C-contiguous float64 vectors.  The drivers take it as
#: a first-class function (an indirect call), so they compile once, are cached on disk, and a new
#: potential costs only the compilation of its own small kernel.
GRAD_SIG = types.void(types.float64[::1], types.float64[::1])
GRAD_TYPE = types.FunctionType(GRAD_SIG)
#: Scalar gradient kernels of expression potentials (Potential.grad_scalar, the lane kernels'
#: exact fallback): g(x) -> dV/dx for d = 1, g(x, y) -> (dV/dx, dV/dy) for d = 2.
GRAD1_SIG = types.float64(types.float64)
GRAD2_SIG = types.UniTuple(types.float64, 2)(types.float64, types.float64)
#: Lane kernels of expression potentials (Potential.grad_lanes): g(S) with S (2 d LANES,) holding
#: q_i of lane l at S[i LANES + l] and writing dV/dq_i to S[(d + i) LANES + l].
GRADL_SIG = types.void(types.float64[::1])
GRADL_TYPE = types.FunctionType(GRADL_SIG)
#: Attribute set on lane kernel dispatchers so that drivers specialized on a dispatcher can tell
#: the two calling conventions apart.
LANES_TAG = "_bayescg_lanes_grad"

#: Cells per block of Stats.hblk (a block is 64 bytes of hcur, 128 of hist, hs1, hs2): 1 << CELL_SHIFT.
CELL_SHIFT = 4
CELL_BLOCK = 1 << CELL_SHIFT

#: Layout of Walkers and Stats (their arrays, shapes and dtypes).  It is part of a run's checkpoint fingerprint,
#: so that a checkpoint written under another layout is refused in one line instead of resumed wrongly.
#: 2: hist float64, hs1 / hs2 packed by blocks (hblk, nblk).
LAYOUT = 2

#: Walker status returned by the per-step observer.
LIVE, BLOWN, TRAPPED = 0, 1, 2


class Walkers(NamedTuple):
    """State of W walkers: q, p (W, d); g (W, d) grad U(q) for integrators that reuse it; rng (W, 4)
    uint64 xoshiro states; still (W,) consecutive at-rest steps; trapped_at, blown_at (W,) step or -1."""
    q: np.ndarray
    p: np.ndarray
    g: np.ndarray
    rng: np.ndarray
    still: np.ndarray
    trapped_at: np.ndarray
    blown_at: np.ndarray


class Stats(NamedTuple):
    """Streaming accumulators of the post-burn-in steps (batch b = min(k // batch_len, B - 1) of step k).

    bp (W, B, d), bpp (W, B, d, d): batch sums of p and p p^T; bpk (W, B, d, 2): of p_i^3, p_i^4;
    bq, bqq (W, B, d): of q_i and q_i^2.  Cell counts: hcur (W, C) int32 the count n_bc of each cell in
    the walker's open batch; hvis (W, C + 1) int32 the cells of the open batch in order of first visit,
    nvis (W,) how many (one spare slot: the lane loops store before they know whether the cell is new; the
    d = 1 lane loop keeps no list and closes a batch by scanning hcur's row, accumulate.close_batch_scan);
    hist (W, C), hs1, hs2 (W, CB) float64 sums over the walker's closed batches of n_bc, l_b n_bc and n_bc^2
    (accumulate.close_batch; accumulate.flush_cells adds the open one) (l_b the batch's in-grid steps);
    hist holds exact integers (< 2^53 steps per walker), so that flush_cells can complete it in place into
    the result's per-walker counts (float) instead of filling a second (W, C) array.  Cells come in blocks
    of CELL_BLOCK consecutive cells (NB = ceil(C / CELL_BLOCK) blocks, CB = NB CELL_BLOCK): hblk (W, NB)
    int32 is 0 for a block holding no cell the walker has counted, else 1 + the block's slot s, and the
    block's cells' hs1, hs2 sit at s CELL_BLOCK .. s CELL_BLOCK + CELL_BLOCK - 1 of the walker's rows, slots
    given in order of first use (accumulate.block_slot, at batch close and, for the open batch's cells, at
    the end of every chunk); nblk (W,) int64 slots given.  So flush_cells reads only counted blocks, and
    hs1, hs2 pack a walker's visited blocks into few pages: a short 2D run visits a few per cent of the
    200^2 cells, but their blocks span more than half of each walker's rows, and a 4 KiB page first
    touched costs ~3 us (benchmarks/RESULTS.md); bout (W, B) int64 steps off the grid per batch.  samp_q, samp_p
    (W, S, d) samples every ``stride`` steps, nstored (W,).  qmin, qmax (W, d): range of q over the
    burn-in steps >= minmax_start (the histogram grid)."""
    bp: np.ndarray
    bpp: np.ndarray
    bpk: np.ndarray
    bq: np.ndarray
    bqq: np.ndarray
    hist: np.ndarray
    hcur: np.ndarray
    hvis: np.ndarray
    nvis: np.ndarray
    hs1: np.ndarray
    hs2: np.ndarray
    hblk: np.ndarray
    nblk: np.ndarray
    bout: np.ndarray
    samp_q: np.ndarray
    samp_p: np.ndarray
    nstored: np.ndarray
    qmin: np.ndarray
    qmax: np.ndarray


class Consts(NamedTuple):
    """Constants of one integrator step: A = M^-1, E (friction map / OU map), L (noise Cholesky factor),
    all (d, d); delta the step; diag True when A and E are diagonal (cheaper loops, same bits)."""
    A: np.ndarray
    E: np.ndarray
    L: np.ndarray
    delta: float
    diag: bool


class Plan(NamedTuple):
    """What a chunk does: steps step0 .. step0 + nsteps - 1 (per walker); steps >= acc_start are
    accumulated, minmax_start <= step < acc_start track the range; batch_len, stride (steps between
    samples); trap detection when check_trap: |p| <= p_tol and |dq| <= q_tol (1 + |q|) for ``window``
    consecutive steps."""
    step0: int
    nsteps: int
    acc_start: int
    minmax_start: int
    batch_len: int
    stride: int
    check_trap: bool
    p_tol: float
    q_tol: float
    window: int


class Grid(NamedTuple):
    """Histogram grid: lo (d,) lower edges, inv (d,) bins per unit, nbins bins per dimension."""
    lo: np.ndarray
    inv: np.ndarray
    nbins: int


def new_walkers(q, p, rng) -> Walkers:
    W, d = q.shape
    return Walkers(q=q, p=p, g=np.zeros((W, d)), rng=rng, still=np.zeros(W, dtype=np.int64),
                   trapped_at=np.full(W, -1, dtype=np.int64), blown_at=np.full(W, -1, dtype=np.int64))


def new_stats(W, d, B, cells, S) -> Stats:
    z = np.zeros
    nb = -(-cells // CELL_BLOCK)
    return Stats(bp=z((W, B, d)), bpp=z((W, B, d, d)), bpk=z((W, B, d, 2)), bq=z((W, B, d)), bqq=z((W, B, d)),
                 hist=z((W, cells)), hcur=z((W, cells), dtype=np.int32),
                 hvis=z((W, cells + 1), dtype=np.int32), nvis=z(W, dtype=np.int64), hs1=z((W, nb * CELL_BLOCK)),
                 hs2=z((W, nb * CELL_BLOCK)), hblk=z((W, nb), dtype=np.int32), nblk=z(W, dtype=np.int64),
                 bout=z((W, B), dtype=np.int64), samp_q=z((W, S, d)), samp_p=z((W, S, d)),
                 nstored=z(W, dtype=np.int64), qmin=np.full((W, d), np.inf), qmax=np.full((W, d), -np.inf))


def stats_bytes(W, cells) -> int:
    """Bytes of new_stats' per-cell arrays for W walkers and C = cells: hist, hcur, hvis, hs1, hs2, hblk."""
    nb = -(-cells // CELL_BLOCK)
    return W * (8 * cells + 4 * cells + 4 * (cells + 1) + 16 * nb * CELL_BLOCK + 4 * nb)


def consts(A, E, L, delta, diag) -> Consts:
    return Consts(np.ascontiguousarray(A, dtype=float), np.ascontiguousarray(E, dtype=float),
                  np.ascontiguousarray(L, dtype=float), float(delta), bool(diag))


def plan(step0, nsteps, acc_start, minmax_start, batch_len, stride, check_trap, p_tol, q_tol, window) -> Plan:
    return Plan(int(step0), int(nsteps), int(acc_start), int(minmax_start), int(batch_len), int(stride),
                bool(check_trap), float(p_tol), float(q_tol), int(window))


def grid(lo, hi, nbins) -> Grid:
    lo = np.ascontiguousarray(lo, dtype=float)
    return Grid(lo, np.ascontiguousarray(nbins / (np.asarray(hi, dtype=float) - lo)), int(nbins))


# numba types of the tuples (from prototypes), for the drivers' explicit signatures
WALKERS_T = typeof(new_walkers(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 4), dtype=np.uint64)))
STATS_T = typeof(new_stats(1, 1, 1, 1, 1))
CONSTS_T = typeof(consts(np.eye(1), np.eye(1), np.eye(1), 1.0, True))
PLAN_T = typeof(plan(0, 1, 0, 0, 1, 1, True, 0.0, 0.0, 1))
GRID_T = typeof(grid(np.zeros(1), np.ones(1), 1))

