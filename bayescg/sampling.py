"""One sampling layer: NUTS through nutpie or PyMC, progress, interruption and diagnostics.

:func:`sample` is the one place where the project runs NUTS (the effective-potential fit, the noise model
and the Ising pillar call it), in the manner of ``pm.sample(nuts_sampler=...)``:

* a ``pm.Model``: nutpie (compiled without PyTensor's fast-math flags, :func:`bayescg.runtime.compile_nutpie`)
  or ``pm.sample`` (``nuts_sampler="pymc"``);
* a :class:`CompiledDensity` (or an object with a ``callbacks()`` method returning one): a log density written
  as numba C callbacks whose data travel in one packed float64 buffer, sampled by nutpie with nothing
  compiled per run (``cache=True`` kernels: ``bayescg/kernels/effective.py``, ``bayescg/ising/kernel.py``).
  This builds nutpie's own compiled-PyMC container and so uses nutpie 0.16 internals
  (``nutpie.compile_pymc.CompiledPyMCModel``, the raw arrow trace for progress); pyproject pins
  ``nutpie>=0.16,<0.17`` for that reason.

Progress (``control``, a :class:`bayescg.runtime.RunControl`): a compile stage, then one stage for tuning +
draws with each chain's position ("tune 340/1000", "draw 12/1000").  Interruption: once ``control.interrupted``
is set (SIGINT) sampling stops within a poll (nutpie) or a draw (PyMC) and :class:`~bayescg.errors.Interrupted`
is raised with ``exc.partial`` = the InferenceData of the complete post-warm-up draws so far (chains cut to a
common length, chains without a draw dropped) or None.  Timings go into ``idata.posterior.attrs``:
``nuts_sampler``, ``compile_seconds``, ``sampling_seconds`` (wall), ``sampling_cpu_seconds`` (this process).
"""
from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from .errors import InputError, Interrupted
from .runtime import begin_stage

__all__ = ["CompiledDensity", "sample", "diagnostics", "convergence_warnings", "nuts_backend"]

POLL_SECONDS = 0.05  # nutpie runs in its own threads; this process only polls for SIGINT and progress


@dataclass(frozen=True)
class CompiledDensity:
    """A log density as nutpie C callbacks (numba ``cfunc``, signatures of ``nutpie.compile_pymc``).

    logp: (dim, x*, grad_out*, logp_out*, user_data) -> int (0 = ok); expand: (dim, n_expanded, x*, out*,
    user_data) -> int, the unconstrained point -> the stored values (concatenated in ``shapes`` order);
    buf: the packed float64 data passed as ``user_data``; shapes: {name: shape} of the stored values;
    initial_point(seed) -> (n_dim,) start of a chain; dims/coords: ArviZ dims of the stored values.  The
    callbacks are compiled (or loaded from numba's disk cache) when they are made: by the ``callbacks()`` of
    the density objects, which :func:`sample` calls inside its compile stage.
    """

    logp: Any
    expand: Any
    buf: np.ndarray
    shapes: dict
    initial_point: Callable
    n_dim: int
    dims: Optional[dict] = None
    coords: Optional[dict] = None

    def to_nutpie(self):
        """nutpie's compiled-model container around the callbacks (nutpie 0.16 ``CompiledPyMCModel``)."""
        from nutpie.compile_pymc import CompiledPyMCModel

        names = list(self.shapes)
        shapes = [tuple(self.shapes[k]) for k in names]
        starts = np.cumsum([0] + [int(np.prod(sh)) for sh in shapes])
        slices = [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]
        return CompiledPyMCModel(_n_dim=self.n_dim, dims=dict(self.dims or {}), _coords=dict(self.coords or {}),
                                 _shapes=dict(zip(names, shapes)), compiled_logp_func=self.logp,
                                 compiled_expand_func=self.expand, initial_point_func=self.initial_point,
                                 shared_data={}, user_data=self.buf, n_expanded=int(starts[-1]),
                                 shape_info=(names, slices, shapes), logp_func=None, expand_func=None)


