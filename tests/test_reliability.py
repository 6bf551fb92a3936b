"""Output folders a user can trust: --resume keeps finished work, no checkpoint left after success, partial
outputs say so, one run per folder at a time (a lock), a potential that is not finite where walkers start
is named as such (exit 2), and a run killed hard at any moment leaves the old or the new complete result."""
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bayescg import io
from bayescg.cli import main
from bayescg.errors import OutputLockedError

MODEL = """
name = "rel"
[potential]
variables = ["q"]
expression = "{expr}"
domain = [[-4.0, 4.0]]
[simulation]
delta = 0.3
gamma = 0.1
steps = {steps}
walkers = 4
seed = 11
bins = 40
"""
SMOOTH = "q**2/2 + 0.01*sin(q/0.01)"


def model(tmp_path, steps=20_000, expr=SMOOTH, extra="", name="m.toml"):
    path = tmp_path / name
    path.write_text(MODEL.format(steps=steps, expr=expr) + extra)
    return path


def cli(capsys, *args):
    rc = main([*map(str, args), "--quiet"])
    out, err = capsys.readouterr()
    return rc, out, err


def snapshot(folder: Path) -> dict:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --- item 2 and 3: --resume on a finished run; no checkpoint after success -------------------------------
def test_resume_of_finished_run_changes_nothing_and_no_checkpoint_is_left(tmp_path, capsys):
    m, out = model(tmp_path), tmp_path / "o"
    rc, _, err = cli(capsys, "simulate", m, "--out", out)
    assert rc == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["simulation.json"]  # no checkpoint, lock or pending set
    before = snapshot(out)
    rc, said, err = cli(capsys, "simulate", m, "--out", out, "--resume")
    assert rc == 0 and err == ""
    assert "is complete for these settings; nothing to do" in said
    assert snapshot(out) == before  # bytes and modification times
    # other settings are not "complete": with no checkpoint to continue there is nothing to resume
    rc, _, err = cli(capsys, "simulate", m, "--out", out, "--resume", "--set", "simulation.seed=12")
    assert rc == 2 and "no checkpoint to resume from" in one_line(err)
    assert snapshot(out) == before


def test_resume_removes_a_leftover_checkpoint_of_a_complete_run(tmp_path, capsys):
    m, out = model(tmp_path), tmp_path / "o"
    assert cli(capsys, "simulate", m, "--out", out)[0] == 0
    (out / "checkpoint-simulate.npz").write_bytes(b"left by a run killed after its commit")
    rc, said, _ = cli(capsys, "simulate", m, "--out", out, "--resume")
    assert rc == 0 and "complete" in said and not (out / "checkpoint-simulate.npz").exists()


def test_run_resume_continues_only_the_stages_not_done(tmp_path, capsys):
    extra = "\n[fit]\nknots = 8\nmethod = \"map\"\n[scales]\ndeltas = [0.3]\n"
    m, out = model(tmp_path, steps=400_000, extra=extra), tmp_path / "o"
    rc, _, err = cli(capsys, "run", m, "--out", out)
    assert rc == 0, err
    assert not list(out.glob("checkpoint-*")) and not list(out.glob(".pending-*"))
    learn = {n: (out / n).read_bytes() for n in ("result.json", "posterior.nc")}
    scales = json.loads((out / "scales.json").read_text())
    (out / "scales.json").unlink()  # as if the run had stopped before the scales stage
    rc, said, err = cli(capsys, "run", m, "--out", out, "--resume")
    assert rc == 0, err
    assert "learn: " in said and "result.json is complete" in said
    assert {n: (out / n).read_bytes() for n in learn} == learn  # learn's outputs untouched
    again = json.loads((out / "scales.json").read_text())
    def rows(d):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in d["rows"]]

    assert rows(again) == rows(scales) and again["meta"]["run_id"] != scales["meta"]["run_id"]


