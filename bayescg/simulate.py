"""Run the damped map (3.2) (or kinetic Langevin (4.2) / Hamiltonian (4.1)) over many walkers.

:func:`simulate` drives the numba kernels of :mod:`bayescg.kernels.accumulate` in chunks of a
fixed number of steps per walker, with streaming per-walker accumulators (bounded memory),
trap detection, blow-up errors, checkpoints and bit-identical resume.  :func:`simulate_model`
does the same from a model file's ``[potential]`` and ``[simulation]`` sections.
:func:`run_trajectories` records whole trajectories for the surrogate comparisons.

Randomness: ``SeedSequence(seed).spawn(walkers)``; walker w's child spawns (initial
conditions, noise stream), so results do not depend on thread counts.

Speed: d = 1, 2 damped runs of expression potentials evaluate the gradients of blocks of
``kernels.accumulate.LANES`` walkers in one call of the potential's SIMD lane kernel
(``Potential.grad_lanes``; exp/sin/cos from :mod:`bayescg.kernels.fastmath`, at most 1.5 ulp from
correctly rounded, so trajectories differ from a libm run in the last bits and, the map being
chaotic, later on; statistics agree).  A walker's result does not depend on its block.  Set
``USE_LANES = False`` to run on the exact math.* gradient everywhere.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError, SimulationError
from .kernels import accumulate as K
from .kernels.rng import seed_states  # noqa: F401  (re-exported for callers)
from .potentials import Potential

INTEGRATORS = {"damped": K.DAMPED, "langevin": K.LANGEVIN, "hamiltonian": K.HAMILTONIAN,
               "damped_white": K.DAMPED_WHITE}

#: Trap detection: |p| <= P_TOL and |dq| <= Q_TOL (1 + |q|) for TRAP_WINDOW consecutive steps.
P_TOL = 1e-9
Q_TOL = 1e-12
TRAP_WINDOW = 1000
#: Batches per walker for batch-means standard errors.
BATCHES = 32
#: Default chunk size: about this many steps summed over walkers per chunk.
CHUNK_TOTAL = 20_000_000
#: d = 1 damped runs of user (array) gradient kernels of at least this many steps use a driver
#: specialized on the gradient (inlined gradient, ~15 % faster on Test 1 with the libm
#: kernel, one extra compilation of a few seconds); results are identical either way.
SPECIALIZE_STEPS = 1_000_000_000
#: Refuse per-walker histograms larger than this many bytes in total.
MAX_HIST_BYTES = 2 * 1024 ** 3


@dataclass
class SimulationResult:
    """Statistics of a run; arrays are numpy, shapes in comments (d = dim, W = walkers).

    Momentum statistics pool all post-burn-in steps of the walkers that were not trapped.
    ``beta_hat`` = d / tr(A cov p) (equipartition E[p^T A p] = d / beta with A = M^-1; 1 / var(p)
    for d = 1 and A = 1, (3.5)); standard errors
    come from batch means (``BATCHES`` per walker, batches of all walkers treated as
    independent; the mean correction is neglected) and the delta method.
    ``q_iat_steps_per_dim`` is the integrated autocorrelation time of each coordinate of q in
    steps, tau_i = sigma_i^2 / var(q_i) with the batch-means estimate sigma_i^2 = sum_b n_b
    (m_b - mean)^2 / (nb - 1) over the same batches (n_b steps, batch mean m_b; all batches of
    the non-trapped walkers, about the pooled mean, so walkers stuck in different wells raise
    it); ``q_iat_steps`` is its maximum over dims (NaN when undefined).  It is biased low
    unless a batch is much longer than tau (tau << n_acc / BATCHES).
    """

    dim: int
    delta: float
    gamma: float
    mass: np.ndarray                    # (d, d) inverse mass A = M^-1
    friction: np.ndarray                # (d, d)
    integrator: str
    beta: float
    steps: int                          # total steps done, summed over walkers
    walkers: int
    seed: int
    burn_in: float
    seconds: float
    steps_per_second: float
    momentum_mean: np.ndarray           # (d,)
    momentum_covariance: np.ndarray     # (d, d)
    momentum_covariance_se: np.ndarray  # (d, d)
    second_moment_batches: np.ndarray   # (B, d, d) mean over non-trapped walkers
    beta_hat: float
    beta_hat_se: float
    hist_counts: np.ndarray             # (bins,) / (bins, bins) / (3, bins) marginals for d = 3
    hist_edges: list                    # d arrays of bins + 1 edges
    hist_outside: int                   # post-burn-in steps with some coordinate off the grid
    samples_q: np.ndarray               # (n, d)
    samples_p: np.ndarray               # (n, d)
    sample_stride: int                  # steps between stored samples of one walker
    sample_walker: np.ndarray           # (n,)
    trapped: np.ndarray                 # (W,) bool
    trapped_fraction: float
    trapped_at: np.ndarray              # (W,) first step of the trapping window, or -1
    steps_per_walker: int = 0
    burn_in_steps: int = 0
    accumulated_steps: int = 0          # post-burn-in steps pooled in the statistics
    expression: str | None = None
    variables: tuple = ()
    hist_marginal: bool = False         # True when hist_counts holds per-coordinate marginals
    final_q: np.ndarray | None = None   # (W, d) walker states at the end (all walkers)
    final_p: np.ndarray | None = None   # (W, d)
    q_iat_steps: float = float("nan")   # integrated autocorrelation time of q in steps, max over dims
    q_iat_steps_per_dim: np.ndarray | None = None  # (d,)
    # per live walker (walker-clustered sandwich of the fit's band, bayescg.fit): histogram counts
    # (W_live, *hist_counts.shape) and post-burn-in E[p p^T] (W_live, d, d)
    walker_hist_counts: np.ndarray | None = None
    walker_second_moments: np.ndarray | None = None
    kick_noise: np.ndarray | None = None  # (d, d) Z of "damped_white", else None

    def to_dict(self) -> dict:
        """JSON-able summary (SPEC simulation.json fields first); omits the raw samples."""
        out = {
            "steps": int(self.steps), "walkers": int(self.walkers), "seconds": float(self.seconds),
            "steps_per_second": float(self.steps_per_second), "beta_hat": _f(self.beta_hat),
            "beta_hat_se": _f(self.beta_hat_se),
            "momentum_covariance": _nan_list(self.momentum_covariance),
            "momentum_covariance_se": _nan_list(self.momentum_covariance_se),
            "momentum_mean": _nan_list(self.momentum_mean),
            "trapped_fraction": float(self.trapped_fraction),
            "trapped_walkers": int(np.sum(self.trapped)),
            "trapped_at": [int(x) for x in self.trapped_at],
            "dimension": int(self.dim), "variables": list(self.variables), "expression": self.expression,
            "delta": float(self.delta), "gamma": float(self.gamma), "integrator": self.integrator,
            "beta": float(self.beta), "mass": _nan_list(self.mass), "friction": _nan_list(self.friction),
            "seed": int(self.seed), "burn_in": float(self.burn_in),
            "steps_per_walker": int(self.steps_per_walker), "burn_in_steps": int(self.burn_in_steps),
            "accumulated_steps": int(self.accumulated_steps),
            "q_iat_steps": _f(self.q_iat_steps),
            "kick_noise": None if self.kick_noise is None else _nan_list(self.kick_noise),
            "q_iat_steps_per_dim": (None if self.q_iat_steps_per_dim is None
                                    else _nan_list(self.q_iat_steps_per_dim)),
            "histogram": {"counts": self.hist_counts.tolist(), "edges": [e.tolist() for e in self.hist_edges],
                          "outside": int(self.hist_outside), "marginal": bool(self.hist_marginal)},
            "samples": int(self.samples_q.shape[0]), "sample_stride": int(self.sample_stride),
        }
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def _f(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _nan_list(a):
    a = np.asarray(a, dtype=float)
    return [_nan_list(r) for r in a] if a.ndim else _f(a)


# --- validation ------------------------------------------------------------------------------
def _pos(name, v):
    try:
        v = float(v)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {v!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{name} must be a positive finite number, got {v!r}")
    return v


def _posint(name, v, minimum=1):
    if isinstance(v, bool):
        raise InputError(f"{name} must be an integer, got {v!r}")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, (int, np.integer)) or v < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _spd(name, m, d):
    a = np.asarray(m, dtype=float)
    if a.ndim == 0 and d == 1:
        a = a.reshape(1, 1)
    if a.shape != (d, d):
        raise InputError(f"{name} must be a {d}x{d} matrix, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InputError(f"{name} must be finite")
    if not np.allclose(a, a.T, rtol=1e-12, atol=1e-14):
        raise InputError(f"{name} must be symmetric")
    if np.linalg.eigvalsh(a).min() <= 0:
        raise InputError(f"{name} must be positive definite")
    return 0.5 * (a + a.T)


def _check_potential(potential):
    if not isinstance(potential, Potential):
        raise InputError(f"potential must be a bayescg.potentials.Potential, got {type(potential).__name__}")
    return potential


def _integrator(name):
    if name not in INTEGRATORS:
        raise InputError(f"integrator must be one of {', '.join(INTEGRATORS)}, got {name!r}")
    return INTEGRATORS[name]


def _matrices(kind, d, delta, mass, friction, gamma, beta, kick_noise=None):
    """(A, G, E, L, diag) for the kernels: E = expm(-Gamma A delta) (DAMPED, DAMPED_WHITE with L the
    Cholesky factor of delta Z, Z = ``kick_noise``), F and the OU Cholesky factor (LANGEVIN),
    I (HAMILTONIAN)."""
    from scipy.linalg import cholesky, expm, solve_continuous_lyapunov

    A = np.eye(d) if mass is None else _spd("mass", mass, d)
    G = gamma * np.eye(d) if friction is None else _spd("friction", friction, d)
    L = np.zeros((d, d))
    if (kick_noise is not None) != (kind == K.DAMPED_WHITE):
        raise InputError('kick_noise (the covariance Z of the white kick) is required by integrator '
                         '"damped_white" and used by no other')
    if kind == K.DAMPED:
        E = expm(-G @ A * delta)
    elif kind == K.DAMPED_WHITE:
        E = expm(-G @ A * delta)
        L = np.linalg.cholesky(delta * _spd("kick_noise", kick_noise, d))
    elif kind == K.HAMILTONIAN:
        E = np.eye(d)
    else:
        E = expm(-G @ A * delta)
        # stationary OU covariance: (G A) C + C (G A)^T = 2 G / beta; C = A^-1 / beta
        C = solve_continuous_lyapunov(G @ A, 2.0 * G / beta)
        cov = C - E @ C @ E.T
        cov = 0.5 * (cov + cov.T)
        try:
            L = cholesky(cov, lower=True)
        except np.linalg.LinAlgError:  # numerically semidefinite (tiny delta): clip eigenvalues
            w, V = np.linalg.eigh(cov)
            w = np.clip(w, 0.0, None)
            L = np.linalg.cholesky(V @ np.diag(w) @ V.T + 1e-300 * np.eye(d) + 1e-16 * np.trace(cov) * np.eye(d))
    A = np.ascontiguousarray(A)
    E = np.ascontiguousarray(E)
    off = ~np.eye(d, dtype=bool)
    diag = bool(not np.any(A[off]) and not np.any(E[off]))
    return A, G, E, np.ascontiguousarray(L), diag


def _walker_seeds(seed, n):
    """(init SeedSequence, noise SeedSequence) per walker."""
    try:
        children = np.random.SeedSequence(seed).spawn(n)
    except (TypeError, ValueError) as exc:
        raise InputError(f"seed must be a non-negative integer, got {seed!r} ({exc})") from None
    out = []
    for c in children:
        a, b = c.spawn(2)
        out.append((a, b))
    return out


def _initial_state(seeds, d, init_mean, init_sd):
    W = len(seeds)
    q = np.empty((W, d))
    p = np.empty((W, d))
    rng_state = np.empty((W, 4), dtype=np.uint64)
    for w, (a, b) in enumerate(seeds):
        gen = np.random.default_rng(a)
        q[w] = init_mean + init_sd * gen.standard_normal(d)
        p[w] = init_sd * gen.standard_normal(d)
        st = b.generate_state(4, dtype=np.uint64)
        if not st.any():  # pragma: no cover
            st[0] = np.uint64(0x9E3779B97F4A7C15)
        rng_state[w] = st
    return q, p, rng_state


# --- simulate ----------------------------------------------------------------------------------
def simulate(potential, delta, gamma=0.1, *, steps, walkers=16, seed=1, mass=None, friction=None,
             integrator="damped", beta=1.0, burn_in=0.1, init_mean=None, init_sd=1.0,
             bins=200, hist_range=None, max_samples=100_000, chunk_steps=None,
             checkpoint=None, resume=False, control=None, kick_noise=None) -> SimulationResult:
    """Run ``walkers`` independent walkers of the chosen integrator on ``potential``.

    potential: Potential (d = potential.dim); delta: step size; gamma: scalar friction used when
    ``friction`` (d, d) is None; steps: total steps summed over walkers (each walker does
    ceil(steps / walkers)); mass: inverse mass matrix A = M^-1 (d, d), default I; integrator:
    "damped" (3.2), "langevin" (4.2, BAOAB, inverse temperature ``beta``), "hamiltonian" (4.1) or
    "damped_white" ((3.2) plus a kick xi ~ N(0, delta Z) per step, Z = ``kick_noise``: a positive
    number for d = 1 or a (d, d) SPD matrix; required by it, refused by the others); burn_in: fraction of each walker's steps discarded; q0 ~ N(init_mean, init_sd^2 I),
    p0 ~ N(0, init_sd^2 I).  Histogram grid: ``hist_range`` [(lo, hi)] * d or the burn-in
    range of positions (last half of burn-in, +-10 % margin; a separate pilot of copies when
    burn-in is shorter than 1000 steps).  Chunks are ``chunk_steps`` steps per walker (default
    about 2e7 steps summed over walkers); results do not depend on the chunking or on the
    number of threads.  ``checkpoint``: path of an .npz saved after every chunk, before
    ``control.tick(fraction_done)`` (fraction in (0, 1]: use ``RunControl(label)`` with its
    default total 1.0); ``resume`` continues from it bit-identically.

    Raises InputError for bad arguments, SimulationError when a walker blows up.  Trapped
    walkers (p collapsing to 0 at a fixed point of the map) are excluded from all statistics;
    if all are trapped the statistics are NaN and trapped_fraction is 1.
    """
    from . import runtime

    potential = _check_potential(potential)
    d = potential.dim
    kind = _integrator(integrator)
    delta = _pos("delta", delta)
    gamma = _pos("gamma", gamma)
    beta = _pos("beta", beta)
    steps = _posint("steps", steps)
    walkers = _posint("walkers", walkers)
    seed = _posint("seed", seed, minimum=0)
    bins = _posint("bins", bins)
    max_samples = _posint("max_samples", max_samples, minimum=0)
    init_sd = _pos("init_sd", init_sd)
    try:
        burn_in = float(burn_in)
    except (TypeError, ValueError):
        raise InputError(f"burn_in must be a number in [0, 1), got {burn_in!r}") from None
    if not 0.0 <= burn_in < 1.0:
        raise InputError(f"burn_in must be in [0, 1), got {burn_in!r}")
    if init_mean is None or (hasattr(init_mean, "__len__") and len(init_mean) == 0):
        init_mean = np.zeros(d)
    init_mean = np.asarray(init_mean, dtype=float).reshape(-1)
    if init_mean.size == 1 and d > 1:
        init_mean = np.full(d, init_mean[0])
    if init_mean.shape != (d,) or not np.all(np.isfinite(init_mean)):
        raise InputError(f"init_mean must have {d} finite entries, got {init_mean.tolist()}")
    if hist_range is not None:
        hr = np.asarray(hist_range, dtype=float)
        if hr.shape == (2,) and d == 1:
            hr = hr.reshape(1, 2)
        if hr.shape != (d, 2) or not np.all(np.isfinite(hr)) or np.any(hr[:, 0] >= hr[:, 1]):
            raise InputError(f"hist_range must be {d} pairs (lo, hi) with lo < hi, got {np.asarray(hist_range).tolist()}")
        hist_range = hr
    hist_cells = bins ** d if d <= 2 else d * bins
    if walkers * hist_cells * 8 > MAX_HIST_BYTES:
        raise InputError(f"histograms of {walkers} walkers x {hist_cells} cells exceed {MAX_HIST_BYTES >> 30} GiB; "
                         "use fewer bins or walkers")
    A, G, E, L, diag = _matrices(kind, d, delta, mass, friction, gamma, beta, kick_noise)
    Z = None if kick_noise is None else _spd("kick_noise", kick_noise, d)

    n_per = -(-steps // walkers)
    burn = int(burn_in * n_per)
    n_acc = n_per - burn
    if n_acc < 1:
        raise InputError("no steps left after burn-in; increase steps or reduce burn_in")
    B = min(BATCHES, n_acc)
    batch_len = n_acc // B
    S = max_samples // walkers
    stride = max(1, n_acc // S) if S > 0 else 1
    S = min(S, -(-n_acc // stride)) if S > 0 else 0
    if chunk_steps is None:
        chunk_steps = max(1000, CHUNK_TOTAL // walkers)
    chunk_steps = _posint("chunk_steps", chunk_steps)

    settings = dict(expression=potential.expression, variables=list(potential.variables), d=d, delta=delta,
                    gamma=gamma, beta=beta, integrator=integrator, steps=steps, walkers=walkers, seed=seed,
                    burn_in=burn_in, init_mean=init_mean.tolist(), init_sd=init_sd, bins=bins,
                    hist_range=None if hist_range is None else hist_range.tolist(), max_samples=max_samples,
                    mass=A.tolist(), friction=G.tolist())
    if Z is not None:
        settings["kick_noise"] = Z.tolist()
    fingerprint = json.dumps(settings, sort_keys=True)

    st = None
    if resume:
        if checkpoint is None:
            raise InputError("resume=True needs a checkpoint path")
        st = runtime.load_checkpoint(checkpoint)
        if str(st.get("fingerprint", "")) != fingerprint:
            raise InputError(f"{checkpoint}: checkpoint was written with different settings; "
                             "rerun without --resume (or with the same settings)")
        if "bq" not in st or "bqq" not in st:
            raise InputError(f"{checkpoint}: checkpoint of an older bayescg without q batch sums; "
                             "rerun without --resume")
    if st is None:
        seeds = _walker_seeds(seed, walkers)
        q, p, rng_state = _initial_state(seeds, d, init_mean, init_sd)
        st = dict(
            q=q, p=p, g=np.zeros((walkers, d)), rng=rng_state, done=np.int64(0), seconds=np.float64(0.0),
            bp=np.zeros((walkers, B, d)), bpp=np.zeros((walkers, B, d, d)),
            bq=np.zeros((walkers, B, d)), bqq=np.zeros((walkers, B, d)),
            hist=np.zeros((walkers, hist_cells), dtype=np.int64), outside=np.zeros(walkers, dtype=np.int64),
            samp_q=np.zeros((walkers, S, d)), samp_p=np.zeros((walkers, S, d)),
            nstored=np.zeros(walkers, dtype=np.int64),
            qmin=np.full((walkers, d), np.inf), qmax=np.full((walkers, d), -np.inf),
            still=np.zeros(walkers, dtype=np.int64), trapped_at=np.full(walkers, -1, dtype=np.int64),
            blown_at=np.full(walkers, -1, dtype=np.int64),
            hist_lo=np.zeros(d), hist_hi=np.ones(d), range_set=np.int64(0),
        )
        if hist_range is not None:
            st["hist_lo"] = hist_range[:, 0].copy()
            st["hist_hi"] = hist_range[:, 1].copy()
            st["range_set"] = np.int64(1)
        if kind == K.LANGEVIN:  # BAOAB reuses the gradient of the previous step
            K.init_grad(potential.grad, st["q"], st["g"])
    st["fingerprint"] = np.array(fingerprint)

    minmax_start = burn // 2
    t0 = time.perf_counter()
    seconds0 = float(st["seconds"])

    # d = 1, 2 damped runs of expression potentials evaluate LANES walkers' gradients in one SIMD
    # call of the lane kernel (exp/sin/cos from kernels.fastmath, at most 1.5 ulp from correctly rounded)
    gs = _lane_kernel(potential) if (kind == K.DAMPED and d <= 2) else None
    g1 = potential.grad if gs is None else gs
    spec1 = None
    if kind == K.DAMPED and d == 1:
        if gs is not None:
            spec1 = K.damped_chunk_1d  # (inlining the lane kernel measured ~10 % slower than this)
        elif steps >= SPECIALIZE_STEPS:
            spec1 = K.specialized(K.damped_1d_chunk)
    spec2 = K.damped_chunk_2d if gs is not None and d == 2 else None

    def run(a, b):
        if spec2 is not None:
            spec2(gs, st["q"], st["p"], A, E, delta, diag, a, b - a, burn, minmax_start, batch_len, st["hist_lo"],
                  bins / (st["hist_hi"] - st["hist_lo"]), bins, stride, P_TOL, Q_TOL, TRAP_WINDOW,
                  st["bp"], st["bpp"], st["bq"], st["bqq"], st["hist"], st["outside"], st["samp_q"], st["samp_p"],
                  st["nstored"], st["qmin"], st["qmax"], st["still"], st["trapped_at"], st["blown_at"])
            _check_blowup(st)
            return
        if spec1 is not None:
            spec1(g1, st["q"], st["p"], A[0, 0], E[0, 0], delta, a, b - a, burn, minmax_start, batch_len,
                  st["hist_lo"][0], bins / (st["hist_hi"][0] - st["hist_lo"][0]), bins, stride, P_TOL, Q_TOL,
                  TRAP_WINDOW, st["bp"], st["bpp"], st["bq"], st["bqq"], st["hist"], st["outside"], st["samp_q"], st["samp_p"],
                  st["nstored"], st["qmin"], st["qmax"], st["still"], st["trapped_at"], st["blown_at"])
            _check_blowup(st)
            return
        K.run_chunk(potential.grad, kind, st["q"], st["p"], st["g"], st["rng"], A, E, L, delta, diag,
                    a, b - a, burn, minmax_start, batch_len, st["hist_lo"],
                    bins / (st["hist_hi"] - st["hist_lo"]), bins, stride, P_TOL, Q_TOL, TRAP_WINDOW,
                    st["bp"], st["bpp"], st["bq"], st["bqq"], st["hist"], st["outside"], st["samp_q"], st["samp_p"], st["nstored"],
                    st["qmin"], st["qmax"], st["still"], st["trapped_at"], st["blown_at"])
        _check_blowup(st)

    done = int(st["done"])
    while done < n_per:
        if done == burn and not int(st["range_set"]):
            _set_range(st, potential, kind, A, E, L, delta, diag, burn, n_per, minmax_start, bins)
        end = min(n_per, done + chunk_steps)
        if done < burn < end:
            end = burn  # chunk boundary at the end of burn-in (the grid is fixed there)
        run(done, end)
        done = end
        if done == burn and not int(st["range_set"]):
            _set_range(st, potential, kind, A, E, L, delta, diag, burn, n_per, minmax_start, bins)
        st["done"] = np.int64(done)
        st["seconds"] = np.float64(seconds0 + time.perf_counter() - t0)
        if checkpoint is not None:
            runtime.save_checkpoint(checkpoint, **st)
        if control is not None:
            control.tick(done / n_per)
    seconds = seconds0 + time.perf_counter() - t0
    res = _result(st, potential, integrator, d, delta, gamma, beta, A, G, walkers, seed, burn_in,
                  n_per, burn, n_acc, B, batch_len, bins, stride, seconds)
    res.kick_noise = Z
    return res


#: simulate() uses the SIMD lane kernels of expression potentials (set False to run every path
#: on the exact math.* gradient, e.g. to compare with a C loop bit for bit).
USE_LANES = True


def _lane_kernel(potential):
    """The potential's compiled lane kernel, or None (user kernels; functions without a fast form)."""
    gl = getattr(potential, "grad_lanes", None)
    if gl is None or not USE_LANES:
        return None
    gl.compile(K.GRADL_SIG)
    potential.grad_scalar.compile(K.GRAD1_SIG if potential.dim == 1 else K.GRAD2_SIG)
    return gl


