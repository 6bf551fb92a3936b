"""PyTensor's BLAS search (bayescg.runtime.pytensor_blas_flags) leaves no warning for a user to read."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_blas_search_is_silent_and_kept():
    # a fresh interpreter: PyTensor searches for a BLAS once per process, on first access of blas__ldflags
    code = ("import warnings\n"
            "warnings.filterwarnings('error', message='PyTensor could not link to a BLAS')\n"
            "from bayescg.runtime import pytensor_blas_flags\n"
            "import pytensor\n"
            "flags = pytensor_blas_flags()\n"
            "assert isinstance(flags, str)\n"
            "assert pytensor.config.blas__ldflags == flags  # the search result is kept: no second search\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("PYTENSOR_FLAGS", None)  # the search itself is under test, not flags a user set
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "could not link to a BLAS" not in r.stderr
