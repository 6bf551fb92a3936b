"""Exact transfer-matrix engine for 1D spin chains with finite-range multi-spin terms.

A chain of ``n`` spins x_t in {-1, +1} has the log-weight (minus beta times the energy)

    log w(x) = sum_t sum_terms c_term * prod_{d in D_term} x_{t-d}  +  sum_t e_t(x_t)        (1)

where every term is a monomial given by backward offsets ``D`` (a tuple of distinct
non-negative ints containing 0, anchored at the *newest* spin t), ``c`` is its coefficient
and ``e_t`` optional per-site "emission" log-factors (the coarse-to-fine map in PCG).
Boundary conditions:

* ``open``: a term anchored at t is present only if all its sites exist (t - max(D) >= 0);
* ``periodic``: indices are taken mod n, every anchor t = 0..n-1 carries every term.  For
  n <= 2 max(D) several anchors give the same monomial (a pair at offset n/2, a triplet on
  3 sites); the engine keeps the literal definition (1) and :attr:`ChainStructure.multiplicity`
  says how often each monomial repeats, so that models (fine.py, coarse.py) divide their
  coefficients by it and count every bond once.

The state at time t is the last ``L = max(1, max_D)`` spins, coded as an integer whose bit j
is spin x_{t-L+1+j} (bit L-1 = newest; spin = 2 bit - 1).  Adding site t to state s_{t-1}
costs the transition log-weight ``c . mono[:, s_{t-1}, bit_t]``.  Periodic chains are
handled by conditioning on the first block b = s_{L-1} (a batch index ``F``) and closing the
ring with the L transitions that re-add sites 0..L-1 (``closing_mono[:, b, s_{n-1}]``).

Everything here is plain numpy in linear space with per-step rescaling (log of the scales
accumulated), which is exact up to round-off while no weight that matters underflows; at extreme
coefficients (|c| ~ 10^2-10^3, frustrated rings first) :func:`log_partition` and
:func:`exact_moments` detect the loss and redo those coefficient vectors in log space.
:mod:`bayescg.ising.bayes` has the log-space pytensor twin used for gradients.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from ..errors import InputError


@dataclass(frozen=True)
class ChainStructure:
    """Monomial tables of a chain, independent of the coefficients.

    Attributes (T = number of terms, S = 2**L states):
      mono (T, S, 2): term value when bit b is appended to state s (translation-invariant part);
      w0_mono (T, S): open chain, terms fully inside the first block s_{L-1};
      closing_mono (T, S, S): periodic, [term, b, s]: terms added while re-adding sites 0..L-1
        (spins of first block b) after the last state s.
    """

    n: int
    terms: tuple  # tuple of tuples of offsets
    periodic: bool

    def __post_init__(self):
        if self.n < 1:
            raise InputError(f"a chain needs at least one site, got {self.n}")
        for D in self.terms:
            if 0 not in D or len(set(D)) != len(D) or min(D) < 0:
                raise InputError(f"bad term offsets {D!r}: distinct, non-negative, containing 0")
        if self.span >= self.n and self.terms:
            raise InputError(
                f"interaction length {self.span} must be shorter than the chain ({self.n} sites)")

    @cached_property
    def multiplicity(self) -> np.ndarray:
        """(T,) number of anchors t whose monomial of a term is the same set of sites as the
        anchor-0 one: 1 on open chains and on rings with n > 2 max(D); 2 for a pair at offset
        n/2, 3 for the triplet (0, 1, 2) on 3 sites.  A coefficient c / multiplicity counts every
        distinct monomial once."""
        out = np.ones(len(self.terms))
        if self.periodic:
            for k, D in enumerate(self.terms):
                s0 = frozenset((-d) % self.n for d in D)
                out[k] = sum(frozenset((t - d) % self.n for d in D) == s0 for t in range(self.n))
        return out

    @property
    def span(self) -> int:
        return max((max(D) for D in self.terms), default=0)

    @property
    def L(self) -> int:
        return max(1, self.span)

    @property
    def S(self) -> int:
        return 1 << self.L

    @cached_property
    def tables(self):
        L, S, T = self.L, self.S, len(self.terms)
        states = np.arange(S)
        spins = 2 * ((states[:, None] >> np.arange(L)[None, :]) & 1) - 1  # (S, L): spin of bit j
        mono = np.ones((T, S, 2))
        for k, D in enumerate(self.terms):
            for d in D:
                if d == 0:
                    mono[k] *= np.array([-1.0, 1.0])[None, :]
                else:
                    mono[k] *= spins[:, L - d][:, None]
        # open chain: terms fully inside the first block; x_j = spins[:, j] at time L-1
        w0 = np.zeros((T, S))
        for k, D in enumerate(self.terms):
            for t in range(L):
                if max(D) <= t:
                    w0[k] += np.prod([spins[:, t - d] for d in D], axis=0)
        # periodic closing: from last state s re-add sites 0..L-1 with spins of block b
        closing = np.zeros((T, S, S))
        bb, ss = np.meshgrid(states, states, indexing="ij")
        state = ss.copy()
        for t in range(L):
            bit = (bb >> t) & 1
            closing += mono[:, state, bit]
            state = (state >> 1) | (bit << (L - 1))
        # predecessors: p = ((s' & (2^(L-1)-1)) << 1) | d, appended bit = s' >> (L-1)
        low = states & ((1 << (L - 1)) - 1)
        pred = np.stack([(low << 1) | 0, (low << 1) | 1])  # (2, S)
        newbit = states >> (L - 1)
        succ = np.stack([states >> 1, (states >> 1) | (1 << (L - 1))])  # (2, S): state after appending bit 0 / 1
        first_bits = (states[:, None] >> np.arange(L)[None, :]) & 1  # (S, L): bit of site t in block
        return dict(mono=mono, w0=w0, closing=closing, pred=pred, newbit=newbit, succ=succ, spins=spins,
                    first_bits=first_bits)


def _emission_block(em, L, first_bits):
    """Sum of emissions of sites 0..L-1 for every first block: em (B, n, 2) -> (B, S)."""
    tot = 0.0
    for t in range(L):
        tot = tot + em[:, t, first_bits[:, t]]
    return tot


def log_partition(struct: ChainStructure, coef, emissions=None):
    """log of sum_x exp(log w(x)) of (1).

    coef: (T,) or (P, T) term coefficients (P parameter sets); emissions: None or (B, n, 2)
    log-factors for spin -1 / +1 at each site.  Returns (P, B) (or scalar/1-d when inputs are).
    """
    coef = np.asarray(coef, float)
    squeeze_p = coef.ndim == 1
    coef = np.atleast_2d(coef)
    if emissions is None:
        em = np.zeros((1, struct.n, 2))
        squeeze_b = True
    else:
        em = np.asarray(emissions, float)
        squeeze_b = False
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # underflow is detected and redone in log space
        out = np.stack([_log_partition_one(struct, c, em) for c in coef])
    if squeeze_b:
        out = out[:, 0]
    return out[0] if squeeze_p else out


def _log_partition_one(struct, c, em):
    tb = struct.tables
    L, S, n = struct.L, struct.S, struct.n
    B = em.shape[0]
    logt = np.tensordot(c, tb["mono"], axes=1)  # (S, 2)
    first = _emission_block(em, L, tb["first_bits"])  # (B, S)
    if struct.periodic:
        la = np.full((B, S, S), -np.inf)
        idx = np.arange(S)
        la[:, idx, idx] = first
    else:
        la = (first + np.tensordot(c, tb["w0"], axes=1)[None, :])[:, None, :]  # (B,1,S)
    shift = la.max(axis=(1, 2), keepdims=True)
    a = np.exp(la - shift)
    logscale = shift[:, 0, 0].copy()
    # a weight that underflows in one step, in the first block or in the ring's closing: redone in log space below
    bad = (shift[:, 0, 0] - np.where(np.isfinite(la), la, np.inf).min(axis=(1, 2))) > _LOG_RANGE
    pred, nb = tb["pred"], tb["newbit"]
    for t in range(L, n):
        w = logt[pred, nb[None, :]]  # (2, S)
        lw = w[None, :, :] + em[:, t, nb][:, None, :]  # (B, 2, S)
        m = lw.max(axis=(1, 2))
        bad |= (m - lw.min(axis=(1, 2))) > _LOG_RANGE
        ew = np.exp(lw - m[:, None, None])
        a = a[:, :, pred[0]] * ew[:, None, 0, :] + a[:, :, pred[1]] * ew[:, None, 1, :]
        s = a.max(axis=(1, 2))
        s = np.where(s > 0, s, 1.0)
        a /= s[:, None, None]
        logscale += m + np.log(s)
    if struct.periodic:
        lc = np.tensordot(c, tb["closing"], axes=1)  # (S_b, S_s)
        mc = lc.max()
        tot = (a * np.exp(lc - mc)[None]).sum(axis=(1, 2))
        out = logscale + mc + np.log(tot)
        # a ring whose closing mass is far below the largest open path's (strong frustration) lost it to underflow
        bad |= ~(tot > _TINY) | (mc - lc.min() > _LOG_RANGE)
    else:
        out = logscale + np.log(a.sum(axis=(1, 2)))
    bad |= ~np.isfinite(out)
    if bad.any():
        out[bad] = _log_partition_logspace(struct, c, em[bad])
    return out


#: linear-space passes are exact unless a transition weight underflows (a log-weight range above this) or the mass that
#: matters falls below _TINY of the largest normalised entry; such coefficients (|c| ~ 10^2-10^3, frustrated rings
#: first) are recomputed in log space (_log_partition_logspace, _exact_moments_logspace)
_LOG_RANGE = 650.0
_TINY = 1e-200


def _underflows(logt):
    """Whether exp(logt - max) underflows somewhere: logt (S, 2) -> bool, or (J, S, 2) -> (J,)."""
    lt = np.asarray(logt)
    return (lt.max(axis=(-2, -1)) - lt.min(axis=(-2, -1))) > _LOG_RANGE


def _logstep(a, lw, pred):
    """One site added in log space: a (..., S) over the state before, lw (..., 2, S) the log-weights of the two ways into
    each state (broadcast against a) -> (..., S)."""
    return np.logaddexp(a[..., pred[0]] + lw[..., 0, :], a[..., pred[1]] + lw[..., 1, :])


def _site_time(i: int, L: int) -> tuple[int, int]:
    """(t, j): site i of an open chain is bit j of the state at time t (the first L sites all in the first state)."""
    t = max(i, L - 1)
    return t, i - (t - L + 1)


def _log_partition_logspace(struct, c, em):
    """_log_partition_one in log space (no rescaling, no underflow): c (T,), em (B, n, 2) -> (B,)."""
    from scipy.special import logsumexp

    tb = struct.tables
    L, S, n = struct.L, struct.S, struct.n
    logt = np.tensordot(c, tb["mono"], axes=1)
    first = _emission_block(em, L, tb["first_bits"])  # (B, S)
    pred, nb = tb["pred"], tb["newbit"]
    if struct.periodic:
        la = np.full((em.shape[0], S, S), -np.inf)
        idx = np.arange(S)
        la[:, idx, idx] = first
    else:
        la = (first + np.tensordot(c, tb["w0"], axes=1)[None, :])[:, None, :]
    for t in range(L, n):
        lw = logt[pred, nb[None, :]][None] + em[:, t, nb][:, None, :]  # (B, 2, S)
        la = _logstep(la, lw[:, None], pred)
    if struct.periodic:
        la = la + np.tensordot(c, tb["closing"], axes=1)[None]
    return logsumexp(la, axis=(1, 2))


def moments(struct: ChainStructure, coef, emissions=None, em_features=None, em_coef=None):
    """log Z, mean and covariance of the sufficient statistics by the expectation semiring.

    The statistics are the T term sums of (1) followed by G emission features: the emission
    log-factor is ``e_t(x) = em_features[b, t, x] . em_coef`` (em_features (B, n, 2, G)).
    If ``emissions`` is given instead (B, n, 2), it is used with G = 0.
    Returns logZ (B,), mean (B, T+G), cov (B, T+G, T+G).  d logZ / d coef = mean,
    d^2 logZ / d coef^2 = cov: exact gradients and Hessians for EM, relent and Laplace checks.
    """
    tb = struct.tables
    L, S, n = struct.L, struct.S, struct.n
    c = np.asarray(coef, float)
    T = len(c)
    if em_features is not None:
        g = np.asarray(em_features, float)
        eta = np.asarray(em_coef, float)
        em = g @ eta
    else:
        em = np.zeros((1, n, 2)) if emissions is None else np.asarray(emissions, float)
        g = np.zeros(em.shape + (0,))
    B, G = em.shape[0], g.shape[-1]
    K = T + G
    logt = np.tensordot(c, tb["mono"], axes=1)
    mono = tb["mono"]  # (T, S, 2)
    first = _emission_block(em, L, tb["first_bits"])  # (B, S)
    gfirst = 0.0
    for t in range(L):
        gfirst = gfirst + g[:, t, tb["first_bits"][:, t], :]  # (B, S, G)
    if struct.periodic:
        F = S
        lf = np.full((B, F, S), -np.inf)
        idx = np.arange(S)
        lf[:, idx, idx] = first
        f0 = np.zeros((B, F, S, K))
        f0[:, idx, idx, T:] = gfirst
    else:
        F = 1
        lf = (first + np.tensordot(c, tb["w0"], axes=1)[None, :])[:, None, :]
        f0 = np.zeros((B, 1, S, K))
        f0[:, 0, :, :T] = tb["w0"].T[None]
        f0[:, 0, :, T:] = gfirst
    shift = lf.max(axis=(1, 2), keepdims=True)
    a = np.exp(lf - shift)
    logscale = shift[:, 0, 0].copy()
    A1 = a[..., None] * f0
    A2 = a[..., None, None] * f0[..., :, None] * f0[..., None, :]
    pred, nb = tb["pred"], tb["newbit"]
    for t in range(L, n):
        lw = logt[pred, nb[None, :]][None] + em[:, t, nb][:, None, :]  # (B, 2, S)
        m = lw.max(axis=(1, 2))
        ew = np.exp(lw - m[:, None, None])
        na = np.zeros_like(a)
        nA1 = np.zeros_like(A1)
        nA2 = np.zeros_like(A2)
        for d in (0, 1):
            p = pred[d]
            f = np.concatenate([np.broadcast_to(mono[:, p, nb].T[None], (B, S, T)),
                                g[:, t, nb, :]], axis=-1)[:, None]  # (B,1,S,K)
            wd = ew[:, None, d, :]  # (B,1,S)
            ap, A1p, A2p = a[:, :, p], A1[:, :, p], A2[:, :, p]
            na += ap * wd
            nA1 += (A1p + ap[..., None] * f) * wd[..., None]
            nA2 += (A2p + A1p[..., :, None] * f[..., None, :] + f[..., :, None] * A1p[..., None, :]
                    + ap[..., None, None] * f[..., :, None] * f[..., None, :]) * wd[..., None, None]
        s = na.max(axis=(1, 2))
        s = np.where(s > 0, s, 1.0)
        a, A1, A2 = na / s[:, None, None], nA1 / s[:, None, None, None], nA2 / s[:, None, None, None, None]
        logscale += m + np.log(s)
    if struct.periodic:
        lc = np.tensordot(c, tb["closing"], axes=1)
        mc = lc.max()
        wc = np.exp(lc - mc)[None]  # (1, F, S)
        fc = np.zeros((1, F, S, K))
        fc[0, :, :, :T] = np.moveaxis(tb["closing"], 0, -1)
    else:
        mc = 0.0
        wc = np.ones((1, F, S))
        fc = np.zeros((1, F, S, K))
    Z = (a * wc).sum(axis=(1, 2))
    M1 = ((A1 + a[..., None] * fc) * wc[..., None]).sum(axis=(1, 2)) / Z[:, None]
    M2 = ((A2 + A1[..., :, None] * fc[..., None, :] + fc[..., :, None] * A1[..., None, :]
           + a[..., None, None] * fc[..., :, None] * fc[..., None, :]) * wc[..., None, None]).sum(axis=(1, 2))
    M2 = M2 / Z[:, None, None]
    cov = M2 - M1[:, :, None] * M1[:, None, :]
    return logscale + mc + np.log(Z), M1, cov


def ffbs(struct: ChainStructure, coef, size: int, rng, emissions=None, chunk: int = 64):
    """Exact i.i.d. samples by forward filtering, backward sampling.

    coef: (T,) shared by all batches, or (B, T): batch b uses coef[b]; emissions None or
    (B, n, 2) (without emissions B = 1 for coef (T,), B = len(coef) for (B, T)); returns int8
    spins (B, size, n).  Periodic chains: the first block b is drawn from its exact marginal
    (forward pass over all b), then each group of samples sharing (batch, b) is drawn from the
    chain conditioned on b (forward pass with F = 1, stored messages, backward sampling, ring
    closed by ``closing``).  ``chunk`` bounds how many (batch, b) pairs are filtered at once
    (memory n * chunk * 2**L floats).
    """
    tb = struct.tables
    L, S, n = struct.L, struct.S, struct.n
    c = np.asarray(coef, float)
    if c.ndim not in (1, 2):
        raise InputError(f"coef must be (T,) or (B, T), got shape {c.shape}")
    # a (T,) coef goes through the same tensordot as always (bit-identical streams), then gets a batch axis
    logt = np.tensordot(c, tb["mono"], axes=1).reshape(-1, S, 2)  # (Bc, S, 2)
    em = np.zeros((len(logt), n, 2)) if emissions is None else np.asarray(emissions, float)
    B = em.shape[0]
    if len(logt) not in (1, B):
        raise InputError(f"{len(logt)} coefficient vectors for {B} emission batches")
    logt = np.broadcast_to(logt, (B, S, 2))
    first = _emission_block(em, L, tb["first_bits"])  # (B, S)
    pred, nb = tb["pred"], tb["newbit"]
    if struct.periodic:
        lc = np.broadcast_to(np.tensordot(c, tb["closing"], axes=1).reshape(-1, S, S), (B, S, S))  # (B, b, s)
        # marginal of the first block: forward over all b, in blocks of <= chunk (batch, b) pairs
        logpb = np.empty((B, S))
        for lo in range(0, S, chunk):
            bs = np.arange(lo, min(S, lo + chunk))
            step = max(1, chunk // len(bs))
            for i in (slice(i0, i0 + step) for i0 in range(0, B, step)):
                last, ls = _forward_conditioned(logt[i], em[i], first[i], bs, L, n, pred, nb)  # (Bi, nb, S)
                lcb = lc[i, bs]
                mc = lcb.max(axis=2, keepdims=True)
                logpb[i, bs] = ls + mc[..., 0] + np.log((last * np.exp(lcb - mc)).sum(-1) + 1e-300)
        logpb -= logpb.max(axis=1, keepdims=True)
        pb = np.exp(logpb)
        pb /= pb.sum(axis=1, keepdims=True)
        # inverse CDF with one uniform per sample, row by row: the draws rng.choice(S, size, p=pb[i]) makes
        cdf = np.cumsum(pb, axis=1)
        cdf /= cdf[:, -1:]
        u = rng.random((B, size))
        bsel = np.stack([np.searchsorted(cdf[i], u[i], side="right") for i in range(B)]).astype(np.int64)
    else:
        bsel = np.zeros((B, size), dtype=np.int64)
        w0 = np.broadcast_to(np.tensordot(c, tb["w0"], axes=1).reshape(-1, S), (B, S))
    out = np.empty((B, size, n), dtype=np.int8)
    # (batch, b) pairs in lexicographic order; a chunk's samples are drawn in row-major (batch, sample)
    # order, as the earlier per-chunk mask did: the same random stream for a given seed
    pairs, inv = np.unique(np.arange(B)[:, None] * S + bsel, return_inverse=True)
    pairs = np.stack(np.divmod(pairs, S), axis=1)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    cuts = np.searchsorted(inv[order], np.arange(0, len(pairs) + chunk, chunk))
    for k, lo in enumerate(range(0, len(pairs), chunk)):
        pp = pairs[lo:lo + chunk]
        ib, bb = pp[:, 0], pp[:, 1]
        if struct.periodic:
            msgs = _forward_store(logt[ib], em[ib], first[ib], bb, L, n, pred, nb, True, None)
            endw = np.exp(lc[ib, bb] - lc[ib, bb].max(axis=-1, keepdims=True))
        else:
            msgs = _forward_store(logt[ib], em[ib], first[ib], None, L, n, pred, nb, False, w0[ib])
            endw = np.ones((len(pp), S))
        flat = np.sort(order[cuts[k]:cuts[k + 1]])
        bi, si = np.divmod(flat, size)
        out[bi, si] = _backward_sample(msgs, endw, logt[ib], inv[flat] - lo, L, n, pred, nb, rng, tb)
    return out


def _forward_conditioned(logt, em, first, bs, L, n, pred, nb):
    """Forward pass for every batch with first block fixed to each b in ``bs``; logt (B, S, 2),
    em (B, n, 2), first (B, S).  Returns the last normalized messages (B, len(bs), S) and their
    log scales (B, len(bs))."""
    B = em.shape[0]
    S = logt.shape[1]
    a = np.zeros((B, len(bs), S))
    a[:, np.arange(len(bs)), bs] = 1.0
    logscale = first[:, bs].copy()
    lt = logt[:, pred, nb[None, :]]  # (B, 2, S)
    for t in range(L, n):
        lw = lt + em[:, t, nb][:, None, :]
        m = lw.max(axis=(1, 2))
        ew = np.exp(lw - m[:, None, None])
        a = a[:, :, pred[0]] * ew[:, None, 0, :] + a[:, :, pred[1]] * ew[:, None, 1, :]
        s = a.max(axis=2)
        s = np.where(s > 0, s, 1.0)
        a /= s[..., None]
        logscale += m[:, None] + np.log(s)
    return a, logscale


def _forward_store(logt, em, first, bs, L, n, pred, nb, periodic, w0):
    """Normalized forward messages for P chains (logt (P, S, 2), em (P, n, 2), w0 (P, S) open),
    stored for every t: (n, P, S).  Row t < L-1 is unused; row L-1 is the first block's weight."""
    P, S = em.shape[0], logt.shape[1]
    msgs = np.zeros((n, P, S))
    if periodic:
        a = np.zeros((P, S))
        a[np.arange(P), bs] = 1.0
    else:
        la = first + w0
        a = np.exp(la - la.max(axis=1, keepdims=True))
    msgs[L - 1] = a
    lt = logt[:, pred, nb[None, :]]  # (P, 2, S)
    for t in range(L, n):
        lw = lt + em[:, t, nb][:, None, :]  # (P, 2, S)
        ew = np.exp(lw - lw.max(axis=(1, 2), keepdims=True))
        a = a[:, pred[0]] * ew[:, 0] + a[:, pred[1]] * ew[:, 1]
        a /= a.max(axis=1, keepdims=True)
        msgs[t] = a
    return msgs


