"""Noise stage checkpoints: an interrupted-then-resumed estimate equals an uninterrupted one, and finished
designs are not run again."""
import json
from pathlib import Path

import numpy as np
import pytest

from bayescg import io, noise
from bayescg.errors import Interrupted
from bayescg.potentials import Potential

EXPR = "(2*x + y - 1)**2/4 + (x - y - 1)**2 + 1e-3*(sin(x/1e-3) + sin((x + y)/1e-3))"
KW = dict(steps=400_000, walkers=4, seed=3, bayesian=False, bins=20, hist_range=[(-1.5, 3.0), (-2.5, 2.0)])


class StopWhen:
    """RunControl stand-in: raises Interrupted (like Ctrl-C) at the first tick once ``path`` exists."""

    def __init__(self, path):
        self.path = Path(path)
        self.stopped = False

    def check(self):
        if self.path.exists() and not self.stopped:
            self.stopped = True
            raise Interrupted("test: interrupted")

    def tick(self, done, note=""):
        self.check()


def _json(res):
    d = io.to_jsonable(res.to_dict())
    d.pop("seconds")
    return json.dumps(d, sort_keys=True)


@pytest.fixture(scope="module")
def pot():
    return Potential.from_expression(EXPR, ["x", "y"])


def test_interrupted_then_resumed_equals_uninterrupted(pot, tmp_path, monkeypatch):
    ref = noise.estimate_noise(pot, 0.05, 0.1, **KW)
    work = tmp_path / "run"
    work.mkdir()
    # interrupt during design 1 (design 0 finished and saved)
    with pytest.raises(Interrupted):
        noise.estimate_noise(pot, 0.05, 0.1, control=StopWhen(work / "checkpoint-noise-design-0.npz"),
                             workdir=work, **KW)
    assert (work / "checkpoint-noise-design-0.npz").exists()
    assert (work / "checkpoint-noise-design-1.sim.npz").exists()   # design 1's partial progress
    assert not (work / "checkpoint-noise-design-2.npz").exists()
    # resume: design 0 comes from its checkpoint (simulate is not called for it), design 1 continues
    import bayescg.simulate as S

    calls = []
    real = S.simulate

    def counting(*a, **k):
        calls.append((k.get("seed"), bool(k.get("resume"))))
        return real(*a, **k)

    monkeypatch.setattr(S, "simulate", counting)
    res = noise.estimate_noise(pot, 0.05, 0.1, workdir=work, resume=True, **KW)
    seeds = [s for s, _ in calls]
    assert KW["seed"] not in seeds                      # design 0 not rerun
    assert (KW["seed"] + 1, True) in calls              # design 1 resumed from its partial checkpoint
    assert _json(res) == _json(ref)
    assert not (work / "checkpoint-noise-design-1.sim.npz").exists()
    # a checkpoint written with other settings is not reused
    calls.clear()
    other = dict(KW, steps=200_000)
    noise.estimate_noise(pot, 0.05, 0.1, workdir=work, resume=True, **other)
    assert KW["seed"] in [s for s, _ in calls]


@pytest.mark.slow  # two LKJ posteriors with NUTS: ~40 s
def test_cli_noise_resume_skips_finished_designs(tmp_path):
    # `bayescg noise --resume` passes its output folder to the checkpointing (no simulation at all here:
    # every design and the calibrated run are read back)
    from bayescg import cli
    from bayescg.config import load_model
    from bayescg.pipeline import estimate_noise_model

    sets = ["simulation.steps=2e5", "simulation.walkers=4", "simulation.bins=20"]
    out = tmp_path / "noise"
    model = load_model("models/test4-2d-quadratic.toml", sets)
    out.mkdir()
    first = estimate_noise_model(model, workdir=out)
    files = sorted(p.name for p in out.glob("checkpoint-noise-*.npz"))
    assert files == ["checkpoint-noise-calibrated.npz"] + [f"checkpoint-noise-design-{k}.npz" for k in range(3)]
    argv = ["noise", "models/test4-2d-quadratic.toml", "--out", str(out), "--resume", "--quiet"]
    for s in sets:
        argv += ["--set", s]
    assert cli.main(argv) == 0
    # once noise.json is committed the command removes its checkpoints (none is left after success)
    assert not list(out.glob("checkpoint-*")), "checkpoints left after a successful run"
    got = json.loads((out / "noise.json").read_text())
    np.testing.assert_allclose(got["design_moments"], first.moments, rtol=0, atol=0)
    np.testing.assert_allclose(got["calibrated_momentum_covariance"], first.calibrated_momentum_covariance)
