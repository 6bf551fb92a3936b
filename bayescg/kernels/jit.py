"""``inner``: the decorator of numba functions that only compiled code calls.

numba builds two wrappers around every function it compiles, whatever calls it: a CPython wrapper (so that Python can
call it) and a C wrapper (so that it can be a first-class function value), each lowered, optimised and turned into
machine code.  An engine helper called only from a driver (block_1d, the rng, the accumulators) needs neither, and on
a fresh cache their compile is on the critical path of a first run: the 1D lane driver's tree of 15 such functions
compiles 1.3-1.8 s faster without them (6.2-7.6 s against 8.0-9.3 s; benchmarks/RESULTS_END_TO_END.md, stop 46).
The machine code of the function itself is the same, so are the results.

A function compiled without its CPython wrapper kills the interpreter when Python calls it, so ``inner`` returns an
:class:`Inner`, which numba types as the dispatcher it holds (compiled code calls it as any njit function) and which
raises a TypeError when called from Python; tests call such functions through a small njit wrapper.
"""
from __future__ import annotations

import functools

from numba import njit, types
from numba.extending import typeof_impl

_NO_WRAPPERS = dict(no_cpython_wrapper=True, no_cfunc_wrapper=True)


class Inner:
    """A numba function for compiled callers only (see the module docstring).  ``dispatcher``: the numba dispatcher;
    ``py_func``: the Python function; ``options``: the njit options it was given (besides the two wrappers')."""

    def __init__(self, fn, options: dict):
        self.py_func = fn
        self.options = dict(options)
        self.dispatcher = njit(**_NO_WRAPPERS, **self.options)(fn)
        functools.update_wrapper(self, fn)

    def copy(self) -> "Inner":
        """A new Inner of the same function and options (its own dispatcher, its own compiled overloads)."""
        return Inner(self.py_func, self.options)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"{self.__module__}.{self.__qualname__} is called from compiled (numba) code only; "
                        "call it from an njit function")

    def __repr__(self) -> str:
        return f"<Inner {self.__module__}.{self.__qualname__}>"

    def __reduce__(self):
        # pickled by reference, as a module-level function is (an Integrator in a task sent to another process): the
        # name of the module attribute that is this object
        return self.__qualname__


@typeof_impl.register(Inner)
def _typeof_inner(val, c):
    return types.Dispatcher(val.dispatcher)


def inner(fn=None, **options):
    """``@inner`` or ``@inner(**njit options)``: ``fn`` compiled by numba without its CPython and C wrappers."""
    if fn is None:
        return lambda f: Inner(f, options)
    return Inner(fn, options)
