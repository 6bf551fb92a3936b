"""What a user reads in the terminal: summaries with sensible precision, n/a where a number does not apply,
matrices as rows, one error prefix, the right command for the kind of model file, list quoting that works."""
import json
import re
import shlex
from types import SimpleNamespace

import pytest

from bayescg import Summary, load_model
from bayescg.cli import main
from bayescg.noise import NoiseResult
from bayescg.pipeline import LearnResult
from bayescg.summary import format_value

MODEL = """
name = "tiny"
[potential]
variables = ["q"]
expression = "q**2/2 + 0.05*sin(q/0.05)"
reference = "q**2/2"
[simulation]
delta = 0.5
steps = 200000
walkers = 4
[fit]
knots = 8
method = "map"
delta_correction = "none"
"""
LONG_FLOAT = re.compile(r"\d\.\d{7,}")  # 8+ significant digits: a float printed by repr


@pytest.fixture
def tiny(tmp_path):
    p = tmp_path / "tiny.toml"
    p.write_text(MODEL)
    return p


def _err(capsys) -> list:
    return capsys.readouterr().err.strip().splitlines()


# --- Summary and its formatting --------------------------------------------------------------------
def test_values_print_with_sensible_precision():
    assert format_value(1.004551844144205) == "1.005"
    assert format_value(4448.503659439104, ".0f") == "4449"
    assert format_value(None, missing="n/a (MAP)") == "n/a (MAP)"
    assert format_value(float("nan")) == "n/a"
    assert format_value(3.24, unit="x") == "3.24x" and format_value(12.0, ".1f", unit="s") == "12.0 s"
    assert format_value(20_000_000, ",") == "20,000,000"
    assert format_value([[0.051234567, 0.025], [0.025, 0.0251]]) == "[[0.05123,   0.025],\n [  0.025,  0.0251]]"


def test_summary_is_a_mapping_with_text_json_and_tables():
    s = Summary("t", warnings=["careful"]).add("beta_hat", 0.70612345).add("r_hat_max", None, missing="n/a (MAP)")
    s.table("rows", [{"delta": 0.5, "verdict": "accepted", "G2": 0.123456789}])
    assert dict(s) == {"beta_hat": 0.70612345, "r_hat_max": None} and s.text("beta_hat") == "0.7061"
    text = str(s)
    assert "beta_hat   0.7061" in text and "r_hat_max  n/a (MAP)" in text and "warning: careful" in text
    assert "0.1235" in text and not LONG_FLOAT.search(text)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["rows"][1] == {"label": "r_hat_max", "value": None, "unit": None} and d["tables"][0]["title"] == "rows"


def _learn_dict(method, r_hat):
    return {"dimension": 2, "delta": 0.1, "gamma": 0.1, "steps": 2_000_000, "beta_hat": 0.98765432101,
            "beta_hat_se": 0.0123456, "trapped_fraction": 0.0, "reference_rmse": 0.0345678912,
            "reference_coverage": 0.91234, "noise_covariance": [[0.0512345678, 0.0251], [0.0251, 0.02549999]],
            "method": method, "diagnostics": {"r_hat_max": r_hat, "ess_bulk_min": 4448.5036 if r_hat else None,
                                              "divergences": 0 if r_hat else None},
            "normality": {"pvalue": 0.1151234}, "finite_delta_correction": {"applied": False, "reason": "d = 2"},
            "seconds": 12.3456, "warnings": []}


def test_learn_summary_nuts_precision_and_z_matrix():
    fake = SimpleNamespace(to_dict=lambda: _learn_dict("nuts", 1.004551844144205))
    s = LearnResult.summary(fake)
    text = str(s)
    assert s.text("diagnostics.r_hat_max") == "1.005" and s.text("diagnostics.ess_bulk_min") == "4449"
    assert s.text("noise covariance Z").splitlines() == ["[[0.05123,  0.0251],", " [ 0.0251,  0.0255]]"]
    assert not LONG_FLOAT.search(text), text


def test_learn_summary_map_says_n_a():
    s = LearnResult.summary(SimpleNamespace(to_dict=lambda: _learn_dict("map", None)))
    assert s.text("diagnostics.r_hat_max") == "n/a (MAP)" and s.text("diagnostics.divergences") == "n/a (MAP)"


def test_noise_summary_prints_z_as_a_matrix():
    d = {"noise_covariance": [[0.0512345678, 0.02513], [0.02513, 0.0254999]], "noise_covariance_sd": [[1e-3] * 2] * 2,
         "friction": [[0.0256172839, 0.012565], [0.012565, 0.01274995]], "beta_hat": 1.00123456,
         "beta_hat_se": 0.01, "design_condition_number": 3.0, "diagnostics": None, "seconds": 1.0}
    text = str(NoiseResult.summary(SimpleNamespace(to_dict=lambda: d, dim=2, warnings=[])))
    assert re.search(r"noise covariance Z +\[\[0\.05123, 0\.02513\],\n +\[0\.02513,  0\.0255\]\]", text), text
    assert "n/a (not sampled" in text
    assert not LONG_FLOAT.search(text), text


