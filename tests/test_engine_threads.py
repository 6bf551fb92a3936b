"""The engine's threaded drivers (kernels.loops.spread): every split of the work items over threads gives the
same bits as one serial pass, through simulate() and run_trajectories() at 1 and 2 threads and through the
drivers called directly with uneven splits, and an error in one part reaches the caller."""
import numba
import numpy as np
import pytest

from bayescg.kernels import loops, state
from bayescg.kernels.registry import CODES, INTEGRATORS
from bayescg.potentials import catalogue
from bayescg.simulate import run_trajectories, simulate

#: 19 walkers: blocks of 8, 8 and 3 lanes, so a two-way split cuts between blocks of unequal size
W = 19


def _threads():
    return (1, 2) if numba.config.NUMBA_NUM_THREADS >= 2 else (1,)


def _at_threads(fn):
    old = numba.get_num_threads()
    out = []
    try:
        for nt in _threads():
            numba.set_num_threads(nt)
            out.append(fn())
    finally:
        numba.set_num_threads(old)
    return out


@pytest.mark.parametrize("kw", [dict(), dict(integrator="langevin")], ids=["lanes", "generic"])
def test_simulate_same_bits_at_any_thread_count(kw):
    pot = catalogue("test1")
    runs = _at_threads(lambda: simulate(pot, 0.3, 0.1, steps=W * 3000, walkers=W, seed=5, max_samples=400, **kw))
    for r in runs[1:]:
        for name in ("final_q", "final_p", "hist_counts", "hist_count_var", "samples_q", "p_moment_batches",
                     "trapped_at"):
            assert np.array_equal(getattr(runs[0], name), getattr(r, name)), name


def test_trajectories_same_bits_at_any_thread_count():
    pot = catalogue("test1")
    rng = np.random.default_rng(1)
    q0, p0 = rng.standard_normal(W), rng.standard_normal(W)
    runs = _at_threads(lambda: run_trajectories(pot, 0.05, 5.0, q0, p0, integrator="langevin", seed=2))
    for t, q, p in runs[1:]:
        assert np.array_equal(q, runs[0][1]) and np.array_equal(p, runs[0][2])


def _fresh(d=1):
    rng = np.random.default_rng(3)
    wk = state.new_walkers(rng.standard_normal((W, d)), rng.standard_normal((W, d)),
                           np.random.SeedSequence(4).generate_state(4 * W, np.uint64).reshape(W, 4))
    sx = state.new_stats(W, d, 4, 20, 30)
    P = state.plan(0, 1500, 300, 100, 300, 20, True, 1e-9, 1e-12, 1000)
    return wk, sx, P, state.grid(-3.0 * np.ones(d), 3.0 * np.ones(d), 20)


@pytest.mark.parametrize("driver", ["lanes", "generic"])
def test_uneven_splits_give_the_same_bits(driver):
    """The compiled drivers over items [0, n) in one call and in uneven parts (as any thread count would cut
    them) write the same state and accumulators."""
    pot = catalogue("test1")
    E, L = INTEGRATORS["damped"].constants(1, 0.3, np.eye(1), 0.1 * np.eye(1), 1.0, None)
    c = state.consts(np.eye(1), E, L, 0.3, True)
    if driver == "lanes":
        lz, n = loops.lanes_chunk(False, 1), 3
        call = lambda wk, sx, P, G, lo, hi: lz.compiled()(pot.grad, wk, sx, c, False, P, G, lo, hi)  # noqa: E731
    else:
        lz, n = loops.run_chunk, W
        call = lambda wk, sx, P, G, lo, hi: lz.compiled()(pot.grad, CODES["damped"], wk, sx, c, P, G, lo, hi)  # noqa: E731
    whole = _fresh()
    call(*whole, 0, n)
    parts = _fresh()
    for lo, hi in ((0, 1), (1, n - 1), (n - 1, n)):
        call(*parts, lo, hi)
    for a, b, names in ((whole[0], parts[0], state.Walkers._fields), (whole[1], parts[1], state.Stats._fields)):
        for f in names:
            assert np.array_equal(getattr(a, f), getattr(b, f)), f


def test_spread_raises_a_parts_error():
    calls = []

    def fn(x, lo, hi):
        calls.append((lo, hi))
        if lo > 0:
            raise ValueError("part failed")

    old = numba.get_num_threads()
    try:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        if numba.config.NUMBA_NUM_THREADS < 2:
            pytest.skip("one thread: nothing is split")
        with pytest.raises(ValueError, match="part failed"):
            loops.spread(fn, 5, (None,))
    finally:
        numba.set_num_threads(old)
    assert sorted(calls)[0][0] == 0 and sum(hi - lo for lo, hi in calls) == 5
