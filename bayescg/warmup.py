"""Compile a pipeline's later kernels in a background process while its first stages run.

On a fresh numba cache a run compiles each kernel when it first needs it, one after the other on one core of two.
:func:`start` runs one task of :data:`TASKS` in a child process at the start of the run: it calls the kernels of the
run's later stages on toy inputs whose arrays have the dtypes and ranks of the real ones (so the compiled signatures
are the ones the run needs), and numba writes them to its disk cache, where the run's own first call finds them.
Results do not depend on it (the same machine code either way; numba replaces cache files atomically); a run that
reaches a kernel before the child has cached it waits for it where the task reports a step for it (below), and
otherwise compiles it itself, as without the child.

* ``ising``: first the chain kernels that the likelihood (E1)/(E2) shares with the Gibbs sweeps
  (:func:`bayescg.ising.kernel.compile_shared`, ~3.5 s; step "shared"), then the Gibbs sweeps (through
  :func:`bayescg.ising.bayes.gibbs_chains`, which does not import ArviZ; ~6-8 s; step "gibbs") and the NUTS callbacks
  of the marginal posterior (:func:`bayescg.ising.kernel.marginal_cfuncs`; by then usually compiled by the run), while
  exact EM, MC-EM, the Laplace fits and NUTS run (:func:`bayescg.ising.pipeline.run_methods`, which waits for "shared"
  before laplace_slides, importing the NUTS sampler meanwhile, and for "gibbs" before the Gibbs sampler).
* ``learn1d``: the 1D fit's density kernel and NUTS callbacks (when the fit samples with NUTS), and the finite-delta
  correction's spline evaluation and the white-kick runs' spline gradients (compiled per table slot of
  bayescg.splines: the child compiles slot 0's, which the run's first spline takes), the recording driver of the
  white-noise check and the coupled maps of the kick-shape step (~12 s), while the V-run compiles and runs
  (:func:`bayescg.pipeline.learn_model`); without the correction, the V-run's closing pass over its cell counts
  instead (:func:`_accumulator_flush`).
* ``learn2d``: the noise model's and the 2D fit's NUTS callbacks (sparse form, ~9 s), the 2D spline evaluation, slot
  0's 2D spline gradient kernels of the correction's white-kick runs and the white-noise check's recording driver
  (~20 s), while the noise model's runs and the V-run compile and go on (a two-stage run's first noise-model run
  compiles the closing pass within seconds, long before this process could).

The child reports each finished step on a pipe (:meth:`Child.wait`): a run that needs kernels the child is compiling
waits for them instead of compiling them a second time beside it, which on two cores slowed both (measured: the
likelihood's compile 4.0-5.1 s when the run got there first, 2.4-2.8 s after the wait).

A stamp beside the cache per task (a hash of bayescg's sources, numba and Python versions) records a completed
warm-up -- written by the child, or by a run that holds all of the task's kernels itself (:data:`LOADED`) -- so a
warm cache starts no child.  The child is stopped when the run ends or is interrupted (:func:`stop`).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _digest(task: str) -> str:
    import numba

    h = hashlib.sha256(task.encode())
    for f in sorted(_HERE.rglob("*.py")):
        h.update(str(f.relative_to(_HERE)).encode())
        h.update(f.read_bytes())
    h.update(f"{numba.__version__} {sys.version_info[:3]}".encode())
    return h.hexdigest()


def _stamp_path(task: str) -> Path | None:
    """The stamp of ``task`` in the directory numba caches this module's functions in (the first locator numba itself
    would use), or None (no writable cache)."""
    from numba.core import caching

    for cls in (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator, caching.UserWideCacheLocator):
        try:
            loc = cls.from_function(_stamp_path, __file__)
            if loc is not None:
                loc.ensure_cache_path()
                return Path(loc.get_cache_path()) / f"bayescg-warm-{task}.sha256"
        except Exception:  # numba tries the next locator likewise
            continue
    return None


def is_warm(task: str) -> bool:
    p = _stamp_path(task)
    try:
        return p is not None and p.read_text().strip() == _digest(task)
    except OSError:
        return False


class Child:
    """A running warm-up child.  It reports each finished step of its task (:func:`_step`) on its stdout, so the run
    can wait for a step instead of compiling, beside the child, the kernels the child is compiling (on two cores
    both would lose: the run its time, the child the core)."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.done: set[str] = set()
        self._buf = b""

    def wait(self, step: str, control=None, timeout: float = 60.0) -> bool:
        """Block until the child has cached the kernels of ``step``, has ended, or ``timeout`` s passed (or
        ``control`` is interrupted).  True when the step is done; a run that gets False compiles what it needs
        itself, as without the child.  ``timeout`` 0 only reads what the child has reported so far."""
        import select
        import time

        deadline = time.monotonic() + timeout
        while step not in self.done:
            if control is not None and getattr(control, "interrupted", False):
                return False
            left = deadline - time.monotonic()
            try:
                ready = select.select([self.proc.stdout], [], [], max(0.0, min(0.2, left)))[0]
            except (OSError, ValueError):  # no select() on pipes here (Windows) or the pipe is closed: do not wait
                return step in self.done
            if not ready:
                if left <= 0:
                    return False
                continue
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:  # the child ended (finished, failed or killed): nothing more to wait for
                return step in self.done
            self._buf += chunk
            *lines, self._buf = self._buf.split(b"\n")
            self.done.update(x.decode(errors="replace").strip() for x in lines)
        return True


