"""The streaming accumulators of every kernel path against a numpy recomputation from the full trajectory.

Every post-burn-in step is stored (max_samples = walkers x accumulated steps, so the sample stride is 1),
and the streamed statistics must equal what numpy computes from those samples: the histogram exactly
(np.histogram / np.histogramdd with the same edges; issue 11.7), the per-batch p^k means
(p_moment_batches) and the batch-means variance of the cell counts (hist_count_var) to round-off.
Paths: the generic one-walker loop (Langevin, d = 1 and d = 3 marginals), the lane loop on the SIMD lane
kernel (d = 1, 2, also with the white kick), on the exact math.* array kernel (d = 1, 2) and on the driver
specialized on it (d = 1), and runs in many chunks (batches spanning chunk boundaries).
"""
import dataclasses
import json

import numpy as np
import pytest

from bayescg.errors import InputError, Interrupted
from bayescg.potentials import Potential, catalogue
from bayescg.simulate import EngineOptions, simulate

A2 = np.array([[1.5, 0.3], [0.3, 0.8]])
W, N_PER = 9, 5000  # 9 walkers: a full block of 8 lanes and a block of 1
#: burn-in of 1250 steps: the grid comes from the burn-in range.  (With a burn-in under 1000 steps a pilot
#: of copies of the walkers sets it, and since the copies run the very steps that are accumulated later,
#: an edge lo + (hi - lo) / 12 can coincide with a stored q to the last bit; np.histogram then decides by
#: comparison with the edge and the kernel by floor((q - lo) bins / (hi - lo)), which may differ by one ulp.)
BURN = 0.25


def _libm(pot):
    return dataclasses.replace(pot, grad_lanes=None)


CASES = {
    "generic-langevin-1d": (lambda: catalogue("test1"), 0.3, dict(integrator="langevin")),
    "generic-langevin-3d": (lambda: Potential.from_expression("(x**2 + 2*y**2 + z**2)/2", ["x", "y", "z"]), 0.1,
                            dict(integrator="langevin", bins=12)),
    "lanes-1d": (lambda: catalogue("test1"), 0.5, {}),
    "lanes-2d": (lambda: catalogue("test4"), 0.05, dict(mass=A2, init_sd=0.5)),
    "lanes-1d-white": (lambda: catalogue("test1"), 0.3, dict(integrator="damped_white", kick_noise=0.05)),
    "libm-1d": (lambda: _libm(catalogue("test1")), 0.5, {}),
    "libm-2d": (lambda: catalogue("test4"), 0.05, dict(options=EngineOptions(lanes=False), init_sd=0.5)),
    "lanes-2d-white": (lambda: catalogue("test4"), 0.05, dict(integrator="damped_white", kick_noise=0.05 * np.eye(2),
                                                              init_sd=0.5)),
    # the driver specialized on the gradient (long runs of array kernels)
    "specialized-1d": (lambda: _libm(catalogue("test1")), 0.5, dict(options=EngineOptions(specialize_steps=1))),
    # many chunks, so batches (and their lists of visited cells) continue across chunk boundaries
    "lanes-2d-chunked": (lambda: catalogue("test4"), 0.05, dict(mass=A2, init_sd=0.5, chunk_steps=333)),
    "generic-langevin-1d-chunked": (lambda: catalogue("test1"), 0.3, dict(integrator="langevin", chunk_steps=333)),
}


def _per_walker(r):
    """{w: (q (n_acc, d), p (n_acc, d))} from the stored samples (stride 1: every accumulated step)."""
    n_acc = r.steps_per_walker - r.burn_in_steps
    out = {}
    for w in np.unique(r.sample_walker):
        sel = r.sample_walker == w
        assert sel.sum() == n_acc
        out[w] = (r.samples_q[sel], r.samples_p[sel])
    return out


def _counts(q, edges, marginal):
    """Cell counts of the points q (n, d) inside the grid, shaped like hist_counts."""
    inside = np.ones(len(q), bool)
    for i, e in enumerate(edges):
        inside &= (q[:, i] >= e[0]) & (q[:, i] < e[-1])
    q = q[inside]
    if marginal:
        return np.stack([np.histogram(q[:, i], bins=e)[0] for i, e in enumerate(edges)])
    return np.histogramdd(q, bins=edges)[0].astype(np.int64) if q.shape[1] > 1 else np.histogram(q[:, 0], edges[0])[0]


