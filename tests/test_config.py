"""Model-file parsing and validation (config.py)."""
import math

import pytest
from hypothesis import given, settings, strategies as st

from bayescg.config import FORMAT_VERSION, load_model, model_from_dict, parse_value
from bayescg.errors import ModelFileError

POT = """
name = "q"
[potential]
variables = ["q"]
expression = "q**2/2 + 0.05*sin(q/0.05)"
reference = "q**2/2"
[simulation]
delta = 0.5
gamma = 0.1
steps = 100000
walkers = 4
seed = 1
[fit]
knots = 20
"""

ISING = """
name = "ising-nn"
[fine]
sites = 32
beta = 1.0
field = 0.0
coupling = 1.0
interaction_length = 1
exponent = 0.0
boundary = "periodic"
[data]
samples = 100
seed = 1
[coarse]
level = 2
model = "110"
[inference]
methods = ["em", "laplace", "nuts", "gibbs", "relent"]
"""


def write(tmp_path, text, name="m.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_spec_examples_parse(tmp_path):
    m = load_model(write(tmp_path, POT))
    assert m.kind == "potential" and m.simulation.delta == 0.5 and m.fit.knots == 20
    assert m.potential.reference == "q**2/2"
    i = load_model(write(tmp_path, ISING, "i.toml"))
    assert i.kind == "ising" and i.coarse.model == "110" and i.fine.boundary == "periodic"


def test_overrides_dotted_and_scientific(tmp_path):
    m = load_model(write(tmp_path, POT), ["simulation.steps=1e7", "simulation.delta=0.25", "fit.method=map"])
    assert m.simulation.steps == 10_000_000 and isinstance(m.simulation.steps, int)
    assert m.simulation.delta == 0.25 and m.fit.method == "map"


@pytest.mark.parametrize("text,needle", [
    (POT.replace("gamma = 0.1", "gama = 0.1"), "unknown key simulation.gama"),
    (POT.replace("delta = 0.5", "delta = -0.5"), "simulation.delta must be > 0"),
    (POT.replace("delta = 0.5", "delta = 0.0"), "simulation.delta must be > 0"),
    (POT.replace("gamma = 0.1", "gamma = 0"), "simulation.gamma must be > 0"),
    (POT.replace("walkers = 4", "walkers = 0"), "simulation.walkers must be > 0"),
    (POT.replace("steps = 100000", 'steps = "many"'), "simulation.steps must be an integer"),
    (POT.replace("steps = 100000", "steps = 1.5"), "simulation.steps must be an integer"),
    (POT.replace("delta = 0.5", "delta = nan"), "must be finite"),
    (POT.replace('variables = ["q"]', 'variables = ["a","b","c","d"]'), "1 to 3 variables"),
    (POT + "\n[bogus]\nx = 1\n", "unknown key or section 'bogus'"),
    (POT.replace("name = \"q\"", "name = \"q\"\nformat = 99"), "newer than this bayescg reads"),
    ("name = 'x'\n", "needs a [potential] or a [fine] section"),
    (POT + "\nmass = [[1.0, 0.0], [0.0, 1.0]]\n", "fit.mass"),
    (ISING.replace("sites = 32", "sites = 30").replace("level = 2", "level = 4"), "not divisible"),
    (ISING.replace('model = "110"', 'model = "1x0"'), "unknown coarse.model"),
    (ISING.replace("interaction_length = 1", "interaction_length = 40"), "shorter than the chain"),
    (ISING.replace('boundary = "periodic"', 'boundary = "twisted"'), "fine.boundary must be one of"),
])
def test_bad_model_files_one_clear_line(tmp_path, text, needle):
    with pytest.raises(ModelFileError) as err:
        load_model(write(tmp_path, text))
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_non_spd_mass_rejected(tmp_path):
    text = POT.replace('variables = ["q"]', 'variables = ["x", "y"]').replace(
        "expression = \"q**2/2 + 0.05*sin(q/0.05)\"", 'expression = "x**2 + y**2"').replace(
        'reference = "q**2/2"', "") + ""
    text = text.replace("seed = 1", "seed = 1\nmass = [[1.0, 2.0], [2.0, 1.0]]")
    with pytest.raises(ModelFileError, match="positive definite"):
        load_model(write(tmp_path, text))


def test_unreadable_and_not_toml(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "missing.toml")
    with pytest.raises(ModelFileError, match="not valid TOML"):
        load_model(write(tmp_path, "this is = = not toml"))
    with pytest.raises(ModelFileError, match="is a directory"):
        load_model(tmp_path)
    bad = tmp_path / "bin.toml"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ModelFileError, match="cannot read"):
        load_model(bad)


def test_bad_override_keys(tmp_path):
    p = write(tmp_path, POT)
    for ov, needle in [("simulation.nope=1", "unknown key simulation.nope"), ("nosuch.key=1", "unknown section"),
                       ("steps", "expected KEY=VALUE"), ("a.b.c=1", "bad key")]:
        with pytest.raises(ModelFileError, match=needle):
            load_model(p, [ov])


# --- property-based -------------------------------------------------------------------------
finite = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(delta=finite, gamma=finite, steps=st.integers(1, 10**12), walkers=st.integers(1, 4096),
       seed=st.integers(0, 2**32))
def test_valid_simulation_sections_roundtrip(delta, gamma, steps, walkers, seed):
    raw = {"potential": {"variables": ["q"], "expression": "q**2"},
           "simulation": {"delta": delta, "gamma": gamma, "steps": steps, "walkers": walkers, "seed": seed}}
    m = model_from_dict(raw)
    assert (m.simulation.delta, m.simulation.gamma, m.simulation.steps) == (delta, gamma, steps)
    assert m.simulation.walkers == walkers and m.simulation.seed == seed


@settings(max_examples=60, deadline=None)
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 0),
                       st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2)))
def test_invalid_delta_always_rejected_with_model_file_error(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return
    raw = {"potential": {"variables": ["q"], "expression": "q**2"}, "simulation": {"delta": value}}
    with pytest.raises(ModelFileError):
        model_from_dict(raw)


@settings(max_examples=80, deadline=None)
@given(key=st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_unknown_keys_always_rejected(key):
    from bayescg.config import SimulationSection
    import dataclasses

    if key in {f.name for f in dataclasses.fields(SimulationSection)}:
        return
    raw = {"potential": {"variables": ["q"], "expression": "q**2"}, "simulation": {"delta": 0.1, key: 1}}
    with pytest.raises(ModelFileError, match="unknown key"):
        model_from_dict(raw)


@settings(max_examples=60, deadline=None)
@given(x=st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False), st.booleans()))
def test_parse_value_roundtrips_toml_scalars(x):
    import tomli_w

    text = tomli_w.dumps({"v": x}).split("=", 1)[1].strip()
    assert parse_value(text) == x


def test_format_version_current_is_accepted():
    raw = {"format": FORMAT_VERSION, "potential": {"variables": ["q"], "expression": "q**2"}}
    assert model_from_dict(raw).format == FORMAT_VERSION