def _check_blowup(st):
    blown = np.flatnonzero(st["blown_at"] >= 0)
    if blown.size:
        w = int(blown[np.argmin(st["blown_at"][blown])])
        qv = st["q"][w]
        pv = st["p"][w]
        what = f"q = {qv[0] if qv.size == 1 else qv.tolist()}"
        if np.all(np.isfinite(qv)):
            what = f"p = {pv[0] if pv.size == 1 else pv.tolist()}"
        raise SimulationError(f"walker {w} blew up at step {int(st['blown_at'][w])} ({what}); reduce delta")


def _set_range(st, potential, kind, A, E, L, delta, diag, burn, n_per, minmax_start, bins):
    """Fix the histogram grid from the burn-in range of live walkers (+-10 % margin)."""
    live = st["trapped_at"] < 0
    lo = st["qmin"][live]
    hi = st["qmax"][live]
    ok = np.isfinite(lo).all(axis=1) & np.isfinite(hi).all(axis=1) if lo.size else np.zeros(0, bool)
    if burn < 1000 or not ok.any():
        # pilot on copies of the walkers (their states are not touched)
        W, d = st["q"].shape
        n = int(min(max(n_per, 1), 1000))
        cp = {k: st[k].copy() for k in ("q", "p", "g", "rng", "still", "trapped_at", "blown_at")}
        z = lambda *s: np.zeros(s)  # noqa: E731
        qmin = np.full((W, d), np.inf)
        qmax = np.full((W, d), -np.inf)
        K.run_chunk(potential.grad, kind, cp["q"], cp["p"], cp["g"], cp["rng"], A, E, L, delta, diag,
                    0, n, n + 1, 0, 1, np.zeros(d), np.ones(d), bins, 1, P_TOL, Q_TOL, TRAP_WINDOW,
                    z(W, 1, d), z(W, 1, d, d), z(W, 1, d), z(W, 1, d), np.zeros((W, 1), dtype=np.int64), np.zeros(W, dtype=np.int64),
                    z(W, 0, d), z(W, 0, d), np.zeros(W, dtype=np.int64), qmin, qmax,
                    cp["still"], cp["trapped_at"], cp["blown_at"])
        # include the current positions too (the pilot may be short)
        qmin = np.minimum(qmin, st["q"])
        qmax = np.maximum(qmax, st["q"])
        good = np.isfinite(qmin).all(axis=1) & np.isfinite(qmax).all(axis=1)
        lo, hi, ok = qmin, qmax, good
    if not ok.any():
        lo_v = np.full(st["q"].shape[1], -1.0)
        hi_v = np.full(st["q"].shape[1], 1.0)
    else:
        lo_v = lo[ok].min(axis=0)
        hi_v = hi[ok].max(axis=0)
    span = hi_v - lo_v
    span = np.where(span > 0, span, np.maximum(1.0, np.abs(lo_v)))
    st["hist_lo"] = lo_v - 0.1 * span
    st["hist_hi"] = hi_v + 0.1 * span
    st["range_set"] = np.int64(1)


