"""CLI contract: exit codes and one-line errors on bad input (no traceback)."""
import subprocess
import sys

import pytest

from bayescg.cli import main

GOOD = """
name = "q"
[potential]
variables = ["q"]
expression = "q**2/2"
[simulation]
delta = 0.1
steps = 1000
walkers = 2
"""


def run_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bayescg.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def one_line_error(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("bayescg: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_missing_file_exit_2(tmp_path):
    line = one_line_error(run_cli("simulate", str(tmp_path / "nope.toml")))
    assert "no such file" in line


@pytest.mark.parametrize("args,needle", [
    ([], "no command"),
    (["frobnicate"], "invalid choice"),
    (["simulate"], "required"),
])
def test_usage_errors_exit_2(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


@pytest.mark.parametrize("mutate,needle", [
    (lambda t: t.replace("delta = 0.1", "delta = -1"), "simulation.delta must be > 0"),
    (lambda t: t.replace("walkers = 2", "walkers = 0"), "simulation.walkers must be > 0"),
    (lambda t: t + "\ncolour = 3\n", "unknown key simulation.colour"),
    (lambda t: "not = = toml", "not valid TOML"),
])
def test_bad_model_file_exit_2(tmp_path, mutate, needle, capsys):
    p = tmp_path / "m.toml"
    p.write_text(mutate(GOOD))
    assert main(["simulate", str(p), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]


def test_bad_set_and_deltas_exit_2(tmp_path, capsys):
    p = tmp_path / "m.toml"
    p.write_text(GOOD)
    assert main(["simulate", str(p), "--set", "simulation.nope=1"]) == 2
    assert "unknown key simulation.nope" in capsys.readouterr().err
    assert main(["scales", str(p), "--deltas", "0.1,abc", "--out", str(tmp_path / "o")]) == 2
    assert "--deltas" in capsys.readouterr().err
    assert main(["scales", str(p), "--deltas", "0.1,-2", "--out", str(tmp_path / "o2")]) == 2
    assert "must be > 0" in capsys.readouterr().err


def test_wrong_command_for_model_kind(tmp_path, capsys):
    p = tmp_path / "m.toml"
    p.write_text(GOOD)
    assert main(["ising", str(p), "--out", str(tmp_path / "o")]) == 2
    assert "needs a [fine] section" in capsys.readouterr().err


def test_subprocess_entry_point_one_line(tmp_path):
    p = tmp_path / "m.toml"
    p.write_text(GOOD.replace("delta = 0.1", "delta = 0"))
    one_line_error(run_cli("learn", str(p)))


def test_scales_deltas_option_is_what_the_outputs_report(tmp_path):
    """--deltas overrides the file's [scales] deltas: scales.json's meta and the report's settings block show
    the deltas actually scanned, not the file's list."""
    import json

    p = tmp_path / "m.toml"
    p.write_text('name = "d"\n[potential]\nvariables = ["q"]\nexpression = "q**2/2"\ndomain = [[-5.0, 5.0]]\n'
                 '[simulation]\ndelta = 0.5\ngamma = 0.1\nsteps = 20000\nwalkers = 2\nseed = 3\nbins = 20\n'
                 '[scales]\ndeltas = [0.9, 0.8]\n')
    out = tmp_path / "o"
    assert main(["scales", str(p), "--deltas", "0.4,0.2", "--out", str(out), "--quiet"]) == 0
    payload = json.loads((out / "scales.json").read_text())
    assert [r["delta"] for r in payload["rows"]] == [0.4, 0.2]
    assert payload["meta"]["model"]["scales"]["deltas"] == [0.4, 0.2]
    html = (out / "report-scales.html").read_text()
    assert "deltas = [0.4, 0.2]" in html and "0.9, 0.8" not in html


def test_console_script_exits_with_mains_code_and_skips_the_final_collection(monkeypatch):
    """``bayescg`` (pyproject's script) is cli.entry: main's exit code, with the heap frozen so the interpreter's
    last garbage collection does not walk it (the outputs are closed by then)."""
    import gc
    import tomllib
    from pathlib import Path

    from bayescg import cli

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["bayescg"] == "bayescg.cli:entry"
    monkeypatch.setattr(cli, "main", lambda argv=None: 2)
    before = gc.get_freeze_count()
    try:
        with pytest.raises(SystemExit) as exc:
            cli.entry()
        assert exc.value.code == 2 and gc.get_freeze_count() > before
    finally:
        gc.unfreeze()
