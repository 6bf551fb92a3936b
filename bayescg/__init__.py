"""bayescg: Bayesian coarse-graining.

Pillar 1: effective potentials by algorithmic implicit bias (Li & Tao, arXiv 2401.03511).
Pillar 2: predictive coarse-graining of the 1D Ising chain (Schöberl, Zabaras, Koutsourelakis).
"""
__version__ = "0.1.0"

from .config import Model, load_model  # noqa: F401
from .errors import (  # noqa: F401
    BayescgError, ConvergenceError, ExpressionError, InputError, Interrupted, ModelFileError, SimulationError,
)