def test_learn_command_prints_the_summary_map_n_a(tiny, tmp_path, capsys):
    assert main(["learn", str(tiny), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"diagnostics\.r_hat_max +n/a \(MAP\)", out), out
    assert re.search(r"beta_hat +\d\.\d{1,3}\n", out) and "learn: wrote" in out
    assert not LONG_FLOAT.search(out), out


# --- errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("argv,needle", [(["--bogus"], "unrecognized arguments"),
                                         (["learn"], "learn: the following arguments are required"),
                                         ([], "no command given")])
def test_one_error_prefix(argv, needle, capsys):
    assert main(argv) == 2
    err = _err(capsys)
    assert len(err) == 1 and err[0].startswith("bayescg: error: ") and needle in err[0]
    assert not re.search(r"bayescg: error: bayescg", err[0]) and "bayescg learn:" not in err[0]


def test_ising_file_to_learn_says_use_bayescg_ising(tmp_path, capsys):
    ising = tmp_path / "i.toml"
    ising.write_text('name = "i"\n[fine]\nsites = 8\n')
    for cmd in ("learn", "simulate", "scales", "noise", "surrogate"):
        assert main([cmd, str(ising), "--out", str(tmp_path / cmd)]) == 2
        err = _err(capsys)
        assert len(err) == 1 and "run it with `bayescg ising`" in err[0], err


def test_potential_file_to_ising_says_use_bayescg_learn(tiny, tmp_path, capsys):
    assert main(["ising", str(tiny), "--out", str(tmp_path / "o")]) == 2
    err = _err(capsys)
    assert len(err) == 1 and "needs a [fine] section" in err[0] and "`bayescg learn`" in err[0]


@pytest.mark.parametrize("override,shown", [
    ("simulation.mass=2", "--set simulation.mass='[[2.0]]'"),
    ("simulation.mass=[2.0", "--set simulation.mass='[[2.0]]'"),
    ("simulation.init_mean=3", "--set simulation.init_mean='[0.5, 0.25]'"),
    ("inference.methods=[em,laplace]", """--set inference.methods='["em", "laplace"]'"""),
])
def test_list_errors_show_quoting_that_works(override, shown, tiny, tmp_path, capsys):
    path = tiny
    if override.startswith("inference"):
        path = tmp_path / "i.toml"
        path.write_text('name = "i"\n[fine]\nsites = 8\n')
    assert main(["simulate" if path == tiny else "ising", str(path), "--set", override,
                 "--out", str(tmp_path / "o")]) == 2
    err = _err(capsys)
    assert len(err) == 1 and shown in err[0], err
    # what the message shows, pasted into a shell, is accepted (for a 1-D model, the 1x1 mass and 1 mean)
    value = shlex.split(shown)[1]
    if "init_mean" in value:
        value = "simulation.init_mean=[0.5]"
    load_model(path, [value])


def test_report_form_keeps_numbers_and_says_why_a_value_is_missing():
    s = LearnResult.summary(SimpleNamespace(to_dict=lambda: _learn_dict("map", None)))
    r = s.for_report()
    assert r["diagnostics.r_hat_max"] == "n/a (MAP)" and r["beta_hat"] == 0.98765432101
    assert r["reference_coverage"] == 0.91234 and r["seconds"] == 12.3456


def test_fit_summary_map_and_nuts():
    from bayescg.fit import FitResult

    base = dict(dim=1, knots=[list(range(14))], n_eff=1234.5678, beta={"mean": 0.35412345}, reference_rmse=None,
                reference_coverage=None, seconds=3.21, warnings=[])
    m = FitResult.summary(SimpleNamespace(method="map", diagnostics={"r_hat_max": None}, **base))
    assert m.text("diagnostics.r_hat_max") == "n/a (MAP)" and m.text("reference_rmse") == "n/a (no reference)"
    assert m.text("knots per dimension") == "[8]" and m.text("beta (posterior mean)") == "0.3541"
    n = FitResult.summary(SimpleNamespace(method="nuts", diagnostics={"r_hat_max": 1.0123456, "ess_bulk_min": 812.4,
                                                                      "divergences": 0}, **base))
    assert n.text("diagnostics.r_hat_max") == "1.012" and n.text("diagnostics.divergences") == "0"
    assert not LONG_FLOAT.search(str(n))