def test_partial_outputs_are_marked(tmp_path, monkeypatch, capsys):
    # an interrupted ising run keeps what is complete, and says at the top of ising.json that it is partial
    from bayescg.errors import Interrupted
    from bayescg.ising import pipeline

    class Partial:
        def to_dict(self):
            return {"methods": {"exact_em": {"theta_cf": 0.5}}}

        def to_inference_data(self):
            import arviz as az
            import numpy as np

            return az.from_dict(posterior={"theta_cf": np.zeros((1, 3))})

        def method_inference_data(self):
            return {"gibbs": self.to_inference_data()}

    def interrupted(*a, **k):
        exc = Interrupted("ising: interrupted during gibbs; kept exact_em")
        exc.partial = Partial()
        raise exc

    monkeypatch.setattr(pipeline, "run_model", interrupted)
    m = tmp_path / "i.toml"
    m.write_text('name = "i"\n[fine]\nsites = 8\n[coarse]\nlevel = 2\n')
    rc, _, err = cli(capsys, "ising", m, "--out", tmp_path / "o")
    assert rc == 130 and one_line(err).endswith(str(tmp_path / "o" / "ising.json"))
    d = json.loads((tmp_path / "o" / "ising.json").read_text())
    assert list(d)[0] == "partial" and d["partial"] is True
    assert (tmp_path / "o" / "posterior-gibbs.nc").exists()
    assert io.complete_output(tmp_path / "o", "ising.json", None, "ising") is None  # never taken as finished


