"""Ctrl-C during `bayescg ising` sampling: clean stop, exit 130, one-line message, and the
completed methods (plus the interrupted sampler's draws so far) are kept."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from bayescg.config import model_from_dict
from bayescg.errors import Interrupted

MODEL = """
name = "ising-interrupt"
[fine]
sites = 8
field = 0.3
coupling = 0.8
[data]
samples = 20
seed = 3
[coarse]
level = 2
model = "110"
[inference]
methods = ["exact_em", "gibbs"]
draws = {draws}
tune = 50
chains = 2
prediction_samples = 500
seed = 1
"""


class InterruptAfter:
    """Stands in for RunControl: ``interrupted`` turns True at its n-th reading (the samplers read
    it once per draw or poll), as if Ctrl-C had arrived then."""

    def __init__(self, n):
        self.n = n
        self.reads = 0
        self.ticks = []

    @property
    def interrupted(self):
        self.reads += 1
        return self.reads > self.n

    def check(self):
        if self.interrupted:
            raise Interrupted("interrupted")

    def tick(self, done, note=""):
        self.ticks.append(note)
        self.check()


def _model(draws, methods=None, sampler=None):
    import tomllib

    raw = tomllib.loads(MODEL.format(draws=draws))
    if methods:
        raw["inference"]["methods"] = methods
    if sampler:
        raw["inference"]["sampler"] = sampler
    return model_from_dict(raw)


@pytest.mark.parametrize("meth,sampler", [("gibbs", None), ("nuts", "pymc")])
def test_interrupted_sampler_keeps_completed_methods_and_draws_so_far(meth, sampler):
    from bayescg.ising.pipeline import run_model

    # reads: one per method start and tick (exact_em: start, EM checks, tick) then one per draw
    ctl = InterruptAfter(200)
    with pytest.raises(Interrupted) as ei:
        run_model(_model(5000, ["exact_em", meth], sampler), control=ctl)
    msg = str(ei.value)
    assert msg.startswith(f"ising: interrupted during {meth}; kept exact_em ({meth} with ") and "\n" not in msg
    res = ei.value.partial
    d = res.to_dict()
    info = d["interrupted"]
    assert info["during"] == meth and info["completed"] == ["exact_em"] and info["not_run"] == []
    part = info["partial"]
    assert 0 < part["draws"] < 5000 and part["requested_draws"] == 5000 and part["chains"] >= 1
    assert set(d["methods"]) == {"exact_em", meth}
    m = d["methods"][meth]
    assert m["interrupted"] == part and np.isfinite(m["theta_cf"])
    post = res.methods[meth].draws_cf
    assert post.shape == (part["chains"], part["draws"]) and np.all(np.isfinite(post))
    res.to_inference_data()  # what the CLI writes to posterior.nc


def test_interrupt_before_any_method_completes_keeps_nothing():
    from bayescg.ising.pipeline import run_model

    with pytest.raises(Interrupted) as ei:
        run_model(_model(100, ["exact_em"]), control=InterruptAfter(0))
    assert ei.value.partial is None and "nothing complete kept" in str(ei.value)


def test_nutpie_interrupt_returns_draws_so_far():
    pytest.importorskip("nutpie")
    from bayescg.ising.bayes import sample_nuts
    from bayescg.ising.coarse import CoarseModel
    from bayescg.ising.fine import FineModel

    fm = FineModel(8, 1.0, 0.3, (0.8,), True)
    x = fm.sample(20, np.random.default_rng(3))
    cm = CoarseModel(8, 2, "110", 1.0, 0.3, True)

    class Flag:
        interrupted = False

    flag = Flag()
    timer = None

    # the flag is set 1.5 s after sampling starts (the first poll happens after compilation)
    class Starter(Flag):
        @property
        def interrupted(self):
            nonlocal timer
            if timer is None:
                timer = threading.Timer(1.5, lambda: setattr(flag, "interrupted", True))
                timer.start()
            return flag.interrupted

    t0 = time.perf_counter()
    run = sample_nuts(cm, x, draws=10 ** 7, tune=100, chains=2, seed=1, control=Starter())
    assert time.perf_counter() - t0 < 120  # 10^7 draws would take many minutes
    assert run.interrupted and run.idata is not None
    tf = run.idata.posterior.theta_cf.values
    assert 0 < tf.shape[1] < 10 ** 7 and np.all(np.isfinite(tf)) and np.all((tf > 0.5) & (tf < 1))


def test_cli_sigint_during_sampling_exit_130_one_line_and_partial_output(tmp_path):
    model = tmp_path / "m.toml"
    model.write_text(MODEL.format(draws=10 ** 6))
    out = tmp_path / "out"
    env = dict(os.environ, BAYESCG_PROGRESS="1")  # the progress bar tells us when exact_em is done
    proc = subprocess.Popen([sys.executable, "-m", "bayescg.cli", "ising", str(model), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # read stderr (unbuffered, from the descriptor) until the exact_em tick shows up
    seen = ""
    deadline = time.time() + 240
    while "exact_em" not in seen and proc.poll() is None and time.time() < deadline:
        seen += os.read(proc.stderr.fileno(), 4096).decode(errors="replace")
    assert proc.poll() is None, f"run ended early: {seen}"
    assert "exact_em" in seen, seen
    time.sleep(3.0)  # into gibbs (compilation or sampling; 10^6 draws do not finish)
    t0 = time.time()
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=120)
    err = seen + rest
    assert time.time() - t0 < 60, "did not stop promptly"
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1].split("\r")[-1]
    assert last.startswith("bayescg: error: ising: interrupted during gibbs; kept exact_em"), err
    assert last.endswith(str(out / "ising.json"))
    d = json.loads((out / "ising.json").read_text())
    assert "exact_em" in d["methods"] and d["interrupted"]["during"] == "gibbs"
    assert d["interrupted"]["completed"] == ["exact_em"]
    assert (out / "posterior.nc").exists()
