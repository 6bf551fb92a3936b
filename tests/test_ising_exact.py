"""Exact transfer-matrix results against brute-force enumeration; samplers against exact moments."""
import itertools

import numpy as np
import pytest

from bayescg.errors import InputError
from bayescg.ising.chain import ChainStructure, exact_moments, ffbs, log_partition, moments
from bayescg.ising.coarse import CoarseModel
from bayescg.ising.fine import FineModel, couplings


def brute_fine(n, J, mu, beta, periodic):
    """Independent enumeration of (F1): U = -sum_k J_k sum_i x_i x_{i+k} - mu sum_i x_i."""
    X = np.array(list(itertools.product([-1, 1], repeat=n)), float)
    U = -mu * X.sum(1)
    for k, Jk in enumerate(J, start=1):
        for i in range(n):
            j = i + k
            if j >= n:
                if not periodic:
                    continue
                j -= n
            U -= Jk * X[:, i] * X[:, j]
    w = np.exp(-beta * U - np.max(-beta * U))
    p = w / w.sum()
    logZ = np.log(np.sum(np.exp(-beta * U - np.max(-beta * U)))) + np.max(-beta * U)
    return X, p, logZ


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("J", [(1.0,), (0.7, -0.4), (0.5, 0.3, 0.2)])
def test_fine_truth_matches_enumeration(periodic, J):
    n, mu, beta = 9, 0.35, 0.8
    fm = FineModel(n, beta, mu, J, periodic)
    X, p, logZ = brute_fine(n, J, mu, beta, periodic)
    assert fm.log_partition() == pytest.approx(logZ, abs=1e-10)
    m_i, C = exact_moments(fm.structure, fm.coef)
    np.testing.assert_allclose(m_i, p @ X, atol=1e-12)
    np.testing.assert_allclose(C, np.einsum("k,ki,kj->ij", p, X, X), atol=1e-12)
    m, R = fm.truth(lags=[1, 2, 3])
    assert m == pytest.approx(np.mean(p @ X), abs=1e-12)
    if periodic:
        assert R[1] == pytest.approx(np.mean([p @ (X[:, i] * X[:, (i + 2) % n]) for i in range(n)]), abs=1e-12)
    else:
        assert R[1] == pytest.approx(np.mean([p @ (X[:, i] * X[:, i + 2]) for i in range(n - 2)]), abs=1e-12)


def test_energy_is_the_documented_potential():
    fm = FineModel(6, 1.0, 0.5, (1.3,), True)
    x = np.array([1, -1, -1, 1, 1, 1])
    # L_f = 1: U = -J0 sum_i x_i x_{i+1} - mu sum_i x_i, periodic
    bonds = sum(x[i] * x[(i + 1) % 6] for i in range(6))
    assert fm.energy(x) == pytest.approx(-1.3 * bonds - 0.5 * x.sum())


def test_couplings_normalizations():
    np.testing.assert_allclose(couplings(1.5, 1, 2.0), [1.5])
    for norm in ("power", "sum", "slides"):
        assert couplings(1.5, 1, 0.7, norm)[0] == pytest.approx(1.5)
    np.testing.assert_allclose(couplings(2.0, 3, 1.0, "power"), [2.0, 1.0, 2.0 / 3])
    assert couplings(1.5, 10, 1.0, "sum").sum() == pytest.approx(1.5)
    with pytest.raises(InputError):
        couplings(1.0, 2, 1.0, "nope")


