"""Fast exact marginal log-likelihood (E1) and gradient (E2) of PCG data: one numba kernel.

This is the inner loop of ``nuts`` (X summed out), ``laplace`` checks and PSIS-LOO, so it is
written for speed and called without Python in between when sampling (see
:func:`bayescg.ising.bayes.marginal_model`, which registers it with PyTensor's numba backend):

* **Unique patterns.**  (E1) depends on a configuration x only through its per-block agreement
  counts a_r = #{s : x_{r,s} = +1} (the number of fine spins that agree with X_r = +1; with
  X_r = -1 it is l_c - a_r), and is invariant under the symmetries of the coarse chain:
  rotations r -> r + k (periodic chains) and the reversal r -> n_c - 1 - r (when every term's
  offset set D equals its mirror image max(D) - D, true for all [abc] models).  Each orbit is
  evaluated once, with its multiplicity.
* **Scaled probability space.**  Forward recursion of chain.py (1) with transition weights
  exp(c . f - max) and emission weights normalized per site (largest of the two = 1), so no
  entry can grow by more than 2 per step; the messages are rescaled (one log) only when their sum
  drops below 1e-200.  Per pattern that is one or two logarithms instead of one per step, and no
  exponential at all: emission weights come from a table over a = 0..l_c.
* **Gradient by the expectation semiring** (first order): alongside the messages alpha the kernel
  carries sum over paths of weight x feature, for the T term sums of (C1) and n_agree, giving
  <T(X)>_q, <n_agree>_q and, with no emissions, <T(X)>_p_c in the same pass (E2).

Shapes: S = 2**L states, F = S first blocks (periodic) or 1 (open), T terms, K = len(theta_c).
"""
from __future__ import annotations

import functools
import threading
import warnings

import numba
import numpy as np
from numba import types
from numba.core.errors import NumbaExperimentalFeatureWarning

from ..kernels.callbacks import EXPAND_SIG, KERNEL_SIG, LOGP_SIG, call_kernel, logp_into, packed
from ..sampling import _DP
from .coarse import CoarseModel

RESCALE_BELOW = 1e-200  # message sums below this are renormalized (one log); weights are <= 1


def _mirror_symmetric(terms) -> bool:
    """True if every offset set D equals max(D) - D (the energy is invariant under reversal)."""
    return all(set(D) == {max(D) - d for d in D} for D in terms)


