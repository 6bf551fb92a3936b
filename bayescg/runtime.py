"""Interruption, progress and checkpoints for long runs.

Long runs are cut into chunks of bounded wall time.  Between chunks the orchestrator calls
:meth:`RunControl.tick`, which updates the progress bar and raises
:class:`~bayescg.errors.Interrupted` once SIGINT has arrived; the caller saves its checkpoint
first, so nothing computed is lost and ``--resume`` continues bit-for-bit.
"""
from __future__ import annotations

import io
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import InputError, Interrupted
from .io import atomic_write_bytes


class RunControl:
    """SIGINT flag plus progress of the stages of a run on stderr.

    Use as a context manager around chunked loops; a run is a sequence of stages (simulate, compile,
    NUTS tuning, ...), each started with :meth:`stage`::

        with RunControl("simulate", total=n_chunks) as ctl:
            for i in range(start, n_chunks):
                ...one chunk...
                save_checkpoint(...)
                ctl.tick(i + 1)       # raises Interrupted after Ctrl-C
            ctl.stage("fit")          # a stage without a known total: elapsed time only

    Display: a bar redrawn in place when the stream is a terminal (or BAYESCG_PROGRESS is set); plain lines
    otherwise (stage start, every 25 %, "done in x s"), so logs hold no carriage returns; nothing with
    ``progress=False`` (--quiet).  The ETA is shown only for stages with a known total.
    """

    def __init__(self, label: str = "", total: float | None = 1.0, progress: bool | None = None, stream=None):
        self.stream = stream if stream is not None else sys.stderr
        self.progress = True if progress is None else bool(progress)
        self.bar = self.progress and (bool(os.environ.get("BAYESCG_PROGRESS", ""))
                                      or getattr(self.stream, "isatty", lambda: False)())
        self.interrupted = False
        self._old = None
        self._open = False
        self._lock = threading.RLock()  # the display: the heartbeat thread and ticks from sampler threads
        self._beat = None
        self._start(label, total)

    def _start(self, label, total):
        self.label = label
        self.total = None if total is None else (float(total) or 1.0)
        self._t0 = time.perf_counter()
        self._last = 0.0
        self._quarter = 0
        self._open = False
        self._shown = (0.0, "")

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        self._t0 = time.perf_counter()
        if self.bar:  # a stage that ticks nothing for a while (a compile) still shows its elapsed time moving
            stop = threading.Event()
            beat = threading.Thread(target=self._heartbeat, args=(stop,), daemon=True, name="bayescg-progress")
            self._beat = (stop, beat)
            beat.start()
        return self

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        if self._beat is not None:
            self._beat[0].set()
            self._beat[1].join()
            self._beat = None
        self._finish(ok=exc[0] is None)
        return False

    def _heartbeat(self, stop):
        """Redraw the open stage's bar every 0.5 s when nothing else has (terminal display only)."""
        while not stop.wait(0.5):
            with self._lock:
                if self._open and time.perf_counter() - self._last >= 0.45:
                    self._show(*self._shown)

    def _write(self, text):
        with self._lock:
            self.stream.write(text)
            self.stream.flush()

    def _finish(self, ok=True):
        """End the current stage's display (newline after a bar; a "done" line in line mode)."""
        with self._lock:
            self._finish_locked(ok)

    def _finish_locked(self, ok):
        if not self.progress or not self._open:
            return
        if self.bar:
            self._write("\n")
        elif ok:
            self._write(f"{self.label}: done in {time.perf_counter() - self._t0:.1f} s\n")
        self._open = False

    def stage(self, label: str, total: float | None = None, interruptible: bool = True):
        """Close the current stage and start ``label``; total: units of work for :meth:`tick` (None: no
        fraction, so no ETA).  Shows the stage at once (a silent compile is the stage users wait for).
        ``interruptible=False``: a stage that must finish once begun (writing outputs of finished work, also
        after a Ctrl-C): starting it does not raise :class:`Interrupted`."""
        with self._lock:
            self._finish()
            self._start(label, total)
        if interruptible:
            self.tick(0.0)
        elif self.progress:
            self._show(0.0, "")

    @contextmanager
    def substage(self, label: str):
        """A stage inside the current one (work its caller cannot announce in advance, e.g. compiling the engine
        before a simulation's first chunk): shown as "<current>: <label>" with its own time, then the current
        stage is shown again from the start of its own work (its clock restarted)."""
        outer, total = self.label, self.total
        with self._lock:
            if self.progress and self._open and self.bar:
                self._write("\n")
            self._open = False  # the outer stage's line ends without a "done": it has not done its work yet
            self._start(f"{outer}: {label}", None)
        self.tick(0.0)
        try:
            yield
        finally:
            with self._lock:
                self._finish()
                self._start(outer, total)
            self.tick(0.0)

    def _handler(self, signum, frame):
        if self.interrupted:  # second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.interrupted = True

    def check(self):
        if self.interrupted:
            raise Interrupted(f"{self.label}: interrupted; progress saved, rerun with --resume to continue")

    def tick(self, done: float, note: str = ""):
        """Report ``done`` units of the current stage (raises Interrupted after Ctrl-C)."""
        if self.progress:
            self._show(done, note)
        self.check()

    def _show(self, done, note):
        with self._lock:
            self._shown = (done, note)
            self._show_locked(done, note)

    def _show_locked(self, done, note):
        now = time.perf_counter()
        elapsed = now - self._t0
        frac = None if self.total is None else min(1.0, max(0.0, done / self.total))
        first = not self._open
        self._open = True
        if self.bar:
            if not (first or now - self._last > 0.2 or (frac is not None and frac >= 1)):
                return
            self._last = now
            if frac is None:
                self._write(f"\r{self.label} ... {elapsed:6.1f}s elapsed {note}\033[K")
                return
            eta = f"eta {elapsed * (1 - frac) / frac:6.1f}s" if frac > 0 else "eta    ?"
            self._write(f"\r{self.label} [{'#' * int(30 * frac):<30}] {100 * frac:5.1f}%  {elapsed:6.1f}s elapsed, "
                        f"{eta} {note}\033[K")
            return
        # plain lines: the start, then each quarter of a stage with a known total
        if first:
            self._write(f"{self.label}: started {note}".rstrip() + "\n")
        elif frac is not None and int(4 * frac) > self._quarter and frac < 1:
            self._quarter = int(4 * frac)
            eta = elapsed * (1 - frac) / frac
            self._write(f"{self.label}: {100 * frac:.0f}% after {elapsed:.1f} s, eta {eta:.1f} s {note}".rstrip()
                        + "\n")


