"""Exception hierarchy.

Every error a user can cause by bad input is an :class:`InputError`; the CLI turns any
:class:`BayescgError` into one line on stderr and exit code 2 (input) or 1 (run-time).
"""
from __future__ import annotations


class BayescgError(Exception):
    """Base class of all errors bayescg raises on purpose."""

    exit_code = 1


class InputError(BayescgError, ValueError):
    """Bad input: model file, option, expression, array or parameter value."""

    exit_code = 2


class ModelFileError(InputError):
    """A model file is missing, unreadable, not TOML, or has a bad key or value."""


class OutputLockedError(InputError):
    """Another bayescg run holds the output folder's lock."""


class ExpressionError(InputError):
    """A potential expression does not parse, uses undeclared variables, or is not real-valued."""


class SimulationError(BayescgError):
    """A run failed numerically, e.g. a walker's state became non-finite (blow-up)."""


class BlowUpError(SimulationError):
    """A walker or trajectory blew up: its state became non-finite or its momentum variance overflowed (a step past
    the integrator's stability limit somewhere the walkers went)."""


class ConvergenceError(BayescgError):
    """A fit or sampler did not converge and the caller asked for a hard failure."""


class Interrupted(BayescgError):
    """A long run was interrupted (SIGINT); what was computed is in the checkpoint."""

    exit_code = 130
