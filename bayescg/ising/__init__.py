"""Pillar 2: predictive coarse-graining (PCG) of the 1D Ising chain.

Modules: ``chain`` (exact transfer-matrix engine: partition functions, moments, FFBS),
``fine`` (fine chain, couplings, exact truth, MCMC check, user data), ``coarse`` (coarse models
[abc], coarse-to-fine map, majority map), ``em`` (Monte Carlo EM, exact EM, exact likelihood
kernel), ``relent`` (relative entropy baseline), ``bayes`` (PyMC models, NUTS, Gibbs, Laplace),
``predict`` (posterior predictive of m and R_l), ``pipeline`` (:func:`run_model`),
``experiments`` (the slides' experiments).
"""
from .pipeline import IsingResult, IsingSweepResult, run_model  # noqa: F401