def canonical_patterns(cm: CoarseModel, x):
    """Agreement counts of x reduced to one representative per symmetry orbit.

    x (S_f, n_f) spins.  Returns ``counts`` (U, n_c) int64 (a_r = number of +1 spins in block r,
    of the lexicographically smallest image under the chain's symmetries), ``mult`` (U,) float
    multiplicities and ``inverse`` (S_f,) with counts[inverse[i]] the orbit of x_i.
    """
    m = cm.block_sums(x)  # (S_f, n_c), a = (l_c + m) / 2
    a = ((cm.level + m) // 2).astype(np.int64)
    n = cm.n_c
    images = [a]
    if cm.periodic:
        images = [np.roll(a, k, axis=1) for k in range(n)]
    if _mirror_symmetric(cm.structure.terms):
        images = images + [im[:, ::-1] for im in images]
    stack = np.stack(images, axis=1)  # (S_f, G, n_c)
    # lexicographic minimum over the group: encode each image as a number in base l_c + 1
    # (exact in int64 while (l_c+1)^n_c < 2^63, otherwise compare row-wise)
    base = cm.level + 1
    if n * np.log2(base) < 62:
        code = stack @ (base ** np.arange(n - 1, -1, -1, dtype=np.int64))
        pick = np.argmin(code, axis=1)
    else:
        pick = np.array([min(range(stack.shape[1]), key=lambda g: tuple(s[g])) for s in stack], dtype=np.int64)
    canon = stack[np.arange(len(a)), pick]
    uniq, first, inv, mult = np.unique(canon, axis=0, return_index=True, return_inverse=True, return_counts=True)
    return np.ascontiguousarray(uniq), mult.astype(float), inv.reshape(-1)


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=False, boundscheck=False)
def _forward(eh, ag, ewt, f2, pred, nb, first_bits, periodic, w0, w0f, wc, lcf, alpha, new, A1, nA, M):
    """Scaled forward recursion with first-order expectation semiring for one emission pattern.

    eh (n, 2) normalized emission weights of X = -1/+1 (<= 1), ag (n, 2) n_agree feature;
    ewt (2, S) normalized transition weights into s2 from pred[d, s2], f2 (2, S, T) their term
    values; open chains: w0 (S,) first-block weights, w0f (S, T) their terms; periodic: wc
    (S, S) normalized closing weights [b, s], lcf (S, S, T) their terms.  alpha/new (F, S),
    A1/nA (F, S, T+1) scratch.  Writes <features> to M (T+1,); returns log of the partition sum
    in units of the normalized weights (caller adds the normalizing offsets); -inf if zero.
    """
    n = eh.shape[0]
    S = ewt.shape[1]
    T = f2.shape[2]
    L = first_bits.shape[1]
    F = alpha.shape[0]
    alpha[:, :] = 0.0
    A1[:, :, :] = 0.0
    logsc = 0.0
    for fb in range(F):
        for s in range(S):
            if periodic and s != fb:
                continue
            w = 1.0 if periodic else w0[s]
            fa = 0.0
            for t in range(L):
                bit = first_bits[s, t]
                w *= eh[t, bit]
                fa += ag[t, bit]
            alpha[fb, s] = w
            if not periodic:
                for k in range(T):
                    A1[fb, s, k] = w * w0f[s, k]
            A1[fb, s, T] = w * fa
    for t in range(L, n):
        tot = 0.0
        for fb in range(F):
            for s2 in range(S):
                b = nb[s2]
                we = eh[t, b]
                fe = ag[t, b]
                v = 0.0
                for k in range(T + 1):
                    nA[fb, s2, k] = 0.0
                for d in range(2):
                    p = pred[d, s2]
                    w = ewt[d, s2] * we
                    ap = alpha[fb, p]
                    v += ap * w
                    for k in range(T):
                        nA[fb, s2, k] += (A1[fb, p, k] + ap * f2[d, s2, k]) * w
                    nA[fb, s2, T] += (A1[fb, p, T] + ap * fe) * w
                new[fb, s2] = v
                tot += v
        if tot == 0.0:
            return -np.inf
        if tot < RESCALE_BELOW:
            inv = 1.0 / tot
            logsc += np.log(tot)
            for fb in range(F):
                for s2 in range(S):
                    alpha[fb, s2] = new[fb, s2] * inv
                    for k in range(T + 1):
                        A1[fb, s2, k] = nA[fb, s2, k] * inv
        else:
            for fb in range(F):
                for s2 in range(S):
                    alpha[fb, s2] = new[fb, s2]
                    for k in range(T + 1):
                        A1[fb, s2, k] = nA[fb, s2, k]
    Z = 0.0
    for k in range(T + 1):
        M[k] = 0.0
    for fb in range(F):
        for s in range(S):
            a = alpha[fb, s]
            if periodic:
                w = wc[fb, s]
                Z += a * w
                for k in range(T):
                    M[k] += (A1[fb, s, k] + a * lcf[fb, s, k]) * w
                M[T] += A1[fb, s, T] * w
            else:
                Z += a
                for k in range(T + 1):
                    M[k] += A1[fb, s, k]
    if Z == 0.0:
        return -np.inf
    for k in range(T + 1):
        M[k] /= Z
    return logsc + np.log(Z)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def chain_weights(coef, f2, w0f, lcf, periodic):
    """Normalized weights of the coarse chain for term coefficients ``coef`` (T,): transitions ewt (2, S)
    (offset mxt per step), first-block weights w0 (S,) (open) or closing weights wc (S, S) (periodic)
    (offset mx0).  Returns (ewt, mxt, w0, wc, mx0), as :func:`loglik_grad` uses them."""
    S, T = f2.shape[1], f2.shape[2]
    lt2 = np.empty((2, S))
    mxt = -np.inf
    for d in range(2):
        for s in range(S):
            v = 0.0
            for j in range(T):
                v += f2[d, s, j] * coef[j]
            lt2[d, s] = v
            mxt = max(mxt, v)
    ewt = np.exp(lt2 - mxt)
    w0 = np.ones(S)
    wc = np.ones((S, S))
    mx0 = -np.inf
    if periodic:
        lc = np.empty((S, S))
        for b in range(S):
            for s in range(S):
                v = 0.0
                for j in range(T):
                    v += lcf[b, s, j] * coef[j]
                lc[b, s] = v
                mx0 = max(mx0, v)
        wc = np.exp(lc - mx0)
    else:
        l0 = np.empty(S)
        for s in range(S):
            v = 0.0
            for j in range(T):
                v += w0f[s, j] * coef[j]
            l0[s] = v
            mx0 = max(mx0, v)
        w0 = np.exp(l0 - mx0)
    return ewt, mxt, w0, wc, mx0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _coef(theta_c, A, c0, beta):
    """Term coefficients beta (A theta_c + c0): (T,)."""
    T, K = A.shape
    coef = np.empty(T)
    for j in range(T):
        v = c0[j]
        for k in range(K):
            v += A[j, k] * theta_c[k]
        coef[j] = beta * v
    return coef


