"""nutpie's C callbacks around the packed-buffer log densities: one home for their plumbing.

A density kernel ``core(x (dim,), buf, grad (dim,)) -> log density`` reads all its data from one packed float64
buffer ``buf`` (its first entry is its length); nutpie passes that buffer as ``user_data`` to the callbacks

    logp(dim, x*, grad_out*, logp_out*, user_data) -> int      (:data:`LOGP_SIG`, 0 = ok)
    expand(dim, n_expanded, x*, out*, user_data) -> int        (:data:`EXPAND_SIG`)

(the signatures of ``nutpie.compile_pymc``).  A module's logp callback is three lines: the buffer
(:func:`packed`), its dimension check, and :func:`logp_into` with the module's kernel.  :func:`lazy_cfuncs` makes
a module's callbacks on first use (a cfunc compiles, or loads from numba's disk cache, when it is created), so a run
compiles only the callbacks it samples with.  Python code evaluates a density through its logp callback
(:func:`bayescg.sampling.cfunc_logp_grad`), so checks, MAP fits and the sampler run one compiled kernel.  A callback
calls a big kernel compiled apart (:data:`KERNEL_SIG`) by the address in its buffer (:func:`call_kernel`), so that
numba does not link the kernel's code into the callback and optimise it a second time.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.extending import intrinsic

LOGP_SIG = types.int64(types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                       types.CPointer(types.double), types.voidptr)
EXPAND_SIG = types.int64(types.uint64, types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                         types.voidptr)
#: a kernel called by its address from a callback: (user_data, x*, grad_out*, extra_out*) -> value
KERNEL_SIG = types.float64(types.voidptr, types.CPointer(types.double), types.CPointer(types.double),
                           types.CPointer(types.double))


@njit(inline="always")
def packed(user_data):
    """The packed float64 buffer behind nutpie's ``user_data`` pointer (its length is its first entry)."""
    head = carray(user_data, (1,), np.float64)
    return carray(user_data, (int(head[0]),), np.float64)


@njit(inline="always")
def logp_into(core, buf, dim, x_, out_, logp_):
    """``core(x, buf, grad)`` at x_ (dim,) into out_ (dim,) and logp_ (1,) -> nutpie's status: 0 ok,
    3 non-finite gradient, 4 non-finite log density (both are written as computed).  Inlined into each callback,
    so the kernel is optimised once, inside it."""
    x = carray(x_, (dim,))
    out = carray(out_, (dim,))
    lp = carray(logp_, (1,))
    val = core(x, buf, out)
    lp[0] = val
    for i in range(dim):
        if not np.isfinite(out[i]):
            return 3
    if not np.isfinite(val):
        return 4
    return 0


@intrinsic
def call_kernel(typingctx, address, buf, x, grad, extra):
    """Call the C function at ``address`` (int64; a cfunc of :data:`KERNEL_SIG`) on the data pointers of the float64
    arrays buf, x, grad, extra.  A callback that calls a big kernel this way does not link the kernel's code into its
    own, so numba does not optimise that code again for every callback (on a fresh cache the Ising NUTS callback
    took 2.7-3.2 s that way, ~0.4 s this way); the address is data (read from the buffer), so the callback caches."""
    sig = types.float64(address, buf, x, grad, extra)

    def codegen(context, builder, signature, args):
        dp = ir.DoubleType().as_pointer()
        vp = ir.IntType(8).as_pointer()
        fn = builder.inttoptr(args[0], ir.FunctionType(ir.DoubleType(), [vp, dp, dp, dp]).as_pointer())
        ptrs = [context.make_array(t)(context, builder, v).data for t, v in zip(signature.args[1:], args[1:])]
        return builder.call(fn, [builder.bitcast(ptrs[0], vp)] + ptrs[1:])

    return sig, codegen


def lazy_cfuncs(namespace: dict, specs: dict):
    """A module ``__getattr__`` (PEP 562) that makes the callbacks ``specs`` {name: (signature, python function)}
    on first use and stores them in the module's ``namespace``."""

    def __getattr__(name):
        spec = specs.get(name)
        if spec is None:
            raise AttributeError(f"module {namespace['__name__']!r} has no attribute {name!r}")
        fn = cfunc(spec[0], cache=True, nogil=True)(spec[1])
        namespace[name] = fn
        return fn

    return __getattr__
