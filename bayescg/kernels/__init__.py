"""numba kernels of the engine (see docs/ARCHITECTURE.md for the map).

numba's on-disk cache checks only the source file of the cached function itself, while the cached drivers
of :mod:`bayescg.kernels.loops` inline the step and accumulator functions of their sibling modules (and
bias's coupled maps inline kernels.rng): after an upgrade or an edit of those, numba would serve the old machine
code (seen once as doubled histograms, once as the coupled maps starting from the replaced Box-Muller normals).
:func:`drop_stale_driver_cache` therefore keeps a hash of all kernel sources beside the caches and deletes
the cached kernels and their dependents when it changes; it runs once at import.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_STAMP = "bayescg-kernels.sha256"


def sources_digest() -> str:
    """sha256 over the names and bytes of every kernel source file (``bayescg/kernels/*.py``)."""
    h = hashlib.sha256()
    for f in sorted(_HERE.glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    return h.hexdigest()


#: modules outside kernels/ whose cached numba functions inline kernel functions or constants (bias's coupled maps
#: draw with kernels.rng and use LANES; splines' lane kernels use LANES): their caches go stale with the kernels too
DEPENDENTS = ("bias", "splines")


def cache_dirs(source: Path = _HERE / "loops.py") -> list[Path]:
    """The directories numba may cache the functions of ``source`` in (NUMBA_CACHE_DIR, then __pycache__)."""
    from numba.core import caching

    out = []
    for cls in (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator):
        try:
            loc = cls.from_function(cache_dirs, str(source))
        except Exception:  # an unwritable or unusual location: numba will not cache there either
            loc = None
        if loc is not None:
            out.append(Path(loc.get_cache_path()))
    return out


def cache_targets() -> list[tuple[Path, set]]:
    """(directory, module names) whose cache files go when the kernel sources change: the kernel modules in the
    kernels' cache directories, :data:`DEPENDENTS` in the package's (only those: the package has a ``noise`` module
    of its own)."""
    return ([(d, {f.stem for f in _HERE.glob("*.py")}) for d in cache_dirs()]
            + [(d, set(DEPENDENTS)) for d in cache_dirs(_HERE.parent / f"{DEPENDENTS[0]}.py")])


def drop_stale_driver_cache() -> list[Path]:
    """Delete numba cache files of the kernel modules and their :data:`DEPENDENTS` when the kernel sources' hash
    differs from the stamp beside them; -> files removed."""
    digest = sources_digest()
    removed: list[Path] = []
    for d, modules in cache_targets():
        stamp = d / _STAMP
        try:
            if stamp.exists() and stamp.read_text().strip() == digest:
                continue
            for f in d.iterdir():
                if f.suffix in (".nbi", ".nbc") and f.name.split(".", 1)[0] in modules:
                    f.unlink(missing_ok=True)
                    removed.append(f)
            tmp = d / f"{_STAMP}.{digest[:8]}.tmp"
            tmp.write_text(digest)
            tmp.replace(stamp)
        except OSError:  # read-only install or no such directory yet: numba cannot have cached there
            continue
    return removed


drop_stale_driver_cache()
