"""Coarse model p_c(X | theta_c), coarse-to-fine map p_cf(x | X, theta_cf), majority map.

Coarse potential (slides, "Ising Model - Potential in Coarse-Scale"), X_r in {-1, 1},
r = 1..n_c = n_f / l_c, model code [abc]:

    -beta U_c(X) = beta [ a * theta_lin/2 sum_r X_r                       (linear term, a = 1)
                        + sum_{k=1}^{b} theta_k sum_r X_r X_{r+k}        (pairs up to L_c = b)
                        + c * theta_3 sum_r X_r X_{r+1} X_{r+2}           (nearest triplet, c = 1)
                        + mu_c sum_r X_r ]                                (C1)

with the slides' factor 1/2 on the linear term (the pair sum over ordered pairs |i-j| = k times
1/2 is each bond once).  On small rings every bond is still counted once: a pair at k = n_c / 2
and the triplet on n_c = 3 sites repeat over anchors, so their columns of the design matrix are
divided by the multiplicity (chain.ChainStructure.multiplicity).  mu_c is the fine field mu when ``field = "fine"`` (as on the slides,
U_c(X, theta_c, mu)), or 0 when ``field = "none"``.  Boundary: the fine chain's.

Map (slides, "Mapping Coarse to Fine"): fine sites of block r are independent given X_r,

    p_cf(x_{r,s} | X_r) = theta_cf^((1 + x X)/2) (1 - theta_cf)^((1 - x X)/2).        (C2)

For data x the block sums m_r = sum_s x_{r,s} are sufficient: the "emission" log-factor of
coarse spin X_r is n_agree log theta_cf + (l_c - n_agree) log(1 - theta_cf), n_agree = (l_c + X_r m_r)/2.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import InputError
from .chain import ChainStructure, exact_moments, ffbs, lag_pairs


def parse_code(code: str) -> tuple[int, int, int]:
    """'abc' -> (linear 0/1, pair length b >= 0, triplet 0/1); InputError for anything else."""
    code = str(code)
    if (len(code) != 3 or not code.isdigit() or code[0] not in "01" or code[2] not in "01"
            or code == "000"):
        raise InputError(
            f"unknown coarse model {code!r}: three digits abc (a: linear term 0/1, b: pair length 0-9, "
            "c: triplet 0/1), not 000")
    return int(code[0]), int(code[1]), int(code[2])


@dataclass(frozen=True)
class CoarseModel:
    """Coarse chain (C1) with map (C2).  n_f fine sites, l_c = level, beta and mu_c fixed."""

    n_f: int
    level: int
    code: str
    beta: float = 1.0
    mu_c: float = 0.0
    periodic: bool = True

    def __post_init__(self):
        parse_code(self.code)
        if int(self.level) != self.level or self.level < 1:
            raise InputError(f"coarse level must be a positive integer, got {self.level}")
        if self.n_f % self.level:
            raise InputError(f"fine sites ({self.n_f}) are not divisible by the coarse level ({self.level})")
        span = max(self.pair_length, 2 if self.triplet else 0)
        if span >= self.n_c:
            raise InputError(
                f"coarse interaction length {span} is longer than the coarse chain allows "
                f"({self.n_c} coarse sites = {self.n_f}/{self.level}): need < {self.n_c}")

    @property
    def linear(self) -> bool:
        return bool(parse_code(self.code)[0])

    @property
    def pair_length(self) -> int:
        return parse_code(self.code)[1]

    @property
    def triplet(self) -> bool:
        return bool(parse_code(self.code)[2])

    @property
    def n_c(self) -> int:
        return self.n_f // self.level

    @property
    def names(self) -> list[str]:
        """Names of theta_c's components, in order."""
        out = ["lin"] if self.linear else []
        out += [f"pair{k}" for k in range(1, self.pair_length + 1)]
        if self.triplet:
            out.append("trip")
        return out

    @property
    def K(self) -> int:
        return len(self.names)

    @cached_property
    def structure(self) -> ChainStructure:
        """Terms: field (0,), pairs (0,k), triplet (0,1,2) if any."""
        terms = [(0,)] + [(0, k) for k in range(1, self.pair_length + 1)]
        if self.triplet:
            terms.append((0, 1, 2))
        return ChainStructure(self.n_c, tuple(terms), self.periodic)

    @cached_property
    def design(self) -> tuple[np.ndarray, np.ndarray]:
        """(A, c0): term coefficients = beta (A theta_c + c0); A (T, K), c0 (T,).  Term sums
        (:meth:`term_sums`) count anchors; A's rows carry 1 / multiplicity so that the energy counts
        every distinct bond once."""
        T = len(self.structure.terms)
        A = np.zeros((T, self.K))
        j = 0
        if self.linear:
            A[0, 0] = 0.5
            j = 1
        for k in range(self.pair_length):
            A[1 + k, j + k] = 1.0
        if self.triplet:
            A[T - 1, self.K - 1] = 1.0
        A = A / self.structure.multiplicity[:, None]  # every bond once on small rings
        c0 = np.zeros(T)
        c0[0] = self.mu_c
        return A, c0

    def coef(self, theta_c) -> np.ndarray:
        """Term coefficients (T,) or (P, T) from theta_c (K,) or (P, K)."""
        A, c0 = self.design
        return self.beta * (np.asarray(theta_c, float) @ A.T + c0)

    # --- data <-> coarse ------------------------------------------------------------------
    def block_sums(self, x) -> np.ndarray:
        """m_r = sum_s x_{r,s}: (S_f, n_f) -> (S_f, n_c) ints."""
        x = np.asarray(x)
        if x.shape[-1] != self.n_f:
            raise InputError(f"data have {x.shape[-1]} sites, the model has {self.n_f}")
        return x.reshape(x.shape[:-1] + (self.n_c, self.level)).astype(np.int64).sum(-1)

    def agree_counts(self, x) -> np.ndarray:
        """n_agree[i, r, bit] for X_r = -1 (bit 0) and +1 (bit 1): (S_f, n_c, 2)."""
        m = self.block_sums(x)
        return np.stack([(self.level - m) / 2.0, (self.level + m) / 2.0], axis=-1)

    def em_features(self, x) -> np.ndarray:
        """(S_f, n_c, 2, 2): [n_agree, n_disagree] for chain.moments with coef [log th, log(1-th)]."""
        a = self.agree_counts(x)
        return np.stack([a, self.level - a], axis=-1)

    def emissions(self, x, theta_cf: float) -> np.ndarray:
        """log p_cf(x_block | X_r) per coarse site and X_r: (S_f, n_c, 2)."""
        return self.emissions_from_counts(self.agree_counts(x), theta_cf)

    def emissions_from_counts(self, a, theta_cf: float) -> np.ndarray:
        """Emission log-factors from n_agree counts a (S_f, n_c, 2); 0 log 0 = 0, so theta_cf = 1
        gives -inf only where a fine spin disagrees."""
        with np.errstate(divide="ignore", invalid="ignore"):
            lt, l1 = np.log(theta_cf), np.log1p(-theta_cf)
            d = self.level - a
            return np.where(a > 0, a * lt, 0.0) + np.where(d > 0, d * l1, 0.0)

    def term_sums(self, X) -> np.ndarray:
        """Term sums of (C1) for coarse configurations X (..., n_c): (..., T)."""
        X = np.asarray(X, float)
        n = self.n_c
        out = []
        for D in self.structure.terms:
            if self.periodic:
                v = np.prod([np.roll(X, d, axis=-1) for d in D], axis=0).sum(-1)
            else:
                md = max(D)
                v = np.prod([X[..., md - d: n - d] for d in D], axis=0).sum(-1)
            out.append(v)
        return np.stack(out, axis=-1)

    def majority(self, x, rng) -> np.ndarray:
        """Deterministic majority map with random tie-breaking (slides): (S_f, n_f) -> (S_f, n_c) int8."""
        m = self.block_sums(x)
        ties = rng.choice(np.array([-1, 1], dtype=np.int8), size=m.shape)
        return np.where(m > 0, 1, np.where(m < 0, -1, ties)).astype(np.int8)

    # --- sampling and exact predictions -----------------------------------------------------
    def sample_coarse(self, theta_c, size: int, rng) -> np.ndarray:
        """Exact i.i.d. X ~ p_c(X | theta_c) by FFBS: theta_c (K,) -> (size, n_c) int8; draws
        (J, K) -> (J, size, n_c), set j from theta_c[j] (one batched FFBS)."""
        theta_c = np.asarray(theta_c, float)
        X = ffbs(self.structure, self.coef(theta_c), size, rng)
        return X[0] if theta_c.ndim == 1 else X

    def sample_fine(self, X, theta_cf, rng) -> np.ndarray:
        """x ~ p_cf(x | X) of (C2): X (..., S, n_c) -> x (..., S, n_f) int8; theta_cf a scalar or
        one value per leading index (...,)."""
        X = np.asarray(X, np.int8)
        up = np.repeat(X, self.level, axis=-1)
        flip = rng.random(up.shape) >= np.asarray(theta_cf, float)[..., None, None]
        return np.where(flip, -up, up).astype(np.int8)

    def backmap_majority(self, X, rng) -> np.ndarray:
        """Natural back-map of the majority map (relent predictions): x_block ~ p(x | X_r) with
        p(x | X_r) proportional to P(majority(x) = X_r) under uniform fine spins, i.e. uniform over
        blocks whose majority is X_r, ties (l_c even, block sum 0) with weight 1/2.
        Drawn by rejection (acceptance >= 1/2).  X (S, n_c) -> x (S, n_f) int8."""
        X = np.asarray(X, np.int8)
        S = X.shape[0]
        x = np.empty((S, self.n_c, self.level), dtype=np.int8)
        todo = np.ones((S, self.n_c), bool)
        while todo.any():
            idx = np.nonzero(todo)
            cand = rng.choice(np.array([-1, 1], dtype=np.int8), size=(len(idx[0]), self.level))
            m = cand.astype(np.int64).sum(-1)
            maj = np.where(m > 0, 1, np.where(m < 0, -1, rng.choice(np.array([-1, 1]), size=m.shape)))
            ok = maj == X[idx]
            x[idx[0][ok], idx[1][ok]] = cand[ok]
            todo[idx[0][ok], idx[1][ok]] = False
        return x.reshape(S, self.n_f)

    def coarse_moments(self, theta_c):
        """Exact <X_r> and <X_r X_r'> under p_c: theta_c (K,) -> (n_c,), (n_c, n_c);
        (J, K) -> (J, n_c), (J, n_c, n_c)."""
        return exact_moments(self.structure, self.coef(theta_c))

    def exact_predictions(self, theta_c, theta_cf, lags) -> tuple[np.ndarray, np.ndarray]:
        """Exact fine m (J,) and R_l (J, L) of the PCG predictive for draws theta_c (J, K),
        theta_cf (J,): <x_i> = (2 th - 1) <X_r(i)>, <x_i x_j> = (2 th - 1)^2 <X_r(i) X_r(j)> for
        i != j, averaged as in chain.observables (the fine (n_f, n_f) matrix is never built)."""
        theta_c = np.atleast_2d(np.asarray(theta_c, float))
        mX, CX = self.coarse_moments(theta_c)
        g = 2.0 * np.broadcast_to(np.asarray(theta_cf, float), (len(theta_c),)) - 1.0
        r = np.arange(self.n_f) // self.level
        m = (g[:, None] * mX[:, r]).mean(axis=1)
        lags = list(lags)
        R = np.empty((len(theta_c), len(lags)))
        for k, l in enumerate(lags):
            i, j = lag_pairs(self.n_f, self.periodic, l)
            v = (g * g)[:, None] * CX[:, r[i], r[j]]
            v[:, i == j] = 1.0  # <x_i^2> = 1, not the coarse (2 th - 1)^2
            R[:, k] = v.mean(axis=1)
        return m, R


def sample_observables(x, periodic: bool, lags):
    """Monte Carlo m and R_l of fine spins +-1 with the definitions of chain.observables:
    x (S, n) -> m float, R (L,); data sets x (J, S, n) -> m (J,), R (J, L)."""
    # int8 products and int64 sums of +-1 are exact: the same means as in floats, at 1/8 of the memory traffic
    x = np.asarray(x, np.int8)
    n = x.shape[-1]

    def mean(v):
        return v.sum(axis=(-2, -1), dtype=np.int64) / (v.shape[-2] * v.shape[-1])

    if periodic:
        R = [mean(x * np.roll(x, -l, axis=-1)) for l in lags]
    else:
        R = [mean(x[..., : n - l] * x[..., l:]) for l in lags]
    m = mean(x)
    R = np.moveaxis(np.array(R).reshape((len(R),) + m.shape), 0, -1)
    return (float(m), R) if m.ndim == 0 else (m, R)