#: A walker whose batch-mean kinetic energy falls below this fraction of the ensemble median is frozen.
COLD_RATIO = 1e-2


def _flag_frozen_walkers(st, lens, burn, batch_len):
    """Mark walkers whose momentum collapsed without meeting the |p| <= P_TOL test as trapped.

    A walker spiralling slowly into a fixed point of the map, or circling a small stable orbit, keeps
    |p| above P_TOL for a long time while its momentum has collapsed; its positions then pile up in a
    few histogram bins (seen on Test 1 at delta 0.065 as a spike in the learned U_1). In a warm walker
    the mean of tr(p p^T) over a whole batch is never a hundredth of the ensemble's median, so that
    is the test; such a walker is flagged from the first cold batch on.
    """
    if lens.min() <= 0 or st["bpp"].shape[0] < 2:
        return
    ke = np.trace(st["bpp"], axis1=2, axis2=3) / lens[None, :]       # (walkers, B)
    live = st["trapped_at"] < 0
    if live.sum() < 2:
        return
    ref = float(np.median(ke[live]))
    if not ref > 0:
        return
    cold = ke < COLD_RATIO * ref
    for w in np.nonzero(live & cold.any(axis=1))[0]:
        st["trapped_at"][w] = burn + int(np.argmax(cold[w])) * batch_len


