"""Plot functions: each takes data (a result object or arrays) and ``ax=`` / ``axes=`` (a new figure only when
none is given) and returns the axes, as ArviZ's plots do.  Result classes' ``figures()`` methods are thin
wrappers that collect them as ``[(caption, Figure)]`` for :mod:`bayescg.report`.

Modules: :mod:`.effective` (learned U, predictive check), :mod:`.noise` (momentum covariance), :mod:`.scales`
(scale scan), :mod:`.surrogate` (1D and 2D surrogate dynamics), :mod:`.ising` (PCG of the Ising chain),
:mod:`.ising_experiments` (the slides' experiments), :mod:`.diagnostics` (generic ArviZ figures),
:mod:`.numbers` (number formatting for reports and figure labels; no matplotlib).  matplotlib is imported only
inside this package, and only when a plot is drawn.
"""
from ._base import arviz_without_numba, with_arviz_numpy  # noqa: E402,F401  (no matplotlib import at module level)

__all__ = ["arviz_without_numba", "with_arviz_numpy"]
