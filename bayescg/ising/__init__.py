"""Pillar 2: predictive coarse-graining (PCG) of the 1D Ising chain.

Modules: ``chain`` (exact transfer-matrix engine: partition functions, moments, FFBS),
``fine`` (fine chain, couplings, exact truth, MCMC check, user data), ``coarse`` (coarse models
[abc], coarse-to-fine map, majority map), ``em`` (Monte Carlo EM, exact EM, exact likelihood
kernel), ``relent`` (relative entropy baseline), ``bayes`` (PyMC models, NUTS, Gibbs, Laplace,
the slides' Laplace), ``methods`` (the learning methods as classes registered by name),
``predict`` (predictions of m and R_l with their ``interval_kind``), ``checks`` (identifiability,
exact grid posterior, Laplace vs NUTS on predictions, predictive checks, stacking),
``pipeline`` (:func:`run_model`), ``experiments`` (the slides' experiments).
"""
from .pipeline import IsingResult, IsingSweepResult, run_model  # noqa: F401