# inline="always": compiled (and optimised) once, inside its C entry point :func:`loglik_cfunc`, which Python and the
# NUTS callback call; a jitted caller that linked a separate dispatcher would optimise its code a second time
@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath=False, boundscheck=False, inline="always")
def loglik_grad(theta_c, theta_cf, A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic,
                counts, mult, level, n_data, pointwise):
    """Total log-likelihood sum_i log p(x_i | theta) (E1) and its gradient (E2) (K+1,).

    theta_c (K,), theta_cf scalar; A (T, K), c0 (T,): coef = beta (A theta_c + c0); counts
    (U, n) agreement counts of the unique patterns, mult (U,) their multiplicities (sum n_data);
    ``pointwise`` (U,) receives log p of each pattern.  Outside the support (a disagreeing
    spin at theta_cf = 1) returns (-inf, zeros).
    """
    T, K = A.shape
    S = f2.shape[1]
    n = counts.shape[1]
    U = counts.shape[0]
    F = S if periodic else 1
    coef = _coef(theta_c, A, c0, beta)
    # transition weights normalized so the largest is 1 (offset mxt per step); first block (open) or
    # closing (periodic) weights (offset mx0)
    ewt, mxt, w0, wc, mx0 = chain_weights(coef, f2, w0f, lcf, periodic)
    alpha = np.empty((F, S))
    new = np.empty((F, S))
    A1 = np.empty((F, S, T + 1))
    nA = np.empty((F, S, T + 1))
    M = np.empty(T + 1)
    steps = n - first_bits.shape[1]
    # prior partition function log Z_c and <T(X)>_p_c: no emissions
    eh = np.ones((n, 2))
    ag = np.zeros((n, 2))
    lz = _forward(eh, ag, ewt, f2, pred, nb, first_bits, periodic, w0, w0f, wc, lcf, alpha, new, A1, nA, M)
    logZc = lz + steps * mxt + mx0
    grad_coef = np.empty(T)
    for j in range(T):
        grad_coef[j] = -n_data * M[j]
    # emission table over a = n_agree(X = +1) in 0..level, 0 log 0 = 0; normalized per site
    lth = np.log(theta_cf)
    l1h = np.log1p(-theta_cf)
    le = np.empty(level + 1)
    for a in range(level + 1):
        v = 0.0
        if a > 0:
            v += a * lth
        if level - a > 0:
            v += (level - a) * l1h
        le[a] = v
    ep = np.empty(level + 1)
    en = np.empty(level + 1)
    mxa = np.empty(level + 1)
    for a in range(level + 1):
        m = max(le[a], le[level - a])
        mxa[a] = m
        if m == -np.inf:
            ep[a] = 0.0
            en[a] = 0.0
        else:
            ep[a] = np.exp(le[a] - m)
            en[a] = np.exp(le[level - a] - m)
    ll = -n_data * logZc
    n_agree = 0.0
    for u in range(U):
        off = steps * mxt + mx0
        for t in range(n):
            a = counts[u, t]
            eh[t, 0] = en[a]
            eh[t, 1] = ep[a]
            ag[t, 0] = level - a
            ag[t, 1] = a
            off += mxa[a]
        lq = _forward(eh, ag, ewt, f2, pred, nb, first_bits, periodic, w0, w0f, wc, lcf, alpha, new, A1, nA, M)
        lp = lq + off - logZc
        pointwise[u] = lp
        if lp == -np.inf:
            return -np.inf, np.zeros(K + 1)
        w = mult[u]
        ll += w * (lq + off)
        for j in range(T):
            grad_coef[j] += w * M[j]
        n_agree += w * M[T]
    grad = np.empty(K + 1)
    for k in range(K):
        v = 0.0
        for j in range(T):
            v += A[j, k] * grad_coef[j]
        grad[k] = beta * v
    n_dis = n_data * level * n - n_agree
    grad[K] = n_agree / theta_cf
    if n_dis > 0.0:  # 0 / 0 at theta_cf = 1 when every spin agrees: that term is absent
        grad[K] -= n_dis / (1.0 - theta_cf)
    return ll, grad


def compile_shared(fast: "FastLoglik") -> None:
    """Compile (or load from numba's cache) the chain kernels that the likelihood (E1)/(E2) and the Gibbs sweeps
    share -- :func:`_coef`, :func:`chain_weights`, :func:`_forward` -- with the argument types both pass, by
    evaluating the prior's log Z_c once (at theta_c = 0) on the data of ``fast``.  The background compile runs it
    first: a cold run needs the likelihood a few seconds in, and with these cached its compile takes ~2.9 s
    instead of ~5.4."""
    (A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic, counts, mult, level, n_data) = fast.args
    T, K = A.shape
    S = f2.shape[1]
    n = counts.shape[1]
    F = S if periodic else 1
    coef = _coef(np.zeros(K), A, c0, beta)
    ewt, mxt, w0, wc, mx0 = chain_weights(coef, f2, w0f, lcf, periodic)
    _forward(np.ones((n, 2)), np.zeros((n, 2)), ewt, f2, pred, nb, first_bits, periodic, w0, w0f, wc, lcf,
             np.empty((F, S)), np.empty((F, S)), np.empty((F, S, T + 1)), np.empty((F, S, T + 1)), np.empty(T + 1))


