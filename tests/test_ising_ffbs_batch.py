"""chain.ffbs batched over coefficient vectors (coef (B, T)): samples against exact enumeration,
the coef (T,) path bit-identical to the implementation before batching, batched predictive pieces."""
import itertools

import numpy as np
import pytest
from scipy import stats

from bayescg.errors import InputError
from bayescg.ising.chain import ChainStructure, _emission_block, ffbs
from bayescg.ising.coarse import CoarseModel, sample_observables

TERMS = ((0,), (0, 1), (0, 2), (0, 1, 2))  # L = 2: four states, a non-trivial ring closure
COEFS = np.array([[0.1, 0.3, -0.2, 0.1],     # weak
                  [-0.4, -0.9, 0.5, 0.3],    # antiferromagnetic nearest pairs, frustrated by the next ones
                  [0.2, 1.8, 0.6, -0.4]])    # strongly coupled: a few configurations carry most mass


def exact_probs(n, terms, periodic, coef, em=None):
    """Enumeration of (1) in chain.py, independent of the transfer matrices: configurations (2**n, n)
    in itertools.product order and their probabilities."""
    X = np.array(list(itertools.product([-1, 1], repeat=n)))
    lw = np.zeros(len(X))
    for c, D in zip(coef, terms):
        anchors = range(n) if periodic else range(max(D), n)
        for t in anchors:
            lw += c * np.prod([X[:, (t - d) % n] for d in D], axis=0)
    if em is not None:
        lw += sum(em[i, (X[:, i] + 1) // 2] for i in range(n))
    p = np.exp(lw - lw.max())
    return X, p / p.sum()


def config_index(x):
    """Row of each configuration x (..., n) in itertools.product([-1, 1], repeat=n) order."""
    n = x.shape[-1]
    return ((x.astype(np.int64) + 1) // 2) @ (1 << np.arange(n - 1, -1, -1))


def chi2_pvalue(x, p, min_expected=5.0):
    """Goodness of fit of samples x (N, n) to probabilities p (2**n,); bins with expected count
    below ``min_expected`` pooled into one."""
    N = len(x)
    obs = np.bincount(config_index(x), minlength=len(p))
    e = N * p
    big = e >= min_expected
    o2, e2 = np.append(obs[big], obs[~big].sum()), np.append(e[big], e[~big].sum())
    keep = e2 > 0
    stat = float(np.sum((o2[keep] - e2[keep]) ** 2 / e2[keep]))
    return float(stats.chi2.sf(stat, keep.sum() - 1))


# --- the sampler before batching, verbatim (coef (T,) only): the reference for the random streams --------------
def old_ffbs(struct, coef, size, rng, emissions=None, chunk=64):
    """Exact i.i.d. samples by forward filtering, backward sampling.

    coef: (T,); emissions None or (B, n, 2); returns int8 spins (B, size, n) (B = 1 without
    emissions).  Periodic chains: the first block b is drawn from its exact marginal (forward
    pass over all b), then each group of samples sharing b is drawn from the chain conditioned
    on b (forward pass with F = 1, stored messages, backward sampling, ring closed by
    ``closing``).  ``chunk`` bounds how many (batch, b) pairs are filtered at once (memory
    n * chunk * 2**L floats).
    """
    tb = struct.tables
    L, S, n = struct.L, struct.S, struct.n
    c = np.asarray(coef, float)
    em = np.zeros((1, n, 2)) if emissions is None else np.asarray(emissions, float)
    B = em.shape[0]
    logt = np.tensordot(c, tb["mono"], axes=1)
    first = _emission_block(em, L, tb["first_bits"])  # (B, S)
    pred, nb = tb["pred"], tb["newbit"]
    if struct.periodic:
        lc = np.tensordot(c, tb["closing"], axes=1)  # (b, s)
        # marginal of the first block: forward over all b at once, in chunks of b
        logpb = np.empty((B, S))
        for lo in range(0, S, chunk):
            bs = np.arange(lo, min(S, lo + chunk))
            last, ls = _old_forward_conditioned(logt, em, first, bs, L, n, pred, nb)  # (B, nb, S)
            mc = lc[bs].max(axis=1, keepdims=True)
            logpb[:, bs] = ls + mc[None, :, 0] + np.log((last * np.exp(lc[bs] - mc)[None]).sum(-1) + 1e-300)
        logpb -= logpb.max(axis=1, keepdims=True)
        pb = np.exp(logpb)
        pb /= pb.sum(axis=1, keepdims=True)
        bsel = np.stack([rng.choice(S, size=size, p=pb[i]) for i in range(B)])  # (B, size)
        end_w = lambda b: np.exp(lc[b] - lc[b].max(axis=-1, keepdims=True))  # noqa: E731
    else:
        bsel = np.zeros((B, size), dtype=np.int64)
        end_w = None
    out = np.empty((B, size, n), dtype=np.int8)
    pairs, inv = np.unique(np.stack([np.repeat(np.arange(B), size), bsel.ravel()], axis=1), axis=0,
                           return_inverse=True)
    inv = inv.reshape(B, size)
    w0 = None if struct.periodic else np.tensordot(c, tb["w0"], axes=1)
    for lo in range(0, len(pairs), chunk):
        pp = pairs[lo:lo + chunk]
        if struct.periodic:
            msgs = _old_forward_store(logt, em[pp[:, 0]], first[pp[:, 0]], pp[:, 1], L, n, pred, nb, True, None)
            endw = end_w(pp[:, 1])
        else:
            msgs = _old_forward_store(logt, em[pp[:, 0]], first[pp[:, 0]], None, L, n, pred, nb, False, w0)
            endw = np.ones((len(pp), S))
        bi, si = np.nonzero((inv >= lo) & (inv < lo + len(pp)))
        pidx = inv[bi, si] - lo
        out[bi, si] = _old_backward_sample(msgs, endw, logt, em, pp[pidx, 0], pidx, L, n, pred, nb, rng, tb)
    return out


def _old_forward_conditioned(logt, em, first, bs, L, n, pred, nb):
    """Forward pass for every batch with first block fixed to each b in ``bs``; returns the
    last normalized messages (B, len(bs), S) and their log scales (B, len(bs))."""
    B = em.shape[0]
    S = logt.shape[0]
    a = np.zeros((B, len(bs), S))
    a[:, np.arange(len(bs)), bs] = 1.0
    logscale = first[:, bs].copy()
    for t in range(L, n):
        lw = logt[pred, nb[None, :]][None] + em[:, t, nb][:, None, :]
        m = lw.max(axis=(1, 2))
        ew = np.exp(lw - m[:, None, None])
        a = a[:, :, pred[0]] * ew[:, None, 0, :] + a[:, :, pred[1]] * ew[:, None, 1, :]
        s = a.max(axis=2)
        s = np.where(s > 0, s, 1.0)
        a /= s[..., None]
        logscale += m[:, None] + np.log(s)
    return a, logscale


def _old_forward_store(logt, em, first, bs, L, n, pred, nb, periodic, w0):
    """Normalized forward messages for P chains, stored for every t: (n, P, S).
    Row t < L-1 is unused; row L-1 is the first block's weight."""
    P, S = em.shape[0], logt.shape[0]
    msgs = np.zeros((n, P, S))
    if periodic:
        a = np.zeros((P, S))
        a[np.arange(P), bs] = 1.0
    else:
        la = first + w0[None]
        a = np.exp(la - la.max(axis=1, keepdims=True))
    msgs[L - 1] = a
    for t in range(L, n):
        lw = logt[pred, nb[None, :]][None] + em[:, t, nb][:, None, :]  # (P, 2, S)
        ew = np.exp(lw - lw.max(axis=(1, 2), keepdims=True))
        a = a[:, pred[0]] * ew[:, 0] + a[:, pred[1]] * ew[:, 1]
        a /= a.max(axis=1, keepdims=True)
        msgs[t] = a
    return msgs


def _old_backward_sample(msgs, endw, logt, em, batch, pidx, L, n, pred, nb, rng, tb):
    """Backward sampling, vectorized over samples: sample j uses stored messages msgs[:, pidx[j]]
    (n, P, S), end weights endw[pidx[j]] (P, S) and emissions of batch[j].  Returns (k, n)."""
    k = len(pidx)
    x = np.empty((k, n), dtype=np.int8)
    p_end = msgs[n - 1][pidx] * endw[pidx]
    cdf = np.cumsum(p_end, axis=1)
    u = rng.random(k) * cdf[:, -1]
    s = np.minimum((cdf < u[:, None]).sum(axis=1), cdf.shape[1] - 1)
    for t in range(n - 1, L - 1, -1):
        bit = s >> (L - 1)
        x[:, t] = 2 * bit - 1
        p0, p1 = pred[0][s], pred[1][s]
        lw0 = logt[p0, bit]
        lw1 = logt[p1, bit]
        mx = np.maximum(lw0, lw1)
        w0 = msgs[t - 1, pidx, p0] * np.exp(lw0 - mx)
        w1 = msgs[t - 1, pidx, p1] * np.exp(lw1 - mx)
        u = rng.random(k)
        s = np.where(u * (w0 + w1) < w1, p1, p0)
    x[:, :L] = 2 * tb["first_bits"][s] - 1
    return x


# --- end of the verbatim copy -------------------------------------------------------------------------------


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("terms", [((0,), (0, 1)), TERMS, ((0,), (0, 1), (0, 3))])
def test_single_coef_is_bit_identical_to_the_old_sampler(terms, periodic):
    st = ChainStructure(9, terms, periodic)
    r = np.random.default_rng(4)
    for em in (None, r.normal(size=(3, 9, 2))):
        for chunk in (64, 3, 1):  # several chunks of (batch, b) pairs, and of the marginal's pass
            c = r.normal(size=len(terms))
            old = old_ffbs(st, c, 700, np.random.default_rng(7), emissions=em, chunk=chunk)
            new = ffbs(st, c, 700, np.random.default_rng(7), emissions=em, chunk=chunk)
            assert new.dtype == old.dtype and new.shape == old.shape
            assert new.tobytes() == old.tobytes()


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("n", [8, 9])
def test_batched_samples_match_enumeration(n, periodic):
    """Every batch against its own exact distribution (a batch drawn with another batch's coef fails)."""
    st = ChainStructure(n, TERMS, periodic)
    N = 30000
    x = ffbs(st, COEFS, N, np.random.default_rng(n + 10 * periodic), chunk=5)
    assert x.shape == (len(COEFS), N, n) and x.dtype == np.int8
    for b, c in enumerate(COEFS):
        _, p = exact_probs(n, TERMS, periodic, c)
        assert chi2_pvalue(x[b], p) > 1e-4, b


def test_batched_samples_with_emissions_match_enumeration_and_the_unbatched_sampler():
    n, periodic = 8, True
    st = ChainStructure(n, TERMS, periodic)
    rng = np.random.default_rng(21)
    em = rng.normal(0.0, 0.8, (len(COEFS), n, 2))
    N = 30000
    x = ffbs(st, COEFS, N, rng, emissions=em, chunk=7)
    assert x.shape == (len(COEFS), N, n)
    for b, c in enumerate(COEFS):
        _, p = exact_probs(n, TERMS, periodic, c, em[b])
        assert chi2_pvalue(x[b], p) > 1e-4, b
        y = ffbs(st, c, N, rng, emissions=em[b:b + 1])[0]
        assert chi2_pvalue(y, p) > 1e-4, b
        # two-sample homogeneity of batch b against the unbatched call, on configurations seen often enough
        cnt = np.stack([np.bincount(config_index(z), minlength=1 << n) for z in (x[b], y)])
        often = cnt.sum(0) >= 10
        table = np.column_stack([cnt[:, often], cnt[:, ~often].sum(1)])
        assert stats.chi2_contingency(table)[1] > 1e-4, b


def test_batch_shapes_and_errors():
    st = ChainStructure(6, TERMS, True)
    rng = np.random.default_rng(0)
    assert ffbs(st, COEFS[0], 4, rng).shape == (1, 4, 6)
    assert ffbs(st, COEFS[:1], 4, rng).shape == (1, 4, 6)
    assert ffbs(st, COEFS[0], 4, rng, emissions=np.zeros((5, 6, 2))).shape == (5, 4, 6)  # shared coef
    with pytest.raises(InputError):
        ffbs(st, COEFS, 4, rng, emissions=np.zeros((2, 6, 2)))


def test_predictive_pieces_batched_over_draws():
    """sample_coarse (J, K), sample_fine with one theta_cf per draw, sample_observables over a leading axis."""
    cm = CoarseModel(16, 2, "111", periodic=True)
    th = np.array([[0.2, 0.6, 0.1], [-0.3, 1.2, 0.0]])
    rng = np.random.default_rng(3)
    X = cm.sample_coarse(th, 5000, rng)
    assert X.shape == (2, 5000, 8) and cm.sample_coarse(th[0], 7, rng).shape == (7, 8)
    x = cm.sample_fine(X, np.array([0.9, 0.6]), rng)
    assert x.shape == (2, 5000, 16)
    agree = (x.reshape(2, 5000, 8, 2) == X[..., None]).mean(axis=(1, 2, 3))
    assert np.all(np.abs(agree - [0.9, 0.6]) < 0.01)  # each draw flipped with its own theta_cf
    m, R = sample_observables(x, cm.periodic, [1, 3])
    assert m.shape == (2,) and R.shape == (2, 2)
    for j in range(2):
        mj, Rj = sample_observables(x[j], cm.periodic, [1, 3])
        assert mj == m[j] and np.array_equal(Rj, R[j])
    # the draws' exact predictions: the replicated statistics agree within Monte Carlo error
    me, Re = cm.exact_predictions(th, [0.9, 0.6], [1, 3])
    assert np.all(np.abs(m - me) < 0.05) and np.all(np.abs(R - Re) < 0.05)
