"""Output folders, atomic writes, JSON encoding, run metadata, output locks and output sets.

Every file bayescg writes goes through :func:`atomic_write_bytes` (temporary file in the same
folder, fsync, ``os.replace``), so a crash never leaves a truncated ``result.json`` or
``posterior.nc`` behind.  The files of one result (``result.json``, ``posterior.nc``, ``report.html``)
are written into a pending folder and committed together (:class:`OutputSet`), so a process killed at
any moment leaves the previous complete result or the new one; :func:`output_lock` keeps two runs out
of one folder.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import math
import os
import platform
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, OutputLockedError

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


def write_netcdf(path: str | Path, idata, run_id: str | None = None, compress: bool = False) -> Path:
    """Write an ArviZ InferenceData atomically; ``run_id`` goes into the posterior group's attributes.

    Uncompressed by default: posterior draws are random doubles, which zlib shrinks by ~4 % (2D learn: 102 vs
    98 MB) at ~4 s CPU of the write, against ~0.3 s uncompressed.  Draws stay float64 (exported potentials and
    resumed runs read them back exactly)."""
    if run_id is not None and "posterior" in idata.groups():
        idata.posterior.attrs["bayescg_run_id"] = run_id
    # one open file for all groups (xarray's DataTree writer): InferenceData.to_netcdf opens and closes the file once
    # per group, ~0.1 s each with h5netcdf; the file is the same (the groups, variables, dims, coords and attributes
    # az.from_netcdf reads back; tests/test_io_runtime.py)
    import xarray as xr

    # the tree built here, not by InferenceData.to_datatree (ArviZ < 0.21: the separate datatree package)
    tree = xr.DataTree.from_dict({"/": xr.Dataset(attrs=dict(getattr(idata, "attrs", None) or {})),
                                  **{g: idata[g] for g in idata.groups()}})
    encoding = None
    if compress:
        encoding = {node.path: {k: {"zlib": True} for k, v in node.dataset.variables.items()
                                if v.dtype.kind in "biuf"} for node in tree.subtree if node.path != "/"}
    with atomic_path(path) as tmp:
        tree.to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return Path(path)


def _fsync_dir(path: Path):
    """Make renames inside ``path`` durable (power loss); a no-op where directories cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- output sets: several files committed together ---------------------------------------------
PENDING_PREFIX = ".pending-"
_COMMIT = "COMMIT.json"


class OutputSet:
    """The files of one result, written into ``out/.pending-<id>/`` and moved into ``out`` together.

    ``primary`` (e.g. ``result.json``) is the file that says the result exists: :meth:`commit` first
    records the file list (the journal), then removes the old primary, moves the other files in and
    the new primary last.  So a process killed at any moment leaves either the old complete set or a
    folder without a primary whose pending set the next :func:`recover_outputs` (every command calls it
    through :func:`prepare_output`) completes.  Uncommitted pending folders are discarded.
    """

    def __init__(self, out: str | Path, primary: str):
        self.out = Path(out)
        self.primary = primary
        self.run_id = uuid.uuid4().hex
        self.dir = self.out / f"{PENDING_PREFIX}{self.run_id}"
        self.names: list[str] = []

    def path(self, name: str) -> Path:
        """Where to write output ``name`` of this set (inside the pending folder)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        if name not in self.names:
            self.names.append(name)
        return self.dir / name

    def commit(self) -> Path:
        if self.primary not in self.names:
            raise RuntimeError(f"output set without its primary file {self.primary}")
        order = [n for n in self.names if n != self.primary] + [self.primary]
        write_json(self.dir / _COMMIT, {"files": order})
        _fsync_dir(self.dir)
        _apply_pending(self.dir)
        return self.out / self.primary

    def discard(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def _apply_pending(pending: Path):
    """Roll a committed pending folder forward (idempotent: safe to repeat after a kill)."""
    out = pending.parent
    files = json.loads((pending / _COMMIT).read_text(encoding="utf-8"))["files"]
    if (pending / files[-1]).exists():  # the new primary has not moved yet: the old one goes first
        with contextlib.suppress(FileNotFoundError):
            os.unlink(out / files[-1])
    for name in files:
        if (pending / name).exists():
            os.replace(pending / name, out / name)
    _fsync_dir(out)
    shutil.rmtree(pending, ignore_errors=True)


def recover_outputs(out: str | Path) -> None:
    """Complete the committed output sets of a killed run in ``out``; discard uncommitted ones and the
    temporary files of interrupted atomic writes.  Call it holding the folder's :func:`output_lock`."""
    out = Path(out)
    if not out.is_dir():
        return
    for tmp in out.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
    for pending in sorted(out.glob(f"{PENDING_PREFIX}*")):
        if not pending.is_dir():
            continue
        try:
            committed = (pending / _COMMIT).exists() and bool(json.loads((pending / _COMMIT).read_text())["files"])
        except (OSError, ValueError, KeyError):
            committed = False
        if committed:
            _apply_pending(pending)
        else:
            shutil.rmtree(pending, ignore_errors=True)