class FastLoglik:
    """Exact total log-likelihood (E1) and its gradient (E2) for fixed data, through the one compiled kernel that the
    NUTS callback calls too (:func:`loglik_cfunc`).

    ``__call__(theta_c (K,), theta_cf) -> (loglik, grad (K+1,))``; :meth:`pointwise` gives
    (S_f,) log p(x_i | theta); :meth:`numba_function` returns an njit function of
    (theta_c (K,) array, theta_cf 0-d array) -> (0-d array, (K+1,) array) with the data baked in,
    for PyTensor's numba backend (no Python call per gradient).
    """

    def __init__(self, cm: CoarseModel, x):
        st = cm.structure
        tb = st.tables
        self.cm = cm
        self.N = len(x)
        self.counts, self.mult, self.inverse = canonical_patterns(cm, x)
        pred, nb = tb["pred"], tb["newbit"]
        mono = tb["mono"]  # (T, S, 2)
        A, c0 = cm.design
        self.args = (
            np.ascontiguousarray(A, dtype=float), np.ascontiguousarray(c0, dtype=float), float(cm.beta),
            np.ascontiguousarray(np.stack([mono[:, pred[d], nb].T for d in (0, 1)])),  # f2 (2, S, T)
            np.ascontiguousarray(pred.astype(np.int64)), np.ascontiguousarray(nb.astype(np.int64)),
            np.ascontiguousarray(tb["first_bits"].astype(np.int64)),
            np.ascontiguousarray(tb["w0"].T),  # w0f (S, T)
            np.ascontiguousarray(np.moveaxis(tb["closing"], 0, -1)),  # lcf (S, S, T)
            bool(cm.periodic), self.counts, self.mult, int(cm.level), float(self.N),
        )
        self._buf = None  # the packed data of loglik_cfunc, made on first use

    def _packed(self) -> np.ndarray:
        """loglik_cfunc's packed data (made on first use, then kept)."""
        if self._buf is None:
            self._buf = pack_marginal(self.args, np.inf)
        return self._buf

    def _eval(self, theta_c, theta_cf):
        return loglik_through_cfunc(self._packed(), theta_c, theta_cf)

    def pointwise(self, theta_c, theta_cf):
        """(S_f,) exact log p(x_i | theta_c, theta_cf)."""
        ll, _, pw = self._eval(theta_c, theta_cf)
        if ll == -np.inf:  # the kernel stops at the first impossible pattern: finish the rest
            pw = np.array([self._single(theta_c, theta_cf, u) for u in range(len(self.counts))])
        return pw[self.inverse]

    def _single(self, theta_c, theta_cf, u):
        a = list(self.args)
        a[-4], a[-3], a[-1] = self.counts[u:u + 1], np.ones(1), 1.0
        return loglik_through_cfunc(pack_marginal(tuple(a), np.inf), theta_c, theta_cf)[2][0]

    def __call__(self, theta_c, theta_cf):
        ll, g, _ = self._eval(theta_c, theta_cf)
        return float(ll), g

    def logliks(self, theta_c, theta_cf, pointwise: bool = False) -> np.ndarray:
        """(N,) log-likelihoods (E1) at N points: theta_c (N, K), theta_cf (N,); with ``pointwise`` the (N, S_f)
        terms log p(x_i | theta) of :meth:`pointwise` instead.  The same C entry point as ``__call__``, with its
        argument and output arrays and their pointers made once: a grid of 15625 points
        (:func:`bayescg.ising.checks.grid_posterior`) took ~86 us per point through ``__call__`` (allocations and
        ctypes conversions each call), ~26 us here; the values are the same to the bit."""
        th = np.asarray(theta_c, dtype=float).reshape(-1, int(self.cm.K))
        tf = np.asarray(theta_cf, dtype=float).reshape(-1)
        if th.shape[0] != tf.size:
            raise ValueError(f"theta_c has {th.shape[0]} rows, theta_cf {tf.size} values")
        buf = _addressed(self._packed())
        X = np.ascontiguousarray(np.column_stack([th, tf]))
        x, g, pw = np.empty(X.shape[1]), np.empty(X.shape[1]), np.empty(int(buf[6]))
        call = loglik_cfunc().ctypes
        pb, px, pg, pp = buf.ctypes.data, x.ctypes.data_as(_DP), g.ctypes.data_as(_DP), pw.ctypes.data_as(_DP)
        if not pointwise:
            out = np.empty(X.shape[0])
            for i in range(X.shape[0]):
                x[:] = X[i]
                out[i] = call(pb, px, pg, pp)
            return out
        terms = np.empty((X.shape[0], pw.size))
        for i in range(X.shape[0]):
            x[:] = X[i]
            if call(pb, px, pg, pp) == -np.inf:  # the kernel stops at the first impossible pattern: as pointwise()
                terms[i] = [self._single(th[i], tf[i], u) for u in range(pw.size)]
            else:
                terms[i] = pw
        return terms[:, self.inverse]

    def numba_function(self):
        """njit (theta_c (K,), theta_cf 0-d) -> (0-d loglik, (K+1,) gradient), data as constants."""
        (A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic, counts, mult, level, n_data) = self.args
        U = len(counts)
        kern = loglik_grad

        @numba.njit(nogil=True, error_model="numpy")
        def marginal_loglik_grad(theta_c, theta_cf):
            pw = np.empty(U)
            ll, g = kern(np.ascontiguousarray(theta_c), theta_cf[()], A, c0, beta, f2, pred, nb, first_bits,
                         w0f, lcf, periodic, counts, mult, level, n_data, pw)
            return np.array(ll), g

        return marginal_loglik_grad


# --- the likelihood's C entry point and the marginal posterior as nutpie C callbacks ---------------------------
# Packed float64 buffer (integers stored as floats): header MARGINAL_HEADER, then A (T, K), c0 (T,),
# f2 (2, S, T), pred (2, S), nb (S,), first_bits (S, L), w0f (S, T), lcf (S, S, T), counts (U, n), mult (U,).
# Every size is data, so the kernels below are compiled once per machine (cache=True), not per model.
# loglik_address: where loglik_cfunc is in this process (an exact integer in a float64), written when the buffer is
# used (_addressed), so a buffer made in another process is never called with a stale address.
MARGINAL_HEADER = ("length", "K", "T", "S", "L", "n", "U", "periodic", "level", "n_data", "beta", "prior_sd",
                   "loglik_address")