class Forked:
    """``fn()`` run in a forked child (Linux) beside this process, its return value pickled back on a pipe.

    ``with Forked(fn) as job: ...; ok, value = job.result(timeout)``.  ``ok`` is False when no child could start (no
    fork here, or it failed), or the child raised, hung past ``timeout`` seconds (it is killed) or died: the caller
    then does the work itself, so what it makes does not depend on the child.  The child leaves with ``os._exit``
    (none of this process's exit handlers run twice); leaving the ``with`` block kills a child not yet collected
    (the parent's own part raised).  The child inherits this process's memory: nothing is pickled but the result."""

    def __init__(self, fn):
        self.pid, self._r = None, None
        if not (sys.platform.startswith("linux") and hasattr(os, "fork")):
            return
        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return
        if pid == 0:
            try:
                os.close(r)
                import pickle

                data = pickle.dumps(fn())
                with os.fdopen(w, "wb") as fh:
                    fh.write(data)
            finally:  # also after an exception: the parent reads a short pipe and does the work itself
                os._exit(0)
        os.close(w)
        self.pid, self._r = pid, r

    def result(self, timeout: float) -> tuple[bool, object]:
        """(True, fn's return value), or (False, None) (see the class)."""
        if self.pid is None:
            return False, None
        data = None
        try:
            data = _read_all(self._r, timeout)
        finally:
            self._end(killed=data is None)
        if not data:
            return False, None
        import pickle

        try:
            return True, pickle.loads(data)
        except Exception:  # noqa: BLE001 - a truncated message: the caller does the work
            return False, None

    def _end(self, killed: bool) -> None:
        os.close(self._r)
        if killed:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
        os.waitpid(self.pid, 0)
        self.pid = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.pid is not None:
            self._end(killed=True)
        return False