def _backward_sample(msgs, endw, logt, pidx, L, n, pred, nb, rng, tb):
    """Backward sampling, vectorized over samples: sample j uses stored messages msgs[:, pidx[j]]
    (n, P, S), end weights endw[pidx[j]] (P, S) and transition log-weights logt[pidx[j]]
    (P, S, 2); the emissions cancel here (they are in the messages).  Returns (k, n)."""
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
        lw0 = logt[pidx, p0, bit]
        lw1 = logt[pidx, p1, bit]
        mx = np.maximum(lw0, lw1)
        w0 = msgs[t - 1, pidx, p0] * np.exp(lw0 - mx)
        w1 = msgs[t - 1, pidx, p1] * np.exp(lw1 - mx)
        u = rng.random(k)
        s = np.where(u * (w0 + w1) < w1, p1, p0)
    x[:, :L] = 2 * tb["first_bits"][s] - 1
    return x


# --- exact one- and two-point functions -------------------------------------------------------
_MOMENTS_FLOATS = 1 << 22  # scratch budget of exact_moments (32 MB): bounds the draws per chunk


def exact_moments(struct: ChainStructure, coef):
    """Exact <x_i> and <x_i x_j> of the chain (1) without emissions, for one coefficient vector
    coef (T,) -> (n,), (n, n) or a batch (J, T) -> (J, n), (J, n, n).

    Periodic: translation invariance, <x_0 x_l> = Tr(D P^l D P^(n-l)) / Tr(P^n) with the
    transfer matrix P (one site per step, sparse: two predecessors per state) and D the
    diagonal of the newest spin.  Open: forward/backward vectors with an inserted spin.
    Linear space with per-draw rescaling; cost O(n 4^L) periodic, O(n^2 2^L) open per draw,
    numpy-batched over draws (in chunks that bound the scratch memory for large 2^L).
    """
    c = np.asarray(coef, float)
    one = c.ndim == 1
    c = np.atleast_2d(c)
    n, S = struct.n, struct.S
    per_draw = (n // 2 + 3) * S * S if struct.periodic else 3 * n * S + n * n
    step = max(1, _MOMENTS_FLOATS // per_draw)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # such draws are flagged and redone below
        parts = [_exact_moments_batch(struct, c[lo:lo + step]) for lo in range(0, len(c), step)]
    m = np.concatenate([p[0] for p in parts])
    C = np.concatenate([p[1] for p in parts])
    bad = np.concatenate([p[2] for p in parts])
    for j in np.flatnonzero(bad):  # draws whose linear-space pass lost mass to underflow: redone in log space
        m[j], C[j] = _exact_moments_logspace(struct, c[j])
    return (m[0], C[0]) if one else (m, C)


def _exact_moments_batch(struct, c):
    """exact_moments for coef (J, T) in linear space: (J, n), (J, n, n) and (J,) bool, the draws whose pass lost mass to
    underflow (to be redone in log space)."""
    tb = struct.tables
    L, S, n = struct.L, struct.S, struct.n
    J = c.shape[0]
    logt = np.tensordot(c, tb["mono"], axes=1)  # (J, S, 2)
    pred, nb = tb["pred"], tb["newbit"]
    spin_new = (2 * nb - 1).astype(float)
    w = logt[:, pred, nb[None, :]]  # (J, 2, S)
    wmax = w.max(axis=(1, 2))
    bad = _underflows(logt)
    w = np.exp(w - wmax[:, None, None])
    w0, w1 = w[:, None, 0, :], w[:, None, 1, :]  # (J, 1, S): multiply the columns of (J, S, S)

    def step(M):  # M P for a batch of (S, S) matrices
        return M[:, :, pred[0]] * w0 + M[:, :, pred[1]] * w1

    if struct.periodic:
        # pass 1: normalized powers P^l (l = 1..n) and their log scales; keep l <= n//2
        half = n // 2
        logs = np.zeros((J, n + 1))
        store = {}
        cur = np.broadcast_to(np.eye(S), (J, S, S))
        for l in range(1, n + 1):
            cur = step(cur)
            s = np.abs(cur).max(axis=(1, 2))
            cur = cur / s[:, None, None]
            logs[:, l] = logs[:, l - 1] + np.log(s)
            if l <= half:
                store[l] = cur
        Z = np.trace(cur, axis1=1, axis2=2)
        bad |= ~(Z > _TINY)  # the ring's closed paths far below the largest open one: lost to underflow
        Z = np.where(bad, 1.0, Z)
        mag = np.sum(spin_new * np.diagonal(cur, axis1=1, axis2=2), axis=1) / Z
        # pass 2: P^l for l >= n - half, paired with the stored P^(n-l)
        corr = np.zeros((J, n))
        corr[:, 0] = 1.0
        cur = np.broadcast_to(np.eye(S), (J, S, S))
        for l in range(1, n):
            cur = step(cur)
            cur = cur / np.exp(logs[:, l] - logs[:, l - 1])[:, None, None]
            lp = n - l
            if 1 <= lp <= half:
                val = np.sum((spin_new[:, None] * store[lp] * spin_new[None, :]) * cur.transpose(0, 2, 1),
                             axis=(1, 2))
                corr[:, lp] = val * np.exp(logs[:, lp] + logs[:, l] - logs[:, n]) / Z
        for l in range(half + 1, n):
            corr[:, l] = corr[:, n - l]
        i = np.arange(n)
        C = corr[:, (i[None, :] - i[:, None]) % n]
        m = np.repeat(mag[:, None], n, axis=1)
        return m, C, bad | ~np.isfinite(m).all(axis=1) | ~np.isfinite(C).all(axis=(1, 2))
    # open chain
    la = np.tensordot(c, tb["w0"], axes=1)  # (J, S)
    bad |= (la.max(axis=1) - la.min(axis=1)) > _LOG_RANGE  # the first block's weights underflow (before any drift)
    alpha = np.zeros((J, n, S))
    a = np.exp(la - la.max(axis=1, keepdims=True))
    alpha[:, L - 1] = a / a.sum(axis=1, keepdims=True)
    scales = np.zeros((J, n))
    for t in range(L, n):
        a = alpha[:, t - 1, pred[0]] * w[:, 0] + alpha[:, t - 1, pred[1]] * w[:, 1]
        scales[:, t] = a.sum(axis=1)
        alpha[:, t] = a / scales[:, t, None]
    beta = np.zeros((J, n, S))
    beta[:, n - 1] = 1.0
    # predecessor p of state s' ; backward: beta_{t-1}(p) = sum_bit w(p,bit) beta_t(s'(p,bit))
    succ = tb["succ"]
    wt = np.exp(logt - wmax[:, None, None])  # (J, S, 2), the scale of w
    for t in range(n - 1, L - 1, -1):
        b = wt[:, :, 0] * beta[:, t, succ[0]] + wt[:, :, 1] * beta[:, t, succ[1]]
        beta[:, t - 1] = b / scales[:, t, None]
    spins = tb["spins"]  # (S, L): bit j at time t is spin x_{t-L+1+j}
    norm = (alpha[:, L - 1] * beta[:, L - 1]).sum(axis=1)
    # sum_s alpha_t beta_t is the same at every t in exact arithmetic: where it is not, underflow took mass away
    drift = np.abs((alpha[:, L - 1:] * beta[:, L - 1:]).sum(axis=2) / norm[:, None] - 1.0).max(axis=1)
    bad |= ~(drift < 1e-8)
    m = np.empty((J, n))
    for i in range(n):
        t, j = _site_time(i, L)
        m[:, i] = (alpha[:, t] * beta[:, t] * spins[:, j]).sum(axis=1) / norm
    C = np.broadcast_to(np.eye(n), (J, n, n)).copy()
    for i in range(n):
        ti, ji = _site_time(i, L)
        v = alpha[:, ti] * spins[:, ji]
        for j in range(i + 1, n):
            tj, jj = _site_time(j, L)
            while ti < tj:
                ti += 1
                v = (v[:, pred[0]] * w[:, 0] + v[:, pred[1]] * w[:, 1]) / scales[:, ti, None]
            C[:, i, j] = C[:, j, i] = (v * beta[:, tj] * spins[:, jj]).sum(axis=1) / norm
    return m, C, bad | ~np.isfinite(m).all(axis=1) | ~np.isfinite(C).all(axis=(1, 2))


def _exact_moments_logspace(struct, c):
    """exact_moments for one coefficient vector c (T,) in log space (no underflow at any coefficient size; ~10x
    slower than the linear pass, so used only where that pass lost mass): (n,), (n, n)."""
    from scipy.special import logsumexp

    tb = struct.tables
    L, S, n = struct.L, struct.S, struct.n
    logt = np.tensordot(c, tb["mono"], axes=1)  # (S, 2)
    pred, nb = tb["pred"], tb["newbit"]
    lw = logt[pred, nb[None, :]]  # (2, S)
    if struct.periodic:
        spin = (2 * nb - 1).astype(float)
        P = [np.where(np.eye(S, dtype=bool), 0.0, -np.inf)]  # log P^l, l = 0..n
        for _ in range(n):
            P.append(_logstep(P[-1], lw, pred))
        d = np.diagonal(P[n])
        logZ = logsumexp(d)
        corr = np.ones(n)
        ss = np.outer(spin, spin)
        for lag in range(1, n):  # Tr(D P^lag D P^(n-lag)) / Tr(P^n)
            corr[lag] = np.sum(ss * np.exp(P[lag] + P[n - lag].T - logZ))
        i = np.arange(n)
        return np.full(n, float(np.sum(spin * np.exp(d - logZ)))), corr[(i[None, :] - i[:, None]) % n]
    succ = tb["succ"]
    alpha = np.full((n, S), -np.inf)
    alpha[L - 1] = np.tensordot(c, tb["w0"], axes=1)
    for t in range(L, n):
        alpha[t] = _logstep(alpha[t - 1], lw, pred)
    beta = np.zeros((n, S))
    for t in range(n - 1, L - 1, -1):
        beta[t - 1] = np.logaddexp(logt[:, 0] + beta[t, succ[0]], logt[:, 1] + beta[t, succ[1]])
    logZ = logsumexp(alpha[L - 1] + beta[L - 1])
    spins = tb["spins"]
    m = np.empty(n)
    C = np.eye(n)
    for i in range(n):
        ti, ji = _site_time(i, L)
        m[i] = np.sum(spins[:, ji] * np.exp(alpha[ti] + beta[ti] - logZ))
        # x_i's sign splits the forward vector into a positive and a negative part, each carried in log space
        vp, vn = np.where(spins[:, ji] > 0, alpha[ti], -np.inf), np.where(spins[:, ji] < 0, alpha[ti], -np.inf)
        for j in range(i + 1, n):
            tj, jj = _site_time(j, L)
            while ti < tj:
                ti += 1
                vp, vn = _logstep(vp, lw, pred), _logstep(vn, lw, pred)
            C[i, j] = C[j, i] = np.sum(spins[:, jj] * (np.exp(vp + beta[tj] - logZ) - np.exp(vn + beta[tj] - logZ)))
    return m, C


def lag_pairs(n: int, periodic: bool, l: int) -> tuple[np.ndarray, np.ndarray]:
    """Site pairs (i, j) averaged in R_l: (i, i + l mod n) for every i on a ring, i < n - l open."""
    i = np.arange(n) if periodic else np.arange(n - l)
    return i, (i + l) % n


def observables(m_i, C, periodic: bool, lags):
    """Magnetization m = mean_i <x_i> and R_l = mean over pairs (i, i+l) of <x_i x_{i+l}>.

    Periodic: R_l = (1/n) sum_i <x_i x_{i+l mod n}> (the slides' definition); open: the mean
    over the n - l pairs inside the chain (:func:`lag_pairs`).  lags: iterable of l >= 1.
    """
    n = len(m_i)
    R = [np.mean(C[lag_pairs(n, periodic, l)]) for l in lags]
    return float(np.mean(m_i)), np.array(R)