_O = len(MARGINAL_HEADER)
_ADDRESS = MARGINAL_HEADER.index("loglik_address")


def _loglik_cb(user_data, x_, grad_, pw_):
    """C entry point of :func:`loglik_grad` on the packed buffer: x_ (K+1,) = (theta_c, theta_cf) -> log-likelihood
    (E1); gradient (E2) into grad_ (K+1,), log p of each unique pattern into pw_ (U,)."""
    buf = packed(user_data)
    K, T, S, L, n, U = int(buf[1]), int(buf[2]), int(buf[3]), int(buf[4]), int(buf[5]), int(buf[6])
    periodic = buf[7] > 0
    level, n_data, beta = int(buf[8]), buf[9], buf[10]
    o = _O
    A = buf[o:o + T * K].reshape((T, K))
    o += T * K
    c0 = buf[o:o + T]
    o += T
    f2 = buf[o:o + 2 * S * T].reshape((2, S, T))
    o += 2 * S * T
    pred = buf[o:o + 2 * S].astype(np.int64).reshape((2, S))
    o += 2 * S
    nb = buf[o:o + S].astype(np.int64)
    o += S
    first_bits = buf[o:o + S * L].astype(np.int64).reshape((S, L))
    o += S * L
    w0f = buf[o:o + S * T].reshape((S, T))
    o += S * T
    lcf = buf[o:o + S * S * T].reshape((S, S, T))
    o += S * S * T
    counts = buf[o:o + U * n].astype(np.int64).reshape((U, n))
    o += U * n
    mult = buf[o:o + U]
    x = numba.carray(x_, (K + 1,))
    grad = numba.carray(grad_, (K + 1,))
    ll, g = loglik_grad(np.ascontiguousarray(x[:K]), x[K], A, c0, beta, f2, pred, nb, first_bits, w0f, lcf,
                        periodic, counts, mult, level, n_data, numba.carray(pw_, (U,)))
    for k in range(K + 1):
        grad[k] = g[k]
    return ll


@functools.cache
def loglik_cfunc():
    """The likelihood's C entry point (:data:`KERNEL_SIG`), compiled on first use (~4.5 s on a fresh cache, with
    :func:`loglik_grad` inlined), then from numba's disk cache."""
    return numba.cfunc(KERNEL_SIG, cache=True, nogil=True)(_loglik_cb)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def marginal_logp_grad(u, buf, grad):
    """Log posterior density of u = (theta_c (K,), z), theta_cf = 0.5 + 0.5 sigmoid(z), up to a constant:
    (E1) + Normal(0, prior_sd) prior on theta_c + log-Jacobian of PyMC's interval transform of
    Uniform(0.5, 1) (the density ``bayes.marginal_model`` gives nutpie); gradient into ``grad`` (K+1,).
    (E1)-(E2) by :func:`loglik_cfunc` at the buffer's address."""
    K, U, prior_sd = int(buf[1]), int(buf[6]), buf[11]
    z = u[K]
    sig = 1.0 / (1.0 + np.exp(-z))
    th = np.empty(K + 1)
    for k in range(K):
        th[k] = u[k]
    th[K] = 0.5 + 0.5 * sig
    g = np.empty(K + 1)
    ll = call_kernel(np.int64(buf[_ADDRESS]), buf, th, g, np.empty(U))
    prec = 1.0 / prior_sd ** 2
    h1 = 0.5 * sig * (1.0 - sig)  # d theta_cf / dz
    val = ll + np.log(h1)
    for k in range(K):
        val -= 0.5 * prec * u[k] * u[k]
        grad[k] = g[k] - prec * u[k]
    grad[K] = g[K] * h1 + (1.0 - 2.0 * sig)
    return val


def _marginal_logp_cb(dim, x_, out_, logp_, user_data):
    """nutpie's logp callback (signature of nutpie.compile_pymc) with the packed buffer as user data."""
    buf = packed(user_data)
    if dim != int(buf[1]) + 1:
        return -1
    return logp_into(marginal_logp_grad, buf, dim, x_, out_, logp_)


def _marginal_expand_cb(dim, expanded, x_, out_, user_data):
    """Draw (theta_c, z) -> stored values (theta_c, theta_cf)."""
    if expanded != dim:
        return -1
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    for i in range(dim - 1):
        out[i] = x[i]
    out[dim - 1] = 0.5 + 0.5 / (1.0 + np.exp(-x[dim - 1]))
    return 0


@functools.cache
def marginal_cfuncs():
    """(logp, expand): nutpie's C callbacks of the marginal posterior, compiled on first use (with
    :func:`loglik_cfunc`, which the logp callback calls), then from numba's disk cache."""
    loglik_cfunc()
    logp = numba.cfunc(LOGP_SIG, cache=True, nogil=True)(_marginal_logp_cb)
    expand = numba.cfunc(EXPAND_SIG, cache=True, nogil=True)(_marginal_expand_cb)
    return logp, expand


