"""Fine-scale 1D Ising chain: couplings, exact truth, exact samples, MCMC check, user data.

Energy (PCG slides, "Ising Model - Potential in Fine-Scale"), spins x_i in {-1, +1}:

    U(x) = -sum_{k=1}^{L_f} J_k sum_i x_i x_{i+k} - mu sum_i x_i,   p_f(x) ~ exp(-beta U(x))     (F1)

i.e. the slides' -1/2 sum over ordered pairs |i-j| = k, every bond once with weight J_k; for
periodic chains i+k is taken mod n and every bond is still counted once: for n = 2 k the
pairs (i, i+k) and (i+k, i+2k = i) are the same bond, which enters once (chain.py multiplicity).

Couplings J_k, k = 1..L_f (``normalization``):

* ``"power"`` (default):  J_k = J_0 k^-a.  L_f = 1 gives J_1 = J_0.
* ``"sum"``:              J_k = J_0 k^-a / sum_{k'<=L_f} k'^-a, so sum_k J_k = J_0 (the total
  coupling of a spin to its right neighbours does not grow with L_f); L_f = 1 gives J_1 = J_0.
* ``"slides"``:           J_k = K / (L_f k^a), K = J_0 L_f^(1-a) sum_k k^-a, as printed on the
  slides (after Are et al. 2008); L_f = 1 gives J_1 = J_0.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numba
import numpy as np

from ..errors import InputError
from .chain import ChainStructure, exact_moments, ffbs, log_partition, observables

NORMALIZATIONS = ("power", "sum", "slides")


def couplings(J0: float, L: int, a: float = 0.0, normalization: str = "power") -> np.ndarray:
    """J_k for k = 1..L (see module docstring); returns (L,)."""
    if L < 1:
        raise InputError(f"interaction length must be >= 1, got {L}")
    k = np.arange(1, L + 1, dtype=float)
    if normalization == "power":
        return J0 * k ** (-a)
    if normalization == "sum":
        return J0 * k ** (-a) / np.sum(k ** (-a))
    if normalization == "slides":
        K = J0 * L ** (1.0 - a) * np.sum(k ** (-a))
        return K / (L * k ** a)
    raise InputError(f"unknown coupling normalization {normalization!r} (one of {', '.join(NORMALIZATIONS)})")


@dataclass(frozen=True)
class FineModel:
    """The fine chain (F1).  J: (L_f,) couplings in energy units; beta: inverse temperature."""

    n: int
    beta: float
    mu: float
    J: tuple
    periodic: bool = True

    def __post_init__(self):
        if int(self.n) != self.n or self.n < 2:
            raise InputError(f"fine chain needs >= 2 sites, got {self.n}")
        if not np.isfinite(self.beta) or self.beta <= 0:
            raise InputError(f"beta must be > 0, got {self.beta}")
        if not np.isfinite(self.mu) or not np.all(np.isfinite(self.J)):
            raise InputError("field and couplings must be finite")
        if len(self.J) >= self.n:
            raise InputError(
                f"interaction length {len(self.J)} is longer than the chain allows ({self.n} sites): need L_f < n_f")

    @classmethod
    def from_section(cls, fine) -> "FineModel":
        J = couplings(fine.coupling, fine.interaction_length, fine.exponent,
                      getattr(fine, "normalization", "power"))
        return cls(n=fine.sites, beta=fine.beta, mu=fine.field, J=tuple(float(j) for j in J),
                   periodic=fine.boundary == "periodic")

    @property
    def L(self) -> int:
        return len(self.J)

    @cached_property
    def structure(self) -> ChainStructure:
        terms = ((0,),) + tuple((0, k) for k in range(1, self.L + 1))
        return ChainStructure(self.n, terms, self.periodic)

    @property
    def coef(self) -> np.ndarray:
        """Term coefficients of chain.py (1): beta*mu for the field, beta*J_k for the pairs
        (divided by the ring multiplicity, so a bond at k = n/2 counts once)."""
        return self.beta * np.array([self.mu, *self.J]) / self.structure.multiplicity

    def energy(self, x) -> np.ndarray:
        """U(x) of (F1) for x (..., n) in {-1, 1}; direct sum, independent of the transfer matrices."""
        x = np.asarray(x, float)
        n = self.n
        U = -self.mu * x.sum(-1)
        for k, Jk in enumerate(self.J, start=1):
            if self.periodic:  # k = n/2: (i, i+k) and (i+k, i) are one bond
                U = U - Jk * np.sum(x * np.roll(x, -k, axis=-1), axis=-1) / (2.0 if 2 * k == n else 1.0)
            else:
                U = U - Jk * np.sum(x[..., : n - k] * x[..., k:], axis=-1)
        return U

    def log_partition(self) -> float:
        return float(log_partition(self.structure, self.coef))

    def truth(self, lags=None) -> tuple[float, np.ndarray]:
        """Exact magnetization m and correlations R_l (l in ``lags``, default 1..n//2)."""
        lags = default_lags(self.n) if lags is None else lags
        m_i, C = exact_moments(self.structure, self.coef)
        return observables(m_i, C, self.periodic, lags)

    def sample(self, size: int, rng) -> np.ndarray:
        """Exact i.i.d. configurations (size, n) int8 by FFBS (chain.ffbs)."""
        return ffbs(self.structure, self.coef, size, rng)[0]

    def mcmc(self, size: int, seed: int, sweeps_between: int = 10, burn_in: int = 500,
             heat_bath: bool = True) -> np.ndarray:
        """Independent check: single-site heat-bath (or Metropolis) MCMC, one long chain.

        Returns (size, n) int8 configurations taken every ``sweeps_between`` sweeps after
        ``burn_in`` sweeps.  Correlated draws: use for statistics, not as i.i.d. data.
        """
        J = np.asarray(self.J, float)
        x0 = np.where(np.random.default_rng(seed).random(self.n) < 0.5, -1, 1).astype(np.int8)
        return _mcmc_kernel(x0, J, float(self.mu), float(self.beta), bool(self.periodic), int(size),
                            int(sweeps_between), int(burn_in), bool(heat_bath), int(seed))


def default_lags(n: int) -> np.ndarray:
    """Lags l = 1..n//2 used for R_l."""
    return np.arange(1, n // 2 + 1)


@numba.njit(cache=True)
def _mcmc_kernel(x0, J, mu, beta, periodic, size, every, burn, heat_bath, seed):
    np.random.seed(seed)
    n = x0.shape[0]
    L = J.shape[0]
    x = x0.copy()
    out = np.empty((size, n), dtype=np.int8)
    total = burn + size * every
    k = 0
    for sweep in range(total):
        for _ in range(n):
            i = np.random.randint(n)
            h = mu
            for d in range(1, L + 1):
                j1 = i + d
                j2 = i - d
                if periodic:
                    if 2 * d == n:  # one bond to the opposite site, not two
                        h += J[d - 1] * x[j1 % n]
                    else:
                        h += J[d - 1] * (x[j1 % n] + x[(j2 + n) % n])
                else:
                    if j1 < n:
                        h += J[d - 1] * x[j1]
                    if j2 >= 0:
                        h += J[d - 1] * x[j2]
            if heat_bath:
                p_up = 1.0 / (1.0 + np.exp(-2.0 * beta * h))
                x[i] = 1 if np.random.random() < p_up else -1
            else:
                dE = 2.0 * x[i] * h  # energy change of flipping x_i
                if dE <= 0 or np.random.random() < np.exp(-beta * dE):
                    x[i] = -x[i]
        if sweep >= burn and (sweep - burn) % every == every - 1:
            out[k] = x
            k += 1
    return out


# --- user data ---------------------------------------------------------------------------
def check_configurations(x, n: int | None = None, where: str = "data") -> np.ndarray:
    """Validate fine configurations: 2-d, finite, entries exactly -1 or +1; returns int8 (S_f, n)."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{where}: expected a 2-d array (configurations x sites), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        raise InputError(f"{where}: spins must be numbers -1 or +1, got dtype {a.dtype}")
    af = a.astype(float)
    if np.isnan(af).any():
        r, c = np.argwhere(np.isnan(af))[0]
        raise InputError(f"{where}: NaN at configuration {r}, site {c}")
    bad = ~np.isin(af, (-1.0, 1.0))
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise InputError(f"{where}: spins must be -1 or +1, got {a[r, c]!r} at configuration {r}, site {c}")
    if n is not None and a.shape[1] != n:
        raise InputError(f"{where}: configurations have {a.shape[1]} sites, the model has {n}")
    return af.astype(np.int8)


def load_configurations(path: str | Path, n: int | None = None) -> np.ndarray:
    """Read user data: ``.npy`` array or whitespace-separated text, one configuration per row."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such data file")
    try:
        if p.suffix == ".npy":
            a = np.load(p, allow_pickle=False)
        else:
            rows = [line.split() for line in p.read_text(encoding="utf-8").splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
            if not rows:
                raise InputError(f"{p}: no configurations in the file")
            widths = {len(r) for r in rows}
            if len(widths) != 1:
                raise InputError(f"{p}: rows have different numbers of sites {sorted(widths)}")
            try:
                a = np.array([[float(v) for v in r] for r in rows])
            except ValueError as exc:
                raise InputError(f"{p}: not a number ({exc})") from None
    except InputError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read data ({exc.__class__.__name__}: {exc})") from None
    return check_configurations(a, n, where=str(p))
