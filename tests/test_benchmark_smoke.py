"""The benchmark script runs (quick mode) and its C and numba maps agree on the final state."""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_benchmark_quick(tmp_path):
    out = tmp_path / "results.md"
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_integrators.py"), "--quick",
                          "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:] + res.stdout[-2000:]
    text = out.read_text()
    for key in ("1d", "2d"):
        # libm path and lane (fast-function) path both agree with C bit for bit
        m = re.search(rf"- {key}: libm max \|C - numba\| = (\S+); fast functions max \|C - numba\| = (\S+);", text)
        assert m, text
        assert float(m.group(1)) == 0 and float(m.group(2)) == 0
    assert "test1 (4.5) 1D" in text and "test5 (4.9) 2D" in text
    assert not (ROOT / "benchmarks" / "RESULTS.md").exists() or "quick" not in (
        ROOT / "benchmarks" / "RESULTS.md").read_text()