def pack_marginal(args: tuple, prior_sd: float) -> np.ndarray:
    """The packed buffer of :func:`_loglik_cb` and :func:`marginal_logp_grad` for the data ``args``
    (:attr:`FastLoglik.args`) and a Normal(0, prior_sd) prior; its loglik_address is written by :func:`_addressed`."""
    (A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic, counts, mult, level, n_data) = args
    T, K = A.shape
    S, L = first_bits.shape
    U, n = counts.shape
    body = [A, c0, f2, pred, nb, first_bits, w0f, lcf, counts, mult]
    head = [0.0, K, T, S, L, n, U, float(periodic), level, n_data, beta, float(prior_sd), 0.0]
    buf = np.concatenate([np.asarray(head, float)] + [np.asarray(b, float).ravel() for b in body])
    buf[0] = len(buf)
    return np.ascontiguousarray(buf)


def _addressed(buf: np.ndarray) -> np.ndarray:
    """``buf`` with this process's address of :func:`loglik_cfunc` in its header."""
    buf[_ADDRESS] = float(loglik_cfunc().address)
    return buf


def loglik_through_cfunc(buf, theta_c, theta_cf):
    """(log-likelihood, gradient (K+1,), pointwise (U,)) of the packed data ``buf`` at (theta_c (K,), theta_cf)."""
    K, U = int(buf[1]), int(buf[6])
    x = np.empty(K + 1)
    x[:K] = theta_c
    x[K] = theta_cf
    g = np.empty(K + 1)
    pw = np.empty(U)
    ll = loglik_cfunc().ctypes(_addressed(buf).ctypes.data, x.ctypes.data_as(_DP), g.ctypes.data_as(_DP),
                               pw.ctypes.data_as(_DP))
    return float(ll), g, pw


class MarginalDensity:
    """The posterior of ``bayes.marginal_model`` (X summed out) as a packed buffer for the cached kernels
    above: ``callbacks()`` for :func:`bayescg.sampling.sample`, ``logp_grad(u)`` for checks."""

    def __init__(self, cm: CoarseModel, x, prior_sd: float = 2.0, fast: FastLoglik | None = None):
        self.cm = cm
        self.fast = fast if fast is not None else FastLoglik(cm, x)
        self.buf = pack_marginal(self.fast.args, prior_sd)
        self.n_dim = cm.K + 1

    def logp_grad(self, u):
        """(log density, gradient (n_dim,)) at u, through the logp callback (one compiled kernel)."""
        from ..sampling import cfunc_logp_grad

        return cfunc_logp_grad(marginal_cfuncs()[0], _addressed(self.buf), u, self.n_dim)

    def initial_point(self, seed) -> np.ndarray:
        """uniform(-1, 1) jitter around theta_c = 0, z = 0 (as nutpie jitters PyMC's initial point)."""
        return np.random.default_rng(seed).uniform(-1.0, 1.0, self.n_dim)

    def callbacks(self):
        from ..sampling import CompiledDensity

        return CompiledDensity(*marginal_cfuncs(), _addressed(self.buf),
                               {"theta_c": (self.cm.K,), "theta_cf": ()}, self.initial_point, self.n_dim,
                               dims={"theta_c": ["param"]}, coords={"param": list(self.cm.names)})


