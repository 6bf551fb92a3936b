"""One interface for sets of independent runs (deltas, noise designs, sweeps).

``get_executor(None)`` runs tasks in local worker processes; ``get_executor("tcp://host:8786")``
sends them to a dask.distributed cluster.  Both expose ``map(fn, items) -> list`` that keeps
the order of ``items``; results never depend on how many workers ran them, because every
task carries its own seed.
"""
from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterable

from .errors import InputError


CONNECT_TIMEOUT = 10.0  # seconds to reach a dask scheduler (``--scheduler ADDRESS``)


class SerialExecutor:
    """Runs tasks one after another in this process (tests, single tasks, debugging)."""

    workers = 1

    def map(self, fn: Callable, items: Iterable) -> list:
        return [fn(x) for x in items]

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class LocalExecutor(SerialExecutor):
    """Local worker processes (spawned, so numba's thread pools are never forked).

    The pool is started at the first ``map`` with more than one item and kept until :meth:`close`, so a
    caller that maps in chunks (to show progress between them) pays the start-up (a fresh interpreter that
    imports bayescg per worker, seconds) once; one item, or one worker, runs in this process, no pool."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or os.cpu_count() or 1)
        self._pool = None

    @property
    def pool_running(self) -> bool:
        """True while worker processes are up (between the first multi-item map and close)."""
        return self._pool is not None

    def map(self, fn: Callable, items: Iterable) -> list:
        items = list(items)
        if len(items) <= 1 or self.workers == 1:
            return [fn(x) for x in items]
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context("spawn"))
        return list(self._pool.map(fn, items))

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class DaskExecutor(SerialExecutor):
    """Tasks on a dask.distributed cluster; ``address`` is the scheduler's, or a ``Client``.

    ``timeout``: seconds to keep trying to reach the scheduler at ``address`` (dask retries a refused
    connection until then) before :class:`InputError`."""

    def __init__(self, address, timeout: float = CONNECT_TIMEOUT):
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - optional dependency
            raise InputError("--scheduler needs dask.distributed: pip install 'bayescg[dask]'") from None
        if isinstance(address, Client):
            self.client, self._own = address, False
        else:
            try:
                self.client, self._own = Client(address, timeout=f"{float(timeout)}s"), True
            except (OSError, TimeoutError) as exc:
                raise InputError(f"cannot reach dask scheduler at {address} ({exc})") from None
        self.workers = max(1, len(self.client.scheduler_info().get("workers", {})))

    def map(self, fn: Callable, items: Iterable) -> list:
        items = list(items)
        futures = self.client.map(fn, items, pure=False)
        return self.client.gather(futures)

    def close(self):
        if self._own:
            self.client.close()


def get_executor(scheduler=None, workers: int | None = None, timeout: float = CONNECT_TIMEOUT):
    """Executor for ``--scheduler`` (address or Client) or local processes when None; ``timeout``: seconds to
    reach a scheduler at an address (:class:`DaskExecutor`)."""
    if scheduler is None:
        return LocalExecutor(workers)
    if scheduler == "serial":
        return SerialExecutor()
    return DaskExecutor(scheduler, timeout=timeout)
