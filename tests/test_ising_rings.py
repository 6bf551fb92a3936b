"""Small periodic rings: every bond counted once (issue 12, point 6), against enumeration written here."""
import itertools

import numpy as np
import pytest

from bayescg.ising.chain import exact_moments, log_partition
from bayescg.ising.coarse import CoarseModel
from bayescg.ising.em import marginal_loglik
from bayescg.ising.fine import FineModel


def _bonds(n, k):
    """Distinct unordered bonds {i, i+k mod n} of a ring."""
    return sorted({tuple(sorted((i, (i + k) % n))) for i in range(n)})


def test_fine_ring_with_bond_across_half_the_ring_counts_it_once():
    n, J, mu, beta = 4, (0.7, -0.9), 0.3, 0.8  # k = 2 = n/2: bonds (0,2), (1,3) only
    fm = FineModel(n, beta, mu, J, True)
    X = np.array(list(itertools.product([-1, 1], repeat=n)), float)
    U = -mu * X.sum(1)
    for k, Jk in enumerate(J, start=1):
        U -= Jk * sum(X[:, i] * X[:, j] for i, j in _bonds(n, k))
    assert len(_bonds(4, 2)) == 2
    np.testing.assert_allclose(fm.energy(X), U, atol=1e-12)
    w = np.exp(-beta * U)
    assert fm.log_partition() == pytest.approx(np.log(w.sum()), abs=1e-12)
    m_i, C = exact_moments(fm.structure, fm.coef)
    p = w / w.sum()
    np.testing.assert_allclose(C, np.einsum("k,ki,kj->ij", p, X, X), atol=1e-12)
    # the independent MCMC check counts the bond once too
    xs = fm.mcmc(4000, seed=3, sweeps_between=2, burn_in=200)
    assert np.mean(xs[:, 0] * xs[:, 2]) == pytest.approx(C[0, 2], abs=0.06)


@pytest.mark.parametrize("code,n_f,level", [("110", 4, 2), ("120", 8, 2), ("111", 6, 2), ("110", 32, 16)])
def test_coarse_ring_counts_every_bond_once(code, n_f, level):
    """n_c = 2 (one bond), n_c = 4 with pair2 (bonds (0,2), (1,3)), n_c = 3 with the triplet (one monomial)."""
    cm = CoarseModel(n_f, level, code, beta=0.9, mu_c=0.2, periodic=True)
    n = cm.n_c
    rng = np.random.default_rng(1)
    th = rng.normal(size=cm.K) * 0.7
    X = np.array(list(itertools.product([-1, 1], repeat=n)), float)
    v = dict(zip(cm.names, th))
    lw = (v.get("lin", 0.0) / 2 + cm.mu_c) * X.sum(1)
    for k in range(1, cm.pair_length + 1):
        lw += v[f"pair{k}"] * sum(X[:, i] * X[:, j] for i, j in _bonds(n, k))
    if cm.triplet:
        trip = {tuple(sorted({i, (i + 1) % n, (i + 2) % n})) for i in range(n)}
        lw += v["trip"] * sum(np.prod(X[:, list(t)], axis=1) for t in trip)
    lw *= cm.beta
    assert float(log_partition(cm.structure, cm.coef(th))) == pytest.approx(np.log(np.exp(lw).sum()), abs=1e-11)
    # the marginal likelihood (E1) by enumeration with this coarse energy
    x = np.where(rng.random((3, n_f)) < 0.6, 1, -1)
    up = np.repeat(X, level, axis=1)
    ref = []
    for xi in x:
        a = (up * xi > 0).sum(1)
        lp = lw - np.log(np.exp(lw).sum()) + a * np.log(0.8) + (n_f - a) * np.log(0.2)
        ref.append(np.log(np.exp(lp).sum()))
    np.testing.assert_allclose(marginal_loglik(cm, x, th, 0.8), ref, atol=1e-10)
