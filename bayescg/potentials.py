"""Potentials V(q) on R^d with numba-compiled value and gradient kernels.

A :class:`Potential` carries two numba ``njit`` functions that other njit code (the
integrators in :mod:`bayescg.kernels`) calls directly, without Python in the loop:

* ``grad(q, out)``: q, out float64 arrays of shape (d,); writes grad V(q) into ``out``.
* ``value(q) -> float``.

Build one from a sympy expression (:meth:`Potential.from_expression`; the gradient is taken
symbolically and both kernels are generated as Python source and compiled by numba) or from
a user's own njit gradient (:meth:`Potential.from_numba`).  :func:`catalogue` gives the
potential paper's test potentials (4.5)-(4.9).
"""
from __future__ import annotations

import dataclasses
import functools
import keyword
import math
import re
import threading
from dataclasses import dataclass

import numba
import numpy as np

from .errors import ExpressionError, InputError

# --- the restricted sympy namespace ------------------------------------------------------
_FUNCTION_NAMES = ("sin", "cos", "tan", "exp", "log", "sqrt", "sinh", "cosh", "tanh",
                   "asin", "acos", "atan", "atan2", "Abs", "abs", "Min", "Max", "erf", "cbrt")
_CONSTANT_NAMES = ("pi", "E")
_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _namespace():
    import sympy

    ns = {name: getattr(sympy, name) for name in _FUNCTION_NAMES if name not in ("abs", "cbrt")}
    ns["abs"] = sympy.Abs
    ns["cbrt"] = sympy.cbrt
    ns["pi"] = sympy.pi
    ns["E"] = sympy.E
    ns["I"] = sympy.I  # parsed so that it is reported as "not real-valued"
    # names parse_expr's transformations emit
    for name in ("Integer", "Float", "Rational", "Symbol", "Function"):
        ns[name] = getattr(sympy, name)
    return ns


def _check_variables(variables) -> tuple[str, ...]:
    if isinstance(variables, str):
        variables = [variables]
    try:
        variables = tuple(variables)
    except TypeError:
        raise InputError(f"variables must be a list of names, got {variables!r}") from None
    if not variables:
        raise InputError("a potential needs at least one variable")
    for v in variables:
        if not isinstance(v, str) or not _VAR_RE.match(v) or keyword.iskeyword(v) or v.startswith("_"):
            raise InputError(f"bad variable name {v!r} (use letters, digits and _, not starting with _)")
        if v in _FUNCTION_NAMES or v in _CONSTANT_NAMES or v in ("I", "oo", "nan", "zoo", "math", "float"):
            raise InputError(f"variable name {v!r} clashes with a function or constant name")
    if len(set(variables)) != len(variables):
        raise InputError(f"duplicate variable names in {list(variables)}")
    return variables


def parse_expression(expr: str, variables) -> "sympy.Expr":  # noqa: F821
    """Parse ``expr`` (sympy syntax) over real ``variables`` with a restricted namespace.

    Raises :class:`ExpressionError` for syntax errors, undeclared symbols, unknown functions
    and expressions that are not real-valued (``I*q``, ``sqrt(-1)*q``, ``1/0``).
    """
    import sympy
    from sympy.core.function import AppliedUndef
    from sympy.parsing.sympy_parser import (
        convert_xor, parse_expr, standard_transformations)

    variables = _check_variables(variables)
    if not isinstance(expr, str) or not expr.strip():
        raise ExpressionError(f"the expression must be a non-empty string, got {expr!r}")
    if "__" in expr or any(ch in expr for ch in ";\n\r`'\"\\@$!{}[]"):
        raise ExpressionError(f"expression {expr!r} contains characters not allowed in a formula")
    symbols = {v: sympy.Symbol(v, real=True) for v in variables}
    ns = _namespace()
    local = dict(symbols)
    try:
        parsed = parse_expr(expr, local_dict=local, global_dict=ns,
                            transformations=standard_transformations + (convert_xor,), evaluate=True)
    except (SyntaxError, TypeError, ValueError, AttributeError, NameError, ZeroDivisionError,
            sympy.SympifyError, _token_error()) as exc:
        raise ExpressionError(f"cannot parse expression {expr!r} ({exc.__class__.__name__})") from None
    if not isinstance(parsed, sympy.Expr):
        raise ExpressionError(f"expression {expr!r} is not a scalar formula")
    undef = sorted({str(f.func) for f in parsed.atoms(AppliedUndef)})
    if undef:
        raise ExpressionError(f"expression {expr!r} uses unknown function {undef[0]!r} "
                              f"(known: {', '.join(_FUNCTION_NAMES)})")
    extra = sorted(str(s) for s in parsed.free_symbols if str(s) not in symbols)
    if extra:
        raise ExpressionError(f"expression {expr!r} uses undeclared symbol {extra[0]!r} "
                              f"(variables: {', '.join(variables)})")
    if parsed.has(sympy.zoo, sympy.oo, -sympy.oo, sympy.nan):
        raise ExpressionError(f"expression {expr!r} is not finite")
    if parsed.has(sympy.I) or parsed.is_real is False or parsed.is_extended_real is False:
        raise ExpressionError(f"expression {expr!r} is not real-valued")
    return parsed