_DP = ctypes.POINTER(ctypes.c_double)


def cfunc_logp_grad(logp, buf: np.ndarray, x, n_dim: int) -> tuple[float, np.ndarray]:
    """Evaluate a nutpie logp callback ``logp`` (numba cfunc) with user data ``buf`` at x (n_dim,) ->
    (log density, gradient (n_dim,)); a non-finite value or gradient is returned as computed."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.shape != (n_dim,):
        raise InputError(f"the point must have shape ({n_dim},), got {x.shape}")
    g = np.empty(n_dim)
    lp = np.full(1, np.nan)
    if logp.ctypes(n_dim, x.ctypes.data_as(_DP), g.ctypes.data_as(_DP), lp.ctypes.data_as(_DP), buf.ctypes.data) < 0:
        raise InputError(f"the density's data do not match a point of dimension {n_dim}")
    return float(lp[0]), g


def nuts_backend() -> str:
    """"nutpie" when importable, else "pymc" (what ``nuts_sampler="auto"`` picks)."""
    try:
        import nutpie  # noqa: F401

        return "nutpie"
    except ImportError:
        return "pymc"


def _backend(nuts_sampler) -> str:
    if nuts_sampler in (None, "auto"):
        return nuts_backend()
    if nuts_sampler not in ("nutpie", "pymc"):
        raise InputError(f"nuts_sampler must be auto, nutpie or pymc, got {nuts_sampler!r}")
    if nuts_sampler == "nutpie" and nuts_backend() != "nutpie":
        raise InputError("nutpie is not installed (pip install 'bayescg[fast]')")
    return nuts_sampler


def sample(model, *, draws: int = 1000, tune: int = 1000, chains: int = 4, seed: int = 1,
           target_accept: float = 0.9, control=None, nuts_sampler: str = "auto", cores: Optional[int] = None):
    """NUTS on ``model`` (pm.Model, :class:`CompiledDensity` or an object with ``callbacks()``) ->
    arviz.InferenceData (posterior, sample_stats).  cores: chains run at once (default min(chains, 2): the
    machine is shared).  See the module docstring for progress, interruption and the timing attrs."""
    draws, tune, chains, seed = int(draws), int(tune), int(chains), int(seed)
    if draws < 1 or tune < 0 or chains < 1:
        raise InputError(f"need draws >= 1, tune >= 0, chains >= 1 (got {draws}, {tune}, {chains})")
    cores = int(cores or min(chains, 2))
    backend = _backend(nuts_sampler)
    t0 = time.perf_counter()
    if hasattr(model, "callbacks") or isinstance(model, CompiledDensity):
        if backend != "nutpie":
            raise InputError("a compiled density is sampled by nutpie (pip install 'bayescg[fast]')")
        begin_stage(control, "NUTS: compile (cached kernel)")
        if hasattr(model, "callbacks"):
            model = model.callbacks()  # compiles on a cold numba cache, else loads the machine code from disk
        compiled = model.to_nutpie()
    elif backend == "nutpie":
        from .runtime import compile_nutpie

        begin_stage(control, "NUTS: compile (PyMC model)")
        compiled = compile_nutpie(model)
    else:
        compiled = model  # pm.sample compiles inside: its compile time is part of sampling_seconds
    t1, c1 = time.perf_counter(), time.process_time()
    kw = dict(draws=draws, tune=tune, chains=chains, seed=seed, target_accept=target_accept, cores=cores)
    if backend == "nutpie":
        idata, stopped = _run_nutpie(compiled, control, **kw)
    else:
        idata, stopped = _run_pymc(compiled, control, **kw)
    t2, c2 = time.perf_counter(), time.process_time()
    if stopped:
        idata = complete_draws(idata)
    if idata is not None:
        idata.posterior.attrs.update(nuts_sampler=backend, compile_seconds=t1 - t0, sampling_seconds=t2 - t1,
                                     sampling_cpu_seconds=c2 - c1)
    if stopped:
        exc = Interrupted("NUTS: interrupted")
        try:
            if hasattr(control, "check"):
                control.check()  # the control's own message (RunControl: stage label, --resume hint)
        except Interrupted as own:
            exc = own
        exc.partial = idata
        raise exc
    return idata


def _interrupted(control) -> bool:
    return control is not None and bool(getattr(control, "interrupted", False))


def progress_tick(control, done: float, note: str = "") -> None:
    """``control.tick`` for samplers: a pending SIGINT is left to the sampler's own check (which keeps the draws
    so far) instead of raising out of the middle of a chain."""
    if control is not None and hasattr(control, "tick"):
        try:
            control.tick(done, note=note)
        except Interrupted:
            pass


def _chain_note(rows, tune, draws) -> str:
    return ", ".join("-" if r == 0 else f"tune {r}/{tune}" if r < tune else f"draw {r - tune}/{draws}"
                     for r in rows)


def _run_nutpie(compiled, control, *, draws, tune, chains, seed, target_accept, cores):
    """nutpie.sample in the background, polled for SIGINT and per-chain progress -> (idata, stopped)."""
    import nutpie

    kw = dict(draws=draws, tune=tune, chains=chains, seed=seed, progress_bar=False, cores=cores,
              target_accept=target_accept)
    if control is None:
        return nutpie.sample(compiled, **kw), False
    sampler = nutpie.sample(compiled, blocking=False, **kw)
    total = chains * (tune + draws)
    begin_stage(control, f"NUTS: {chains} chains x ({tune} tuning + {draws} draws), {cores} at a time", total)
    last = 0.0
    while True:
        if _interrupted(control):
            return sampler.abort(), True
        try:
            if sampler.is_finished:
                break
        except TimeoutError:  # nutpie 0.16 raises this while the sampler is still running
            pass
        now = time.perf_counter()
        if now - last > 0.5:
            last = now
            rows = _nutpie_steps(sampler)
            if rows is not None:
                progress_tick(control, float(sum(rows)), note=f"[{_chain_note(rows, tune, draws)}]")
        time.sleep(POLL_SECONDS)
    progress_tick(control, float(total))
    return sampler.wait(), False


def _nutpie_steps(sampler):
    """Steps (tuning + draws) done by each chain so far, from nutpie's raw (arrow) trace; None if unavailable.

    Read through the sampler's ``_sampler`` (nutpie 0.16): the public ``inspect`` converts the whole trace to
    InferenceData at every poll."""
    try:
        rows, _ = sampler._sampler.inspect().get_arrow_trace()
        return [int(d.num_rows) for d in rows]
    except Exception:  # noqa: BLE001 -- progress is a display; never fail the run for it
        return None


def _run_pymc(model, control, *, draws, tune, chains, seed, target_accept, cores):
    """pm.sample, one chain after another (cores=1 in this process: no fork of numba's threads), stopped
    after the current draw once ``control.interrupted`` is set -> (idata or None, stopped)."""
    import pymc as pm

    total = chains * (tune + draws)
    begin_stage(control, f"NUTS (pymc): {chains} chains x ({tune} tuning + {draws} draws)", total)
    done = [0]

    def callback(trace, draw):  # after every draw of every chain (tuning included)
        done[0] += 1
        if _interrupted(control):
            raise KeyboardInterrupt  # PyMC ends the chain and returns the draws so far
        progress_tick(control, done[0])

    try:
        idata = pm.sample(draws=draws, tune=tune, chains=chains, cores=1, random_seed=seed, model=model,
                          progressbar=False, target_accept=target_accept, compute_convergence_checks=False,
                          callback=callback)
    except ValueError:  # PyMC: "Not enough samples to build a trace" (stopped while tuning)
        if _interrupted(control):
            return None, True
        raise
    return idata, _interrupted(control)


def complete_draws(idata):
    """An interrupted run's InferenceData cut to the leading draws that are complete in every chain kept
    (nutpie pads unfinished chains with NaN); chains without any draw are dropped; None if nothing is left."""
    if idata is None or "posterior" not in idata.groups():
        return None
    post = idata.posterior
    ok = None
    for v in post.data_vars.values():
        a = np.asarray(v.values, float).reshape(v.shape[0], v.shape[1], -1)
        f = np.isfinite(a).all(axis=2)
        ok = f if ok is None else ok & f
    if ok is None or ok.shape[1] == 0:
        return None
    done = np.where(ok.all(axis=1), ok.shape[1], np.argmin(ok, axis=1))  # leading complete draws per chain
    keep = np.nonzero(done > 0)[0]
    if len(keep) == 0:
        return None
    n = int(done[keep].min())
    out = {}
    for g in ("posterior", "sample_stats"):
        if g in idata.groups():
            out[g] = idata[g].isel(chain=keep, draw=slice(0, n)).assign_coords(chain=np.arange(len(keep)))
    import arviz as az

    return az.InferenceData(**out)


def diagnostics(idata, var_names=None) -> dict:
    """Sampler diagnostics over ``var_names`` (default: every posterior variable):

    r_hat_max (rank-normalised split R-hat; NaN with one chain), ess_bulk_min, divergences (post-warm-up),
    tree_depth_mean / tree_depth_max and grad_evals_per_draw (mean leapfrog steps per draw; None when the
    sampler reports no trees, e.g. Gibbs)."""
    import arviz as az

    post = idata.posterior
    names = [v for v in (var_names or list(post.data_vars)) if v in post]
    rh = es = float("nan")
    from .plots._base import arviz_without_numba

    with arviz_without_numba():  # its rhat jit-compiles a variance helper (no disk cache) in every process
        if post.sizes.get("chain", 1) >= 2 and post.sizes.get("draw", 0) >= 4:
            r = az.rhat(post[names])
            vals = np.concatenate([np.ravel(r[v].values) for v in names])
            rh = float(np.nanmax(vals)) if np.isfinite(vals).any() else float("nan")
        if post.sizes.get("draw", 0) >= 4:
            e = az.ess(post[names], method="bulk")
            vals = np.concatenate([np.ravel(e[v].values) for v in names])
            es = float(np.nanmin(vals)) if np.isfinite(vals).any() else float("nan")
    out = {"r_hat_max": rh, "ess_bulk_min": es, "divergences": 0, "tree_depth_mean": None, "tree_depth_max": None,
           "grad_evals_per_draw": None}
    ss = idata.sample_stats if "sample_stats" in idata.groups() else None
    if ss is None:
        return out
    for key in ("diverging", "divergences"):
        if key in ss:
            out["divergences"] = int(np.asarray(ss[key].values).sum())
            break
    for key in ("depth", "tree_depth"):  # nutpie, PyMC
        if key in ss:
            d = np.asarray(ss[key].values, float)
            out["tree_depth_mean"], out["tree_depth_max"] = float(d.mean()), int(d.max())
            break
    if "n_steps" in ss:
        out["grad_evals_per_draw"] = float(np.asarray(ss["n_steps"].values, float).mean())
    return out


def convergence_warnings(diag: dict, r_hat_max: float = 1.01, ess_min: float = 100.0) -> list[str]:
    """Warnings for a sampler run: r_hat > 1.01 (or undefined with one chain), divergences, low bulk ESS."""
    out = []
    rh = diag.get("r_hat_max")
    if rh is None or not np.isfinite(rh):
        out.append("r_hat undefined (one chain): convergence not checked")
    elif rh > r_hat_max:
        out.append(f"sampler not converged: r_hat_max = {rh:.3f} > {r_hat_max}")
    if diag.get("divergences", 0):
        out.append(f"sampler had {diag['divergences']} divergent transitions")
    ess = diag.get("ess_bulk_min")
    if ess is not None and ess < ess_min:
        out.append(f"low effective sample size of the posterior: ess_bulk_min = {ess:.0f} < {ess_min:.0f}")
    return out
