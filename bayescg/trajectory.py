"""Learn from trajectories the user already has: arrays (q, p) -> a SimulationResult the fit reads.

:func:`trajectory_result` turns a user's positions and momenta into a
:class:`bayescg.simulate.SimulationResult` with the same statistics :func:`bayescg.simulate.simulate`
accumulates (histogram of q, momentum mean / covariance / batch means, beta_hat (3.5) with its batch-means se,
IAT of q and q^2 in frames), so :func:`bayescg.fit.fit_effective_potential`, :func:`bayescg.stats.
equilibrium_summary` and :class:`bayescg.pipeline.LearnResult` are reused unchanged
(:func:`bayescg.pipeline.learn_trajectory` learns U_k from the arrays).

Data layout: q and p of the same shape, (n,) for d = 1, (n, d) for one walker, or (walkers, n, d);
frames are consecutive states of each walker (the IAT and so n_eff are in frames).  Momenta are momenta:
with an inverse mass matrix A = M^-1 the kinetic temperature is taken from L^T p (A = L L^T), whose
covariance is I / beta at equilibrium.  ``delta`` and ``gamma``, when the data come from the damped map (3.2),
make the run's finite-delta correction (bayescg.bias, B2) available (integrator "damped"); without them the
integrator is recorded as "data".

Effective sample size: batch means of the data themselves (``EngineOptions.batches`` contiguous batches per
walker, :func:`bayescg.simulate._q_iat`, the simulator's own estimator) give the IAT of each q_i and q_i^2,
and the batch-means se of beta_hat gives that of |p|^2 (:func:`bayescg.stats.p2_iat_steps`);
:func:`bayescg.stats.equilibrium_summary` takes the largest, n_eff = frames / IAT.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import InputError

__all__ = ["load_npz", "check_arrays", "trajectory_result"]

#: Fewest frames per walker (after burn-in): 32 batches of at least 4 frames for the batch-means IATs.
MIN_FRAMES = 128


def load_npz(path) -> dict:
    """Arrays of a trajectory file: q, p and any of delta, gamma, mass (as floats / (d, d) arrays)."""
    p = Path(path)
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: np.asarray(z[k]) for k in z.files}
    except FileNotFoundError:
        raise InputError(f"{p}: no such trajectory file") from None
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{p}: not a readable .npz file ({exc.__class__.__name__}: {exc})") from None
    missing = [k for k in ("q", "p") if k not in data]
    if missing:
        raise InputError(f"{p}: needs arrays q and p, missing {missing[0]} (has: {', '.join(sorted(data)) or 'none'})")
    out = {"q": data["q"], "p": data["p"]}
    for k in ("delta", "gamma"):
        if k in data:
            if data[k].size != 1:
                raise InputError(f"{p}: {k} must be a single number, got shape {data[k].shape}")
            out[k] = float(data[k].reshape(()))
    if "mass" in data:
        out["mass"] = np.atleast_2d(np.asarray(data["mass"], dtype=float))
    return out


def check_arrays(q, p, dim: int | None = None, where: str = "trajectory") -> tuple[np.ndarray, np.ndarray]:
    """Validate (q, p) and return both as float arrays (walkers, n, d); bad data -> one-line InputError."""
    arrs = []
    for name, a in (("q", q), ("p", p)):
        try:
            a = np.asarray(a, dtype=float)
        except (TypeError, ValueError):
            raise InputError(f"{where}: {name} is not a numeric array") from None
        if a.ndim == 1:
            a = a[None, :, None]
        elif a.ndim == 2:
            a = a[None]
        elif a.ndim != 3:
            raise InputError(f"{where}: {name} must have shape (n,), (n, d) or (walkers, n, d), got {a.shape}")
        arrs.append(a)
    q, p = arrs
    if q.shape != p.shape:
        raise InputError(f"{where}: q and p have different shapes {q.shape[-3:]} and {p.shape[-3:]} "
                         "(as (walkers, n, d))")
    d = q.shape[2]
    if dim is not None and d != dim:
        raise InputError(f"{where}: data have d = {d} coordinates but potential.variables names {dim}")
    if not 1 <= d <= 3:
        raise InputError(f"{where}: d = {d} coordinates; 1 to 3 are supported")
    for name, a in (("q", q), ("p", p)):
        bad = ~np.isfinite(a)
        if bad.any():
            w, i, _ = np.argwhere(bad)[0]
            raise InputError(f"{where}: {name} has {int(bad.sum())} non-finite values (first: walker {w}, frame {i})")
    if q.shape[1] < MIN_FRAMES:
        raise InputError(f"{where}: {q.shape[1]} frames per walker; at least {MIN_FRAMES} are needed")
    if np.any(np.ptp(p, axis=(0, 1)) == 0):
        raise InputError(f"{where}: p is constant in some coordinate (momenta needed for the temperature (3.5))")
    if np.any(np.ptp(q, axis=(0, 1)) == 0):
        raise InputError(f"{where}: q is constant in some coordinate")
    return np.ascontiguousarray(q), np.ascontiguousarray(p)


def _batch_sums(x, B):
    """(W, n, d) -> (W, B, d) sums over B contiguous batches (the last batch takes the remainder), lengths (B,)."""
    n = x.shape[1]
    bl = n // B
    starts = np.arange(B) * bl
    sums = np.add.reduceat(x, starts, axis=1)
    lens = np.full(B, bl, dtype=float)
    lens[-1] = n - bl * (B - 1)
    return sums, lens


def _momentum_statistics(p, A, B):
    """Moments of p (W, n, d) over all frames and batch means per walker (as simulate's accumulators):
    (mean (d,), covariance (d, d), its se, per-walker batch means of p p^T (W, B, d, d), batch lengths (B,),
    beta_hat and its se from the momenta whitened by the inverse mass A)."""
    from .stats import beta_from_momenta

    W, n, d = p.shape
    flat_p = p.reshape(-1, d)
    mean = flat_p.mean(axis=0)
    cov = np.cov(flat_p, rowvar=False, bias=True).reshape(d, d)
    # batch means of p p^T, one product at a time (a (W, n, d, d) array would be 9x the data for d = 3)
    Mwb = np.empty((W, B, d, d))
    for i in range(d):
        for j in range(i, d):
            sij, lens = _batch_sums(p[:, :, i:i + 1] * p[:, :, j:j + 1], B)
            Mwb[:, :, i, j] = Mwb[:, :, j, i] = sij[..., 0] / lens[None, :]
    cov_se = Mwb.reshape(-1, d, d).std(axis=0, ddof=1) / math.sqrt(W * B)
    L = np.linalg.cholesky(A)
    pw = flat_p @ L                                               # rows L^T p: Cov = I / beta at equilibrium
    walker_all = np.repeat(np.arange(W), n)
    beta_hat, beta_se = beta_from_momenta(pw, walker_all, n_batches=B * W)
    return mean, cov, cov_se, Mwb, lens, beta_hat, beta_se


def _histograms(q, bins, hist_range, where):
    """(edges, per-walker histograms (W, bins, ...), counts, frames inside, hist_range) of q (W, n, d), d <= 3; the
    range defaults to the data's widened by half a bin.  Per walker because the fit's walker-clustered band check
    (bayescg.fit.walker_data) needs them as simulate gives them."""
    from .simulate import EngineOptions

    W, _, d = q.shape
    flat_q = q.reshape(-1, d)
    if hist_range is None:
        lo, hi = flat_q.min(axis=0), flat_q.max(axis=0)
        pad = (hi - lo) / (2 * bins)
        hist_range = [(float(a - b), float(c + b)) for a, c, b in zip(lo, hi, pad)]
    hist_range = [tuple(map(float, r)) for r in hist_range]
    edges = [np.linspace(a, b, bins + 1) for a, b in hist_range]
    cells = bins ** d
    if W * cells * 8 > EngineOptions().max_hist_bytes:
        raise InputError(f"{where}: histograms of {W} walkers x {cells} cells ({bins} bins per dimension) "
                         f"exceed {EngineOptions().max_hist_bytes / 2 ** 30:.3g} GiB; use fewer bins")
    whist = np.stack([np.histogramdd(q[w], bins=edges)[0] for w in range(W)])
    counts = whist.sum(axis=0)
    inside = counts.sum()
    if inside == 0:
        raise InputError(f"{where}: no frame lies inside the histogram range {hist_range}")
    return edges, whist, counts, inside, hist_range


def trajectory_result(q, p, *, delta=None, gamma=None, mass=None, burn_in: float = 0.0, bins: int = 200,
                      hist_range=None, max_samples: int = 100_000, variables=None, where: str = "trajectory"):
    """A :class:`bayescg.simulate.SimulationResult` holding the statistics of the user's (q, p).

    q, p: (n,), (n, d) or (walkers, n, d) positions and momenta (frames in time order per walker);
    delta, gamma: step and friction of the damped map (3.2) that produced them, if so (else None);
    mass: inverse mass matrix A (d, d) (default I); burn_in: fraction of each walker's frames dropped;
    bins, hist_range ([(lo, hi)] per dim, default the data range widened by half a bin): histogram of q;
    max_samples: frames kept (evenly strided) as ``samples_q/p`` for the stored-sample IAT and normality test.
    """
    from .simulate import EngineOptions, SimulationResult, _q_iat

    q, p = check_arrays(q, p, None if variables is None else len(variables), where)
    W, n0, d = q.shape
    burn = int(burn_in * n0)
    q, p = q[:, burn:], p[:, burn:]
    n = q.shape[1]
    if n < MIN_FRAMES:
        raise InputError(f"{where}: {n} frames per walker after burn-in; at least {MIN_FRAMES} are needed")
    A = np.eye(d) if mass is None else np.atleast_2d(np.asarray(mass, dtype=float))
    if A.shape != (d, d) or not np.allclose(A, A.T) or np.linalg.eigvalsh(A).min() <= 0:
        raise InputError(f"{where}: mass must be a symmetric positive definite {d}x{d} matrix")
    for name, v in (("delta", delta), ("gamma", gamma)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise InputError(f"{where}: {name} must be a positive number, got {v}")
    B = min(EngineOptions().batches, n // 4)
    mean, cov, cov_se, Mwb, lens, beta_hat, beta_se = _momentum_statistics(p, A, B)
    # --- q: IAT of q_i and q_i^2 in frames from batch means of the data (simulate's estimator)
    s_q, _ = _batch_sums(q, B)
    s_qq, _ = _batch_sums(q * q, B)
    s_q4, _ = _batch_sums(q ** 4, B)
    iat_q = _q_iat(s_q, s_qq, lens)
    iat_q2 = _q_iat(s_qq, s_q4, lens)
    edges, whist, counts, inside, hist_range = _histograms(q, bins, hist_range, where)
    # --- stored samples: every stride-th frame of each walker
    stride = max(1, int(math.ceil(W * n / max_samples)))
    sq = q[:, ::stride].reshape(-1, d)
    sp = p[:, ::stride].reshape(-1, d)
    sw = np.repeat(np.arange(W), q[:, ::stride].shape[1])
    ok = lambda a: float(np.max(a)) if np.all(np.isfinite(a)) else float("nan")  # noqa: E731
    damped = delta is not None and gamma is not None
    res = SimulationResult(
        dim=d, delta=float(delta) if delta is not None else float("nan"),
        gamma=float(gamma) if gamma is not None else float("nan"),
        mass=A, friction=(float(gamma) if gamma is not None else float("nan")) * np.eye(d),
        integrator="damped" if damped else "data", beta=float("nan"), steps=W * n0, walkers=W, seed=0,
        burn_in=float(burn_in), seconds=0.0, steps_per_second=float("nan"),
        momentum_mean=mean, momentum_covariance=cov, momentum_covariance_se=cov_se,
        second_moment_batches=Mwb.mean(axis=0), beta_hat=float(beta_hat), beta_hat_se=float(beta_se),
        hist_counts=counts, hist_edges=edges, hist_outside=int(W * n - inside),
        samples_q=sq, samples_p=sp, sample_stride=stride, sample_walker=sw,
        trapped=np.zeros(W, bool), trapped_fraction=0.0, trapped_at=np.full(W, -1, dtype=np.int64),
        steps_per_walker=n0, burn_in_steps=burn, accumulated_steps=W * n, expression=None,
        variables=tuple(variables) if variables is not None else tuple(f"q{i}" for i in range(d)),
        hist_marginal=False, final_q=q[:, -1].copy(), final_p=p[:, -1].copy(),
        q_iat_steps=ok(iat_q), q_iat_steps_per_dim=iat_q,
        walker_hist_counts=whist.astype(float),
        walker_second_moments=np.einsum("wbij,b->wij", Mwb, lens) / float(np.sum(lens)))
    # the even-moment IAT (energy mode) enters n_eff through stats.effective_iat_steps
    res.q2_iat_steps = ok(iat_q2)
    return res


def __getattr__(name):
    # learn_trajectory (arrays -> LearnResult) lives in bayescg.pipeline with the rest of learning; the old
    # name is forwarded lazily so that this data layer never imports the learn layer at import time
    if name == "learn_trajectory":
        from .pipeline import learn_trajectory

        return learn_trajectory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
