"""Atomic writes, output folders, run control and checkpoints."""
import json
import os
import signal

import numpy as np
import pytest

from bayescg.errors import InputError, Interrupted
from bayescg.io import atomic_write_text, dumps, prepare_output, read_json, run_metadata, write_json
from bayescg.runtime import RunControl, load_checkpoint, save_checkpoint


def test_json_encoding_handles_numpy_and_nonfinite():
    s = dumps({"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"), "d": np.bool_(True)})
    assert json.loads(s) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": True}


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "result.json"
    write_json(p, {"x": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(p, "partial")
    assert read_json(p) == {"x": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["result.json"]  # temp file cleaned up


def test_prepare_output_refuses_overwrite_without_force(tmp_path):
    out = prepare_output(tmp_path / "o", ["result.json"])
    (out / "result.json").write_text("{}")
    with pytest.raises(InputError, match="--force"):
        prepare_output(out, ["result.json"])
    prepare_output(out, ["result.json"], force=True)
    prepare_output(out, ["result.json"], resume=True)
    f = tmp_path / "file"
    f.write_text("")
    with pytest.raises(InputError, match="not a folder"):
        prepare_output(f, ["x"])


def test_metadata_records_versions_and_seed():
    meta = run_metadata(seed=7, command="simulate")
    assert meta["seed"] == 7 and "numpy" in meta["versions"] and meta["versions"]["python"]


def test_checkpoint_roundtrip_and_errors(tmp_path):
    p = tmp_path / "ck.npz"
    save_checkpoint(p, q=np.arange(4.0), done=np.int64(12))
    z = load_checkpoint(p)
    assert z["q"].tolist() == [0, 1, 2, 3] and int(z["done"]) == 12
    with pytest.raises(InputError, match="no checkpoint"):
        load_checkpoint(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(InputError, match="unreadable checkpoint"):
        load_checkpoint(tmp_path / "bad.npz")


def test_run_control_turns_sigint_into_interrupted():
    before = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN in a background job (nohup ... &)
    with RunControl("t", total=3, progress=False) as ctl:
        ctl.tick(1)
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(Interrupted, match="--resume"):
            ctl.tick(2)
    assert signal.getsignal(signal.SIGINT) is before


def test_outputs_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_json(tmp_path / "r.json", {"a": 1})
    finally:
        os.umask(old)
    assert (p.stat().st_mode & 0o777) == 0o644


def test_write_netcdf_reads_back_like_arviz_own_writer(tmp_path):
    """write_netcdf (one open file, xarray's DataTree writer) gives the file InferenceData.to_netcdf gives: the same
    groups, variables, values, dims, coords and attributes through az.from_netcdf; compress=True only compresses."""
    import arviz as az
    import h5py

    from bayescg.io import write_netcdf

    rng = np.random.default_rng(0)
    idata = az.from_dict(posterior={"b": rng.normal(size=(2, 50, 3)), "U": rng.normal(size=(2, 50, 7))},
                         sample_stats={"diverging": rng.random((2, 50)) < 0.1, "n_steps": rng.integers(1, 9, (2, 50))},
                         observed_data={"counts": rng.integers(0, 99, 7)},
                         coords={"grid_point": np.linspace(-1, 1, 7)}, dims={"U": ["grid_point"]},
                         attrs={"note": "root attribute"})
    idata.posterior.attrs["bayescg_version"] = "test"
    idata.attrs["root_note"] = "the file's own attribute"
    idata.to_netcdf(tmp_path / "arviz.nc")
    write_netcdf(tmp_path / "ours_z.nc", idata, compress=True)
    write_netcdf(tmp_path / "ours.nc", idata, run_id="r1")  # (sets the run id on idata's posterior)
    ref = az.from_netcdf(tmp_path / "arviz.nc")
    for name in ("ours.nc", "ours_z.nc"):
        got = az.from_netcdf(tmp_path / name)
        assert got.groups() == ref.groups() and got.attrs == ref.attrs and got.attrs["root_note"]
        for g in ref.groups():
            a, b = ref[g], got[g]
            assert set(a.data_vars) == set(b.data_vars) and set(a.coords) == set(b.coords)
            for v in list(a.data_vars) + list(a.coords):
                assert a[v].dims == b[v].dims and a[v].dtype == b[v].dtype
                np.testing.assert_array_equal(a[v].values, b[v].values)
            extra = {"bayescg_run_id": "r1"} if (g == "posterior" and name == "ours.nc") else {}
            assert b.attrs == {**a.attrs, **extra}
    with h5py.File(tmp_path / "ours_z.nc") as f:
        assert f["posterior/U"].compression == "gzip"
    with h5py.File(tmp_path / "ours.nc") as f:
        assert f["posterior/U"].compression is None


def test_a_substage_is_shown_inside_its_stage_and_the_stage_resumes():
    import io

    out = io.StringIO()
    ctl = RunControl("simulate (2e+07 steps)", total=1.0, progress=True, stream=out)
    with ctl.substage("compiling the integrator (once per machine)"):
        pass
    ctl.tick(1.0)
    ctl._finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "simulate (2e+07 steps): compiling the integrator (once per machine): started"
    assert lines[1].startswith("simulate (2e+07 steps): compiling the integrator (once per machine): done in")
    assert lines[2] == "simulate (2e+07 steps): started"
    assert lines[3].startswith("simulate (2e+07 steps): done in")
    assert ctl.label == "simulate (2e+07 steps)" and ctl.total == 1.0


def test_a_driver_knows_whether_numba_must_compile_it_and_a_first_run_says_so(tmp_path, monkeypatch):
    """_Lazy.cached: False before the first compile on this cache, True after (also for a new process's view of the
    same cache); simulate's first chunk then shows "compiling the integrator" only when it is compiled."""
    import importlib
    import io
    import sys

    from numba import types

    from bayescg.kernels.loops import _Lazy
    from bayescg.simulate import _compile_driver

    # numba caches the module's machine code in tmp_path/__pycache__ (beside the source, as for bayescg's drivers)
    (tmp_path / "tiny_driver.py").write_text("def fill(x, lo, hi):\n    for i in range(lo, hi):\n        x[i] = i\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("tiny_driver")
    sig = types.void(types.float64[::1], types.int64, types.int64)
    items = lambda x: x.shape[0]  # noqa: E731
    try:
        first = _Lazy(sig, mod.fill, items)
        assert first.cached() is False
        out = io.StringIO()
        ctl = RunControl("simulate", progress=True, stream=out)
        _compile_driver(first, ctl)
        assert "simulate: compiling the integrator (once per machine): done in" in out.getvalue()
        x = np.zeros(5)
        first(x)
        assert x.tolist() == [0, 1, 2, 3, 4]
        again = _Lazy(sig, mod.fill, items)  # a later run: the machine code is in the cache
        assert first.cached() is True and again.cached() is True
        out = io.StringIO()
        _compile_driver(again, RunControl("simulate", progress=True, stream=out))
        assert "compiling" not in out.getvalue()
    finally:
        sys.modules.pop("tiny_driver", None)


def test_a_terminal_bar_keeps_moving_while_a_stage_ticks_nothing():
    """On a terminal the open stage is redrawn every 0.5 s (a compile ticks nothing; a frozen 0.0 s looks hung);
    the heartbeat stops with the run."""
    import io
    import re
    import threading
    import time

    class Tty(io.StringIO):
        def isatty(self):
            return True

    out = Tty()
    with RunControl("fit", progress=True, stream=out) as ctl:
        ctl.stage("NUTS: compile (cached kernel)")
        time.sleep(1.3)
    draws = [float(x) for x in re.findall(r"NUTS: compile \(cached kernel\) \.\.\.\s+([0-9.]+)s elapsed", out.getvalue())]
    assert len(draws) >= 3 and draws[-1] >= 0.9 and draws == sorted(draws)
    assert not any(t.name == "bayescg-progress" for t in threading.enumerate())


def test_forked_returns_the_childs_value_or_says_it_did_not():
    """runtime.Forked: the child's return value comes back pickled; a child that raises, dies or hangs past the
    timeout gives (False, None) (a hung one is killed), so the caller does the work itself."""
    import time

    from bayescg.runtime import Forked

    parent = os.getpid()
    with Forked(lambda: {"pid": os.getpid(), "a": np.arange(3)}) as job:
        ok, got = job.result(30.0)
    assert ok and got["pid"] != parent and list(got["a"]) == [0, 1, 2]

    def boom():
        raise RuntimeError("in the child")

    with Forked(boom) as job:
        assert job.result(30.0) == (False, None)
    with Forked(lambda: os._exit(3)) as job:
        assert job.result(30.0) == (False, None)
    t0 = time.monotonic()
    with Forked(lambda: time.sleep(60)) as job:
        pid = job.pid
        assert job.result(0.5) == (False, None)
    assert time.monotonic() - t0 < 10
    with pytest.raises(ChildProcessError):  # killed and reaped
        os.waitpid(pid, 0)
    with pytest.raises(ValueError):  # the parent's own part raised: leaving the block kills the child
        with Forked(lambda: time.sleep(60)) as job:
            pid = job.pid
            raise ValueError
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, 0)


def test_netcdf_files_written_beside_the_report_are_the_files_written_here(tmp_path):
    """commands._netcdf_beside: the files a forked child writes while the body runs join the output set; when the
    child dies before it is done, they are written here afterwards; either way the committed files hold the same
    data as the ones written without a child."""
    import arviz as az

    from bayescg.commands import _netcdf_beside
    from bayescg.io import OutputSet, write_netcdf

    parent = os.getpid()
    rng = np.random.default_rng(1)
    idata = az.from_dict(posterior={"b": rng.normal(size=(2, 30, 3))})

    def write(stage, die=False):
        if die and os.getpid() != parent:
            os._exit(3)
        names = []
        for name in ("posterior.nc", "posterior-em.nc"):
            write_netcdf(stage.path(name), idata, run_id=stage.run_id)
            names.append(name)
        return names

    write_netcdf(tmp_path / "ref.nc", idata)
    ref = az.from_netcdf(tmp_path / "ref.nc")
    for die in (False, True):
        out = tmp_path / f"out{die}"
        stage = OutputSet(out, "result.json")
        write_json(stage.path("result.json"), {"ok": True})
        with _netcdf_beside(stage, lambda st: write(st, die)):
            assert os.getpid() == parent
        stage.commit()
        assert sorted(p.name for p in out.iterdir()) == ["posterior-em.nc", "posterior.nc", "result.json"]
        for name in ("posterior.nc", "posterior-em.nc"):
            got = az.from_netcdf(out / name)
            np.testing.assert_array_equal(got.posterior.b.values, ref.posterior.b.values)
            assert got.posterior.attrs["bayescg_run_id"] == stage.run_id