@pytest.mark.parametrize("case", list(CASES))
def test_streamed_statistics_equal_numpy_on_the_full_trajectory(case):
    make, delta, kw = CASES[case]
    pot = make()
    kw = dict(kw)
    n_acc = N_PER - int(BURN * N_PER)
    r = simulate(pot, delta, 0.1, steps=W * N_PER, walkers=W, seed=5, max_samples=W * n_acc, burn_in=BURN, **kw)
    assert r.sample_stride == 1 and r.trapped_fraction == 0.0
    walkers = _per_walker(r)
    assert len(walkers) == W
    edges = r.hist_edges
    # exact histogram (issue 11.7)
    allq = np.concatenate([walkers[w][0] for w in range(W)])
    expect = _counts(allq, edges, r.hist_marginal)
    assert np.array_equal(r.hist_counts, expect)
    assert np.array_equal(r.walker_hist_counts.sum(axis=0), expect)  # every batch of every walker
    inside = r.hist_counts.sum() // (pot.dim if r.hist_marginal else 1)
    assert inside + r.hist_outside == r.accumulated_steps
    # per-batch cell counts -> hist_count_var; per-batch p^k means -> p_moment_batches
    B = r.p_moment_batches.shape[1]
    blen = n_acc // B
    starts = [b * blen for b in range(B)] + [n_acc]
    n_wb = np.array([[_counts(walkers[w][0][starts[b]:starts[b + 1]], edges, r.hist_marginal) for b in range(B)]
                     for w in range(W)]).astype(float)       # (W, B, *cells)
    cells = n_wb.reshape(W, B, -1)
    if r.hist_marginal:  # l_wb: steps inside the grid (each hits one cell per coordinate)
        l_wb = cells[:, :, :edges[0].size - 1].sum(axis=2)
    else:
        l_wb = cells.sum(axis=2)
    f = cells.sum(axis=(0, 1)) / l_wb.sum()
    var = ((cells - l_wb[:, :, None] * f[None, None, :]) ** 2).sum(axis=(0, 1))
    np.testing.assert_allclose(r.hist_count_var.ravel(), var, rtol=1e-9, atol=1e-6 * var.max())
    assert r.hist_count_var.shape == r.hist_counts.shape
    pm = np.array([[[np.mean(walkers[w][1][starts[b]:starts[b + 1]] ** k, axis=0) for k in (1, 2, 3, 4)]
                    for b in range(B)] for w in range(W)])    # (W, B, 4, d)
    np.testing.assert_allclose(r.p_moment_batches, pm.transpose(0, 1, 3, 2), rtol=1e-10, atol=1e-13)
    # the pooled momentum covariance agrees with the samples, too
    allp = np.concatenate([walkers[w][1] for w in range(W)])
    np.testing.assert_allclose(r.momentum_covariance, np.cov(allp.T, bias=True).reshape(r.dim, r.dim),
                               rtol=1e-9, atol=1e-12)


def test_hist_count_var_is_the_batch_spread_of_the_counts():
    """For a walker population whose batches are nearly independent (Langevin, high friction, batches far
    longer than the autocorrelation time) the batch-means variance agrees with the variance of the
    total count over independent seeds (sum over cells of both; a factor 2 error fails)."""
    pot = Potential.from_expression("q**2/2", ["q"])
    runs = [simulate(pot, 0.2, 2.0, integrator="langevin", steps=8 * 20_000, walkers=8, seed=s, bins=10,
                     hist_range=[(-1.0, 1.0)], max_samples=0) for s in range(12)]
    counts = np.array([r.hist_counts for r in runs], dtype=float)    # (seeds, bins)
    spread = counts.var(axis=0, ddof=1).sum()
    est = np.mean([r.hist_count_var.sum() for r in runs])
    assert 0.6 < est / spread < 1.6, (est, spread)


def test_resume_is_bit_identical_for_the_new_accumulators_and_refuses_other_engine_options(tmp_path):
    pot = catalogue("test1")
    kw = dict(steps=60_000, walkers=3, seed=9, chunk_steps=3_000, max_samples=300)
    full = simulate(pot, 0.5, 0.1, **kw)
    ck = tmp_path / "ck.npz"

    class Stop:
        n = 0

        def tick(self, done, note=""):
            Stop.n += 1
            if Stop.n == 3:
                raise Interrupted("stop")
    with pytest.raises(Interrupted):
        simulate(pot, 0.5, 0.1, checkpoint=ck, control=Stop(), **kw)
    with pytest.raises(InputError, match="different settings"):
        simulate(pot, 0.5, 0.1, checkpoint=ck, resume=True, options=EngineOptions(lanes=False), **kw)
    # a checkpoint of the engine before the block-packed layout (no "layout" in its fingerprint) is refused in one
    # line naming the layout, and the checkpoint is left as it was
    old = dict(np.load(ck))
    fp = json.loads(str(old["fingerprint"]))
    fp.pop("layout")
    old_ck = tmp_path / "old.npz"
    np.savez(old_ck, **dict(old, fingerprint=np.array(json.dumps(fp, sort_keys=True))))
    with pytest.raises(InputError, match="another bayescg version .*layout 1, this one 2"):
        simulate(pot, 0.5, 0.1, checkpoint=old_ck, resume=True, **kw)
    res = simulate(pot, 0.5, 0.1, checkpoint=ck, resume=True, **kw)
    for name in ("hist_counts", "hist_count_var", "p_moment_batches", "final_q", "samples_q"):
        assert np.array_equal(getattr(full, name), getattr(res, name)), name
    # options that cannot change results (chunking, specialization) do not block a resume
    assert "chunk_total" not in EngineOptions().fingerprint() and "lanes" in EngineOptions().fingerprint()


