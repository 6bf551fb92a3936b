""".ci/run: the README's test command first, then the slow tests, whose runner treats pytest's exit 5
("no tests collected") as a failure."""
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_slow_tests_after_the_readme_command():
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    readme = lines.index('python -m pip install -e ".[test]" && python -m pytest')
    slow = lines.index(".ci/pytest-slow")
    assert readme < slow and "set -euo pipefail" in lines
    assert "python -m pytest -m slow" in (ROOT / ".ci" / "pytest-slow").read_text()


@pytest.mark.parametrize("pytest_rc, want", [(0, 0), (1, 1), (2, 2), (5, 1)])
def test_slow_runner_exit_codes(tmp_path, pytest_rc, want):
    # a stand-in `python` that records its arguments and exits like pytest would
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\necho "$@" > "{tmp_path}/args"\nexit {pytest_rc}\n')
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run([str(ROOT / ".ci" / "pytest-slow"), "-q"], capture_output=True, text=True, env=env,
                          timeout=60)
    assert proc.returncode == want
    assert (tmp_path / "args").read_text().split() == ["-m", "pytest", "-m", "slow", "-n", "0", "-q"]
    assert ("collected no tests" in proc.stderr) == (pytest_rc == 5)