@pytest.mark.parametrize("periodic", [True, False])
def test_coarse_moments_and_emissions_vs_enumeration(periodic):
    """log Z, feature means/covariances of a coarse chain with pair, triplet and emissions."""
    cm = CoarseModel(14, 2, "121", beta=0.9, mu_c=0.2, periodic=periodic)  # n_c = 7
    rng = np.random.default_rng(3)
    theta = rng.normal(size=cm.K) * 0.5
    x = np.where(rng.random((3, 14)) < 0.6, 1, -1)
    em = cm.emissions(x, 0.8)
    Xs = np.array(list(itertools.product([-1, 1], repeat=7)), float)
    Tsum = cm.term_sums(Xs)
    lw = Tsum @ cm.coef(theta)
    for b in range(3):
        e = sum(em[b, r, ((Xs[:, r] + 1) // 2).astype(int)] for r in range(7))
        lwe = lw + e
        lz = np.log(np.exp(lwe - lwe.max()).sum()) + lwe.max()
        assert log_partition(cm.structure, cm.coef(theta), em)[b] == pytest.approx(lz, abs=1e-10)
    lz0, M, Cv = moments(cm.structure, cm.coef(theta))
    p = np.exp(lw - lw.max())
    p /= p.sum()
    np.testing.assert_allclose(M[0], p @ Tsum, atol=1e-10)
    np.testing.assert_allclose(Cv[0], np.einsum("k,ki,kj->ij", p, Tsum, Tsum) - np.outer(p @ Tsum, p @ Tsum),
                               atol=1e-9)


@pytest.mark.parametrize("periodic", [True, False])
def test_ffbs_samples_match_exact_moments(periodic):
    fm = FineModel(12, 1.0, 0.2, (0.6, 0.3), periodic)
    m_i, C = exact_moments(fm.structure, fm.coef)
    rng = np.random.default_rng(11)
    S = 40000
    x = fm.sample(S, rng).astype(float)
    # independent draws: z-scores of site means and of the pair products
    z_m = (x.mean(0) - m_i) / np.sqrt((1 - m_i ** 2) / S)
    assert np.max(np.abs(z_m)) < 4.5
    pp = x[:, 0] * x[:, 5]
    z_c = (pp.mean() - C[0, 5]) / np.sqrt((1 - C[0, 5] ** 2) / S)
    assert abs(z_c) < 4.5


def test_ffbs_with_emissions_matches_enumeration():
    cm = CoarseModel(12, 2, "111", beta=1.0, mu_c=0.0, periodic=True)  # n_c = 6
    rng = np.random.default_rng(5)
    theta = np.array([0.3, 0.5, -0.2])
    x = np.where(rng.random((2, 12)) < 0.7, 1, -1)
    em = cm.emissions(x, 0.85)
    X = ffbs(cm.structure, cm.coef(theta), 30000, rng, emissions=em).astype(float)  # (2, S, 6)
    Xs = np.array(list(itertools.product([-1, 1], repeat=6)), float)
    lw = cm.term_sums(Xs) @ cm.coef(theta)
    for b in range(2):
        e = lw + sum(em[b, r, ((Xs[:, r] + 1) // 2).astype(int)] for r in range(6))
        p = np.exp(e - e.max())
        p /= p.sum()
        mean = p @ Xs
        z = (X[b].mean(0) - mean) / np.sqrt((1 - mean ** 2) / X.shape[1])
        assert np.max(np.abs(z)) < 4.5


def test_mcmc_agrees_with_exact():
    fm = FineModel(16, 1.0, 0.3, (0.8, 0.4), True)
    m, R = fm.truth(lags=[1, 2, 4])
    for hb in (True, False):
        x = fm.mcmc(6000, seed=2, sweeps_between=5, burn_in=200, heat_bath=hb).astype(float)
        # correlated draws: loose tolerance, still far below the signal
        assert x.mean() == pytest.approx(m, abs=0.05)
        for l, r in zip([1, 2, 4], R):
            assert np.mean(x * np.roll(x, -l, axis=1)) == pytest.approx(r, abs=0.05)


def test_structure_rejects_too_long_interactions():
    with pytest.raises(InputError, match="shorter than the chain"):
        ChainStructure(3, ((0,), (0, 3)), True)
    with pytest.raises(InputError, match="longer than the chain"):
        FineModel(4, 1.0, 0.0, (1.0, 1.0, 1.0, 1.0), True)
