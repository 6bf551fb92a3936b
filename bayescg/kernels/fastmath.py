"""Branch-free exp, sin and cos for gradient kernels that LLVM vectorizes across walkers.

numba lowers ``math.exp/sin/cos`` to calls into the C library, and a loop with such calls runs
one walker at a time (no SVML here).  The functions below are straight-line IEEE double
arithmetic (no calls, no branches: only selects), inlined into the caller, so a loop over
lanes (walkers) containing them compiles to SIMD code (AVX2 / AVX-512).  They never fuse
multiply-adds (numba does not contract), so their results do not depend on the vector width.

Algorithms (FreeBSD msun, the same as fdlibm / many libms):

* ``fexp``: x = k ln2 + r, |r| <= ln2/2 (k = round(x / ln2), ln2 split in a 32-bit head and a
  tail so that k ln2_hi is exact), exp(r) by e_exp.c's degree-5 rational form, 2^k by building the
  exponent bits.  Valid for |x| < EXP_LIMIT = 708.
* ``fsin``, ``fcos``: x = n pi/2 + (y0 + y1) by e_rem_pio2.c's three-step Cody-Waite reduction
  (pi/2 in three 33-bit pieces, exact for |n| < 2^20), then k_sin.c / k_cos.c polynomials on
  |y0| <= pi/4 and the quadrant's sign and sin/cos choice.  Valid for |x| < TRIG_LIMIT = 1e6,
  which covers the 1e-5 scales of (4.8)/(4.9) (arguments ~1e5) with margin.

Outside these ranges (and for NaN / inf input) they return NaN; the generated lane kernels then
recompute that walker's gradient with ``math.*`` (see potentials.py), so the range limits never
change results beyond the accuracy below.

Accuracy (tests/test_kernels_fastmath.py, against 50-digit mpmath values): measured maximum
errors over 3e4 random arguments, in ulps of the exact value, exp 0.85 on |x| < 708, sin 1.39 and
cos 1.42 on |x| < 1e6 (small or ~1e5-size arguments alike; glibc 2.36: 0.51); mean errors about
0.3 ulp; absolute error of sin/cos below 1.2e-16, also next to multiples of pi/2.  They differ
from glibc in the last bit for about 10 % (exp) and 15 % (sin, cos) of arguments.
"""
from __future__ import annotations

import math

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

EXP_LIMIT = 708.0
TRIG_LIMIT = 1.0e6

_MAGIC = 6755399441055744.0  # 1.5 * 2^52: (x + MAGIC) - MAGIC rounds x to the nearest integer (|x| < 2^51)
_LOG2E = 1.4426950408889634
_LN2HI = 6.93147180369123816490e-01
_LN2LO = 1.90821492927058770002e-10
_P1 = 1.66666666666666019037e-01
_P2 = -2.77777777770155933842e-03
_P3 = 6.61375632143793436117e-05
_P4 = -1.65339022054652515390e-06
_P5 = 4.13813679705723846039e-08

_INVPIO2 = 6.36619772367581382433e-01
_PIO2_1 = 1.57079632673412561417e+00
_PIO2_1T = 6.07710050650619224932e-11
_PIO2_2 = 6.07710050630396597660e-11
_PIO2_2T = 2.02226624879595063154e-21
_PIO2_3 = 2.02226624871116645580e-21
_PIO2_3T = 8.47842766036889956997e-32
_C1 = 4.16666666666666019037e-02
_C2 = -1.38888888888741095749e-03
_C3 = 2.48015872894767294178e-05
_C4 = -2.75573143513906633035e-07
_C5 = 2.08757232129817482790e-09
_C6 = -1.13596475577881948265e-11
_S1 = -1.66666666666666324348e-01
_S2 = 8.33333333332248946124e-03
_S3 = -1.98412698298579493134e-04
_S4 = 2.75573137070700676789e-06
_S5 = -2.50507602534068634195e-08
_S6 = 1.58969099521155010221e-10