def test_engine_options_validation():
    with pytest.raises(InputError, match="batches"):
        EngineOptions(batches=0)
    with pytest.raises(InputError, match="lanes"):
        EngineOptions(lanes="yes")
    with pytest.raises(InputError, match="options"):
        simulate(catalogue("test1"), 0.5, steps=100, walkers=1, options={"lanes": False})


@pytest.mark.parametrize("name, d", [("damped", 1), ("damped", 2), ("damped_white", 1), ("damped_white", 2)])
def test_lane_loop_equals_generic_loop_bit_for_bit(name, d):
    """The lane loop (array gradient kernel, blocks of 8) and the generic one-walker loop running the
    registered step give the same walker states AND the same accumulators, bit for bit, for a registered
    lane-capable integrator (the white kick draws from each walker's own stream in both)."""
    from bayescg.kernels import loops, state
    from bayescg.kernels.registry import CODES, INTEGRATORS

    pot = catalogue("test1") if d == 1 else catalogue("test4")
    W, B, bins, S = 11, 4, 16, 50
    A = np.eye(1) * 1.3 if d == 1 else A2
    G = 0.2 * np.eye(d)
    Z = 0.05 * np.eye(d) if name == "damped_white" else None
    delta = 0.3 if d == 1 else 0.03
    E, L = INTEGRATORS[name].constants(d, delta, A, G, 1.0, Z)
    c = state.consts(A, E, L, delta, d == 1)  # as simulate() sets it: 1x1 matrices are diagonal
    rng = np.random.default_rng(2)
    q0, p0 = 0.5 * rng.standard_normal((W, d)), 0.5 * rng.standard_normal((W, d))
    out = []
    for lanes in (False, True):
        wk = state.new_walkers(q0.copy(), p0.copy(), np.array(np.random.SeedSequence(3).generate_state(4 * W, np.uint64)).reshape(W, 4))
        sx = state.new_stats(W, d, B, bins ** d, S)
        P = state.plan(0, 2000, 400, 100, 400, 30, name == "damped", 1e-9, 1e-12, 1000)
        grid = state.grid(-2.0 * np.ones(d), 2.0 * np.ones(d), bins)
        if lanes:
            loops.lanes_chunk(False, d)(pot.grad, wk, sx, c, INTEGRATORS[name].stochastic, P, grid)
        else:
            loops.run_chunk(pot.grad, CODES[name], wk, sx, c, P, grid)
        out.append((wk, sx))
    (w1, s1), (w2, s2) = out
    for f in ("q", "p", "rng", "still", "trapped_at", "blown_at"):
        assert np.array_equal(getattr(w1, f), getattr(w2, f)), f
    for f in state.Stats._fields:
        if f in ("hs1", "hs2", "hblk"):  # block slots follow the order cells are closed in (cell order in
            continue                     # block_1d): compared per cell below
        if d == 1 and f in ("hvis", "nvis"):  # block_1d keeps no visited-cell list (close_batch_scan); hcur,
            continue                          # hist, hs1, hs2 below hold the same counts
        if f == "hvis":  # only the first nvis entries are data (the lane loop stores into the spare slot)
            assert all(np.array_equal(s1.hvis[w, :s1.nvis[w]], s2.hvis[w, :s2.nvis[w]]) for w in range(W)), f
            continue
        assert np.array_equal(getattr(s1, f), getattr(s2, f)), f
    assert s1.hist.sum() > 0 and s1.nstored.min() > 0
    # hblk gives slots to exactly the blocks of the cells counted so far (flush_cells reads only those),
    # and hs1, hs2 per cell are the same in both loops
    CB = state.CELL_BLOCK
    for w in range(W):
        seen = np.zeros(s1.hblk.shape[1], dtype=bool)
        seen[np.flatnonzero(s1.hist[w] + s1.hcur[w]) // CB] = True
        for s in (s1, s2):
            assert np.array_equal(s.hblk[w] > 0, seen) and s.nblk[w] == seen.sum()
            assert sorted(s.hblk[w][seen]) == list(range(1, seen.sum() + 1))
        for f in ("hs1", "hs2"):
            cells = [np.concatenate([getattr(s, f)[w, (s.hblk[w, k] - 1) * CB:s.hblk[w, k] * CB] if s.hblk[w, k]
                                     else np.zeros(CB) for k in range(s.hblk.shape[1])]) for s in (s1, s2)]
            assert np.array_equal(cells[0], cells[1]), f
    assert s1.nblk.sum() > 0
