"""Property-based tests of the command line (hypothesis): damaged model files and ``--set`` overrides, for
every command.  Whatever the input, a command ends with exit 0, 1 or 2, never a traceback, never an
"internal error" (a bug); a failure is one line on stderr, a success at most library warnings, one line each.

Budgets are tiny and the values the generator may give to budget keys (steps, draws, trajectories, ...) are
small or invalid (never dropped: their defaults are paper-size), so an example takes at most seconds; 6
examples per command (derandomized: the same examples every run).
"""
import copy
import sys
import tempfile
import warnings
from datetime import timedelta
from pathlib import Path

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings, strategies as st

from bayescg.cli import main

POTENTIAL_MODEL = {
    "name": "prop",
    "potential": {"variables": ["q"], "expression": "q**2/2 + 0.01*sin(q/0.01)", "reference": "q**2/2",
                  "domain": [[-4.0, 4.0]]},
    "simulation": {"delta": 0.3, "gamma": 0.1, "steps": 20_000, "walkers": 2, "seed": 1, "bins": 20},
    "fit": {"knots": 6, "method": "map"},
    "scales": {"deltas": [0.3]},
    "noise": {"steps": 4000},
    "surrogate": {"delta": 0.1, "reference_step": 0.05, "trajectories": 4, "time": 1.0, "posterior_draws": 0,
                  "phase_trajectories": 1},
}
ISING_MODEL = {
    "name": "prop-ising",
    "fine": {"sites": 6, "field": 0.3, "coupling": 0.8},
    "data": {"samples": 10, "seed": 1},
    "coarse": {"level": 2, "model": "110"},
    "inference": {"methods": ["exact_em"], "draws": 20, "tune": 10, "chains": 1, "em_iterations": 5,
                  "coarse_samples": 10, "posterior_samples": 5, "prediction_samples": 50},
}
#: keys whose size sets the run time: only small or invalid values are generated for them
BUDGET = {"simulation.steps": [2000, 20_000], "simulation.walkers": [1, 2], "simulation.bins": [4, 10],
          "simulation.max_samples": [0, 100], "fit.knots": [4, 6], "fit.draws": [5], "fit.tune": [0, 5],
          "fit.chains": [1], "noise.steps": [2000], "surrogate.trajectories": [1, 3], "surrogate.time": [0.5],
          "surrogate.reference_step": [0.05, 0.1], "surrogate.delta": [0.1, 0.2], "surrogate.posterior_draws": [0, 2],
          "surrogate.phase_trajectories": [1], "fine.sites": [2, 4, 6], "data.samples": [1, 5],
          "inference.draws": [5], "inference.tune": [0, 5], "inference.chains": [1], "inference.em_iterations": [1, 3],
          "inference.coarse_samples": [5], "inference.posterior_samples": [2], "inference.prediction_samples": [10],
          "coarse.level": [1, 2, 3], "fit.method": ["map"], "inference.methods": [["exact_em"], ["em"], ["laplace"]],
          "simulation.auto_gamma": [False]}
#: sections whose defaults are paper-size runs (NUTS with 1000 draws, 4000 surrogate trajectories): never dropped
HEAVY_DEFAULTS = {"fit", "inference", "surrogate"}
JUNK = ["abc", "", True, [], [1, 2], [[0.0, 1.0]], {"k": 1}, -1, 0, -0.5, float("nan"), float("inf"), 0.5, 3]
EXPRESSIONS = ["q**2/2", "sqrt(q)", "q**", "x**2", "exp(q)", "log(q) + q**2", "1/q", "q**4", "sin(", "__import__('os')",
               "q**2/2 + 0.01*sin(q/0.01)", "Abs(q)", "q*I"]
SET_VALUES = ["1", "-1", "0", "abc", "1e3", "[1, 2]", '"map"', "true", "nan", "", "{", "0.2", "[[0, 1]]", "'x'"]
COMMANDS = ["simulate", "learn", "scales", "noise", "surrogate", "ising", "run"]


def _keys(model):
    return [f"{s}.{k}" for s, sec in model.items() if isinstance(sec, dict) for k in sec]


def _value(key):
    if key in BUDGET:
        return st.sampled_from(BUDGET[key] + ["abc", -1, 0, [], float("nan")])
    if key.endswith(("expression", "reference", "compare_expression")):
        return st.sampled_from(EXPRESSIONS + JUNK[:3])
    return st.sampled_from(JUNK)


@st.composite
def damaged(draw, command):
    """(model dict, --set overrides): a valid tiny model of the command's kind (sometimes of the other kind)
    with a few keys changed, dropped or added."""
    own, other = (ISING_MODEL, POTENTIAL_MODEL) if command == "ising" else (POTENTIAL_MODEL, ISING_MODEL)
    model = copy.deepcopy(draw(st.sampled_from([own, own, other])))
    keys = _keys(model)
    for _ in range(draw(st.integers(0, 3))):
        what = draw(st.sampled_from(["change", "change", "drop", "drop-section", "unknown"]))
        key = draw(st.sampled_from(keys))
        sec, k = key.split(".")
        if what == "change" and sec in model:
            model[sec][k] = draw(_value(key))
        elif what == "drop" and sec in model and key not in BUDGET:  # a dropped budget key is a big default
            model[sec].pop(k, None)
        elif what == "drop-section" and sec not in HEAVY_DEFAULTS:
            model.pop(sec, None)
        elif what == "unknown":
            model.setdefault(sec, {})["nonsense"] = 1
    sets = []
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(keys + ["simulation.nope", "nosection.key", "name", "simulation"]))
        text = draw(st.sampled_from([str(v).lower() for v in BUDGET[key] if not isinstance(v, list)] + ["abc", "-1"])
                    if key in BUDGET else st.sampled_from(SET_VALUES))
        sets.append(f"{key}={text}")
    return model, sets


def _run(command, model, sets, extra=()):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.toml"
        try:
            path.write_bytes(tomli_w.dumps(model).encode())
        except (TypeError, ValueError):  # a value TOML cannot hold (e.g. None): write it broken instead
            path.write_text(str(model))
        argv = [command, str(path), "--out", str(Path(tmp) / "out"), "--quiet", *extra]
        for s in sets:
            argv += ["--set", s]
        # warnings go to stderr as a user would see them: the interpreter's default filters (pytest would
        # otherwise record every warning)
        with warnings.catch_warnings():
            warnings.resetwarnings()
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = lambda m, c, f, l, file=None, line=None: sys.stderr.write(
                warnings.formatwarning(m, c, f, l, line))
            rc = main(argv)
    return rc


def _check(rc, err):
    assert rc in (0, 1, 2), (rc, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if rc == 0:  # nothing, or library warnings as one line each
        assert all(line.startswith("bayescg: warning: ") for line in err.splitlines()), err
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bayescg: error: "), err


@pytest.mark.parametrize("command", COMMANDS)
@settings(max_examples=6, deadline=timedelta(seconds=120), derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), deltas=st.sampled_from([None, "0.3", "0.1,abc", "-1", ""]))
def test_damaged_inputs_end_cleanly(command, data, deltas, capsys):
    model, sets = data.draw(damaged(command))
    extra = ["--deltas", deltas] if command == "scales" and deltas is not None else []
    capsys.readouterr()
    rc = _run(command, model, sets, extra)
    _check(rc, capsys.readouterr().err)