def _read_all(fd: int, timeout: float) -> bytes | None:
    """Everything written to the pipe ``fd`` until its writer closes it, or None after ``timeout`` seconds."""
    import select

    chunks, end = [], time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        b = os.read(fd, 1 << 20)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def begin_stage(control, label: str, total: float | None = None):
    """``control.stage(label, total)`` when ``control`` is a :class:`RunControl` (None or a stand-in
    without stages: nothing)."""
    if control is not None and hasattr(control, "stage"):
        control.stage(label, total)


def save_checkpoint(path: str | Path, **arrays) -> Path:
    """Atomically save named arrays (and scalars) as an ``.npz`` checkpoint."""
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no checkpoint to resume from")
    try:
        with np.load(p, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: unreadable checkpoint ({exc})") from None


def blas_single_threaded():
    """Context manager: BLAS/LAPACK (OpenBLAS, MKL) on one thread inside (threadpoolctl; a no-op without it).

    For the fits' dense and sparse linear algebra on moderate sizes (the 2D MAP's Newton steps, eigvalsh of the
    648 x 648 penalty, the marginal-sigma secant): pip's OpenBLAS starts a thread per core that spins while the
    other threads of the run (nutpie, numba, other processes on a shared machine) want the cores.  Measured on the
    2D learn's MAP + marginal-sigma whitening: 5.2 / 5.7 s CPU -> 2.5 / 2.7 s (benchmarks/RESULTS_FIT2D.md)."""
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover -- a dependency; kept optional so that a missing one never fails a fit
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def pytensor_blas_flags() -> str:
    """PyTensor's BLAS link flags (``pytensor.config.blas__ldflags``), searched once per process with its
    "could not link to a BLAS installation" warning caught.

    pip's numpy and scipy carry OpenBLAS under prefixed symbols (``scipy_dgemm_``), which PyTensor's C code
    cannot link, so with pip wheels the search finds nothing and PyTensor's C backend computes dot products
    through numpy (which does use that OpenBLAS).  bayescg's PyMC models are small (tens to hundreds of
    parameters) and NUTS runs them in numba, so the warning says nothing useful to a user.  A BLAS that can
    be linked (conda, system libblas) is still found and used, and flags the user set are returned unchanged.
    Call before compiling a PyMC model with PyTensor's default (C) backend.
    """
    import warnings

    import pytensor

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PyTensor could not link to a BLAS", category=UserWarning)
        return pytensor.config.blas__ldflags  # the search runs on first access; the result is kept


def compile_nutpie(model):
    """``nutpie.compile_pymc_model(model)`` with IEEE arithmetic, so a seed gives the same draws whatever
    the state of PyTensor's numba cache (``<base_compiledir>/numba``).

    PyTensor compiles each Op to numba with fast-math flags (reassociation, contraction to FMA) by default
    and caches each Op's machine code.  A fresh compile inlines the Ops into nutpie's logp function, which
    LLVM then reassociates across Op boundaries; a cached Op is linked as object code, not inlined.  The two
    logp+gradient functions differ in the last bits, and NUTS trajectories amplify that: measured on
    ``learn models/test1-quadratic.toml`` (steps 4e6, 2 x 200 draws) the posterior of a cold-cache run
    differed from a warm-cache run by up to 1e-9 (r_hat and U bands in the 4th digit on longer runs).
    Without fast-math flags LLVM's optimisations preserve values, so inlined and cached code agree.
    The flag is part of PyTensor's cache key, so fast-math entries in the cache are not reused.
    """
    import nutpie
    import pytensor

    pytensor_blas_flags()  # the initial-point function is compiled with the C backend
    with pytensor.config.change_flags(numba__fastmath=False):
        return nutpie.compile_pymc_model(model)