# --- output lock ---------------------------------------------------------------------------------
LOCK_NAME = ".bayescg.lock"


def _proc_start(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode(errors="replace")
        return stat[stat.rindex(")") + 2:].split()[19]
    except (OSError, ValueError, IndexError):
        return None


def _holder_alive(info: dict) -> bool | None:
    """True/False when the lock holder can be checked (same host), None when it cannot."""
    if info.get("host") != socket.gethostname():
        return None
    pid = int(info.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    start = info.get("start")
    return start is None or _proc_start(pid) in (None, start)


@contextlib.contextmanager
def output_lock(out: str | Path, command: str):
    """Hold ``out/.bayescg.lock`` for the duration of a command.

    The lock file is created exclusively and names its holder (host, pid, process start time).  A lock
    left by a dead process on this host (killed, power loss) is taken over; a live holder, or a holder
    on another host, gives :class:`~bayescg.errors.OutputLockedError` (one line, exit 2).
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create output folder ({exc.strerror})") from None
    lock = out / LOCK_NAME
    me = {"pid": os.getpid(), "host": socket.gethostname(), "start": _proc_start(os.getpid()),
          "command": command, "since": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    for _ in range(20):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                info = json.loads(lock.read_text(encoding="utf-8"))
                if not isinstance(info, dict):
                    raise ValueError
            except FileNotFoundError:
                continue  # released meanwhile: try again
            except (OSError, ValueError):
                # empty or torn: its writer died between create and write, unless it is writing it now
                try:
                    if time.time() - lock.stat().st_mtime < 5:
                        time.sleep(0.2)
                        continue
                except FileNotFoundError:
                    continue
                info = {}
            alive = _holder_alive(info) if info else False
            if alive is False:
                # stale: move it aside under a unique name (only one taker wins the rename) and retry
                with contextlib.suppress(FileNotFoundError):
                    aside = lock.with_name(f"{LOCK_NAME}.stale-{os.getpid()}")
                    os.replace(lock, aside)
                    os.unlink(aside)
                continue
            who = f"pid {info.get('pid')} on {info.get('host')}, `{info.get('command')}` since {info.get('since')}"
            hint = "" if alive else f"; if no run is active there, remove {lock}"
            raise OutputLockedError(f"{out}: another bayescg run is writing to this folder ({who}); "
                                    f"wait for it or choose another --out{hint}")
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(me))
                fh.flush()
                os.fsync(fh.fileno())
            break
    else:
        raise OutputLockedError(f"{out}: could not take the output lock {lock}")
    try:
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            if json.loads(lock.read_text(encoding="utf-8")).get("pid") == os.getpid():
                os.unlink(lock)


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


def complete_output(out: str | Path, primary: str, model, command: str) -> dict | None:
    """The payload of ``out/primary`` when it is a complete result of ``command`` on ``model`` (the same
    settings), else None.  Partial outputs (``"partial": true``) are not complete."""
    path = Path(out) / primary
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    meta = payload.get("meta") or {}
    if payload.get("partial") or meta.get("command") != command:
        return None
    if model is not None and meta.get("model") != to_jsonable(model.to_dict()):
        return None
    return payload


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


def run_metadata(model=None, command: str | None = None, seed: int | None = None, run_id: str | None = None) -> dict:
    """The ``meta`` block of every JSON output: versions, seed, settings, time; ``run_id`` is the id of the
    :class:`OutputSet` the output belongs to (the same in ``posterior.nc`` and ``report.html``)."""
    meta = {
        "output_format": OUTPUT_FORMAT,
        "run_id": run_id,
        "command": command,
        "seed": seed,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
    }
    if model is not None:
        meta["model"] = model.to_dict()
    return meta