def _result(st, potential, integrator, d, delta, gamma, beta, A, G, walkers, seed, burn_in,
            n_per, burn, n_acc, B, batch_len, bins, stride, seconds) -> SimulationResult:
    steps_done = n_per * walkers
    lens = np.full(B, batch_len, dtype=float)
    lens[-1] = n_acc - batch_len * (B - 1)
    _flag_frozen_walkers(st, lens, burn, batch_len)
    trapped = st["trapped_at"] >= 0
    good = ~trapped
    ng = int(good.sum())
    nan_dd = np.full((d, d), np.nan)
    if ng == 0:
        mean = np.full(d, np.nan)
        cov = nan_dd.copy()
        cov_se = nan_dd.copy()
        smb = np.full((B, d, d), np.nan)
        beta_hat = beta_se = float("nan")
    else:
        N = ng * n_acc
        mean = st["bp"][good].sum(axis=(0, 1)) / N
        second = st["bpp"][good].sum(axis=(0, 1)) / N
        cov = second - np.outer(mean, mean)
        cov = 0.5 * (cov + cov.T)
        Mwb = st["bpp"][good] / lens[None, :, None, None]          # (ng, B, d, d) batch means
        smb = Mwb.mean(axis=0)
        nb = ng * B
        flat = Mwb.reshape(nb, d, d)
        # equipartition E[p^T A p] = d / beta; A @ X is exactly X for A = I (no change then)
        tr_cov = float(np.trace(A @ cov))
        beta_hat = d / tr_cov
        if nb >= 2:
            cov_se = flat.std(axis=0, ddof=1) / math.sqrt(nb)
            tr_b = np.trace(A[None] @ flat, axis1=1, axis2=2) - float(mean @ A @ mean)
            beta_se = d * float(tr_b.std(ddof=1)) / math.sqrt(nb) / tr_cov ** 2
        else:
            cov_se = nan_dd.copy()
            beta_se = float("nan")
    iat = _q_iat(st["bq"][good], st["bqq"][good], lens)
    hist = st["hist"][good].sum(axis=0)
    marginal = d > 2
    hist = hist.reshape((d, bins) if marginal else (bins,) * d)
    edges = [np.linspace(st["hist_lo"][i], st["hist_hi"][i], bins + 1) for i in range(d)]
    ns = st["nstored"]
    idx = [w for w in range(walkers) if good[w] and ns[w] > 0]
    if idx:
        sq = np.concatenate([st["samp_q"][w, :ns[w]] for w in idx])
        sp = np.concatenate([st["samp_p"][w, :ns[w]] for w in idx])
        sw = np.concatenate([np.full(ns[w], w, dtype=np.int64) for w in idx])
    else:
        sq = np.zeros((0, d))
        sp = np.zeros((0, d))
        sw = np.zeros(0, dtype=np.int64)
    return SimulationResult(
        dim=d, delta=delta, gamma=gamma, mass=A.copy(), friction=G.copy(), integrator=integrator, beta=beta,
        steps=steps_done, walkers=walkers, seed=seed, burn_in=burn_in, seconds=seconds,
        steps_per_second=steps_done / seconds if seconds > 0 else float("nan"),
        momentum_mean=mean, momentum_covariance=cov, momentum_covariance_se=cov_se,
        second_moment_batches=smb, beta_hat=float(beta_hat), beta_hat_se=float(beta_se),
        hist_counts=hist, hist_edges=edges, hist_outside=int(st["outside"][good].sum()),
        samples_q=sq, samples_p=sp, sample_stride=int(stride), sample_walker=sw,
        trapped=trapped, trapped_fraction=float(trapped.mean()), trapped_at=st["trapped_at"].copy(),
        steps_per_walker=n_per, burn_in_steps=burn, accumulated_steps=ng * n_acc,
        expression=potential.expression, variables=tuple(potential.variables), hist_marginal=marginal,
        final_q=st["q"].copy(), final_p=st["p"].copy(),
        q_iat_steps=float(np.max(iat)) if np.all(np.isfinite(iat)) else float("nan"), q_iat_steps_per_dim=iat,
        walker_hist_counts=st["hist"][good].reshape((ng,) + hist.shape).copy(),
        walker_second_moments=st["bpp"][good].sum(axis=1) / max(n_acc, 1))


