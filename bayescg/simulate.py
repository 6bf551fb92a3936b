"""Run the damped map (3.2) (or another registered integrator) over many walkers.

:func:`simulate` drives the walker loops of :mod:`bayescg.kernels.loops` in chunks of a fixed number
of steps per walker, with streaming per-walker accumulators (bounded memory), trap detection, blow-up
errors, checkpoints and bit-identical resume.  :func:`simulate_model` does the same from a model
file's ``[potential]`` and ``[simulation]`` sections.  :func:`run_trajectories` records whole
trajectories for the surrogate comparisons.  Integrators are looked up by name in
:mod:`bayescg.kernels.registry`; how the engine computes is an explicit :class:`EngineOptions`.

Randomness: ``SeedSequence(seed).spawn(walkers)``; walker w's child spawns (initial
conditions, noise stream), so results do not depend on thread counts.

Speed: d = 1, 2 runs of lane-capable integrators (the map (3.2), also with its white kick) on expression
potentials evaluate the gradients of blocks of ``kernels.state.LANES`` walkers in one call of the
potential's SIMD lane kernel (``Potential.grad_lanes``; exp/sin/cos from :mod:`bayescg.kernels.fastmath`,
at most 1.5 ulp from correctly rounded, so trajectories differ from a libm run in the last bits and, the
map being chaotic, later on; statistics agree).  A walker's result does not depend on its block.
``EngineOptions(lanes=False)`` runs on the exact math.* gradient everywhere.
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass

import numpy as np

from .config import Model
from .errors import BlowUpError, InputError
from .kernels import loops
from .kernels.accumulate import flush_cells
from .kernels.registry import CODES, INTEGRATORS, Integrator
from .kernels.rng import seed_states
from .kernels.state import LAYOUT, Stats, Walkers, consts, grid, new_stats, new_walkers, plan, stats_bytes
from .potentials import Potential


@dataclass(frozen=True)
class EngineOptions:
    """How the engine computes.  The fields that can change results are part of the checkpoint
    fingerprint (:meth:`fingerprint`), so a resume never mixes arithmetic.

    lanes: d = 1, 2 runs of lane-capable integrators use the potential's SIMD lane kernel (False: the
    exact math.* gradient everywhere, e.g. to compare with a C loop bit for bit); p_tol, q_tol,
    trap_window: a walker with |p| <= p_tol and |dq| <= q_tol (1 + |q|) for trap_window consecutive steps
    is trapped; batches: batches per walker for batch-means errors; cold_ratio: a walker whose batch-mean
    kinetic energy falls below this fraction of the ensemble median is frozen (trapped); chunk_total:
    about this many steps summed over walkers per chunk (results do not depend on it);
    specialize_steps: d = 1 runs of user (array) gradient kernels of at least this many steps use a
    driver specialized on the gradient (inlined, ~15 % faster, one extra compilation; same bits);
    max_hist_bytes: refuse per-walker histograms (and their per-batch cell counts) larger than this.
    """

    lanes: bool = True
    p_tol: float = 1e-9
    q_tol: float = 1e-12
    trap_window: int = 1000
    batches: int = 32
    cold_ratio: float = 1e-2
    chunk_total: int = 20_000_000
    specialize_steps: int = 1_000_000_000
    max_hist_bytes: int = 2 * 1024 ** 3

    #: fields that cannot change any result (chunking, specialization and a memory limit)
    _NEUTRAL = ("chunk_total", "specialize_steps", "max_hist_bytes")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            ok = isinstance(v, bool) if f.type in ("bool", bool) else (
                not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v > 0
                and (f.type not in ("int", int) or float(v).is_integer()))
            if not ok:
                raise InputError(f"EngineOptions.{f.name} must be a {'bool' if f.type in ('bool', bool) else 'positive number'}, got {v!r}")

    def fingerprint(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in self._NEUTRAL}


@dataclass
class SimulationResult:
    """Statistics of a run; arrays are numpy, shapes in comments (d = dim, W = walkers).

    Momentum statistics pool all post-burn-in steps of the walkers that were not trapped.
    ``beta_hat`` = d / tr(A cov p) (equipartition E[p^T A p] = d / beta with A = M^-1; 1 / var(p)
    for d = 1 and A = 1, (3.5)); standard errors
    come from batch means (``EngineOptions.batches`` per walker, batches of all walkers treated as
    independent; the mean correction is neglected) and the delta method.
    ``q_iat_steps_per_dim`` is the integrated autocorrelation time of each coordinate of q in
    steps, tau_i = sigma_i^2 / var(q_i) with the batch-means estimate sigma_i^2 = sum_b n_b
    (m_b - mean)^2 / (nb - 1) over the same batches (n_b steps, batch mean m_b; all batches of
    the non-trapped walkers, about the pooled mean, so walkers stuck in different wells raise
    it); ``q_iat_steps`` is its maximum over dims (NaN when undefined).  It is biased low
    unless a batch is much longer than tau (tau << n_acc / batches).

    ``hist_count_var`` (shape of hist_counts) is the batch-means estimate of Var(hist_counts[c]) over the
    same walkers and steps: sum_{w,b} (n_wbc - l_wb N_c / N)^2 with n_wbc the count of walker w in
    batch b in cell c, l_wb its steps on the grid in that batch, N_c = hist_counts[c] and N their total
    (for d > 3 marginals, per coordinate).  ``p_moment_batches`` (W, B, d, 4): per walker and batch the
    batch mean of p_i^k, k = 1..4 (every walker; trapped ones are flagged by ``trapped``).
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
    hist_counts: np.ndarray             # (bins,)*d joint for d <= 3 / (d, bins) marginals for d > 3
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
    hist_count_var: np.ndarray | None = None    # shape of hist_counts
    p_moment_batches: np.ndarray | None = None  # (W, B, d, 4)
    options: "EngineOptions | None" = None

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
                          "outside": int(self.hist_outside), "marginal": bool(self.hist_marginal),
                          "count_var": None if self.hist_count_var is None else self.hist_count_var.tolist()},
            "engine_options": None if self.options is None else dataclasses.asdict(self.options),
            "samples": int(self.samples_q.shape[0]), "sample_stride": int(self.sample_stride),
        }
        return out

    def to_json(self) -> str:
        from .io import dumps

        return dumps(self.to_dict())

    def summary(self):
        """:class:`bayescg.summary.Summary` of the run: integrator, steps, speed, kinetic temperature, trapping."""
        from .summary import Summary

        s = Summary(f"simulate: {self.integrator} integrator, d = {self.dim}")
        s.add("delta", float(self.delta)).add("gamma", float(self.gamma)).add("walkers", int(self.walkers))
        s.add("steps", int(self.steps), ",").add("steps per second", float(self.steps_per_second), ".3g")
        s.add("beta_hat", _f(self.beta_hat), missing="n/a (every walker trapped)")
        s.add("beta_hat_se", _f(self.beta_hat_se), ".2g")
        s.add("trapped walkers", 100 * float(self.trapped_fraction), ".3g", "%")
        s.add("q IAT (steps)", _f(self.q_iat_steps), ".3g")
        return s.add("seconds", float(self.seconds), ".1f", "s")


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