@intrinsic
def _bits_to_float(typingctx, i):
    """The float64 whose bit pattern is the int64 ``i`` (a free register reinterpretation)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return sig, codegen


@intrinsic
def _float_to_bits(typingctx, x):
    """The int64 bit pattern of the float64 ``x``."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return sig, codegen


@njit(inline="always", error_model="numpy")
def fexp(x):
    """exp(x) for |x| < EXP_LIMIT, NaN otherwise (see the module docstring)."""
    t = x * _LOG2E + _MAGIC
    k = t - _MAGIC                      # round(x / ln 2); the low bits of t hold k as an integer
    hi = x - k * _LN2HI                 # exact: k ln2_hi has at most 32 + 11 significant bits
    lo = k * _LN2LO
    r = hi - lo
    z = r * r
    c = r - z * (_P1 + z * (_P2 + z * (_P3 + z * (_P4 + z * _P5))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    # 2^k from its exponent field; |k| <= 1022 inside the valid range
    y = y * _bits_to_float((_float_to_bits(t) - _float_to_bits(_MAGIC) + 1023) << 52)
    return y if abs(x) < EXP_LIMIT else math.nan


@njit(inline="always", error_model="numpy")
def _reduce_pio2(x):
    """x = n pi/2 + y0 + y1 with |y0| <= pi/4 (about), n mod 4 returned as a float."""
    t = x * _INVPIO2 + _MAGIC
    fn = t - _MAGIC
    r = x - fn * _PIO2_1
    w = fn * _PIO2_1T
    # e_rem_pio2.c's second and third refinement steps, always taken (they only add precision)
    t2 = r
    w = fn * _PIO2_2
    r = t2 - w
    w = fn * _PIO2_2T - ((t2 - r) - w)
    t2 = r
    w = fn * _PIO2_3
    r = t2 - w
    w = fn * _PIO2_3T - ((t2 - r) - w)
    y0 = r - w
    y1 = (r - y0) - w
    n = fn - 4.0 * math.floor(fn * 0.25)
    return y0, y1, n


@njit(inline="always", error_model="numpy")
def _ksin(x, y):
    """k_sin.c: sin(x + y) on |x| <= pi/4, y the tail of x."""
    z = x * x
    w = z * z
    r = _S2 + z * (_S3 + z * _S4) + z * w * (_S5 + z * _S6)
    v = z * x
    return x - ((z * (0.5 * y - v * r) - y) - v * _S1)


@njit(inline="always", error_model="numpy")
def _kcos(x, y):
    """k_cos.c: cos(x + y) on |x| <= pi/4, y the tail of x."""
    z = x * x
    w = z * z
    r = z * (_C1 + z * (_C2 + z * _C3)) + w * w * (_C4 + z * (_C5 + z * _C6))
    hz = 0.5 * z
    w = 1.0 - hz
    return w + (((1.0 - w) - hz) + (z * r - x * y))


@njit(inline="always", error_model="numpy")
def fsin(x):
    """sin(x) for |x| < TRIG_LIMIT, NaN otherwise."""
    y0, y1, n = _reduce_pio2(x)
    s = _ksin(y0, y1)
    c = _kcos(y0, y1)
    odd = (n == 1.0) | (n == 3.0)
    v = c if odd else s
    v = -v if n >= 2.0 else v
    return v if abs(x) < TRIG_LIMIT else math.nan


@njit(inline="always", error_model="numpy")
def fcos(x):
    """cos(x) for |x| < TRIG_LIMIT, NaN otherwise."""
    y0, y1, n = _reduce_pio2(x)
    s = _ksin(y0, y1)
    c = _kcos(y0, y1)
    odd = (n == 1.0) | (n == 3.0)
    v = s if odd else c
    v = -v if (n == 1.0) | (n == 2.0) else v
    return v if abs(x) < TRIG_LIMIT else math.nan
