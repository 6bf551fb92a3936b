"""Compile the Ising pipeline's late kernels in a background process while its first methods run.

On a fresh numba cache the first ``bayescg ising`` run spends ~7 s compiling the Gibbs sweeps
(:func:`bayescg.ising.kernel.gibbs_sweeps` and what it calls) and ~10 s the NUTS callbacks of the marginal posterior
(:func:`bayescg.ising.kernel.marginal_cfuncs` with the likelihood (E1)/(E2)), one after the other and after the EM and
Laplace methods, on one core of two.  :func:`start` runs :func:`main` in a child process at the start of the run: it
calls the same kernels on a toy chain (its arrays have the dtypes and ranks of every real one, so the compiled
signatures are the ones the run needs) and numba writes them to its disk cache, where the run's own first call finds
them.  Results do not depend on it (the same machine code either way; numba replaces cache files atomically); a run
that reaches a kernel before the child has cached it compiles it itself, as without the child.

A stamp beside the cache (source hash of ``ising/kernel.py``, numba and Python versions) records a completed
warm-up (by the child, or by a run that compiled or loaded both kernels itself), so a warm cache starts no child.
The child is stopped when the run ends (:func:`stop`).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

#: methods whose kernels the child compiles
NEEDS = ("gibbs", "nuts")
_STAMP = "bayescg-ising-warm.sha256"


def _digest() -> str:
    import numba

    from . import kernel

    h = hashlib.sha256(Path(kernel.__file__).read_bytes())
    h.update(f"{numba.__version__} {sys.version_info[:3]}".encode())
    return h.hexdigest()


def _stamp_path() -> Path | None:
    """Where numba caches ising/kernel.py (the first locator numba itself would use), or None (no cache)."""
    from numba.core import caching

    from . import kernel

    for cls in (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator, caching.UserWideCacheLocator):
        try:
            loc = cls.from_function(kernel.gibbs_sweeps.py_func, kernel.__file__)
            if loc is not None:
                loc.ensure_cache_path()
                return Path(loc.get_cache_path()) / _STAMP
        except Exception:  # numba tries the next locator likewise
            continue
    return None


def is_warm() -> bool:
    p = _stamp_path()
    try:
        return p is not None and p.read_text().strip() == _digest()
    except OSError:
        return False


def start(methods) -> subprocess.Popen | None:
    """The child process compiling the kernels of ``methods`` (names), or None when none of them needs it or the
    cache is already warm (or no child can be started)."""
    if not any(m in NEEDS for m in methods) or is_warm():
        return None
    try:
        return subprocess.Popen([sys.executable, "-m", "bayescg.ising.warmup"], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def stop(proc: subprocess.Popen | None) -> None:
    """End the child (at the end of the run, or when it is interrupted): it only ever fills numba's cache.  When
    this process has itself compiled or loaded both kernels, the cache holds them: the stamp is written, so that
    later runs start no child."""
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    from . import kernel

    if kernel.gibbs_sweeps.signatures and kernel.marginal_cfuncs.cache_info().currsize and not is_warm():
        _write_stamp()


def _write_stamp() -> None:
    p = _stamp_path()
    if p is None:
        return
    try:
        tmp = p.with_name(f"{p.name}.{os.getpid()}.tmp")
        tmp.write_text(_digest())
        tmp.replace(p)
    except OSError:  # a read-only cache: numba cannot cache there either
        pass


def main() -> None:
    """Compile (or load) the Gibbs sweeps and the NUTS callbacks on a toy chain, then write the stamp."""
    import numpy as np

    from .bayes import sample_gibbs
    from .coarse import CoarseModel
    from .kernel import MarginalDensity, marginal_cfuncs

    cm = CoarseModel(8, 2, "110", beta=1.0, mu_c=0.4, periodic=True)
    x = np.where(np.random.default_rng(0).random((6, 8)) < 0.5, -1, 1).astype(np.int64)
    sample_gibbs(cm, x, draws=2, tune=2, chains=1, seed=0, cores=1)
    marginal_cfuncs()
    dens = MarginalDensity(cm, x)
    dens.logp_grad(np.zeros(dens.n_dim))
    _write_stamp()


if __name__ == "__main__":
    main()