def _integrator(name) -> Integrator:
    if name not in INTEGRATORS:
        raise InputError(f"integrator must be one of {', '.join(INTEGRATORS)}, got {name!r}")
    return INTEGRATORS[name]


def _constants(integ: Integrator, d, delta, mass, friction, gamma, beta, kick_noise):
    """(state.Consts, G, Z) of a run: A = M^-1 (``mass``, default I), G (``friction``, default gamma I),
    Z (``kick_noise``, for integrators that take it), and the integrator's (E, L)."""
    A = np.eye(d) if mass is None else _spd("mass", mass, d)
    G = gamma * np.eye(d) if friction is None else _spd("friction", friction, d)
    if (kick_noise is not None) != integ.kick_noise:
        takers = [n for n, i in INTEGRATORS.items() if i.kick_noise]
        raise InputError(f"kick_noise (the covariance Z of the white kick) is required by integrator "
                         f"{' / '.join(takers)} and used by no other")
    Z = None if kick_noise is None else _spd("kick_noise", kick_noise, d)
    E, L = integ.constants(d, delta, A, G, beta, Z)
    off = ~np.eye(d, dtype=bool)
    diag = bool(not np.any(A[off]) and not np.any(E[off]))
    return consts(A, E, L, delta, diag), G, Z


def walker_seeds(seed, n):
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


def initial_walker_state(seeds, d, init_mean, init_sd):
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
@dataclass(frozen=True)
class _Run:
    """Validated settings and derived sizes of one simulate() call."""
    potential: Potential
    integ: Integrator
    d: int
    c: object            # state.Consts
    G: np.ndarray
    Z: np.ndarray | None
    walkers: int
    seed: int
    n_per: int           # steps per walker
    burn: int            # burn-in steps per walker
    n_acc: int           # accumulated steps per walker
    B: int               # batches
    batch_len: int
    S: int               # samples per walker
    stride: int
    bins: int
    cells: int
    chunk_steps: int
    options: EngineOptions
    init_mean: np.ndarray
    init_sd: float
    hist_range: np.ndarray | None
    fingerprint: str

    @property
    def lens(self):
        """(B,) batch lengths (the last absorbs the remainder)."""
        lens = np.full(self.B, self.batch_len, dtype=np.int64)
        lens[-1] = self.n_acc - self.batch_len * (self.B - 1)
        return lens


#: simulate's default burn-in: the fraction of each walker's steps discarded.
DEFAULT_BURN_IN = 0.1