def test_a_ctrl_c_after_the_last_method_still_writes_the_finished_run(tmp_path, monkeypatch, capsys):
    """Writing the outputs is a stage of its own ("write ising.json, ..."), and a Ctrl-C that arrives once the
    work is done (the control's flag set when the writing starts) does not throw the finished run away."""
    import arviz as az
    import numpy as np

    from bayescg.ising import pipeline

    class Done:
        warnings = []

        def to_dict(self):
            return {"methods": {"exact_em": {"theta_cf": 0.5}}}

        def to_inference_data(self):
            return az.from_dict(posterior={"theta_cf": np.zeros((1, 3))})

        def method_inference_data(self):
            return {}

        def summary(self):
            return "done"

    def finished_then_ctrl_c(model, control=None, executor=None):
        control.interrupted = True  # SIGINT's handler sets this; the run itself had finished
        return Done()

    monkeypatch.setattr(pipeline, "run_model", finished_then_ctrl_c)
    m = tmp_path / "i.toml"
    m.write_text('name = "i"\n[fine]\nsites = 8\n[coarse]\nlevel = 2\n')
    rc = main(["ising", str(m), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "write ising.json, posterior.nc, report.html: done in" in err, err
    d = json.loads((tmp_path / "o" / "ising.json").read_text())
    assert "partial" not in d and d["methods"]["exact_em"]["theta_cf"] == 0.5
    assert (tmp_path / "o" / "report.html").exists() and (tmp_path / "o" / "posterior.nc").exists()


# --- item 4: a potential that is not finite where walkers start -------------------------------------------
@pytest.mark.parametrize("expr, needle", [
    ("sqrt(q)", "potential is not finite where walker 0 starts"),       # NaN for q < 0, at the first walker
    ("q**2/2 + log(q + 4)", "inside the declared domain [-4, 4]"),      # finite at the starts, -inf at q = -4
    ("q**2/2 + 1/(q - 4)", "inside the declared domain [-4, 4]"),       # a pole on the grid's edge
])
def test_potential_not_finite_at_start_or_in_domain_exit_2(tmp_path, capsys, expr, needle):
    rc, _, err = cli(capsys, "simulate", model(tmp_path, expr=expr), "--out", tmp_path / "o")
    line = one_line(err)
    assert rc == 2 and needle in line and "reduce delta" not in line, line
    assert not (tmp_path / "o" / "simulation.json").exists()


def test_real_blow_up_still_says_reduce_delta(tmp_path, capsys):
    # q**4 is finite everywhere; with delta = 0.3 and walkers started wide it diverges: that is the step's fault
    path = model(tmp_path, expr="q**4", steps=10_000)
    path.write_text(path.read_text().replace("seed = 11", "seed = 11\ninit_sd = 3.0"))
    rc, _, err = cli(capsys, "simulate", path, "--out", tmp_path / "o")
    line = one_line(err)
    assert rc == 1 and "blew up" in line and "reduce delta" in line, line


def test_check_potential_finite_checks_the_gradient_too():
    import numpy as np

    from bayescg.checks import check_potential_finite
    from bayescg.errors import InputError
    from bayescg.potentials import Potential

    pot = Potential.from_expression("q**2/2 + sqrt(Abs(q))", ["q"])  # V(0) = 0, dV/dq = sign(q)/(2 sqrt|q|): 0/0
    check_potential_finite(pot, np.array([[0.5], [-1.0]]), [[1.0, 2.0]])
    with pytest.raises(InputError, match=r"walker 1 starts, q = 0 \(V = 0, grad V = nan\)"):
        check_potential_finite(pot, np.array([[0.5], [0.0]]))
    with pytest.raises(InputError, match=r"q = 0 inside the declared domain \[-1, 1\]"):
        check_potential_finite(pot, None, [[-1.0, 1.0]])


# --- item 6: one run per output folder ----------------------------------------------------------------------
def _write_lock(out: Path, **info):
    out.mkdir(parents=True, exist_ok=True)
    (out / io.LOCK_NAME).write_text(json.dumps(info))


def test_lock_refuses_a_live_holder_and_takes_over_a_dead_one(tmp_path):
    out = tmp_path / "o"
    with io.output_lock(out, "learn"):
        held = json.loads((out / io.LOCK_NAME).read_text())
        assert held["pid"] == os.getpid() and held["command"] == "learn"
        with pytest.raises(OutputLockedError, match=rf"another bayescg run is writing to this folder \(pid {os.getpid()}"):
            with io.output_lock(out, "simulate"):
                pass
    assert not (out / io.LOCK_NAME).exists()  # released
    # a lock left by a process that no longer exists (killed) is stale: taken over
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _write_lock(out, pid=dead.pid, host=socket.gethostname(), start=None, command="learn", since="x")
    with io.output_lock(out, "learn"):
        assert json.loads((out / io.LOCK_NAME).read_text())["pid"] == os.getpid()
    # a holder on another machine cannot be checked: refused, with the way out
    _write_lock(out, pid=1, host="elsewhere.invalid", command="learn", since="x")
    with pytest.raises(OutputLockedError, match=r"if no run is active there, remove .*\.bayescg\.lock"):
        with io.output_lock(out, "learn"):
            pass


def test_second_run_into_a_busy_folder_exits_2_with_one_line(tmp_path):
    m, out = model(tmp_path, steps=400_000_000), tmp_path / "o"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    first = subprocess.Popen([sys.executable, "-m", "bayescg.cli", "simulate", str(m), "--out", str(out), "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 120
        while not (out / io.LOCK_NAME).exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert first.poll() is None, first.communicate()
        second = subprocess.run([sys.executable, "-m", "bayescg.cli", "simulate", str(m), "--out", str(out),
                                 "--force", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
        line = one_line(second.stderr)
        assert second.returncode == 2 and f"pid {first.pid}" in line and "another bayescg run" in line, line
    finally:
        first.kill()
        first.wait()


# --- item 7: SIGKILL at random moments ----------------------------------------------------------------------
def _consistent(out: Path):
    """The run id of the complete result in ``out`` (result.json, posterior.nc, report.html agree), or None."""
    if not (out / "result.json").exists():
        return None
    import arviz as az

    rid = json.loads((out / "result.json").read_text())["meta"]["run_id"]
    assert az.from_netcdf(out / "posterior.nc").posterior.attrs["bayescg_run_id"] == rid
    assert f"run {rid}" in (out / "report.html").read_text()
    return rid


@pytest.mark.slow  # ~21-28 s on the 2026-12-05 host; the default run stays near 10 min
def test_sigkill_at_random_moments_leaves_old_or_new_result_and_resume_continues(tmp_path, capsys):
    """A real `bayescg learn` (MAP, small) rewriting a complete result with --force, then continuing with
    --resume, is killed with SIGKILL at random moments of its work; each time the folder holds the old
    complete set or the new one (never a mix), and a last --resume finishes with the result of an
    uninterrupted run (the same simulation, bit for bit).  The reference and the "previous" result are made
    in-process (no interpreter start-up); the kill times are drawn over the in-process run's duration,
    counted from the moment the killed process holds the folder's lock (its imports are done)."""
    extra = "\n[fit]\nknots = 8\nmethod = \"map\"\n"
    m = model(tmp_path, steps=2_000_000, extra=extra)
    t0 = time.time()
    assert cli(capsys, "learn", m, "--out", tmp_path / "ref")[0] == 0
    span = time.time() - t0
    reference = json.loads((tmp_path / "ref" / "result.json").read_text())
    out = tmp_path / "o"
    assert cli(capsys, "learn", m, "--out", out, "--set", "simulation.steps=1000000")[0] == 0  # "previous"
    old = _consistent(out)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    rng = random.Random(16)
    for k in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "bayescg.cli", "learn", str(m), "--quiet", "--out", str(out),
                                 "--force" if k == 0 else "--resume"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while not (out / io.LOCK_NAME).exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 1.2) * span)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        io.recover_outputs(out)  # what the next bayescg call in this folder does first, under the lock
        rid = _consistent(out)
        assert rid is not None  # the old result or the new one, complete
        if rid != old:
            assert json.loads((out / "result.json").read_text())["beta_hat"] == reference["beta_hat"]
    rc, _, err = cli(capsys, "learn", m, "--out", out, "--resume")  # takes over the dead process's lock
    assert rc == 0, err
    got = json.loads((out / "result.json").read_text())
    assert _consistent(out) == got["meta"]["run_id"]
    assert got["beta_hat"] == reference["beta_hat"] and got["U_mean"] == reference["U_mean"]
    assert not list(out.glob("checkpoint-*")) and not list(out.glob(".pending-*"))
    assert not (out / io.LOCK_NAME).exists()


def test_output_set_commit_is_all_or_nothing_at_every_step(tmp_path, monkeypatch):
    """Kill (an exception) after each rename of a commit: recovery always ends with the complete new set."""
    import bayescg.io as I

    def fill(out, tag):
        s = I.OutputSet(out, "result.json")
        for n in ("posterior.nc", "report.html", "result.json"):
            s.path(n).write_text(f"{tag}:{s.run_id}")
        return s

    real = os.replace
    for stop in range(-1, 4):  # -1: killed while writing the journal; k: before the k-th move into the folder
        out = tmp_path / f"o{stop}"
        out.mkdir()
        old = fill(out, "old")
        old.commit()
        new = fill(out, "new")
        moves = []

        def dying(a, b, _stop=stop, _out=out):
            if _stop < 0 and Path(b).name == "COMMIT.json":
                raise KeyboardInterrupt("killed")
            if Path(a).parent.name.startswith(I.PENDING_PREFIX) and Path(b).parent == _out:
                if len(moves) == _stop:
                    raise KeyboardInterrupt("killed")
                moves.append(a)
            return real(a, b)

        monkeypatch.setattr(I.os, "replace", dying)
        with pytest.raises(KeyboardInterrupt) if stop < 3 else contextlib.nullcontext():
            new.commit()
        monkeypatch.setattr(I.os, "replace", real)
        texts = {n: (out / n).read_text() for n in ("posterior.nc", "report.html", "result.json") if (out / n).exists()}
        if "result.json" in texts:  # a primary on disk: its set is complete and consistent
            assert len(set(texts.values())) == 1, (stop, texts)
        I.recover_outputs(out)
        texts = {n: (out / n).read_text() for n in ("posterior.nc", "report.html", "result.json")}
        want = old if stop < 0 else new  # an uncommitted set is discarded, a committed one completed
        assert set(texts.values()) == {f"{'old' if stop < 0 else 'new'}:{want.run_id}"}, (stop, texts)
        assert not list(out.glob(".pending-*"))


def test_library_warnings_are_one_line_each_and_only_on_success(tmp_path, capsys, monkeypatch):
    import warnings

    from bayescg import commands

    def noisy(args):
        warnings.warn("precision loss\n  in moment calculation", RuntimeWarning)
        warnings.warn("precision loss\n  in moment calculation", RuntimeWarning)
        warnings.warn("batched_dot is deprecated", FutureWarning)

    monkeypatch.setattr(commands, "dispatch", noisy)
    monkeypatch.delenv("BAYESCG_DEBUG", raising=False)
    assert main(["simulate", "m.toml"]) == 0
    assert capsys.readouterr().err == "bayescg: warning: precision loss in moment calculation (RuntimeWarning)\n"

    def failing(args):
        warnings.warn("precision loss", RuntimeWarning)
        raise OutputLockedError("o: another bayescg run is writing to this folder")

    monkeypatch.setattr(commands, "dispatch", failing)
    assert main(["simulate", "m.toml"]) == 2
    assert one_line(capsys.readouterr().err) == "bayescg: error: o: another bayescg run is writing to this folder"