def await_step(child: Child | None, step: str, control=None, label: str = "", meanwhile=None) -> None:
    """Before a stage that needs the kernels of the child's ``step``: wait for them (a stage ``label``: "waiting for
    the background compile of its kernels", with ``meanwhile()`` run first, work that needs no kernel) unless the
    child has reported the step already or there is no child."""
    if child is None or child.wait(step, timeout=0.0):
        return
    from .runtime import begin_stage

    begin_stage(control, f"{label}: waiting for the background compile of its kernels")
    if meanwhile is not None:
        meanwhile()
    child.wait(step, control)


def start(task: str, *args: str) -> Child | None:
    """The child process running ``task`` (a key of TASKS) with string arguments ``args``, or None when the cache is
    already warm for it (or no child can be started)."""
    if is_warm(task):
        return None
    # run from the directory holding this bayescg, so the child imports it (``-m`` looks in the working directory
    # first) and not another one beside the run (a checkout next to the installed package): numba keys its cache
    # by source file, so that child would warm a cache the run never reads.  The task's arguments are no paths.
    root = Path(__file__).resolve().parents[1]
    try:
        proc = subprocess.Popen([sys.executable, "-m", "bayescg.warmup", task, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=root)
    except OSError:
        return None
    return Child(proc)


def stop(child: Child | None, task: str) -> None:
    """End the child of ``task`` (at the end of the run, or when it is interrupted): it only ever fills numba's
    cache.  When this process has itself compiled or loaded all of the task's kernels (LOADED), the cache holds
    them and the stamp is written, so that later runs start no child."""
    if child is not None:
        proc = child.proc
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.stdout.close()
    loaded = LOADED.get(task)
    if loaded is not None and loaded() and not is_warm(task):
        _write_stamp(task)


_REPORT_FD: list[int] = []  # in the child: the pipe to the run (its stdout at start)


def _step(name: str) -> None:
    """In the child: ``name``'s kernels are in the cache (:meth:`Child.wait`)."""
    if _REPORT_FD:
        try:
            os.write(_REPORT_FD[0], f"{name}\n".encode())
        except OSError:  # the run has ended: nobody waits
            pass


def _write_stamp(task: str) -> None:
    p = _stamp_path(task)
    if p is None:
        return
    try:
        tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
        tmp.write_text(_digest(task))
        tmp.replace(p)
    except OSError:  # a read-only cache: numba cannot cache there either
        pass


def _ising() -> None:
    """The chain kernels shared by the likelihood and the sweeps, the Gibbs sweeps, the NUTS callbacks (toy chain)."""
    import numpy as np

    from .ising.bayes import gibbs_chains
    from .ising.coarse import CoarseModel
    from .ising.kernel import FastLoglik, MarginalDensity, compile_shared, marginal_cfuncs

    cm = CoarseModel(8, 2, "110", beta=1.0, mu_c=0.4, periodic=True)
    x = np.where(np.random.default_rng(0).random((6, 8)) < 0.5, -1, 1).astype(np.int64)
    # the kernels the run's likelihood shares with the sweeps first: laplace_slides needs it ~4 s into a run
    compile_shared(FastLoglik(cm, x))
    _step("shared")
    gibbs_chains(cm, x, draws=2, tune=2, chains=1, seed=0, cores=1)  # the sweeps, without ArviZ's import
    _step("gibbs")
    marginal_cfuncs()
    dens = MarginalDensity(cm, x)
    dens.logp_grad(np.zeros(dens.n_dim))


def _correction_kernels(knots, coef, expression: str, variables: list) -> None:
    """The finite-delta correction's run kernels in d = len(variables): the white-kick runs' spline gradients of slot
    0 (compiled per table slot; the run's first spline, the fixed point's U_c, takes slot 0 as this one does in a
    fresh process), made as simulate() makes them (the signatures with their return types are the cache keys), and
    the white-noise check's recording driver (on the potential ``expression``)."""
    import numpy as np

    from .potentials import Potential
    from .simulate import EngineOptions, potential_lane_kernel, run_trajectories
    from .splines import spline_potential

    u = spline_potential(knots, coef)
    potential_lane_kernel(u, EngineOptions())
    del u
    d = len(variables)
    q0, p0 = np.zeros((2, d)), np.ones((2, d))
    run_trajectories(Potential.from_expression(expression, variables), 0.1, 1.0, q0, p0, integrator="damped",
                     friction=0.1 * np.eye(d), mass=np.eye(d), seed=0, record_every=0.1)
    _step("correction")


def _accumulator_flush() -> None:
    """The V-run's closing pass over its cell counts (kernels.accumulate.flush_cells, 0.6-0.8 s to compile), on a toy
    state.  Only in 1D without the correction: then this process idles after the fit's kernels while the run compiles
    its integrator; with it, this process is the cold run's bottleneck and the run compiles the pass itself (in 2D a
    two-stage run's first noise-model run needs it within seconds)."""
    import numpy as np

    from .kernels.accumulate import flush_cells
    from .kernels.state import new_stats

    S = new_stats(2, 1, 1, 8, 1)
    flush_cells(S, np.ones(1, dtype=np.int64), np.ones(2, dtype=np.bool_), 0.0, 0.0)


def _learn_1d(method: str = "nuts", correction: str = "fixed_point") -> None:
    """The 1D fit's kernels (``method``) and, with ``correction`` "fixed_point", the correction's 1D kernels, on toys."""
    import numpy as np

    from .fit import fit_effective_potential

    edges = np.linspace(-3.0, 3.0, 41)
    mid = 0.5 * (edges[1:] + edges[:-1])
    counts = np.round(1e4 * np.exp(-mid ** 2 / 2)).astype(np.int64)
    # MAP + Laplace: the density's kernels and the summary's, without sampling (NUTS would import nutpie and ArviZ,
    # ~3 s of this process that the run pays itself anyway); the NUTS callbacks are made (compiled) directly
    fit = fit_effective_potential({"counts": counts, "edges": [edges], "beta_hat": 1.0, "beta_hat_se": 0.01,
                                   "n_eff_factor": 1.0}, knots=8, method="map", draws=20, seed=0)
    if method == "nuts":
        from .kernels import effective

        effective.effective_logp_cfunc, effective.effective_expand_cfunc  # noqa: B018  (compiled on first access)
    _step("fit")
    if correction != "fixed_point":
        _accumulator_flush()
        return
    from .bias import coupled_maps
    from .splines import SplineRep

    SplineRep(fit.knots, fit.coef_mean).value_grad(np.linspace(-2.0, 2.0, 5))
    _correction_kernels(fit.knots, fit.coef_mean, "q**2/2", ["q"])
    xs = np.linspace(-5.0, 5.0, 101)
    kicks = np.linspace(-1.0, 1.0, 64)
    coupled_maps(xs[0], 1.0 / (xs[1] - xs[0]), xs.copy(), 0.1, 1.0, 0.99, kicks, kicks.copy(), 50, 5, 8, 0, -3.0,
                 3.0, np.zeros((2, 20)), np.zeros((2, 8, 20, 2)))
    _step("kick_shape")


def _learn_2d(method: str = "nuts", correction: str = "fixed_point") -> None:
    """In the order a 2D learn needs them: the noise model's NUTS callbacks, the fit's (sparse form; both have fixed C
    signatures, the sizes are data), the 2D spline evaluation and, with ``correction`` "fixed_point", the white-kick
    runs' 2D spline gradient kernels of slot 0 (the correction's first spline takes it) and the white-noise check's
    recording driver."""
    import numpy as np

    from .kernels import effective, noise

    noise.noise_logp_cfunc, noise.noise_expand_cfunc  # noqa: B018  (made, i.e. compiled, on first access)
    if method == "nuts":
        effective.sparse_logp_cfunc, effective.sparse_expand_cfunc  # noqa: B018
    _step("fit")
    # the posterior summary's per-draw log pi in the tensor layout (fit._draws_log_pi): ~7 s to compile, and the
    # summary comes after the sampling, so before the correction's kernels
    from .bayes.effective import effective_basis, tensor_blocks_33

    e = np.linspace(-1.0, 1.0, 25)
    mid = 0.5 * (e[1:] + e[:-1])
    basis = effective_basis([e, e], 6, counts=np.round(1e3 * np.exp(-mid[:, None] ** 2 - mid[None, :] ** 2)),
                            coarsen=2, quad=3)
    tb = tensor_blocks_33(basis)
    if tb is not None:
        effective.tensor_draws_log_pi(np.zeros((1, basis.n_coef)), tb, np.zeros(1, dtype=np.int64), np.empty((1, 1)),
                                      0, 1)
    from .splines import SplineRep, clamped_knots

    t = clamped_knots(-1.0, 1.0, 6)
    coef = np.zeros((len(t) - 4) ** 2)
    SplineRep([t, t], coef).value_grad(np.zeros((5, 2)))
    if correction != "fixed_point":
        return
    _correction_kernels([t, t], coef, "x**2/2 + y**2/2", ["x", "y"])


def _ising_loaded() -> bool:
    from .ising import kernel

    return bool(kernel.sweeps_loaded() and kernel.marginal_cfuncs.cache_info().currsize)


TASKS = {"ising": _ising, "learn1d": _learn_1d, "learn2d": _learn_2d}
#: per task, whether this process already holds all the task's kernels (compiled or loaded); tasks without an
#: entry (learn1d, learn2d: their kernels have no such cheap test) are marked warm by their child only
LOADED = {"ising": _ising_loaded}


def main(argv=None) -> None:
    task, *args = sys.argv[1:] if argv is None else argv
    # the steps go to the run through the pipe; anything else the kernels' callers print goes to /dev/null, so a
    # run that never reads the pipe (learn) cannot block the child on a full one
    _REPORT_FD.append(os.dup(1))
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    TASKS[task](*args)
    _write_stamp(task)
    _step("done")


if __name__ == "__main__":
    main()