# --- data-augmentation Gibbs sampler (``gibbs``) ---------------------------------------------------
@numba.njit(cache=True, nogil=True, error_model="numpy")
def _log_target_c(theta_c, Tsum, N, n, A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic, prior_sd,
                  alpha, new, A1, nA, M):
    """log p(theta_c | X_1..X_N) up to a constant (complete-data posterior of the coarse parameters)."""
    T, K = A.shape
    coef = _coef(theta_c, A, c0, beta)
    ewt, mxt, w0, wc, mx0 = chain_weights(coef, f2, w0f, lcf, periodic)
    eh = np.ones((n, 2))
    ag = np.zeros((n, 2))
    lz = _forward(eh, ag, ewt, f2, pred, nb, first_bits, periodic, w0, w0f, wc, lcf, alpha, new, A1, nA, M)
    logZ = lz + (n - first_bits.shape[1]) * mxt + mx0
    val = -N * logZ
    for j in range(T):
        val += coef[j] * Tsum[j]
    for k in range(K):
        val -= 0.5 * theta_c[k] * theta_c[k] / prior_sd ** 2
    return val


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _ffbs_sweep(theta_c, theta_cf, A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic, counts, mult,
                level, Tsum, msgs):
    """Draw X_i ~ q(X | x_i, theta) exactly (forward filtering, backward sampling) for every configuration
    (mult[u] independent draws per symmetry-distinct pattern u: the term sums and agreement counts are
    invariant under the symmetry); writes their total term sums into Tsum (T,) and returns the total
    number of fine spins agreeing with their coarse spin.  msgs (n, F, S) scratch."""
    T, K = A.shape
    S = f2.shape[1]
    L = first_bits.shape[1]
    U, n = counts.shape
    F = S if periodic else 1
    coef = _coef(theta_c, A, c0, beta)
    ewt, mxt, w0, wc, mx0 = chain_weights(coef, f2, w0f, lcf, periodic)
    lth = np.log(theta_cf)
    l1h = np.log1p(-theta_cf)
    ep = np.empty(level + 1)  # emission weight of X = +1 for a agreeing spins (normalized per a)
    en = np.empty(level + 1)
    for a in range(level + 1):
        lp = (a * lth if a > 0 else 0.0) + ((level - a) * l1h if level - a > 0 else 0.0)
        ln = ((level - a) * lth if level - a > 0 else 0.0) + (a * l1h if a > 0 else 0.0)
        m = max(lp, ln)
        ep[a] = np.exp(lp - m) if m > -np.inf else 0.0
        en[a] = np.exp(ln - m) if m > -np.inf else 0.0
    for j in range(T):
        Tsum[j] = 0.0
    n_agree = 0.0
    cw = np.empty(F * S)
    for u in range(U):
        # forward: msgs[t, fb, s] normalized over (fb, s) at every t >= L-1
        msgs[:, :, :] = 0.0
        tot = 0.0
        for fb in range(F):
            for s in range(S):
                if periodic and s != fb:
                    continue
                w = 1.0 if periodic else w0[s]
                for t in range(L):
                    a = counts[u, t]
                    w *= ep[a] if first_bits[s, t] == 1 else en[a]
                msgs[L - 1, fb, s] = w
                tot += w
        for fb in range(F):
            for s in range(S):
                msgs[L - 1, fb, s] /= tot
        for t in range(L, n):
            a = counts[u, t]
            tot = 0.0
            for fb in range(F):
                for s2 in range(S):
                    we = ep[a] if nb[s2] == 1 else en[a]
                    v = (msgs[t - 1, fb, pred[0, s2]] * ewt[0, s2] + msgs[t - 1, fb, pred[1, s2]] * ewt[1, s2]) * we
                    msgs[t, fb, s2] = v
                    tot += v
            for fb in range(F):
                for s2 in range(S):
                    msgs[t, fb, s2] /= tot
        # the last state (and first block) jointly, weights incl. the ring closure
        ctot = 0.0
        for fb in range(F):
            for s in range(S):
                v = msgs[n - 1, fb, s] * (wc[fb, s] if periodic else 1.0)
                cw[fb * S + s] = v
                ctot += v
        for _ in range(int(mult[u])):
            r = np.random.random() * ctot
            k = 0
            acc = cw[0]
            while acc < r and k < F * S - 1:
                k += 1
                acc += cw[k]
            fb, s = k // S, k % S
            if periodic:
                for j in range(T):
                    Tsum[j] += lcf[fb, s, j]
            for t in range(n - 1, L - 1, -1):
                a = counts[u, t]
                n_agree += a if nb[s] == 1 else level - a
                p0 = msgs[t - 1, fb, pred[0, s]] * ewt[0, s]
                p1 = msgs[t - 1, fb, pred[1, s]] * ewt[1, s]
                d = 1 if np.random.random() * (p0 + p1) >= p0 else 0
                for j in range(T):
                    Tsum[j] += f2[d, s, j]
                s = pred[d, s]
            for t in range(L):
                a = counts[u, t]
                n_agree += a if first_bits[s, t] == 1 else level - a
            if not periodic:
                for j in range(T):
                    Tsum[j] += w0f[s, j]
    return n_agree


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _draw_theta_cf(n_agree, n_dis, current):
    """theta_cf | X: Beta(n_agree + 1, n_dis + 1) truncated to (0.5, 1) (uniform prior), by rejection;
    if 1000 proposals all fall below 0.5 (X labels most spins as disagreeing), one Metropolis step on
    z = logit(2 theta_cf - 1) from ``current`` instead (it also leaves the conditional invariant)."""
    for _ in range(1000):
        v = np.random.beta(n_agree + 1.0, n_dis + 1.0)
        if 0.5 < v < 1.0:
            return v
    z = np.log(2 * current - 1) - np.log(2 - 2 * current)
    zp = z + 0.5 * np.random.standard_normal()

    def lt(z):
        s = 1.0 / (1.0 + np.exp(-z))
        t = 0.5 + 0.5 * s
        return n_agree * np.log(t) + n_dis * np.log1p(-t) + np.log(s) + np.log1p(-s)

    if np.log(np.random.random()) < lt(zp) - lt(z):
        return 0.5 + 0.5 / (1.0 + np.exp(-zp))
    return current


