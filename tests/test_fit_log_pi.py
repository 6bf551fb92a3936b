"""fit._draws_log_pi, the per-draw log pi_J of the pointwise log-likelihood (compiled per-draw kernels: the 2D
tensor layout, the node design otherwise), against numpy on the dense cell log masses (bayes.effective.
cell_log_mass: the node sums through the full 1D design matrices), and on one thread against two."""
import numba
import numpy as np
import pytest

from bayescg import fit as F
from bayescg.bayes.effective import (active_log_probabilities, cell_log_mass, effective_basis, map_estimate_sparse,
                                     tensor_blocks_33)
from bayescg.kernels.effective import node_draws_log_pi


def _reference(basis, A, cells):
    """np.log of the normalised cell masses exp(L_J) (-inf where they underflow), dense numpy, draw by draw."""
    out = np.empty((A.shape[0], len(cells)))
    for s in range(A.shape[0]):
        L = cell_log_mass(basis, A[s])[basis.active]
        p = np.exp(L - L.max())
        with np.errstate(divide="ignore"):
            out[s] = np.log(p / p.sum())[cells]
    return out


def _basis_2d():
    rng = np.random.default_rng(0)
    edges = [np.linspace(-4, 4, 41), np.linspace(-3, 3, 31)]
    x = rng.standard_normal((30000, 2)) * [1.0, 0.7]
    x[:, 1] += 0.3 * x[:, 0] ** 2 - 0.3
    counts = np.histogram2d(x[:, 0], x[:, 1], edges)[0]
    basis = effective_basis(edges, 10, counts=counts)
    return basis, map_estimate_sparse(basis, counts, 0.1)[0]


def _basis_1d():
    rng = np.random.default_rng(2)
    edges = np.linspace(-3, 3, 61)
    counts = np.histogram(rng.standard_normal(20000) + 0.2 * rng.standard_normal(20000) ** 2, edges)[0]
    basis = effective_basis([edges], 12)
    L0 = np.log(np.maximum(basis.active_counts(counts.astype(float)), 0.5))
    a = np.linalg.lstsq(F._design_at(basis, np.arange(60)), -L0 + L0.mean(), rcond=None)[0]
    return basis, a


def _draws(a, n, scale, seed):
    rng = np.random.default_rng(seed)
    A = a[None, :] + scale * rng.standard_normal((n, a.size))
    A[-1] = 3000.0 * rng.random(a.size)     # a draw whose steep f makes some pi_J underflow: log pi_J = -inf
    return A


def _one_and_two_threads(basis, A, cells):
    was = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = F._draws_log_pi(basis, A, cells)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        two = F._draws_log_pi(basis, A, cells)
    finally:
        numba.set_num_threads(was)
    return one, two


def _check(got, ref):
    inf = np.isneginf(ref)
    assert inf[-1].any() and not inf[:-1].any()
    assert np.isneginf(got[-1]).any() and not np.isnan(got).any() and not np.isposinf(got).any()
    # pi_J subnormal (log pi between -745 and -708): np.log of a subnormal has few bits, and whether a ratio of
    # subnormals rounds to 0 (-inf) depends on the order of the operations; -inf in one and finite in the other only
    # there, equal to 1e-10 above it
    assert np.all(got[inf] < -740.0) and np.all(ref[np.isneginf(got)] < -740.0)
    ok = ref > -700.0
    assert np.array_equal(ok, got > -700.0)
    np.testing.assert_allclose(got[ok], ref[ok], rtol=0, atol=1e-10)


@pytest.mark.parametrize("dim", [1, 2])
def test_draws_log_pi_equals_numpy_on_the_dense_cell_masses_and_one_thread_equals_two(dim):
    basis, a = _basis_2d() if dim == 2 else _basis_1d()
    assert (tensor_blocks_33(basis) is not None) == (dim == 2)    # 2D: the tensor layout's kernel is the one tested
    A = _draws(a, 41, 0.05, 1)
    n_act = int(basis.active.sum())
    cells = np.concatenate([np.arange(n_act), np.random.default_rng(3).choice(n_act, 30)])
    one, two = _one_and_two_threads(basis, A, cells)
    assert one.tobytes() == two.tobytes()
    _check(one, _reference(basis, A, cells))
    if dim == 2:   # the node design (the 1D / 3D path) on the same 2D basis
        idx, val, logw = basis.nodes
        node = np.empty_like(one)
        node_draws_log_pi(A, idx, val, logw, basis.quad ** 2, cells.astype(np.int64), node, 0, A.shape[0])
        _check(node, _reference(basis, A, cells))
    # active_log_probabilities (the posterior predictive's pi) normalises with the same kernel: finite everywhere
    for s in (0, A.shape[0] - 1):
        L = cell_log_mass(basis, A[s])[basis.active]
        ref = L - L.max() - np.log(np.exp(L - L.max()).sum())
        np.testing.assert_allclose(active_log_probabilities(basis, A[s]), ref, rtol=0, atol=1e-10 * max(1, -ref.min()))