def _q_iat(bq, bqq, lens):
    """Integrated autocorrelation time of q per dim (d,), in steps, from batch sums.

    bq, bqq: (n, B, d) batch sums of q and q_i^2 of n walkers; lens: (B,) batch lengths.
    Batch-means estimate (each batch mean m_b of n_b steps has variance ~ sigma^2 / n_b):
    sigma^2 = sum_{w,b} n_b (m_wb - mean)^2 / (n B - 1), tau = sigma^2 / var(q), with mean and
    var(q) over all pooled steps.  NaN where fewer than 2 batches or var(q) is not positive.
    """
    n, B, d = bq.shape
    if n * B < 2:
        return np.full(d, np.nan)
    N = n * float(lens.sum())
    mean = bq.sum(axis=(0, 1)) / N
    var = bqq.sum(axis=(0, 1)) / N - mean * mean
    m = bq / lens[None, :, None]
    sigma2 = (lens[None, :, None] * (m - mean) ** 2).sum(axis=(0, 1)) / (n * B - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = np.where(var > 0, sigma2 / np.where(var > 0, var, 1.0), np.nan)
    return tau


def simulate_model(model, *, checkpoint=None, resume=False, control=None) -> SimulationResult:
    """:func:`simulate` with the potential and settings of a model file (bayescg.config.Model)."""
    pot_sec = model.require("potential")
    sim = model.require("simulation")
    potential = Potential.from_expression(pot_sec.expression, list(pot_sec.variables))
    hist_range = pot_sec.domain  # the model's grid domain, when given, is the histogram range
    return simulate(potential, sim.delta, sim.gamma, steps=sim.steps, walkers=sim.walkers, seed=sim.seed,
                    mass=sim.mass, friction=sim.friction, burn_in=sim.burn_in, integrator=sim.integrator,
                    kick_noise=sim.kick_noise,
                    init_mean=sim.init_mean or None, init_sd=sim.init_sd, bins=sim.bins, hist_range=hist_range,
                    max_samples=sim.max_samples, checkpoint=checkpoint, resume=resume, control=control)


# --- trajectories ---------------------------------------------------------------------------
def run_trajectories(potential, h, T, q0, p0, *, integrator="langevin", friction=None, gamma=0.1, beta=1.0,
                     mass=None, seed=1, record_every: float = 0.1, control=None, kick_noise=None):
    """Integrate M trajectories from (q0, p0) (M, d) to time T with step h, recording every
    ``record_every`` time units (rounded to a whole number of steps, at least one).

    integrator: "langevin" (4.2, BAOAB), "hamiltonian" (4.1), "damped" (3.2) or "damped_white"
    ((3.2) with white kicks of covariance delta ``kick_noise``, as in :func:`simulate`).  The noise of
    trajectory m comes from SeedSequence(seed).spawn(M)[m].  Returns ``times`` (n,),
    ``q`` (n, M, d), ``p`` (n, M, d) with row 0 the initial state.  Parallel over trajectories.
    """
    potential = _check_potential(potential)
    d = potential.dim
    kind = _integrator(integrator)
    h = _pos("h", h)
    T = _pos("T", T)
    gamma = _pos("gamma", gamma)
    beta = _pos("beta", beta)
    record_every = _pos("record_every", record_every)
    seed = _posint("seed", seed, minimum=0)
    q0 = np.array(q0, dtype=float)
    p0 = np.array(p0, dtype=float)
    if q0.ndim == 1 and d == 1:
        q0 = q0[:, None]
    if p0.ndim == 1 and d == 1:
        p0 = p0[:, None]
    if q0.ndim != 2 or q0.shape[1] != d or q0.shape[0] < 1:
        raise InputError(f"q0 must have shape (M, {d}), got {q0.shape}")
    if p0.shape != q0.shape:
        raise InputError(f"p0 must have the shape of q0 {q0.shape}, got {p0.shape}")
    if not (np.all(np.isfinite(q0)) and np.all(np.isfinite(p0))):
        raise InputError("q0 and p0 must be finite")
    A, G, E, L, diag = _matrices(kind, d, h, mass, friction, gamma, beta, kick_noise)
    M = q0.shape[0]
    every = max(1, int(round(record_every / h)))
    nsteps = int(round(T / h))
    nrec = nsteps // every
    q = np.ascontiguousarray(q0)
    p = np.ascontiguousarray(p0)
    g = np.zeros_like(q)
    K.init_grad(potential.grad, q, g)
    rng = np.empty((M, 4), dtype=np.uint64)
    for m, c in enumerate(np.random.SeedSequence(seed).spawn(M)):
        rng[m] = c.generate_state(4, dtype=np.uint64)
    out_q = np.empty((nrec + 1, M, d))
    out_p = np.empty((nrec + 1, M, d))
    out_q[0] = q
    out_p[0] = p
    blown = np.full(M, -1, dtype=np.int64)
    # chunks of records so that Ctrl-C is honoured within seconds
    per_chunk = max(1, int(2e7 // max(1, M * every)))
    r = 0
    while r < nrec:
        n = min(per_chunk, nrec - r)
        K.record_chunk(potential.grad, kind, q, p, g, rng, A, E, L, h, diag, n, every, r, out_q, out_p, blown)
        if (blown >= 0).any():
            m = int(np.flatnonzero(blown >= 0)[0])
            raise SimulationError(f"trajectory {m} blew up at step {int(blown[m])} (q = {q[m].tolist()}); reduce h")
        r += n
        if control is not None:
            control.tick(r / nrec)
    times = np.arange(nrec + 1) * every * h
    return times, out_q, out_p
