"""The README a new user follows: its Python examples run, its test command is the one CI runs."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def readme_examples() -> list[str]:
    """Python blocks marked with ``<!-- readme-test -->`` on the line before the fence, in order."""
    return re.findall(r"<!-- readme-test -->\s*\n```python\n(.*?)```", README, flags=re.S)


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    cmd = 'python -m pip install -e ".[test]" && python -m pytest'
    assert cmd in ci.splitlines()
    assert f"```bash\n{cmd}\n```" in README
    assert "## Set-up: two commands on a fresh machine" in README


def test_readme_links_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), target


def test_readme_python_examples_run(tmp_path, monkeypatch, capsys):
    blocks = readme_examples()
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").symlink_to(ROOT / "models")
    ns: dict = {"__name__": "__readme__"}
    for i, code in enumerate(blocks):  # one namespace: later examples use earlier names, as a reader would
        try:
            exec(compile(code, f"README example {i + 1}", "exec"), ns)
        except Exception as exc:  # pragma: no cover - the message names the example
            pytest.fail(f"README example {i + 1} failed: {exc.__class__.__name__}: {exc}\n{code}")
    out = capsys.readouterr().out
    # the examples print what the text says they print
    assert "beta_hat = 1/var(p) =" in out and "RMSE to q^2/2" in out and "truth m (transfer matrix)" in out and "(monte_carlo)" in out
    assert (tmp_path / "out" / "readme-example" / "report.html").stat().st_size > 10_000
    assert 0.2 < ns["eq"].beta_hat < 0.6          # Test 1 at delta = 0.5: beta_hat ~ 0.36
    assert ns["fit"].reference_rmse < 0.5
    assert [r["delta"] for r in ns["scan"].rows] == [0.5, 0.25]
    assert abs(ns["ising"].methods["exact_em"].magnetization["mean"] - ns["ising"].m_true) < 0.05