def _token_error():
    try:
        from tokenize import TokenError
        return TokenError
    except ImportError:  # pragma: no cover
        return SyntaxError


# --- code generation -----------------------------------------------------------------------
_compile_lock = threading.Lock()
_KERNEL_CACHE: dict[tuple, tuple] = {}


def _generate_source(parsed, variables) -> str:
    """Python source of ``_value(q)`` and ``_grad(q, out)`` with common subexpressions shared,
    and for d <= 2 ``_grad_scalar(x[, y])`` returning the gradient as a float / 2-tuple (the same
    expressions, so the same bits, as ``_grad``)."""
    import sympy
    from sympy.printing.pycode import PythonCodePrinter

    syms = [sympy.Symbol(v, real=True) for v in variables]
    grads = [sympy.diff(parsed, s) for s in syms]

    class _Printer(PythonCodePrinter):
        def _print_Float(self, expr):
            # round-trip repr of the double: sympy's default 15-digit printing would move constants
            # by an ulp (e.g. 0.99999999999999989 printed as 1.0)
            return repr(float(expr))

    printer = _Printer({"fully_qualified_modules": True, "standard": "python3"})
    loads = [f"    {v} = _qv[{i}]" for i, v in enumerate(variables)]

    def body(exprs, prefix):
        repl, reduced = sympy.cse(exprs, symbols=sympy.numbered_symbols(prefix), optimizations="basic")
        lines = [f"    {printer.doprint(s)} = {printer.doprint(e)}" for s, e in repl]
        return lines, [printer.doprint(e) for e in reduced]

    vlines, vout = body([parsed], "_v")
    glines, gout = body(grads, "_g")
    src = ["def _value(_qv):", *loads, *vlines, f"    return float({vout[0]})", "",
           "def _grad(_qv, _out):", *loads, *glines]
    src += [f"    _out[{i}] = {g}" for i, g in enumerate(gout)]
    src += ["    return", ""]
    if len(variables) <= 2:
        src += [f"def _grad_scalar({', '.join(variables)}):", *glines]
        src += ["    return " + ", ".join(f"float({g})" for g in gout), ""]
        src += _lanes_source(variables, glines, gout)
    return "\n".join(src)


#: math.* names the lane kernel may keep (vectorizable or constants); exp/sin/cos are replaced.
_LANE_OK = {"math.sqrt", "math.pi", "math.e", "math.inf"}


def _lanes_source(variables, glines, gout) -> list:
    """Source of ``_grad_lanes(_S)`` (layout of kernels.state.GRADL_SIG) or [] when the gradient
    uses a function that has no branch-free version (then the drivers use the other kernels).

    The first loop evaluates all lanes with kernels.fastmath's exp/sin/cos (SIMD); those return NaN
    outside their ranges, so a second loop recomputes any lane with a non-finite result by the
    exact ``_grad_scalar`` (math.*): results agree with ``_grad`` to the accuracy of fastmath."""
    from .kernels.state import LANES as L

    d = len(variables)
    fast = {"math.exp(": "_fexp(", "math.sin(": "_fsin(", "math.cos(": "_fcos("}

    def sub(text):
        for a, b in fast.items():
            text = text.replace(a, b)
        return text

    body = [sub(line) for line in glines]
    outs = [sub(g) for g in gout]
    left = set(re.findall(r"math\.\w+", "\n".join(body + outs)))
    if not left <= _LANE_OK:
        return []
    src = ["def _grad_lanes(_S):", f"    for _l in range({L}):"]
    src += [f"        {v} = _S[{i * L} + _l]" for i, v in enumerate(variables)]
    src += ["    " + line for line in body]
    src += [f"        _S[{(d + i) * L} + _l] = {g}" for i, g in enumerate(outs)]
    src += [f"    for _l in range({L}):"]
    finite = " and ".join(f"abs(_S[{(d + i) * L} + _l]) < math.inf" for i in range(d))
    args = ", ".join(f"_S[{i * L} + _l]" for i in range(d))
    src += [f"        if not ({finite}):"]
    if d == 1:
        src += [f"            _S[{L} + _l] = _grad_scalar({args})"]
    else:
        src += [f"            _r = _grad_scalar({args})"]
        src += [f"            _S[{(d + i) * L} + _l] = _r[{i}]" for i in range(d)]
    src += ["    return", ""]
    return src


