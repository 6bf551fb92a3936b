"""numba kernels of the engine (see docs/ARCHITECTURE.md for the map).

numba's on-disk cache checks only the source file of the cached function itself, while the cached drivers
of :mod:`bayescg.kernels.loops` inline the step and accumulator functions of their sibling modules: after
an upgrade or an edit of those, numba would serve the old machine code (seen once as doubled histograms).
:func:`drop_stale_driver_cache` therefore keeps a hash of all kernel sources beside the cache and deletes
the cached drivers when it changes; it runs once at import.
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


def cache_dirs() -> list[Path]:
    """The directories numba may cache :mod:`bayescg.kernels.loops` in (NUMBA_CACHE_DIR, then __pycache__)."""
    from numba.core import caching

    out = []
    for cls in (caching.UserProvidedCacheLocator, caching.InTreeCacheLocator):
        try:
            loc = cls.from_function(cache_dirs, str(_HERE / "loops.py"))
        except Exception:  # an unwritable or unusual location: numba will not cache there either
            loc = None
        if loc is not None:
            out.append(Path(loc.get_cache_path()))
    return out


def drop_stale_driver_cache() -> list[Path]:
    """Delete numba cache files of the kernel modules whose sources hash differs from the stamp; -> files removed."""
    digest = sources_digest()
    removed: list[Path] = []
    for d in cache_dirs():
        stamp = d / _STAMP
        try:
            if stamp.exists() and stamp.read_text().strip() == digest:
                continue
            modules = {f.stem for f in _HERE.glob("*.py")}
            for f in d.iterdir():
                if f.suffix in (".nbi", ".nbc") and f.name.split(".", 1)[0] in modules:
                    f.unlink(missing_ok=True)
                    removed.append(f)
            tmp = d / f"{_STAMP}.{digest[:8]}.tmp"
            tmp.write_text(digest)
            tmp.replace(stamp)
        except OSError:  # read-only install: numba cannot cache there either
            continue
    return removed


drop_stale_driver_cache()
