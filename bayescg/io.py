"""Output folders, atomic writes, JSON encoding and run metadata.

Every file bayescg writes goes through :func:`atomic_write_bytes` (temporary file in the same
folder, fsync, ``os.replace``), so a crash never leaves a truncated ``result.json`` or
``posterior.nc`` behind.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

#: Version of the JSON outputs' layout.
OUTPUT_FORMAT = 1


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, dataclasses and paths to plain JSON types.

    Non-finite floats become ``null`` (JSON has no NaN); callers that need to say *why* a
    value is missing add a field for it.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):
            return to_jsonable(obj.to_dict())
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n"


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    On any failure the temporary file is removed and an existing ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; outputs get the usual permissions (0666 less the umask), like open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_text(path, dumps(obj))


def read_json(path: str | Path) -> Any:
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: cannot read JSON ({exc})") from None


def write_netcdf(path: str | Path, idata) -> Path:
    """Write an ArviZ InferenceData atomically."""
    with atomic_path(path) as tmp:
        idata.to_netcdf(tmp)
    return Path(path)


def prepare_output(out: str | Path, outputs: list[str], force: bool = False, resume: bool = False) -> Path:
    """Create the output folder; refuse to overwrite existing outputs without ``force``.

    ``outputs`` are the file names the command will write.  With ``resume`` an existing folder
    is expected (its checkpoint is read by the caller).
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if not (force or resume):
        existing = [name for name in outputs if (out / name).exists()]
        if existing:
            raise InputError(f"{out / existing[0]} exists; pass --force to overwrite or --resume to continue")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create output folder ({exc.strerror})") from None
    return out


def versions() -> dict:
    """Versions of Python and the numerical stack, recorded in every output."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("bayescg", "numpy", "scipy", "numba", "sympy", "pymc", "pytensor", "arviz", "nutpie"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_metadata(model=None, command: str | None = None, seed: int | None = None) -> dict:
    """The ``meta`` block of every JSON output: versions, seed, settings, time."""
    meta = {
        "output_format": OUTPUT_FORMAT,
        "command": command,
        "seed": seed,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    if model is not None:
        meta["model"] = model.to_dict()
    return meta