def walker_steps(steps: int, walkers: int, burn_in: float = DEFAULT_BURN_IN) -> tuple[int, int]:
    """(steps per walker, of which burn-in) of a run of ``steps`` steps in total over ``walkers`` walkers."""
    n_per = -(-int(steps) // int(walkers))
    return n_per, int(burn_in * n_per)


def _setup(potential, delta, gamma, steps, walkers, seed, mass, friction, integrator, beta, burn_in, init_mean,
           init_sd, bins, hist_range, max_samples, chunk_steps, kick_noise, options) -> _Run:
    potential = _check_potential(potential)
    d = potential.dim
    integ = _integrator(integrator)
    if options is None:
        options = EngineOptions()
    if not isinstance(options, EngineOptions):
        raise InputError(f"options must be a bayescg.simulate.EngineOptions, got {type(options).__name__}")
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
    cells = bins ** d if d <= 3 else d * bins  # 3D joint: bins^3 cells
    if stats_bytes(walkers, cells) > options.max_hist_bytes:  # ~32 bytes per walker and cell
        raise InputError(f"histograms of {walkers} walkers x {cells} cells exceed "
                         f"{options.max_hist_bytes / 2 ** 30:.3g} GiB; use fewer bins or walkers")
    c, G, Z = _constants(integ, d, delta, mass, friction, gamma, beta, kick_noise)

    n_per, burn = walker_steps(steps, walkers, burn_in)
    n_acc = n_per - burn
    if n_acc < 1:
        raise InputError("no steps left after burn-in; increase steps or reduce burn_in")
    B = min(options.batches, n_acc)
    batch_len = n_acc // B
    if n_acc - (B - 1) * batch_len >= 2 ** 31:  # the last batch, with the remainder
        raise InputError(f"batches of {batch_len} steps are too long for the per-batch cell counts; "
                         "use more walkers or EngineOptions(batches=...)")
    S = max_samples // walkers
    stride = max(1, n_acc // S) if S > 0 else 1
    S = min(S, -(-n_acc // stride)) if S > 0 else 0
    if chunk_steps is None:
        chunk_steps = max(1000, options.chunk_total // walkers)
    chunk_steps = _posint("chunk_steps", chunk_steps)

    settings = dict(expression=potential.expression, variables=list(potential.variables), d=d, delta=delta,
                    gamma=gamma, beta=beta, integrator=integ.name, steps=steps, walkers=walkers, seed=seed,
                    burn_in=burn_in, init_mean=init_mean.tolist(), init_sd=init_sd, bins=bins,
                    hist_range=None if hist_range is None else hist_range.tolist(), max_samples=max_samples,
                    mass=c.A.tolist(), friction=G.tolist(), engine=options.fingerprint(), layout=LAYOUT)
    if Z is not None:
        settings["kick_noise"] = Z.tolist()
    return _Run(potential=potential, integ=integ, d=d, c=c, G=G, Z=Z, walkers=walkers, seed=seed, n_per=n_per,
                burn=burn, n_acc=n_acc, B=B, batch_len=batch_len, S=S, stride=stride, bins=bins, cells=cells,
                chunk_steps=chunk_steps, options=options, init_mean=init_mean, init_sd=init_sd,
                hist_range=hist_range, fingerprint=json.dumps(settings, sort_keys=True))


def _fresh_state(run: _Run):
    """(Walkers, Stats, meta) at step 0; meta holds the chunk counter, time and the histogram grid."""
    q, p, rng_state = initial_walker_state(walker_seeds(run.seed, run.walkers), run.d, run.init_mean, run.init_sd)
    wk = new_walkers(q, p, rng_state)
    sx = new_stats(run.walkers, run.d, run.B, run.cells, run.S)
    meta = dict(done=np.int64(0), seconds=np.float64(0.0), hist_lo=np.zeros(run.d), hist_hi=np.ones(run.d),
                range_set=np.int64(0))
    if run.hist_range is not None:
        meta.update(hist_lo=run.hist_range[:, 0].copy(), hist_hi=run.hist_range[:, 1].copy(), range_set=np.int64(1))
    if run.integ.reuses_grad:
        loops.init_grad(run.potential.grad, wk.q, wk.g)
    return wk, sx, meta


def _load_state(run: _Run, checkpoint):
    from . import runtime

    st = runtime.load_checkpoint(checkpoint)
    if str(st.get("fingerprint", "")) != run.fingerprint:
        try:
            layout = json.loads(str(st.get("fingerprint", "{}"))).get("layout", 1)
        except ValueError:
            layout = None
        if layout != LAYOUT:
            raise InputError(f"{checkpoint}: checkpoint was written by another bayescg version (engine state layout "
                             f"{layout}, this one {LAYOUT}); rerun without --resume")
        raise InputError(f"{checkpoint}: checkpoint was written with different settings (or engine options, "
                         "or by an older bayescg); rerun without --resume (or with the same settings)")
    names = Walkers._fields + Stats._fields + ("done", "seconds", "hist_lo", "hist_hi", "range_set")
    missing = [k for k in names if k not in st]
    if missing:
        raise InputError(f"{checkpoint}: checkpoint lacks {missing[0]}; rerun without --resume")
    arr = {k: np.ascontiguousarray(st[k]) for k in Walkers._fields + Stats._fields}
    wk = Walkers(**{k: arr[k] for k in Walkers._fields})
    sx = Stats(**{k: arr[k] for k in Stats._fields})
    meta = {k: st[k] for k in ("done", "seconds", "hist_lo", "hist_hi", "range_set")}
    return wk, sx, meta


def potential_lane_kernel(potential, options):
    """The potential's compiled lane kernel, or None (user kernels; functions without a fast form;
    options.lanes False)."""
    gl = getattr(potential, "grad_lanes", None)
    if gl is None or not options.lanes:
        return None
    from .kernels.state import GRAD1_SIG, GRAD2_SIG, GRADL_SIG

    gl.compile(GRADL_SIG)
    potential.grad_scalar.compile(GRAD1_SIG if potential.dim == 1 else GRAD2_SIG)
    return gl


def _driver(run: _Run):
    """(advance, driver): advance(walkers, stats, plan, grid) is the loop for this run; driver the compiled-on-first-use
    engine driver it calls (loops._Lazy) or None.  Lane-capable integrators in d = 1, 2 run the lane loop (on the
    SIMD lane kernel when there is one and options.lanes, else on the array kernel; d = 1 array kernels of long runs
    on a driver specialized on the gradient); the rest the generic loop."""
    pot, integ, d = run.potential, run.integ, run.d
    if integ.lanes and d <= 2:
        gl = potential_lane_kernel(pot, run.options)
        grad = pot.grad if gl is None else gl
        fn = drv = loops.lanes_chunk(gl is not None, d)
        if gl is None and d == 1 and run.n_per * run.walkers >= run.options.specialize_steps:
            fn, drv = loops.specialized(fn), None
        c, noisy = run.c, integ.stochastic
        return (lambda wk, sx, P, G: fn(grad, wk, sx, c, noisy, P, G)), drv
    code = CODES[integ.name]
    return (lambda wk, sx, P, G: loops.run_chunk(pot.grad, code, wk, sx, run.c, P, G)), loops.run_chunk


def _compile_driver(driver, control) -> None:
    """Compile (or load) the run's engine driver before its first chunk.  When numba's cache does not hold it (the
    first run on a machine, ~10 s) the compile is its own stage, "<stage>: compiling the integrator (once per
    machine)" (RunControl.substage), so the progress of a first run is not a bar frozen at 0 %."""
    if driver is None:
        return
    if hasattr(control, "substage") and driver.cached() is False:
        with control.substage("compiling the integrator (once per machine)"):
            driver.compiled()
    driver.compiled()


def _plan(run: _Run, step0, nsteps, acc_start, minmax_start):
    o = run.options
    return plan(step0, nsteps, acc_start, minmax_start, run.batch_len, run.stride, not run.integ.stochastic,
                o.p_tol, o.q_tol, o.trap_window)


def simulate(potential, delta, gamma=0.1, *, steps, walkers=16, seed=1, mass=None, friction=None,
             integrator="damped", beta=1.0, burn_in=DEFAULT_BURN_IN, init_mean=None, init_sd=1.0,
             bins=200, hist_range=None, max_samples=100_000, chunk_steps=None,
             checkpoint=None, resume=False, control=None, kick_noise=None,
             options: EngineOptions | None = None) -> SimulationResult:
    """Run ``walkers`` independent walkers of the chosen integrator on ``potential``.

    potential: Potential (d = potential.dim); delta: step size; gamma: scalar friction used when
    ``friction`` (d, d) is None; steps: total steps summed over walkers (each walker does
    ceil(steps / walkers)); mass: inverse mass matrix A = M^-1 (d, d), default I; integrator: a name in
    :data:`bayescg.kernels.registry.INTEGRATORS`: "damped" (3.2), "langevin" (4.2, BAOAB, inverse
    temperature ``beta``), "hamiltonian" (4.1) or "damped_white" ((3.2) plus a kick xi ~ N(0, delta Z) per
    step, Z = ``kick_noise``: a positive number for d = 1 or a (d, d) SPD matrix; required by it, refused
    by the others); burn_in: fraction of each walker's steps discarded; q0 ~ N(init_mean, init_sd^2 I),
    p0 ~ N(0, init_sd^2 I).  Histogram grid: ``hist_range`` [(lo, hi)] * d or the burn-in
    range of positions (last half of burn-in, +-10 % margin; a separate pilot of copies when
    burn-in is shorter than 1000 steps).  Chunks are ``chunk_steps`` steps per walker (default
    about options.chunk_total steps summed over walkers); results do not depend on the chunking or on
    the number of threads.  ``checkpoint``: path of an .npz saved after every chunk, before
    ``control.tick(fraction_done)`` (fraction in (0, 1]: use ``RunControl(label)`` with its
    default total 1.0); ``resume`` continues from it bit-identically (refused when any setting or
    engine option that changes results differs).  ``options``: :class:`EngineOptions` (default ones).

    Raises InputError for bad arguments, BlowUpError (a SimulationError) when a walker blows up.  Trapped
    walkers (p collapsing to 0 at a fixed point of the map) are excluded from all statistics;
    if all are trapped the statistics are NaN and trapped_fraction is 1.
    """
    from . import runtime

    run = _setup(potential, delta, gamma, steps, walkers, seed, mass, friction, integrator, beta, burn_in,
                 init_mean, init_sd, bins, hist_range, max_samples, chunk_steps, kick_noise, options)
    if resume:
        if checkpoint is None:
            raise InputError("resume=True needs a checkpoint path")
        wk, sx, meta = _load_state(run, checkpoint)
    else:
        wk, sx, meta = _fresh_state(run)
    advance, driver = _driver(run)
    _compile_driver(driver, control)
    minmax_start = run.burn // 2
    t0 = time.perf_counter()
    seconds0 = float(meta["seconds"])
    done = int(meta["done"])
    while done < run.n_per:
        if done == run.burn and not int(meta["range_set"]):
            _set_range(run, wk, sx, meta, advance)
        end = min(run.n_per, done + run.chunk_steps)
        if done < run.burn < end:
            end = run.burn  # chunk boundary at the end of burn-in (the grid is fixed there)
        advance(wk, sx, _plan(run, done, end - done, run.burn, minmax_start),
                grid(meta["hist_lo"], meta["hist_hi"], run.bins))
        _check_blowup(wk)
        done = end
        if done == run.burn and not int(meta["range_set"]):
            _set_range(run, wk, sx, meta, advance)
        meta["done"] = np.int64(done)
        meta["seconds"] = np.float64(seconds0 + time.perf_counter() - t0)
        if checkpoint is not None:
            runtime.save_checkpoint(checkpoint, **wk._asdict(), **sx._asdict(), **meta,
                                    fingerprint=np.array(run.fingerprint))
        if control is not None:
            control.tick(done / run.n_per)
    return _result(run, wk, sx, meta, seconds0 + time.perf_counter() - t0, gamma, beta, burn_in)


def _check_blowup(wk):
    blown = np.flatnonzero(wk.blown_at >= 0)
    if blown.size:
        w = int(blown[np.argmin(wk.blown_at[blown])])
        qv = wk.q[w]
        pv = wk.p[w]
        what = f"q = {qv[0] if qv.size == 1 else qv.tolist()}"
        if np.all(np.isfinite(qv)):
            what = f"p = {pv[0] if pv.size == 1 else pv.tolist()}"
        raise BlowUpError(f"walker {w} blew up at step {int(wk.blown_at[w])} ({what}); reduce delta")


def _set_range(run: _Run, wk, sx, meta, advance):
    """Fix the histogram grid from the burn-in range of live walkers (+-10 % margin)."""
    live = wk.trapped_at < 0
    lo = sx.qmin[live]
    hi = sx.qmax[live]
    ok = np.isfinite(lo).all(axis=1) & np.isfinite(hi).all(axis=1) if lo.size else np.zeros(0, bool)
    if run.burn < 1000 or not ok.any():
        # pilot of copies of the walkers (their states are not touched), on the run's own loop
        W, d = wk.q.shape
        n = int(min(max(run.n_per, 1), 1000))
        cp = Walkers(*(a.copy() for a in wk))
        ps = new_stats(W, d, 1, 1, 0)
        advance(cp, ps, _plan(run, 0, n, n + 1, 0), grid(np.zeros(d), np.ones(d), 1))  # never accumulates
        # include the current positions too (the pilot may be short)
        qmin = np.minimum(ps.qmin, wk.q)
        qmax = np.maximum(ps.qmax, wk.q)
        good = np.isfinite(qmin).all(axis=1) & np.isfinite(qmax).all(axis=1)
        lo, hi, ok = qmin, qmax, good
    if not ok.any():
        lo_v = np.full(wk.q.shape[1], -1.0)
        hi_v = np.full(wk.q.shape[1], 1.0)
    else:
        lo_v = lo[ok].min(axis=0)
        hi_v = hi[ok].max(axis=0)
    span = hi_v - lo_v
    span = np.where(span > 0, span, np.maximum(1.0, np.abs(lo_v)))
    meta["hist_lo"] = lo_v - 0.1 * span
    meta["hist_hi"] = hi_v + 0.1 * span
    meta["range_set"] = np.int64(1)


def _result(run: _Run, wk, sx, meta, seconds, gamma, beta, burn_in) -> SimulationResult:
    d, B, walkers = run.d, run.B, run.walkers
    A = run.c.A
    steps_done = run.n_per * walkers
    lens = run.lens
    flens = lens.astype(float)
    _flag_frozen_walkers(wk, sx, flens, run.burn, run.batch_len, run.options.cold_ratio)
    trapped = wk.trapped_at >= 0
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
        N = ng * run.n_acc
        mean = sx.bp[good].sum(axis=(0, 1)) / N
        second = sx.bpp[good].sum(axis=(0, 1)) / N
        cov = second - np.outer(mean, mean)
        cov = 0.5 * (cov + cov.T)
        Mwb = sx.bpp[good] / flens[None, :, None, None]          # (ng, B, d, d) batch means
        smb = Mwb.mean(axis=0)
        nb = ng * B
        flat = Mwb.reshape(nb, d, d)
        # equipartition E[p^T A p] = d / beta; A @ X is exactly X for A = I (no change then)
        tr_cov = float(np.trace(A @ cov))
        if not (math.isfinite(tr_cov) and abs(tr_cov) < 1e150):
            # states still finite but whose second moments overflow (|p| ~ 1e75 and more): a blow-up the kernels'
            # finiteness test does not see; beta's se below (tr_cov^2) would raise OverflowError
            w = int(np.argmax(np.nan_to_num(sx.bpp[good].sum(axis=(1, 2, 3)), nan=np.inf, posinf=np.inf)))
            raise BlowUpError(f"walker {int(np.flatnonzero(good)[w])} blew up (momentum variance "
                              f"{tr_cov:.3g}); reduce delta")
        beta_hat = d / tr_cov
        if nb >= 2:
            cov_se = flat.std(axis=0, ddof=1) / math.sqrt(nb)
            tr_b = np.trace(A[None] @ flat, axis1=1, axis2=2) - float(mean @ A @ mean)
            beta_se = d * float(tr_b.std(ddof=1)) / math.sqrt(nb) / tr_cov ** 2
        else:
            cov_se = nan_dd.copy()
            beta_se = float("nan")
    iat = _q_iat(sx.bq[good], sx.bqq[good], flens)
    marginal = d > 3
    shape = (d, run.bins) if marginal else (run.bins,) * d
    lin = (lens[None, :] - sx.bout)[good].astype(float)      # (ng, B) in-grid steps per batch
    # whist (ng, C) float: per-walker counts, all batches; hvar (C,) the batch-means variance of the counts
    whist, counts, hvar = flush_cells(sx, lens, good, float(lin.sum()), float((lin * lin).sum()))
    hist = counts.reshape(shape)
    hvar = hvar.reshape(shape)
    pmom = np.stack([sx.bp, np.diagonal(sx.bpp, axis1=2, axis2=3), sx.bpk[..., 0], sx.bpk[..., 1]], axis=-1)
    pmom = pmom / flens[None, :, None, None]
    edges = [np.linspace(meta["hist_lo"][i], meta["hist_hi"][i], run.bins + 1) for i in range(d)]
    ns = sx.nstored
    idx = [w for w in range(walkers) if good[w] and ns[w] > 0]
    if len(idx) == walkers and (ns == run.S).all():
        # every walker kept all its samples: the (W S, d) views of samp_q, samp_p are the concatenation
        # (no copy: a copy's fresh pages cost ~3 us each to fault in)
        sq = sx.samp_q.reshape(walkers * run.S, d)
        sp = sx.samp_p.reshape(walkers * run.S, d)
        sw = np.repeat(np.arange(walkers, dtype=np.int64), run.S)
    elif idx:
        sq = np.concatenate([sx.samp_q[w, :ns[w]] for w in idx])
        sp = np.concatenate([sx.samp_p[w, :ns[w]] for w in idx])
        sw = np.concatenate([np.full(ns[w], w, dtype=np.int64) for w in idx])
    else:
        sq = np.zeros((0, d))
        sp = np.zeros((0, d))
        sw = np.zeros(0, dtype=np.int64)
    pot = run.potential
    return SimulationResult(
        dim=d, delta=run.c.delta, gamma=gamma, mass=A.copy(), friction=run.G.copy(), integrator=run.integ.name,
        beta=beta, steps=steps_done, walkers=walkers, seed=run.seed, burn_in=burn_in, seconds=seconds,
        steps_per_second=steps_done / seconds if seconds > 0 else float("nan"),
        momentum_mean=mean, momentum_covariance=cov, momentum_covariance_se=cov_se,
        second_moment_batches=smb, beta_hat=float(beta_hat), beta_hat_se=float(beta_se),
        hist_counts=hist, hist_edges=edges, hist_outside=int(sx.bout[good].sum()),
        samples_q=sq, samples_p=sp, sample_stride=int(run.stride), sample_walker=sw,
        trapped=trapped, trapped_fraction=float(trapped.mean()), trapped_at=wk.trapped_at.copy(),
        steps_per_walker=run.n_per, burn_in_steps=run.burn, accumulated_steps=ng * run.n_acc,
        expression=pot.expression, variables=tuple(pot.variables), hist_marginal=marginal,
        final_q=wk.q.copy(), final_p=wk.p.copy(),
        q_iat_steps=float(np.max(iat)) if np.all(np.isfinite(iat)) else float("nan"), q_iat_steps_per_dim=iat,
        kick_noise=None if run.Z is None else run.Z.copy(), hist_count_var=hvar, p_moment_batches=pmom,
        options=run.options,
        walker_hist_counts=whist.reshape((ng,) + shape),
        walker_second_moments=sx.bpp[good].sum(axis=1) / max(run.n_acc, 1))


def _flag_frozen_walkers(wk, sx, lens, burn, batch_len, cold_ratio):
    """Mark walkers whose momentum collapsed without meeting the |p| <= p_tol test as trapped.

    A walker spiralling slowly into a fixed point of the map, or circling a small stable orbit, keeps
    |p| above p_tol for a long time while its momentum has collapsed; its positions then pile up in a
    few histogram bins (seen on Test 1 at delta 0.065 as a spike in the learned U_1). In a warm walker
    the mean of tr(p p^T) over a whole batch is never a hundredth of the ensemble's median, so that
    is the test (``EngineOptions.cold_ratio``); such a walker is flagged from the first cold batch on.
    """
    if lens.min() <= 0 or sx.bpp.shape[0] < 2:
        return
    ke = np.trace(sx.bpp, axis1=2, axis2=3) / lens[None, :]       # (walkers, B)
    live = wk.trapped_at < 0
    if live.sum() < 2:
        return
    ref = float(np.median(ke[live]))
    if not ref > 0:
        return
    cold = ke < cold_ratio * ref
    for w in np.nonzero(live & cold.any(axis=1))[0]:
        wk.trapped_at[w] = burn + int(np.argmax(cold[w])) * batch_len




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


# --- from a model file: the one translation of [potential] and [simulation] into simulate's inputs -----
def potential_from_model(model: Model):
    """The model's V as a compiled :class:`~bayescg.potentials.Potential`."""
    from .potentials import Potential

    pot = model.require("potential")
    if pot.module is not None:
        return Potential.from_module(model.resolve(pot.module), pot.variables)
    if pot.expression is None:
        raise InputError(f"{model.path or model.name}: [potential] has no expression or module: there is no V "
                         "to simulate (a [trajectory] model learns from its data only)")
    return Potential.from_expression(pot.expression, pot.variables)


def reference_from_model(model: Model):
    """The model's reference U_k (or None)."""
    from .potentials import Potential

    pot = model.require("potential")
    if not pot.reference:
        return None
    return Potential.from_expression(pot.reference, pot.variables)


def hist_range_from_model(model: Model):
    dom = model.potential.domain if model.potential is not None else None
    return None if dom is None else [tuple(r) for r in dom]


def sim_kwargs(model: Model) -> dict:
    """Keyword arguments of :func:`bayescg.simulate.simulate` from ``[simulation]`` (all but delta; the one
    translation of the section, used by simulate, learn, noise and scales)."""
    s = model.require("simulation")
    kw = dict(gamma=s.gamma, steps=s.steps, walkers=s.walkers, seed=s.seed, burn_in=s.burn_in,
              init_sd=s.init_sd, bins=s.bins, max_samples=s.max_samples,
              hist_range=hist_range_from_model(model))
    if s.init_mean:
        kw["init_mean"] = np.asarray(s.init_mean, float)
    if s.mass is not None:
        kw["mass"] = np.asarray(s.mass, float)
    if s.friction is not None:
        kw["friction"] = np.asarray(s.friction, float)
    # only what differs from simulate's defaults, so callers that set these themselves (the white-kick runs of
    # the finite-delta correction) do not receive them twice
    if s.integrator != "damped":
        kw["integrator"] = s.integrator
    if s.kick_noise is not None:
        kw["kick_noise"] = s.kick_noise
    if not s.lanes:
        kw["options"] = EngineOptions(lanes=False)
    return kw


# --- friction choice: the remedy for cold, trapped runs -------------------------------------
@dataclasses.dataclass
class GammaChoice:
    """Outcome of :func:`choose_gamma`: the friction and the pilot runs that led to it."""

    gamma: float
    beta_hat: float
    history: list  # [{gamma, beta_hat, trapped_fraction}] of the pilots

    def to_dict(self):
        return dataclasses.asdict(self)


def choose_gamma(potential, delta: float, *, gamma0: float = 0.1, target_beta: float = 0.6,
                 band: tuple = (0.2, 1.25), pilot_steps: int = 2_000_000, walkers: int = 16, seed: int = 1,
                 max_pilots: int = 4, **sim_kwargs) -> GammaChoice:
    """Pick a scalar friction that puts beta_hat = 1/var(p) near ``target_beta``.

    From (3.4)-(3.5) in 1D, var(p) = Z / (2 gamma) with Z = delta E[g^2] independent of gamma,
    so beta_hat is proportional to gamma: one pilot at ``gamma0`` predicts the gamma for any target;
    further pilots correct the finite-delta deviation from proportionality.  A cold run
    (beta_hat >> 1) is where walkers fall into fixed points of the map (measured on Test 1 at
    delta = 0.065: gamma 0.1 gives 41 % trapped and beta_hat ~ 480, gamma 0.01 gives beta_hat
    0.61); a pilot whose walkers all trap is retried with gamma / 10.
    """
    gamma, history = float(gamma0), []
    for i in range(max_pilots):
        sim = simulate(potential, delta, gamma, steps=pilot_steps, walkers=walkers, seed=seed + i, **sim_kwargs)
        b = sim.beta_hat
        history.append({"gamma": gamma, "beta_hat": None if not math.isfinite(b) else b,
                        "trapped_fraction": sim.trapped_fraction})
        if not math.isfinite(b) or sim.trapped_fraction >= 1.0:
            gamma /= 10.0
            continue
        if band[0] <= b <= band[1] and sim.trapped_fraction < 0.05:
            return GammaChoice(gamma, b, history)
        gamma *= target_beta / b
    last = [h for h in history if h["beta_hat"] is not None]
    return GammaChoice(gamma, last[-1]["beta_hat"] if last else float("nan"), history)


PILOT_MAX_WALKERS = 64


def auto_gamma(potential, delta: float, sim_kwargs: dict, target_beta: float = 0.6) -> GammaChoice:
    """:func:`choose_gamma` from the run's own settings, starting at ``sim_kwargs["gamma"]``.

    The pilots use the run's walkers, seed and histogram grid; the chosen friction is written back
    into ``sim_kwargs["gamma"]`` so the caller's run uses it.
    """
    pilot = {k: sim_kwargs[k] for k in ("walkers", "seed", "bins", "hist_range") if k in sim_kwargs}
    # a pilot spread over thousands of walkers would be a few hundred steps each, too short to equilibrate
    pilot["walkers"] = min(int(pilot.get("walkers", PILOT_MAX_WALKERS)), PILOT_MAX_WALKERS)
    choice = choose_gamma(potential, delta, gamma0=sim_kwargs["gamma"], target_beta=target_beta, **pilot)
    sim_kwargs["gamma"] = choice.gamma
    return choice


def simulate_model(model, *, checkpoint=None, resume=False, control=None) -> SimulationResult:
    """:func:`simulate` with the potential and ``[simulation]`` settings of a model file (bayescg.config.Model),
    translated by :func:`sim_kwargs` as for learn, with ``auto_gamma`` honoured the same way."""
    s = model.require("simulation")
    potential = potential_from_model(model)  # expression or the user's Python module
    kw = sim_kwargs(model)
    if s.auto_gamma and s.friction is None:
        auto_gamma(potential, s.delta, kw, s.target_beta)
    return simulate(potential, s.delta, checkpoint=checkpoint, resume=resume, control=control, **kw)


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
    integ = _integrator(integrator)
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
    c, _, _ = _constants(integ, d, h, mass, friction, gamma, beta, kick_noise)
    M = q0.shape[0]
    every = max(1, int(round(record_every / h)))
    nsteps = int(round(T / h))
    nrec = nsteps // every
    wk = new_walkers(np.ascontiguousarray(q0), np.ascontiguousarray(p0), seed_states(seed, M))
    loops.init_grad(potential.grad, wk.q, wk.g)
    out_q = np.empty((nrec + 1, M, d))
    out_p = np.empty((nrec + 1, M, d))
    out_q[0] = wk.q
    out_p[0] = wk.p
    q, blown = wk.q, wk.blown_at
    # chunks of records so that Ctrl-C is honoured within seconds
    per_chunk = max(1, int(2e7 // max(1, M * every)))
    r = 0
    while r < nrec:
        n = min(per_chunk, nrec - r)
        loops.record_chunk_for(CODES[integ.name])(potential.grad, CODES[integ.name], wk, c, n, every, r, out_q, out_p)
        if (blown >= 0).any():
            m = int(np.flatnonzero(blown >= 0)[0])
            raise BlowUpError(f"trajectory {m} blew up at step {int(blown[m])} (q = {q[m].tolist()}); reduce h")
        r += n
        if control is not None:
            control.tick(r / nrec)
    times = np.arange(nrec + 1) * every * h
    return times, out_q, out_p
