"""Ctrl-C (SIGINT) keeps a checkpoint, exits non-zero, and --resume reproduces the uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

MODEL = """
name = "interrupt"
[potential]
variables = ["q"]
expression = "q**2/2 + 0.01*sin(q/0.01)"
[simulation]
delta = 0.3
gamma = 0.1
steps = {steps}
walkers = 4
seed = 11
bins = 50
"""


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "bayescg.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_sigint_then_resume_matches_uninterrupted(tmp_path):
    steps = 60_000_000
    model = tmp_path / "m.toml"
    model.write_text(MODEL.format(steps=steps))
    # Reference: the same run, uninterrupted but shorter chunks are irrelevant to the result.
    out_int = tmp_path / "interrupted"
    proc = cli("simulate", str(model), "--out", str(out_int), "--quiet")
    ckpt = out_int / "checkpoint-simulate.npz"
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"run finished before it could be interrupted: {proc.communicate()}"
    assert ckpt.exists(), "no checkpoint appeared"
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 20, "did not stop within seconds"
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (out_int / "simulation.json").exists()

    res = subprocess.run([sys.executable, "-m", "bayescg.cli", "simulate", str(model), "--out", str(out_int),
                          "--resume", "--quiet"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    out_ref = tmp_path / "reference"
    ref = subprocess.run([sys.executable, "-m", "bayescg.cli", "simulate", str(model), "--out", str(out_ref),
                          "--quiet"], capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr
    a = json.loads((out_int / "simulation.json").read_text())
    b = json.loads((out_ref / "simulation.json").read_text())
    assert a["steps"] == b["steps"] == steps
    assert a["beta_hat"] == b["beta_hat"]  # to the last digit
    assert a["momentum_covariance"] == b["momentum_covariance"]


def test_existing_output_needs_force(tmp_path):
    model = tmp_path / "m.toml"
    model.write_text(MODEL.format(steps=20_000))
    out = tmp_path / "o"
    args = [sys.executable, "-m", "bayescg.cli", "simulate", str(model), "--out", str(out), "--quiet"]
    assert subprocess.run(args, capture_output=True, timeout=300).returncode == 0
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "--force" in again.stderr
    assert subprocess.run(args + ["--force"], capture_output=True, timeout=300).returncode == 0
