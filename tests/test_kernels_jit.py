"""bayescg.kernels.jit.inner: numba functions without their CPython and C wrappers, for compiled callers only."""
import numba
import numpy as np
import pytest

from bayescg import bias
from bayescg.kernels import accumulate, damped, damped_white, hamiltonian, langevin, loops, rng
from bayescg.kernels.jit import Inner, inner


@inner
def _twice(x):
    return 2.0 * x


@inner(inline="always")
def _plus_one(x):
    return x + 1.0


@numba.njit
def _caller(x):
    return _twice(x) + _plus_one(x)


def test_compiled_callers_call_it_and_python_gets_a_clear_error():
    assert _caller(3.0) == 10.0 and _caller(np.float64(-1.0)) == -2.0
    # without the CPython wrapper a call from Python would end the interpreter: Inner refuses it first
    with pytest.raises(TypeError, match="compiled .numba. code only"):
        _twice(1.0)
    assert _plus_one.options == {"inline": "always"} and _twice.__name__ == "_twice"
    assert _twice.dispatcher.targetoptions.get("inline", "never") == "never"
    for key in ("no_cpython_wrapper", "no_cfunc_wrapper"):
        assert _twice.dispatcher.targetoptions[key] is True


def test_a_copy_compiles_on_its_own():
    c = _twice.copy()
    assert isinstance(c, Inner) and c.dispatcher is not _twice.dispatcher and c.py_func is _twice.py_func

    @numba.njit
    def use(x):
        return c(x)

    assert use(2.5) == 5.0 and len(c.dispatcher.overloads) == 1


def test_the_engine_helpers_are_inner_and_the_drivers_are_callable_from_python():
    """What the engine compiles inside its drivers carries no wrappers; what Python calls (the lazily compiled
    drivers, the coupled maps' loop) still does."""
    helpers = [loops.block_1d, loops.block_2d, loops.walker_loop, loops.lane_checked, loops.record_one,
               rng.next_u64, rng.lanes_normal, rng.normal_pair, accumulate.observe, accumulate.close_batch_scan,
               damped.step, damped_white.step, langevin.step, hamiltonian.step]
    assert all(isinstance(h, Inner) for h in helpers)
    assert isinstance(loops.lanes_chunk(True, 1), loops._Lazy) and isinstance(loops.run_chunk, loops._Lazy)
    assert not isinstance(accumulate._flush, Inner) and not isinstance(bias._coupled_lanes, Inner)


def test_it_pickles_by_reference_like_a_module_level_function():
    """An Inner travels in what is sent to another process (the registry's Integrator holds the steps)."""
    import pickle

    from bayescg.kernels.registry import INTEGRATORS

    cloudpickle = pytest.importorskip("cloudpickle")  # what dask uses to send tasks
    for dumps in (pickle.dumps, cloudpickle.dumps):
        back = pickle.loads(dumps(INTEGRATORS["damped_white"]))
        assert back.step is damped_white.step and pickle.loads(dumps(rng.next_u64)) is rng.next_u64
