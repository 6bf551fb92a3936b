"""The exact chain engine at extreme coefficients (|c| up to ~10^3.5: near-zero-temperature, frustrated rings), against
enumeration of all 2^n configurations.  The linear-space passes lose mass to underflow there (a frustrated odd ring at
|c| ~ 300 gave <x> off by 0.89 and log Z off by 1.1, silently); such coefficients are detected and redone in log space."""
import itertools

import numpy as np
import pytest
from scipy.special import logsumexp

from bayescg.ising import chain
from bayescg.ising.chain import ChainStructure, exact_moments, log_partition

TERMS = [((0,), (0, 1), (0, 2)), ((0,), (0, 1), (0, 1, 2), (0, 3)), ((0, 1), (0, 2))]


def _log_weights(X, c, terms, periodic, em=None):
    n = X.shape[1]
    e = np.zeros(len(X))
    for ck, D in zip(c, terms):
        if periodic:
            e += ck * np.prod([np.roll(X, d, axis=1) for d in D], axis=0).sum(axis=1)
        else:
            for t in range(max(D), n):
                e += ck * np.prod([X[:, t - d] for d in D], axis=0)
    if em is not None:
        e += em[np.arange(n)[None, :], (X + 1) // 2].sum(axis=1)
    return e


def _cases(seed, count):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        periodic, n, terms = bool(rng.integers(2)), int(rng.integers(5, 10)), TERMS[rng.integers(3)]
        scale = 10 ** rng.uniform(1.5, 3.5)
        yield periodic, n, terms, rng.normal(size=len(terms)) * scale, rng.normal(size=(2, n, 2)) * scale * rng.uniform()


@pytest.mark.parametrize("case", list(_cases(11, 24)), ids=lambda c: f"{'ring' if c[0] else 'open'}{c[1]}")
def test_extreme_coefficients_against_enumeration(case):
    periodic, n, terms, c, em = case
    st = ChainStructure(n=n, terms=terms, periodic=periodic)
    X = np.array(list(itertools.product([-1, 1], repeat=n)))
    lw = _log_weights(X, c, terms, periodic)
    p = np.exp(lw - lw.max())
    p /= p.sum()
    with np.errstate(divide="raise", invalid="raise", over="raise"):  # no warning escapes to the caller
        m, C = exact_moments(st, np.stack([c, c / 1000.0]))  # an extreme draw beside an ordinary one
        lz, lz_em = log_partition(st, c), log_partition(st, c, em)
    assert np.max(np.abs(m[0] - p @ X)) < 1e-9
    assert np.max(np.abs(C[0] - np.einsum("k,ki,kj->ij", p, X, X))) < 1e-9
    assert lz == pytest.approx(logsumexp(lw), rel=1e-12, abs=1e-9)
    for b in range(2):
        assert lz_em[b] == pytest.approx(logsumexp(_log_weights(X, c, terms, periodic, em[b])), rel=1e-12, abs=1e-9)
    lw1 = _log_weights(X, c / 1000.0, terms, periodic)
    p1 = np.exp(lw1 - lw1.max())
    assert np.max(np.abs(m[1] - (p1 / p1.sum()) @ X)) < 1e-12


def test_the_reported_frustrated_ring():
    """An odd antiferromagnetic ring with a next-nearest coupling at |c| = 300: the case that was silently wrong."""
    st = ChainStructure(n=9, terms=((0,), (0, 1), (0, 2)), periodic=True)
    c = np.array([0.05, -1.0, -0.3]) * 300
    X = np.array(list(itertools.product([-1, 1], repeat=9)))
    lw = _log_weights(X, c, st.terms, True)
    p = np.exp(lw - lw.max())
    p /= p.sum()
    m, _ = exact_moments(st, c)
    assert np.max(np.abs(m - p @ X)) < 1e-12
    assert log_partition(st, c) == pytest.approx(logsumexp(lw), abs=1e-9)


def test_ordinary_draws_stay_on_the_linear_pass(monkeypatch):
    """Coefficients of everyday size never take the log-space path (same numbers, same speed as before)."""
    calls = []
    monkeypatch.setattr(chain, "_exact_moments_logspace", lambda *a: calls.append(a))
    monkeypatch.setattr(chain, "_log_partition_logspace", lambda *a: calls.append(a))
    rng = np.random.default_rng(3)
    for periodic in (True, False):
        st = ChainStructure(n=32, terms=TERMS[1], periodic=periodic)
        exact_moments(st, rng.normal(size=(50, 4)) * 2.0)
        log_partition(st, rng.normal(size=(5, 4)) * 2.0, rng.normal(size=(3, 32, 2)))
    assert calls == []
