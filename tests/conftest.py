import os

# Keep numba/BLAS from oversubscribing the 2-core CI machine when tests spawn processes.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import matplotlib

matplotlib.use("Agg")

import sys  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    """Close the figures a test left open: ``figures()`` and the plot functions hand their figures to the
    caller (as ArviZ's do), so a test that only inspects them leaks them; 20 such leaks made matplotlib warn
    "More than 20 figures have been opened" in a later test."""
    yield
    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")
