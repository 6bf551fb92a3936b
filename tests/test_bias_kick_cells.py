"""Position-dependent kick replay of the kick-shape step: bias.kick_cells and coupled_maps(cells=...).

Checked against independent truth: a plain-Python loop of the same map drawing from the same xoshiro streams (exact
counts), tables built with np.digitize, and the identity that a copy replaying per-cell copies of copy 1's own table
is copy 1.
"""
import math

import numpy as np
import pytest

from bayescg.bias import coupled_maps, kick_cells
from bayescg.errors import InputError
from bayescg.kernels.rng import next_u64, normal_pair, seed_states


def _run(kick_a, kick_b, cells, *, n=3000, burn=100, walkers=5, seed=3, lo=-6.0, hi=6.0, bins=48):
    xs = np.linspace(-10, 10, 2001)
    hist, mom = np.zeros((2, bins)), np.zeros((2, walkers, 20, 2))
    coupled_maps(xs[0], 1 / (xs[1] - xs[0]), xs.copy(), 0.5, 1.0, math.exp(-0.05), kick_a, kick_b, n, burn, walkers,
                 seed, lo, hi, hist, mom, cells=cells)
    return hist, mom


def test_cells_holding_copy_ones_table_give_copy_one_exactly():
    g = np.sort(np.random.default_rng(1).standard_normal(4001)) * 0.4
    # three cells, each with the whole of copy 1's table: copy 0 draws the same kick as copy 1 every step
    a = np.concatenate([g, g, g])
    hist, mom = _run(a, g, (-1.0, 1.5, np.array([0, g.size, 2 * g.size, 3 * g.size])))
    assert np.array_equal(hist[0], hist[1]) and np.array_equal(mom[0], mom[1])
    # and one explicit cell is the default
    h1, m1 = _run(g[::-1].copy(), g, None)
    h2, m2 = _run(g[::-1].copy(), g, (0.0, 0.0, np.array([0, g.size])))
    assert np.array_equal(h1, h2) and np.array_equal(m1, m2)


def test_cell_replay_matches_a_plain_python_map():
    """Copy 0 against an independent loop: the map (3.2) on U = q^2 / 2 (the table is exact for a linear gradient),
    the kick drawn from the table of the cell of q_{n+1/2} with the walker's own xoshiro stream."""
    rng = np.random.default_rng(2)
    left, right = np.sort(rng.standard_normal(301)) * 0.2, np.sort(rng.standard_normal(200)) * 0.7
    gauss = np.sort(rng.standard_normal(501)) * 0.5
    a = np.concatenate([left, right])
    off = np.array([0, left.size, a.size])
    cells = (-0.25, 1 / 0.25, off)  # cell 0: q_{n+1/2} < 0 (clipped below), cell 1: >= 0 (clipped above)
    n, burn, W, lo, hi, bins = 400, 50, 3, -6.0, 6.0, 48
    hist, _ = _run(a, gauss, cells, n=n, burn=burn, walkers=W, seed=9, lo=lo, hi=hi, bins=bins)
    delta, E = 0.5, math.exp(-0.05)
    ref = np.zeros(bins)
    st = seed_states(9, W)
    for w in range(W):
        s = st[w]
        q, p = normal_pair(s)
        for i in range(n):
            u = float(next_u64(s) >> np.uint64(11))
            qh = q + 0.5 * delta * p
            c = min(max(int(math.floor((qh + 0.25) * 4.0)), 0), 1)
            m = int(off[c + 1] - off[c])
            p = E * p - delta * qh + a[off[c] + min(int(u * (m / 2.0 ** 53)), m - 1)]
            q = qh + 0.5 * delta * p
            if i >= burn:
                k = int(math.floor((q - lo) * bins / (hi - lo)))
                if 0 <= k < bins:
                    ref[k] += 1
    assert np.array_equal(hist[0], ref)


def test_kick_cells_tables_and_rule():
    rng = np.random.default_rng(5)
    x = rng.uniform(-2, 2, 100_000)
    r = rng.standard_normal(x.size) * (1 + 0.5 * (x > 0)) + 0.3 * x  # variance and a smooth mean depend on x
    edges = np.linspace(-2, 2, 41)
    table, (c_lo, c_scale, off) = kick_cells(x, r, edges, min_per_cell=20_000)
    assert c_lo == -2.0 and off.size == 6  # 100k kicks, >= 20k per occupied cell: 5 cells
    cid = np.clip(np.digitize(x, np.linspace(-2, 2, 6)[1:-1]), 0, 4)
    for j in range(5):
        t = table[off[j]:off[j + 1]]
        want = np.sort(r[cid == j] - r[cid == j].mean())
        np.testing.assert_allclose(t, want, atol=1e-12)
    assert c_scale == pytest.approx(5 / 4)
    # positions outside the range go to the end cells; an empty cell takes its neighbour's table
    x2 = np.concatenate([rng.uniform(-2, -1, 500), rng.uniform(1, 2, 500), [-9.0, 9.0]])
    t2, (_, _, off2) = kick_cells(x2, rng.standard_normal(x2.size), np.linspace(-2, 2, 5), min_per_cell=100)
    assert off2.size == 5 and np.all(np.diff(off2) > 0)
    assert np.array_equal(t2[off2[1]:off2[2]], t2[off2[0]:off2[1]])  # cell 1 (empty) = cell 0


def test_coupled_maps_rejects_bad_cells():
    g = np.sort(np.random.default_rng(1).standard_normal(100))
    with pytest.raises(InputError, match="offsets"):
        _run(g, g, (0.0, 1.0, np.array([0, 50, 50, 100])))
    with pytest.raises(InputError, match="same length"):
        _run(g[:50].copy(), g, None)
