"""bayescg: Bayesian coarse-graining.

Pillar 1: effective potentials by algorithmic implicit bias (Li & Tao, arXiv 2401.03511).
Pillar 2: predictive coarse-graining of the 1D Ising chain (Schöberl, Zabaras, Koutsourelakis).

The names in ``__all__`` are the public API; each is imported on first use (PEP 562), so ``import bayescg``
loads neither numba nor PyMC.  A typical session::

    import bayescg
    model = bayescg.load_model("models/test1-quadratic.toml", {"simulation.steps": 2e6})
    res = bayescg.learn_model(model)          # LearnResult: to_dict(), to_inference_data(), figures()
    print(res.summary())                      # bayescg.Summary
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .config import Model, load_model  # noqa: E402  (light: the model-file schema)
from .errors import (  # noqa: E402
    BayescgError, BlowUpError, ConvergenceError, ExpressionError, InputError, Interrupted, ModelFileError,
    OutputLockedError, SimulationError,
)

#: public name -> (module, attribute in it); loaded by :func:`__getattr__` on first use.
_LAZY = {
    "Summary": ("summary", "Summary"),
    "Potential": ("potentials", "Potential"),
    # simulate: the engine and the model-file translation
    "simulate": ("simulate", "simulate"),
    "simulate_model": ("simulate", "simulate_model"),
    "run_trajectories": ("simulate", "run_trajectories"),
    "SimulationResult": ("simulate", "SimulationResult"),
    "EngineOptions": ("simulate", "EngineOptions"),
    "potential_from_model": ("simulate", "potential_from_model"),
    "reference_from_model": ("simulate", "reference_from_model"),
    "sim_kwargs": ("simulate", "sim_kwargs"),
    "choose_gamma": ("simulate", "choose_gamma"),
    # learn (3.9): fit, the pipeline, trajectories the user has
    "fit_effective_potential": ("fit", "fit_effective_potential"),
    "FitResult": ("fit", "FitResult"),
    "learn_model": ("pipeline", "learn_model"),
    "learn_trajectory": ("pipeline", "learn_trajectory"),
    "learn_trajectory_model": ("pipeline", "learn_trajectory_model"),
    "LearnResult": ("pipeline", "LearnResult"),
    "trajectory_result": ("trajectory", "trajectory_result"),
    "load_npz": ("trajectory", "load_npz"),
    # noise (Theorem 3.1), scales (Remark 3.2), surrogate dynamics (Section 4), export
    "estimate_noise": ("noise", "estimate_noise"),
    "estimate_noise_model": ("pipeline", "estimate_noise_model"),
    "NoiseResult": ("noise", "NoiseResult"),
    "scan_scales": ("scales", "scan_scales"),
    "ScalesResult": ("scales", "ScalesResult"),
    "surrogate_model": ("surrogate", "surrogate_model"),
    "SurrogateResult": ("surrogate", "SurrogateResult"),
    "export": ("export", "export"),
    "load_learned": ("export", "load_learned"),
    # pillar 2: the Ising pipeline (bayescg.ising.pipeline.run_model)
    "run_ising": ("ising.pipeline", "run_model"),
    "IsingResult": ("ising.pipeline", "IsingResult"),
    "IsingSweepResult": ("ising.pipeline", "IsingSweepResult"),
}

__all__ = ["__version__", "Model", "load_model", "BayescgError", "BlowUpError", "ConvergenceError", "ExpressionError",
           "InputError", "Interrupted", "ModelFileError", "OutputLockedError", "SimulationError", *_LAZY]


def __getattr__(name: str):
    try:
        module, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'bayescg' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), attr)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