#: Version of the generated kernels' calling conventions; part of the on-disk cache key (with the sources of
#: this module and of bayescg.kernels, so an edit or upgrade never serves old machine code).
KERNEL_VERSION = 1
_JIT = "numba.njit(cache=True, fastmath=False, error_model='numpy')"


def _kernel_dir():
    """Directory of the generated kernel modules: ``$NUMBA_CACHE_DIR/bayescg-potentials`` when numba's cache
    is redirected (so a fresh NUMBA_CACHE_DIR is a cold start for both), else
    ``${XDG_CACHE_HOME:-~/.cache}/bayescg/potentials`` (numba caches them in a ``__pycache__`` beside)."""
    import os
    from pathlib import Path

    base = os.environ.get("NUMBA_CACHE_DIR")
    if base:
        return Path(base) / "bayescg-potentials"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bayescg" / "potentials"


_DIGEST: list = []


def _code_digest() -> str:
    """sha256 of what the generated machine code depends on besides the expression: KERNEL_VERSION, this
    module's source (the generator), bayescg.kernels' sources (fastmath, LANES), numba's and sympy's versions."""
    if not _DIGEST:
        import hashlib
        from importlib.metadata import version
        from pathlib import Path

        from .kernels import sources_digest

        h = hashlib.sha256()
        for part in (str(KERNEL_VERSION), Path(__file__).read_text(), sources_digest(), numba.__version__,
                     version("sympy")):
            h.update(part.encode())
            h.update(b"\0")
        _DIGEST.append(h.hexdigest())
    return _DIGEST[0]