def _sweeps(ffbs_sweep, draw_theta_cf, log_target_c, state_c, state_cf, chol, log_scale, n_sweeps, adapt, it0,
            mh_steps, out_c, out_cf, out_acc, A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic, counts, mult,
            level, n_data, prior_sd):
    """The body of :func:`gibbs_sweeps`, which passes it its three callees as first-class functions:
    ``n_sweeps`` sweeps of the data-augmentation Gibbs sampler of the coarse posterior (numba's
    np.random stream, seeded by the caller):

        X_i ~ q(X | x_i, theta) exactly (FFBS);  theta_cf | X ~ truncated Beta (exact);
        theta_c | X by ``mh_steps`` random-walk Metropolis steps with proposal exp(log_scale) chol z.

    state_c (K,), state_cf (1,), log_scale (1,) are updated in place; with ``adapt`` the log scale follows
    Robbins-Monro towards acceptance 0.3 (gain 1 / sqrt(it0 + i + 10); tuning only: the kernel is fixed
    while draws are kept).  Each
    sweep's theta and theta_c acceptance rate go to out_c[i], out_cf[i], out_acc[i]."""
    T, K = A.shape
    S = f2.shape[1]
    U, n = counts.shape
    F = S if periodic else 1
    msgs = np.empty((n, F, S))
    alpha = np.empty((F, S))
    new = np.empty((F, S))
    A1 = np.empty((F, S, T + 1))
    nA = np.empty((F, S, T + 1))
    M = np.empty(T + 1)
    Tsum = np.empty(T)
    prop = np.empty(K)
    n_tot = n_data * level * n
    for i in range(n_sweeps):
        n_agree = ffbs_sweep(state_c, state_cf[0], A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic,
                              counts, mult, level, Tsum, msgs)
        state_cf[0] = draw_theta_cf(n_agree, n_tot - n_agree, state_cf[0])
        cur = log_target_c(state_c, Tsum, n_data, n, A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic,
                            prior_sd, alpha, new, A1, nA, M)
        acc = 0.0
        for _ in range(mh_steps):
            sc = np.exp(log_scale[0])
            zz = np.random.standard_normal(K)
            for k in range(K):
                v = 0.0
                for j in range(k + 1):
                    v += chol[k, j] * zz[j]
                prop[k] = state_c[k] + sc * v
            new_lp = log_target_c(prop, Tsum, n_data, n, A, c0, beta, f2, pred, nb, first_bits, w0f, lcf,
                                   periodic, prior_sd, alpha, new, A1, nA, M)
            a = min(1.0, np.exp(new_lp - cur)) if new_lp > -np.inf else 0.0
            if np.random.random() < a:
                for k in range(K):  # element loops, not slice assignment: no shape-error path to compile (~2 s)
                    state_c[k] = prop[k]
                cur = new_lp
            acc += a
            if adapt:
                log_scale[0] += (a - 0.3) / np.sqrt(it0 + i + 10.0)
        for k in range(K):
            out_c[i, k] = state_c[k]
        out_cf[i] = state_cf[0]
        out_acc[i] = acc / mh_steps

_F1, _F2, _F3 = types.float64[::1], types.float64[:, ::1], types.float64[:, :, ::1]
_I1, _I2 = types.int64[::1], types.int64[:, ::1]
_B, _D, _N = types.boolean, types.float64, types.int64
#: the callees' signatures (those gibbs_sweeps' arguments give them), so they can be passed as function pointers
_CALLEES = ((_ffbs_sweep, _D(_F1, _D, _F2, _F1, _D, _F3, _I2, _I1, _I2, _F2, _F3, _B, _I2, _F1, _N, _F1, _F3)),
            (_draw_theta_cf, _D(_D, _D, _D)),
            (_log_target_c, _D(_F1, _F1, _D, _N, _F2, _F1, _D, _F3, _I2, _I1, _I2, _F2, _F3, _B, _D, _F2, _F2, _F3,
                               _F3, _F1)))
_SWEEPS_ARGS = (_F1, _F1, _F2, _F1, _N, _B, _N, _N, _F2, _F1, _F1, _F2, _F1, _D, _F3, _I2, _I1, _I2, _F2, _F3, _B,
                _I2, _F1, _N, _D, _D)
_sweeps_lock = threading.Lock()


@functools.cache
def _sweeps_compiled():
    """:func:`_sweeps` compiled (or loaded from numba's disk cache) with its callees as first-class function types:
    they are called through pointers, not linked into it, so numba does not optimise their code a second time inside
    it (on a fresh cache the linked version took ~8 s, ~3 s of it that second optimisation)."""
    for disp, sig in _CALLEES:
        disp.compile(sig.args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
        sig = tuple(types.FunctionType(sig) for _, sig in _CALLEES) + _SWEEPS_ARGS
        return numba.njit(sig, cache=True, nogil=True, error_model="numpy")(_sweeps)


def gibbs_sweeps(state_c, state_cf, chol, log_scale, n_sweeps, adapt, it0, mh_steps, out_c, out_cf, out_acc,
                 A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic, counts, mult, level, n_data, prior_sd):
    """``n_sweeps`` sweeps of the data-augmentation Gibbs sampler (:func:`_sweeps`); releases the GIL while it
    runs.  Arrays: float64 / int64 C-contiguous, as :class:`FastLoglik` holds them."""
    with _sweeps_lock:  # compiled once, not by every chain's thread at once
        fn = _sweeps_compiled()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NumbaExperimentalFeatureWarning)
        fn(*(d for d, _ in _CALLEES), state_c, state_cf, chol, log_scale, n_sweeps, adapt, it0, mh_steps, out_c,
           out_cf, out_acc, A, c0, beta, f2, pred, nb, first_bits, w0f, lcf, periodic, counts, mult, level, n_data,
           prior_sd)


def sweeps_loaded() -> bool:
    """Whether this process holds the compiled Gibbs sweeps."""
    return bool(_sweeps_compiled.cache_info().currsize)


@numba.njit(cache=True)
def seed_numba(seed):
    """Seed numba's np.random stream of this thread (the Gibbs sweeps draw from it)."""
    np.random.seed(seed)