def kernel_key(expr: str, variables) -> str:
    """sha256 naming the generated kernels of ``expr`` over ``variables`` on disk (see _code_digest)."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps([expr, list(variables), _code_digest()]).encode()).hexdigest()


def _module_source(src: str, expr: str, variables) -> str:
    """``src`` (from _generate_source) as an importable module whose kernels numba caches on disk."""
    header = [f"# bayescg generated potential kernels (KERNEL_VERSION {KERNEL_VERSION}); do not edit.",
              f"# V({', '.join(variables)}) = {expr}", "import math", "", "import numba", "",
              "from bayescg.kernels.fastmath import fcos as _fcos, fexp as _fexp, fsin as _fsin", "",
              f"SOURCE = {src!r}", ""]
    body = []
    for line in src.splitlines():
        if line.startswith("def "):
            body.append(f"@{_JIT}")
        body.append(line)
    return "\n".join(header + body) + "\n"


def _import_generated(path, name):
    """Import the generated module at ``path`` as ``name`` (kept in sys.modules: numba's cached code looks
    its module up by name when it loads)."""
    import importlib.util
    import sys

    mod = sys.modules.get(name)
    if mod is not None:
        return mod
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return mod


def _write_module(path, text) -> bool:
    """Write ``text`` to ``path`` atomically unless it is there already (rewriting would change its time stamp,
    which numba's cache index checks); False when the directory is not writable."""
    import os

    try:
        if path.exists() and path.read_text() == text:
            return True
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
        return True
    except OSError:
        return False


def _kernels_module(expr, variables):
    """The module of generated kernels of ``expr`` (a str) over ``variables``: imported from the kernel
    directory when an earlier process wrote it (no sympy work; numba loads the machine code from its cache),
    else generated, written there and imported.  Returns (module, parsed sympy expression or None on a hit).
    An unwritable kernel directory falls back to an in-memory module (compiled, not cached)."""
    import types as _types

    key = kernel_key(expr, variables)
    name = f"_bayescg_potential_{key[:24]}"
    d = _kernel_dir()
    path = d / f"{name}.py"
    parsed = None
    if not path.is_file():
        parsed = parse_expression(expr, variables)
        text = _module_source(_generate_source(parsed, variables), expr, variables)
        if not _write_module(path, text):
            mod = _types.ModuleType(name)
            mod.__dict__["__file__"] = None
            exec(compile(text.replace(_JIT, "numba.njit(fastmath=False, error_model='numpy')"),  # noqa: S102
                         f"<bayescg potential {expr[:60]}>", "exec"), mod.__dict__)
            return mod, parsed
    try:
        return _import_generated(path, name), parsed
    except Exception as exc:  # pragma: no cover - printer bug
        raise ExpressionError(f"cannot generate code for {expr} ({exc.__class__.__name__}: {exc})") from None


def _compile(expr, variables):
    """(value, grad, source, grad_scalar, grad_lanes, parsed) kernels of ``expr`` over ``variables``, once per
    process and, through the kernel directory and numba's cache, once per machine (see _kernels_module)."""
    key = (expr, variables)
    with _compile_lock:
        hit = _KERNEL_CACHE.get(key)
        if hit is not None:
            return hit
        mod, parsed = _kernels_module(expr, variables)
        from .kernels import state as K

        value, grad = mod._value, mod._grad
        # the signature the integrator drivers call (first-class function, see kernels.loops); with numba's
        # cache these load the machine code instead of compiling
        grad.compile(_grad_sig())
        value.compile(numba.types.float64(numba.types.float64[::1]))
        # scalar and lane kernels compile (or load) on first use (simulate): most potentials never need them
        grad_scalar = getattr(mod, "_grad_scalar", None)
        grad_lanes = getattr(mod, "_grad_lanes", None)
        if grad_lanes is not None:
            setattr(grad_lanes, K.LANES_TAG, True)
        _KERNEL_CACHE[key] = (value, grad, mod.SOURCE, grad_scalar, grad_lanes, parsed)
        return _KERNEL_CACHE[key]


def _lane_wrappers(grad):
    """(grad_scalar, grad_lanes) around a d = 1 array kernel ``grad(q, out)``: the lane kernel calls it on views
    of the lane buffer (no allocation), lane by lane, so per walker the arithmetic is the kernel's own (same
    bits as the array path) while the simulation runs on the same compiled (and disk-cached) lane driver as
    expression potentials instead of compiling a second one for array kernels.  Lanes holding a non-finite
    position (walkers that blew up) are not evaluated: a user kernel may index arrays with q."""
    from .kernels.state import LANES_TAG
    from .kernels.state import LANES as L

    @numba.njit(fastmath=False, error_model="numpy")
    def grad_lanes(S):
        for lane in range(L):
            if abs(S[lane]) < math.inf:
                grad(S[lane:lane + 1], S[L + lane:L + lane + 1])
            else:
                S[L + lane] = math.nan

    @numba.njit(fastmath=False, error_model="numpy")
    def grad_scalar(x):
        q = np.full(1, x)
        out = np.empty(1)
        grad(q, out)
        return out[0]

    setattr(grad_lanes, LANES_TAG, True)
    return grad_scalar, grad_lanes


def _grad_sig():
    from .kernels.state import GRAD_SIG

    return GRAD_SIG


def sympy_srepr(expr):
    import sympy

    return sympy.srepr(expr)


# --- vectorized helpers (njit, dispatcher passed as an argument) ------------------------
@numba.njit(cache=False)
def _apply_value(value, qs, out):
    for i in range(qs.shape[0]):
        out[i] = value(qs[i])


@numba.njit(cache=False)
def _apply_grad(grad, qs, out):
    for i in range(qs.shape[0]):
        grad(qs[i], out[i])


@dataclass(frozen=True, eq=False)
class Potential:
    """A potential V: R^d -> R with numba kernels.

    Attributes: ``variables`` (names, length d), ``dim`` (d), ``expression`` (sympy string or
    None for user kernels), ``grad`` (njit ``grad(q, out)``), ``value`` (njit ``value(q)`` or
    None when a user gave only a gradient), ``source`` (generated Python source or None),
    ``grad_scalar`` (expression potentials with d <= 2: njit ``grad_scalar(x) -> float`` or
    ``grad_scalar(x, y) -> (float, float)``, the same arithmetic as ``grad`` with arguments and
    results in registers; None otherwise), ``grad_lanes`` (expression potentials with d <= 2
    whose gradient uses only exp, sin, cos, sqrt and arithmetic: njit ``grad_lanes(S)`` for
    kernels.state.LANES points at once, SIMD, exp/sin/cos from kernels.fastmath (at most
    1.5 ulp from correctly rounded); the d = 1, 2 damped loops of simulate() use it; None otherwise),
    ``data`` (what the kernels read at run time, e.g. the SplineRep of :func:`bayescg.splines.spline_potential`,
    whose slot it keeps alive; None otherwise).
    """

    variables: tuple
    dim: int
    expression: str | None
    grad: object
    value: object | None
    source: str | None = None
    grad_scalar: object | None = None
    grad_lanes: object | None = None
    module: str | None = None
    data: object | None = None  # runtime data the kernels read (a spline's SplineRep: keeps its slot alive)

    # -- constructors --

    def __reduce_ex__(self, protocol):
        # a spline potential's kernels read a slot of this process's spline table (splines._Slot): another process
        # (a worker) would read its own, unrelated slot, so it is rebuilt there from the spline's data instead
        rebuild = getattr(self.data, "potential_reduce", None)  # SplineRep.potential_reduce
        if rebuild is not None:
            return rebuild(self.variables)
        return object.__reduce_ex__(self, protocol)

    @classmethod
    def from_expression(cls, expr: str, variables=("q",)) -> "Potential":
        """Potential from a sympy expression ``expr`` in ``variables`` (e.g. ``["x", "y"]``).

        The gradient is ``sympy.diff``; the generated kernels are compiled once per (expression, variables)
        and kept on disk (a module named by :func:`kernel_key` in the kernel directory, its machine code in
        numba's cache), so later processes load them without sympy or LLVM.  Raises
        :class:`ExpressionError` for bad expressions (only valid ones are ever written).
        """
        variables = _check_variables(variables)
        if not isinstance(expr, str):
            parse_expression(expr, variables)  # raises the one-line error
        value, grad, src, grad_scalar, grad_lanes, parsed = _compile(expr, variables)
        pot = cls(variables=variables, dim=len(variables), expression=expr, grad=grad, value=value,
                  source=src, grad_scalar=grad_scalar, grad_lanes=grad_lanes)
        if parsed is not None:
            pot.__dict__["sympy_expr"] = parsed  # fill the cached property: parsed already
        return pot

    @functools.cached_property
    def sympy_expr(self):
        """The parsed sympy expression (None for user kernels); parsed on first access when the kernels came
        from the on-disk cache."""
        return None if self.expression is None else parse_expression(self.expression, self.variables)

    @classmethod
    def from_numba(cls, grad, dim: int, value=None, variables=None) -> "Potential":
        """Potential from a user's njit ``grad(q, out)`` (and optional njit ``value(q)``).

        ``dim`` is d; ``variables`` default to ``x0..x{d-1}``.  The kernels are called once on
        q = 0 to check that they compile and return finite numbers.
        """
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise InputError(f"dim must be a positive integer, got {dim!r}")
        dim = int(dim)
        variables = _check_variables(variables) if variables is not None else tuple(f"x{i}" for i in range(dim))
        if len(variables) != dim:
            raise InputError(f"{len(variables)} variable names for dim = {dim}")
        for name, fn in (("grad", grad), ("value", value)):
            if fn is not None and not isinstance(fn, numba.core.registry.CPUDispatcher):
                raise InputError(f"{name} must be a numba.njit function, got {type(fn).__name__}")
        if grad is None:
            raise InputError("from_numba needs a gradient kernel")
        try:
            grad.compile(_grad_sig())
        except Exception as exc:
            raise InputError("grad must compile as grad(q, out) for C-contiguous float64 arrays q, out "
                             f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        q = np.zeros(dim)
        out = np.full(dim, np.nan)
        try:
            grad(q, out)
            v = value(q) if value is not None else 0.0
        except Exception as exc:
            raise InputError(f"user kernel failed on q = 0: {exc.__class__.__name__}: {exc}") from None
        if not np.all(np.isfinite(out)):
            raise InputError("user gradient did not write finite values into out at q = 0")
        if not np.isfinite(v):
            raise InputError("user value kernel is not finite at q = 0")
        grad_scalar, grad_lanes = _lane_wrappers(grad) if dim == 1 else (None, None)
        return cls(variables=variables, dim=dim, expression=None, grad=grad, value=value, grad_scalar=grad_scalar,
                   grad_lanes=grad_lanes)

    @classmethod
    def from_module(cls, path, variables=("q",)) -> "Potential":
        """Potential from a user's Python file defining ``V(q)`` and optionally ``grad(q)``.

        q is a float64 array (d,) (d = len(variables)).  ``grad(q)`` returns dV/dq as an array or tuple of
        length d (a float when d = 1), or has the kernel form ``grad(q, out)`` writing into out (fastest: no
        allocation per step).  With ``grad`` both functions are compiled by numba (:meth:`from_numba`).
        Without it, V is traced with sympy symbols (``math``/``numpy`` functions mapped to sympy ones) and the
        resulting expression goes through :meth:`from_expression`, so the gradient is symbolic and the
        simulate fast path (SIMD lanes) applies; if V is not symbolic (loops over data, branches on q, ...) an
        InputError says to provide grad.  Errors name the file and, where numba says it, the line.
        """
        from pathlib import Path

        variables = _check_variables(variables)
        p = Path(path)
        mod = _load_user_module(p)
        V = getattr(mod, "V", None)
        if not callable(V):
            raise InputError(f"{p}: defines no function V(q)")
        g = getattr(mod, "grad", None)
        if g is not None and not callable(g):
            raise InputError(f"{p}: grad must be a function grad(q)")
        d = len(variables)
        if g is None:
            expr = _trace_symbolic(mod, V, variables, p)
            pot = cls.from_expression(expr, variables)
            return dataclasses.replace(pot, module=str(p))
        # the module's own functions become njit functions, so V and grad may call the user's helpers
        for k, obj in list(vars(mod).items()):
            if callable(obj) and getattr(obj, "__module__", None) == mod.__name__ and hasattr(obj, "__code__"):
                setattr(mod, k, _njit_user(obj, p, k))
        value = _njit_user(mod.V, p, "V")
        ug = _njit_user(mod.grad, p, "grad")
        grad = _grad_kernel(ug, d, p)
        vk = _value_kernel(value)
        for name, fn, user, sig in (("V", vk, value, numba.types.float64(numba.types.float64[::1])),
                                    ("grad", grad, ug, _grad_sig())):
            try:
                fn.compile(sig)
            except Exception as exc:
                raise InputError(_compile_message(exc, p, name, user)) from None
        pot = cls.from_numba(grad, d, vk, variables=variables)
        return dataclasses.replace(pot, module=str(p))

    # -- vectorized conveniences --
    def _as_points(self, q):
        q = np.asarray(q, dtype=np.float64)
        if self.dim == 1 and (q.ndim == 0 or q.shape[-1] != 1):
            q = q[..., None]
        if q.ndim == 0 or q.shape[-1] != self.dim:
            raise InputError(f"points must have last axis of length {self.dim}, got shape {q.shape}")
        return np.ascontiguousarray(q.reshape(-1, self.dim)), q.shape[:-1]

    def V(self, q) -> np.ndarray:
        """V at points ``q`` of shape (..., d) (for d = 1 also (...)); returns shape (...)."""
        if self.value is None:
            raise InputError("this potential has no value kernel (from_numba without value=)")
        pts, shape = self._as_points(q)
        out = np.empty(pts.shape[0])
        _apply_value(self.value, pts, out)
        return out.reshape(shape)

    def gradient(self, q) -> np.ndarray:
        """grad V at points ``q`` of shape (..., d); returns shape (..., d)."""
        pts, shape = self._as_points(q)
        out = np.empty_like(pts)
        _apply_grad(self.grad, pts, out)
        return out.reshape(shape + (self.dim,))

    def __repr__(self):
        what = self.expression if self.expression is not None else "user numba kernel"
        return f"Potential({what!r}, variables={list(self.variables)})"


# --- user Python modules -------------------------------------------------------------------
def _load_user_module(p):
    """Import the user's file ``p`` under a private name; import errors -> InputError naming file:line."""
    import importlib.util
    import sys
    import traceback

    if not p.is_file():
        raise InputError(f"{p}: no such file (potential.module)")
    name = f"_bayescg_user_{abs(hash(str(p.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, p)
    mod = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(mod)
    except Exception as exc:
        line = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
        for fr in traceback.extract_tb(exc.__traceback__):
            if fr.filename == str(p):
                line = fr.lineno
        raise InputError(f"{p}:{line or '?'}: cannot import ({exc.__class__.__name__}: {exc})") from None
    sys.modules.pop(name, None)
    return mod


def _njit_user(fn, p, name):
    if isinstance(fn, numba.core.registry.CPUDispatcher):
        return fn
    try:
        return numba.njit(fastmath=False, error_model="numpy")(fn)
    except Exception as exc:  # pragma: no cover - njit itself is lazy
        raise InputError(_compile_message(exc, p, name)) from None


def _compile_message(exc, p, name, fn=None) -> str:
    """One line: file:line of the user's code numba complains about (else the def line of ``fn``) and
    numba's first informative message line."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    line = None
    for m in re.finditer(r'File "([^"]+)", line (\d+)', text):
        if m.group(1).endswith(p.name):
            line = m.group(2)
            break
    if line is None and fn is not None:
        code = getattr(getattr(fn, "py_func", fn), "__code__", None)
        line = f"{code.co_firstlineno} (in {name})" if code is not None else None
    skip = ("Failed in", "During:", "-", "File ", "^")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    first = next((ln for ln in lines if not ln.startswith(skip)), lines[0] if lines else exc.__class__.__name__)
    return f"{p}:{line or '?'}: numba cannot compile {name}(q) ({first[:200]})"


def _grad_kernel(ug, d, p):
    """grad(q, out) kernel around the user's grad: (q, out) form as is, else copy its return into out."""
    import inspect

    try:
        nargs = len(inspect.signature(ug.py_func).parameters)
    except (TypeError, ValueError):
        nargs = 1
    if nargs == 2:
        return ug
    if nargs != 1:
        raise InputError(f"{p}: grad must take q (or q, out), it takes {nargs} arguments")
    try:
        r = ug(np.zeros(d))
    except Exception as exc:
        raise InputError(_compile_message(exc, p, "grad", ug)) from None
    if np.ndim(r) == 0:
        if d != 1:
            raise InputError(f"{p}: grad(q) returned a number; with {d} variables it must return {d} values")
        src = "def _g(q, out):\n    out[0] = _ug(q)\n"
    else:
        if np.size(r) != d:
            raise InputError(f"{p}: grad(q) returned {np.size(r)} values for {d} variables")
        src = "def _g(q, out):\n    r = _ug(q)\n" + "".join(f"    out[{i}] = r[{i}]\n" for i in range(d))
    ns = {"_ug": ug}
    exec(compile(src, "<bayescg grad wrapper>", "exec"), ns)  # noqa: S102 - our own two-line wrapper
    return numba.njit(fastmath=False, error_model="numpy")(ns["_g"])


def _value_kernel(value):
    @numba.njit(fastmath=False, error_model="numpy")
    def _v(q):
        return float(value(q))
    return _v


#: math / numpy names a symbolic trace maps to sympy (numpy's arc* spelled like math's).
_TRACE_NAMES = {"exp": "exp", "log": "log", "sqrt": "sqrt", "sin": "sin", "cos": "cos", "tan": "tan",
                "sinh": "sinh", "cosh": "cosh", "tanh": "tanh", "asin": "asin", "acos": "acos", "atan": "atan",
                "arcsin": "asin", "arccos": "acos", "arctan": "atan", "atan2": "atan2", "arctan2": "atan2",
                "fabs": "Abs", "abs": "Abs", "absolute": "Abs", "erf": "erf", "cbrt": "cbrt"}


def _trace_symbolic(mod, V, variables, p) -> str:
    """V(q) evaluated on sympy symbols (the module's math/numpy names swapped for sympy's) -> expression."""
    import types

    import sympy

    def elementwise(f):
        # numpy-style: on an (object) array of sympy expressions apply f to each entry
        return lambda x, *a: (np.array([f(v, *a) for v in np.ravel(x)], dtype=object).reshape(np.shape(x))
                              if isinstance(x, np.ndarray) else f(x, *a))

    shim = types.SimpleNamespace(**{k: elementwise(getattr(sympy, v)) for k, v in _TRACE_NAMES.items()},
                                 pi=sympy.pi, e=sympy.E, sum=lambda x: sympy.Add(*np.ravel(x)),
                                 dot=lambda a, b: sympy.Add(*(np.ravel(a) * np.ravel(b))),
                                 array=lambda x, dtype=None: np.array(x, dtype=object))
    mods = {id(math), id(np)}
    funcs = {}
    for src in (math, np):
        for k, v in _TRACE_NAMES.items():
            if hasattr(src, k):
                funcs[id(getattr(src, k))] = getattr(sympy, v)
    ns = mod.__dict__
    saved = dict(ns)
    for k, v in saved.items():
        if id(v) in mods:
            ns[k] = shim
        elif id(v) in funcs:
            ns[k] = funcs[id(v)]
        elif isinstance(v, numba.core.registry.CPUDispatcher):
            ns[k] = v.py_func
    fn = V.py_func if isinstance(V, numba.core.registry.CPUDispatcher) else V
    syms = [sympy.Symbol(v, real=True) for v in variables]
    why = None
    try:
        out = fn(np.array(syms, dtype=object))  # q[0], q**2, np.sum(q**2) all work on an object array
        if isinstance(out, np.ndarray) and out.size == 1:
            out = out.reshape(())[()]
        expr = sympy.sympify(out)
        if not isinstance(expr, sympy.Expr) or not expr.free_symbols <= set(syms):
            why = "V(q) did not give a formula in q"
    except Exception as exc:
        why = f"{exc.__class__.__name__}: {exc}"
    finally:
        ns.clear()
        ns.update(saved)
    if why is not None:
        raise InputError(f"{p}: V(q) is not symbolic ({why[:160]}), so its gradient cannot be derived: "
                         f"define grad(q) in {p.name} returning dV/dq (length {len(variables)})")
    from sympy.printing.str import StrPrinter

    class _Exact(StrPrinter):
        def _print_Float(self, e):  # round-trip repr of the double (str() keeps 15 digits)
            return repr(float(e))

    return _Exact().doprint(expr)


# --- the potential paper's test potentials -----------------------------------------------
#: Centre (xc, yc) of the middle Müller-Brown well, found by BFGS on V_MB from (-0.05, 0.47)
#: (gradient tolerance 1e-12): (-0.05001083, 0.46669410), V_MB = -80.7678.  The other two
#: minima are (0.62350, 0.02804), V_MB = -108.167, and (-0.55822, 1.44173), V_MB = -146.700.
MB_MIDDLE_WELL = (-0.05001083, 0.4666941)

_MB = dict(A=(-200, -100, -170, 15), a=(-1, -1, -6.5, 0.7), b=(0, 0, 11, 0.6), c=(-10, -10, -6.5, 0.7),
           x0=(1, 0, -0.5, -1), y0=(0, 0.5, 1.5, 1))


#: V_MB as printed in the potential paper (Sec. 4.5); equal to the sum over _MB's parameters.
MULLER_BROWN = ("-200*exp(-(x - 1)**2 - 10*y**2) - 100*exp(-x**2 - 10*(y - 0.5)**2)"
                " - 170*exp(-6.5*(x + 0.5)**2 + 11*(x + 0.5)*(y - 1.5) - 6.5*(y - 1.5)**2)"
                " + 15*exp(0.7*(x + 1)**2 + 0.6*(x + 1)*(y - 1) + 0.7*(y - 1)**2)")


def muller_brown_expression() -> str:
    """V_MB(x, y) = sum_i A_i exp(a_i (x-x0_i)^2 + b_i (x-x0_i)(y-y0_i) + c_i (y-y0_i)^2)."""
    return MULLER_BROWN


def muller_brown_middle_well() -> tuple[float, float]:
    """Recompute the middle-well centre of V_MB with scipy.optimize (see MB_MIDDLE_WELL)."""
    from scipy.optimize import minimize

    def f(z):
        x, y = z
        return sum(A * math.exp(a * (x - x0) ** 2 + b * (x - x0) * (y - y0) + c * (y - y0) ** 2)
                   for A, a, b, c, x0, y0 in zip(*(_MB[k] for k in ("A", "a", "b", "c", "x0", "y0"))))

    r = minimize(f, (-0.05, 0.47), method="BFGS", options={"gtol": 1e-12})
    return float(r.x[0]), float(r.x[1])


def _mb_v0() -> str:
    xc, yc = MB_MIDDLE_WELL
    vq = f"35.0136*(x + {-xc})**2 + 59.8399*(y - {yc})**2"
    return f"0.1*({vq} {muller_brown_expression()})"


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    equation: str
    variables: tuple
    expression: str
    reference: str
    description: str


_COS20 = " + ".join(f"cos({i * i}*q)/{i * i}" for i in range(1, 21))

#: The potential paper's tests: name -> CatalogueEntry (expression, variables, reference U_k).
CATALOGUE: dict[str, CatalogueEntry] = {
    "test1": CatalogueEntry("test1", "(4.5)", ("q",),
                            "q**2/2 + 0.05*sin(q/0.05) + 0.001*sin(q/0.001)", "q**2/2",
                            "quadratic with two small periodic scales (0.05, 0.001); U_1 = q**2/2 + 0.05*sin(q/0.05)"),
    "test2": CatalogueEntry("test2", "(4.6)", ("q",),
                            "(q**2 - 1)**2/4 + 0.025*sin(q/0.025) + 0.001*sin(q/0.001)", "(q**2 - 1)**2/4",
                            "double well with two small scales (0.025, 0.001)"),
    "test3": CatalogueEntry("test3", "(4.7)", ("q",), f"(q - pi/2)**2/4 + {_COS20}", "(q - pi/2)**2/4",
                            "cosine series without clear scale separation, N = 20; reference is N = 0"),
    "test4": CatalogueEntry("test4", "(4.8)", ("x", "y"),
                            "(2*x + y - 1)**2/4 + (x - y - 1)**2 + 1e-5*(sin(x/1e-5) + sin((x + y)/1e-5))",
                            "(2*x + y - 1)**2/4 + (x - y - 1)**2",
                            "2D quadratic with an anisotropic small scale, eps = 1e-5"),
    "test5": CatalogueEntry("test5", "(4.9)", ("x", "y"),
                            f"{_mb_v0()} + 1e-5*(sin(x/1e-5) + sin((-x + y)/1e-5))", _mb_v0(),
                            "0.1 (V_q + V_MB) (modified Mueller-Brown) with an anisotropic small scale, eps = 1e-5"),
}


def catalogue(name: str) -> Potential:
    """The potential paper's test potential ``name`` ("test1" .. "test5", eqs. (4.5)-(4.9))."""
    try:
        entry = CATALOGUE[name]
    except KeyError:
        raise InputError(f"unknown catalogue potential {name!r} (known: {', '.join(CATALOGUE)})") from None
    return Potential.from_expression(entry.expression, list(entry.variables))


def reference(name: str) -> Potential:
    """The reference U_k of catalogue entry ``name`` as a Potential."""
    entry = CATALOGUE.get(name)
    if entry is None:
        raise InputError(f"unknown catalogue potential {name!r} (known: {', '.join(CATALOGUE)})")
    return Potential.from_expression(entry.reference, list(entry.variables))
