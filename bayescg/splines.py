"""B-spline bases for effective potentials U_k (3.9): design matrices, P-spline penalties, numba evaluation.

A spline potential is ``U(q) = sum_i c_i B_i(q)`` (1D) or ``sum_ab C_ab B_a(x) B_b(y)`` (2D tensor product),
(and the triple product in 3D), with clamped knot vectors over a box ``[lo, hi]`` per dimension.  ``n_knots`` is the number of distinct
break points per dimension (including both ends), so there are ``n_knots + k - 1`` basis functions of
degree ``k`` per dimension.

Outside the box every 1D basis function is continued linearly (first-order Taylor at the box edge; in 1D
this is the Taylor continuation of U) plus an optional confining wall ``wall/2 * dist^2`` (the data say nothing there; the wall keeps surrogate
trajectories from escaping along a downhill extrapolation).
"""
from __future__ import annotations

import collections
import dataclasses
import math
import threading
import weakref

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic
from scipy.interpolate import BSpline

from .errors import InputError
from .kernels.jit import inner

__all__ = [
    "clamped_knots", "n_basis", "design_matrix_1d", "design_matrix_2d", "design_matrix",
    "difference_penalty", "tensor_penalty", "bspline_value_grad_1d", "bspline_value_grad_2d",
    "SplineRep", "spline_potential",
]


def clamped_knots(lo: float, hi: float, n_knots: int, k: int = 3) -> np.ndarray:
    """Clamped knot vector: ``k`` extra copies of each end + ``n_knots`` equispaced break points."""
    if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
        raise InputError(f"spline domain must satisfy lo < hi, got [{lo}, {hi}]")
    if n_knots < 2:
        raise InputError(f"need at least 2 knots, got {n_knots}")
    inner = np.linspace(lo, hi, int(n_knots))
    return np.concatenate([np.full(k, lo), inner, np.full(k, hi)])


def n_basis(t: np.ndarray, k: int) -> int:
    return len(t) - k - 1


def design_matrix_1d(x, t, k: int = 3) -> np.ndarray:
    """Dense B-spline design matrix B[i, j] = B_j(x_i), x: (n,) clipped into [t[k], t[-k-1]]."""
    t = np.asarray(t, dtype=float)
    x = np.clip(np.asarray(x, dtype=float).ravel(), t[k], t[-k - 1])
    return BSpline.design_matrix(x, t, k).toarray()


def design_matrix_2d(x, tx, ty, k: int = 3) -> np.ndarray:
    """Tensor-product design matrix, x: (n, 2) -> (n, mx * my); column a * my + b is B_a(x) B_b(y)."""
    x = np.asarray(x, dtype=float)
    bx = design_matrix_1d(x[:, 0], tx, k)
    by = design_matrix_1d(x[:, 1], ty, k)
    return (bx[:, :, None] * by[:, None, :]).reshape(x.shape[0], -1)


def design_matrix(x, knots: list, k: int = 3) -> np.ndarray:
    """Dense design matrix for d = 1 (x (n,) or (n, 1)), 2 or 3 (x (n, d)); knots: list of d knot vectors;
    column index in C order of the coefficient array (m_1, ..., m_d)."""
    d = len(knots)
    if d == 1:
        return design_matrix_1d(np.asarray(x).reshape(-1), knots[0], k)
    if d == 2:
        return design_matrix_2d(np.asarray(x).reshape(-1, 2), knots[0], knots[1], k)
    if d == 3:
        x = np.asarray(x, dtype=float).reshape(-1, 3)
        out = np.ones((x.shape[0], 1))
        for i, t in enumerate(knots):
            out = (out[:, :, None] * design_matrix_1d(x[:, i], t, k)[:, None, :]).reshape(x.shape[0], -1)
        return out
    raise InputError(f"spline bases are implemented for d = 1, 2, 3, got d = {d}")


def difference_penalty(m: int, order: int = 2) -> np.ndarray:
    """P-spline penalty D^T D (m, m), D the ``order``-th difference matrix ((m - order), m)."""
    if m <= order:
        raise InputError(f"need more than {order} coefficients for an order-{order} penalty, got {m}")
    d = np.diff(np.eye(m), n=order, axis=0)
    return d.T @ d


def tensor_penalty(mx: int, my: int, order: int = 2) -> np.ndarray:
    """2D P-spline penalty kron(Px, I) + kron(I, Py) on coefficients flattened as a * my + b."""
    return np.kron(difference_penalty(mx, order), np.eye(my)) + np.kron(np.eye(mx), difference_penalty(my, order))


# --------------------------------------------------------------------------------------------------
# numba evaluation
# --------------------------------------------------------------------------------------------------
@numba.njit(cache=True, inline='always')
def _find_span(x, t, k):
    """Index s with t[s] <= x < t[s+1], k <= s <= len(t) - k - 2 (x clipped to the domain)."""
    m = len(t) - k - 1
    if x >= t[m]:
        return m - 1
    lo, hi = k, m
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if x < t[mid]:
            hi = mid
        else:
            lo = mid
    return lo


@inner(cache=True)
def _basis_and_deriv(x, t, k, s, out, dout):
    """Non-zero basis values out[0..k] = B_{s-k+j,k}(x) and derivatives dout (Cox-de Boor)."""
    _basis_and_deriv_ws(x, t, k, s, out, dout, np.empty((3, k + 1)))


@numba.njit(cache=True, inline='always')
def _basis_and_deriv_ws(x, t, k, s, out, dout, ws):
    """:func:`_basis_and_deriv` with scratch ws (3, k + 1) (the kernels' hot loops allocate nothing)."""
    # N[j] holds degree-p basis B_{s-p+j,p}, built up from p = 0
    n, nprev, lower = ws[0], ws[1], ws[2]
    for j in range(k + 1):
        n[j] = 0.0
        nprev[j] = 0.0
        lower[j] = 0.0
    n[0] = 1.0
    if k == 1:
        dout[0] = 1.0  # degree-0 basis B_{s,0} = 1 on the span
    for p in range(1, k + 1):
        for j in range(p):
            nprev[j] = n[j]
        for j in range(p + 1):
            v = 0.0
            i = s - p + j  # index of B_{i,p}
            if j >= 1:  # left term uses B_{i,p-1} = nprev[j-1]
                den = t[i + p] - t[i]
                if den > 0:
                    v += (x - t[i]) / den * nprev[j - 1]
            if j < p:  # right term uses B_{i+1,p-1} = nprev[j]
                den = t[i + p + 1] - t[i + 1]
                if den > 0:
                    v += (t[i + p + 1] - x) / den * nprev[j]
            n[j] = v
        if p == k - 1:
            for j in range(k):
                dout[j] = n[j]  # degree k-1 values B_{s-k+1+j,k-1}
    for j in range(k + 1):
        out[j] = n[j]
    if k == 0:
        for j in range(k + 1):
            dout[j] = 0.0
        return
    for j in range(k):
        lower[j + 1] = dout[j]  # lower[j] = B_{s-k+j,k-1}, j = 1..k; lower[0] = 0
    for j in range(k + 1):
        i = s - k + j
        v = 0.0
        den = t[i + k] - t[i]
        if den > 0:
            v += k / den * lower[j]
        den = t[i + k + 1] - t[i + 1]
        if den > 0 and j + 1 <= k:
            v -= k / den * lower[j + 1]
        dout[j] = v


@numba.njit(cache=True)
def bspline_value_grad_1d(x, t, c, k):
    """Value and derivative of the spline sum_i c_i B_i(x) at a scalar x inside [t[k], t[-k-1]]."""
    return _value_grad_1d_ws(x, t, c, k, np.empty((5, k + 1)))


@numba.njit(cache=True, inline='always')
def _value_grad_1d_ws(x, t, c, k, ws):
    """:func:`bspline_value_grad_1d` with scratch ws (5, k + 1)."""
    s = _find_span(x, t, k)
    b, db = ws[3], ws[4]
    _basis_and_deriv_ws(x, t, k, s, b, db, ws)
    v = 0.0
    g = 0.0
    for j in range(k + 1):
        v += c[s - k + j] * b[j]
        g += c[s - k + j] * db[j]
    return v, g


def _uniform_spans(t, k: int) -> np.ndarray:
    """(1/h, y_lo, y_hi) for :func:`_eval_1d_ws`: the spans of t where the closed-form uniform cubic
    applies are those whose 2k + 2 knots all lie among the break points t[k] .. t[-k-1], i.e. span index
    y = (x - t[k]) / h in [y_lo, y_hi); y_lo = y_hi = 0 (none) unless k = 3 and the break points are equispaced
    to round-off (clamped_knots' linspace).  The clamped ends keep Cox-de Boor."""
    t = np.asarray(t, dtype=float)
    n = t.size - 2 * k  # break points of a clamped vector
    if k != 3 or n < 2 * k + 2:
        return np.zeros(3)
    inner = t[k:t.size - k]
    h = (inner[-1] - inner[0]) / (n - 1)
    # a few ulps: what linspace leaves; a knot off by more would put the closed form off by more than round-off
    tol = 16 * np.finfo(float).eps * max(abs(inner[0]), abs(inner[-1]), h)
    if not (h > 0 and np.all(np.abs(inner - (inner[0] + h * np.arange(n))) <= tol)):
        return np.zeros(3)
    return np.array([1.0 / h, float(k), float(n - 1 - k)])


@numba.njit(cache=True, inline='always')
def _closed_form_span(x, t, k, uni):
    """j when x is on closed-form span j + k of uni (:func:`_uniform_spans`), else -1 (also for NaN)."""
    j = -1
    y = (x - t[k]) * uni[0]
    if y >= uni[1] and y < uni[2]:
        j = int(y)
    return j


@numba.njit(cache=True, inline='always')
def _uniform_cubic(x, t, c, inv_h, j):
    """Value and derivative of the cubic on uniform span j + 3 (basis functions j .. j + 3): the closed-form
    uniform cubic B-spline weights in u = (x - t[j + 3]) / h."""
    u = (x - t[j + 3]) * inv_h  # from the span's own knot: exact at the knots
    w = 1.0 - u
    u2 = u * u
    u3 = u2 * u
    c0, c1, c2, c3 = c[j], c[j + 1], c[j + 2], c[j + 3]
    v = c0 * (w * w * w) + c1 * (3.0 * u3 - 6.0 * u2 + 4.0) + c2 * (-3.0 * u3 + 3.0 * u2 + 3.0 * u + 1.0) + c3 * u3
    g = -c0 * (w * w) + c1 * (u * (3.0 * u - 4.0)) + c2 * (1.0 + u * (2.0 - 3.0 * u)) + c3 * u2
    return v / 6.0, g * (0.5 * inv_h)


@inner(cache=True)
def _tensor_value_grad(x, y, tx, ty, c, k, dx, dy):
    """Tensor spline with each 1D basis continued linearly by (dx, dy) from the evaluation point (x, y):
    B(x + dx) ~ B(x) + B'(x) dx.  Returns (value, dU/dx, dU/dy); dx = dy = 0 is the plain spline."""
    return _tensor_value_grad_ws(x, y, tx, ty, c, k, dx, dy, np.empty((7, k + 1)))


@inner(cache=True)
def _tensor_value_grad_ws(x, y, tx, ty, c, k, dx, dy, ws):
    """:func:`_tensor_value_grad` with scratch ws (7, k + 1)."""
    sx = _find_span(x, tx, k)
    sy = _find_span(y, ty, k)
    bx, dbx, by, dby = ws[3], ws[4], ws[5], ws[6]
    _basis_and_deriv_ws(x, tx, k, sx, bx, dbx, ws)
    _basis_and_deriv_ws(y, ty, k, sy, by, dby, ws)
    v = 0.0
    gx = 0.0
    gy = 0.0
    for a in range(k + 1):
        ex = bx[a] + dbx[a] * dx
        for b in range(k + 1):
            ey = by[b] + dby[b] * dy
            cab = c[sx - k + a, sy - k + b]
            v += cab * ex * ey
            gx += cab * dbx[a] * ey
            gy += cab * ex * dby[b]
    return v, gx, gy


@numba.njit(cache=True)
def bspline_value_grad_2d(x, y, tx, ty, c, k):
    """Value and gradient (dU/dx, dU/dy) of the tensor spline sum C_ab B_a(x) B_b(y), c: (mx, my)."""
    return _tensor_value_grad(x, y, tx, ty, c, k, 0.0, 0.0)


@inner(cache=True)
def _tensor_value_grad_3d(q, tx, ty, tz, c, k, dq, out_g):
    """Tensor spline of three variables at the box point q (3,) with each 1D basis continued linearly by dq (3,)
    (as :func:`_tensor_value_grad`); c: (mx, my, mz).  Returns the value, the gradient goes to out_g (3,)."""
    b = np.zeros((3, k + 1))
    db = np.zeros((3, k + 1))
    s = np.empty(3, dtype=np.int64)
    for i in range(3):
        t = tx if i == 0 else (ty if i == 1 else tz)
        s[i] = _find_span(q[i], t, k)
        _basis_and_deriv(q[i], t, k, s[i], b[i], db[i])
    e = np.empty((3, k + 1))
    for i in range(3):
        for j in range(k + 1):
            e[i, j] = b[i, j] + db[i, j] * dq[i]
    v = 0.0
    gx = 0.0
    gy = 0.0
    gz = 0.0
    for a in range(k + 1):
        for bb in range(k + 1):
            for cc in range(k + 1):
                w = c[s[0] - k + a, s[1] - k + bb, s[2] - k + cc]
                v += w * e[0, a] * e[1, bb] * e[2, cc]
                gx += w * db[0, a] * e[1, bb] * e[2, cc]
                gy += w * e[0, a] * db[1, bb] * e[2, cc]
                gz += w * e[0, a] * e[1, bb] * db[2, cc]
    out_g[0] = gx
    out_g[1] = gy
    out_g[2] = gz
    return v


@inner(cache=True)
def _eval_3d(q, tx, ty, tz, c, k, wall, out_g):
    # clamp into the box, continue each 1D basis linearly (as _eval_2d), then the wall
    x = np.empty(3)
    dq = np.empty(3)
    for i in range(3):
        t = tx if i == 0 else (ty if i == 1 else tz)
        x[i] = min(max(q[i], t[k]), t[len(t) - k - 1])
        dq[i] = q[i] - x[i]
    v = _tensor_value_grad_3d(x, tx, ty, tz, c, k, dq, out_g)
    for i in range(3):
        out_g[i] += wall * dq[i]
        v += 0.5 * wall * dq[i] * dq[i]
    return v


@inner(cache=True)
def _eval_1d_scalar(q, t, c, k, wall, uni):
    """(U, dU/dq) at the scalar q: the spline inside [t[k], t[-k-1]], its Taylor continuation plus the wall
    outside; uni: :func:`_uniform_spans` of t."""
    return _eval_1d_ws(q, t, c, k, wall, uni, np.empty((5, k + 1)))


@numba.njit(cache=True, inline='always')
def _eval_1d_ws(q, t, c, k, wall, uni, ws):
    """:func:`_eval_1d_scalar` with scratch ws (5, k + 1).  On the spans of uni the closed-form uniform cubic (no
    span search, no Cox-de Boor recursion: ~8x cheaper), elsewhere (the clamped ends, other degrees, uneven knots)
    :func:`_value_grad_1d_ws`."""
    x = _clip_1d(q, t, k)
    j = _closed_form_span(x, t, k, uni)
    if j >= 0:
        v, g = _uniform_cubic(x, t, c, uni[0], j)
    else:
        v, g = _value_grad_1d_ws(x, t, c, k, ws)
    return _continued(q, x, v, g, wall)


@numba.njit(cache=True, inline='always')
def _clip_1d(q, t, k):
    return min(max(q, t[k]), t[len(t) - k - 1])


@numba.njit(cache=True, inline='always')
def _continued(q, x, v, g, wall):
    """(U, dU/dq) at q from the spline's (v, g) at x = q clipped into the box: Taylor continuation plus the wall."""
    dx = q - x
    return v + g * dx + 0.5 * wall * dx * dx, g + wall * dx


@inner(cache=True)
def _lanes_1d_rest(S, t, c, k, wall, uni):
    """The lanes of a 1D lane kernel (S: kernels.state.GRADL_SIG's layout) that are off the closed-form spans:
    the clamped ends, outside the box, all of a spline without closed-form spans; a non-finite position gives
    NaN (a walker that blew up).  Compiled once for every slot, and the scratch is allocated only when a lane
    needs it."""
    n = S.shape[0] // 2
    ws = np.empty((5, k + 1))
    for lane in range(n):
        x = S[lane]
        if not abs(x) < math.inf:
            S[n + lane] = math.nan
            continue
        xc = _clip_1d(x, t, k)
        if _closed_form_span(xc, t, k, uni) >= 0:
            continue  # the lane kernel has it
        if k == 3:
            # _eval_1d_ws's other branch with the literal degree at the call, so that LLVM unrolls Cox-de Boor
            # (through _eval_1d_ws it did not: 2x slower)
            v, g = _value_grad_1d_ws(xc, t, c, 3, ws)
            S[n + lane] = _continued(x, xc, v, g, wall)[1]
        else:  # other degrees (rare): the compiled scalar form, the same operations
            S[n + lane] = _eval_1d_scalar(x, t, c, k, wall, uni)[1]


@inner(cache=True)
def _eval_1d(q, t, c, k, wall, uni, out_g):
    v, g = _eval_1d_scalar(q[0], t, c, k, wall, uni)
    out_g[0] = g
    return v


@inner(cache=True)
def _eval_2d(q, tx, ty, c, k, wall, out_g):
    return _eval_2d_ws(q, tx, ty, c, k, wall, out_g, np.empty((7, k + 1)))


@inner(cache=True)
def _eval_2d_ws(q, tx, ty, c, k, wall, out_g, ws):
    # each 1D basis is continued linearly beyond the box, B(x) ~ B(xc) + B'(xc)(x - xc), so the
    # tensor product stays differentiable and out_g is the exact gradient of the returned value
    x = min(max(q[0], tx[k]), tx[len(tx) - k - 1])
    y = min(max(q[1], ty[k]), ty[len(ty) - k - 1])
    dx = q[0] - x
    dy = q[1] - y
    v, gx, gy = _tensor_value_grad_ws(x, y, tx, ty, c, k, dx, dy, ws)
    out_g[0] = gx + wall * dx
    out_g[1] = gy + wall * dy
    return v + 0.5 * wall * (dx * dx + dy * dy)


@dataclasses.dataclass
class SplineRep:
    """Numba-evaluable spline potential: knots (list of d clamped knot vectors), coefs, degree, wall.

    coefs: (m,) for d = 1, (mx, my) for d = 2, (mx, my, mz) for d = 3 (or flat, reshaped).  ``wall`` (1/length^2 energy units):
    stiffness of the quadratic continuation outside the knot box.
    """

    knots: list
    coefs: np.ndarray
    degree: int = 3
    wall: float = 0.0

    def potential_reduce(self, variables):
        """(callable, args) that rebuild :func:`spline_potential` of this spline in another process (pickling of
        a Potential whose kernels read this process's slot)."""
        return spline_potential, (list(self.knots), self.coefs, self.degree, self.wall, tuple(variables))

    def __post_init__(self):
        self.knots = [np.ascontiguousarray(t, dtype=float) for t in self.knots]
        shape = tuple(n_basis(t, self.degree) for t in self.knots)
        c = np.ascontiguousarray(self.coefs, dtype=float)
        if c.size != int(np.prod(shape)):
            raise InputError(f"spline has {int(np.prod(shape))} basis functions but {c.size} coefficients")
        self.coefs = c.reshape(shape) if len(shape) > 1 else c.reshape(-1)
        if len(shape) not in (1, 2, 3):
            raise InputError(f"spline potentials are implemented for d = 1, 2, 3, got d = {len(shape)}")

    @property
    def dim(self) -> int:
        return len(self.knots)

    @property
    def box(self) -> list:
        k = self.degree
        return [(float(t[k]), float(t[-k - 1])) for t in self.knots]

    def value_grad(self, q) -> tuple[np.ndarray, np.ndarray]:
        """U and grad U at q (..., d) -> ((...), (..., d))."""
        q = np.asarray(q, dtype=float)
        if self.dim == 1 and (q.ndim == 0 or q.shape[-1] != 1):
            q = q[..., None]
        flat = q.reshape(-1, self.dim)
        v = np.empty(flat.shape[0])
        g = np.empty_like(flat)
        if self.dim == 3:
            _loop_eval_3d(flat, self.knots[0], self.knots[1], self.knots[2], self.coefs, self.degree,
                          float(self.wall), v, g)
        elif self.dim == 1:  # its own loop: a 1D run does not compile the 2D evaluation (cold start)
            _loop_eval_1d(flat, self.knots[0], np.ascontiguousarray(self.coefs.reshape(-1)), self.degree,
                          float(self.wall), _uniform_spans(self.knots[0], self.degree), v, g)
        else:
            _loop_eval(flat, self.knots[0], self.knots[-1], np.ascontiguousarray(self.coefs.reshape(-1)),
                       self.degree, float(self.wall), self.dim, v, g)
        return v.reshape(q.shape[:-1]), g.reshape(q.shape)

    def value(self, q):
        return self.value_grad(q)[0]

    def gradient(self, q):
        return self.value_grad(q)[1]

    def kernels(self):
        """(value(q (d,)) -> float, grad(q (d,), out (d,)) -> None): njit kernels of this spline.

        The convention is that of :meth:`bayescg.potentials.Potential.from_numba`: grad writes into out.  The
        kernels read a snapshot of the knots, coefficients and wall taken now from a runtime slot
        (:class:`_Slot`), so they compile once per machine (numba's disk cache) and a new spline costs no
        compilation; they are valid while this SplineRep (or a Potential made from it) is alive.
        """
        k = self._kernel_set()
        return k[0], k[1]

    def _kernel_set(self):
        """(value, grad, grad_scalar, grad_lanes) of this spline's slot (lane kernels None for d = 3)."""
        slot = self.__dict__.get("_slot")
        if slot is None:
            slot = self.__dict__["_slot"] = _Slot(self)
        return slot.kernels


@numba.njit(cache=True)
def _loop_eval(q, t0, t1, c, k, wall, dim, v, g):
    """Vectorised evaluation, dim = 2 (1D: _loop_eval_1d); c is the flat coefficient vector (a * my + b ordering)."""
    gi = np.empty(dim)
    c2 = c.reshape((len(t0) - k - 1, c.size // (len(t0) - k - 1)))
    for i in range(q.shape[0]):
        v[i] = _eval_2d(q[i], t0, t1, c2, k, wall, gi)
        for j in range(dim):
            g[i, j] = gi[j]


@numba.njit(cache=True)
def _loop_eval_1d(q, t, c, k, wall, uni, v, g):
    """Vectorised 1D evaluation (_eval_1d per point, the arithmetic of the slot kernels); uni: _uniform_spans(t, k)."""
    gi = np.empty(1)
    for i in range(q.shape[0]):
        v[i] = _eval_1d(q[i], t, c, k, wall, uni, gi)
        g[i, 0] = gi[0]


@numba.njit(cache=True)
def _loop_eval_3d(q, tx, ty, tz, c, k, wall, v, g):
    """Vectorised 3D evaluation, c: (mx, my, mz)."""
    gi = np.empty(3)
    for i in range(q.shape[0]):
        v[i] = _eval_3d(q[i], tx, ty, tz, c, k, wall, gi)
        for j in range(3):
            g[i, j] = gi[j]


# --------------------------------------------------------------------------------------------------
# kernels on runtime data: a table of slots read through a linker symbol
# --------------------------------------------------------------------------------------------------
# The engine's drivers call a potential's kernels as first-class functions g(q, out) / g(S), which carry no data,
# and closures over arrays freeze the data into the machine code (one compilation per spline, not cacheable).
# So a spline's knots, coefficients and wall go into a slot of a process-wide table whose address the kernels
# read through the external symbol _TABLE_SYMBOL (resolved when numba links or loads the code, like numba's own
# runtime functions).  The kernels of slot i are closures over the integer i only, which numba's disk cache
# keys by value: each slot compiles once per machine and a new spline reuses a free slot without compiling.
_SLOTS = 512      # capacity: splines alive at once
_ROW = 8          # per slot: data address, n_0, n_1, n_2 (knots per dim), m_0, m_1, m_2 (coefficients), degree
_TABLE = np.zeros((_SLOTS, _ROW), dtype=np.int64)
_TABLE_SYMBOL = f"bayescg_spline_slots_{_SLOTS}x{_ROW}_v1"


def _register_table():
    from llvmlite import binding

    binding.add_symbol(_TABLE_SYMBOL, _TABLE.ctypes.data)


_register_table()


@intrinsic
def _table_address(typingctx):
    """The address of _TABLE (int64), through the external symbol _TABLE_SYMBOL."""
    from llvmlite import ir

    def codegen(context, builder, sig, args):
        gv = builder.module.globals.get(_TABLE_SYMBOL)
        if gv is None:
            gv = ir.GlobalVariable(builder.module, ir.IntType(8), _TABLE_SYMBOL)
            gv.linkage = "external"
        return builder.ptrtoint(gv, ir.IntType(64))
    return types.int64(), codegen


@intrinsic
def _f8_pointer(typingctx, address):
    """An int64 address as a float64 pointer (for numba.carray)."""
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))
    return types.CPointer(types.float64)(types.int64), codegen


@intrinsic
def _i8_pointer(typingctx, address):
    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))
    return types.CPointer(types.int64)(types.int64), codegen


@inner(cache=True)
def _slot_row(slot):
    return numba.carray(_i8_pointer(_table_address()), (_SLOTS, _ROW))[slot]


@inner(cache=True)
def _slot_1d(slot):
    """(t, c, k, wall, uni) of a 1D slot (views of its data; uni: _uniform_spans(t, k))."""
    r = _slot_row(slot)
    a, n, m = r[0], r[1], r[4]
    return (numba.carray(_f8_pointer(a), (n,)), numba.carray(_f8_pointer(a + 8 * n), (m,)), r[7],
            numba.carray(_f8_pointer(a + 8 * (n + m)), (1,))[0], numba.carray(_f8_pointer(a + 8 * (n + m + 1)), (3,)))


@inner(cache=True)
def _slot_2d(slot):
    """(tx, ty, c (mx, my), k, wall) of a 2D slot."""
    r = _slot_row(slot)
    a, nx, ny, mx, my = r[0], r[1], r[2], r[4], r[5]
    o = a + 8 * (nx + ny)
    return (numba.carray(_f8_pointer(a), (nx,)), numba.carray(_f8_pointer(a + 8 * nx), (ny,)),
            numba.carray(_f8_pointer(o), (mx, my)), r[7], numba.carray(_f8_pointer(o + 8 * mx * my), (1,))[0])


@inner(cache=True)
def _slot_3d(slot):
    """(tx, ty, tz, c (mx, my, mz), k, wall) of a 3D slot."""
    r = _slot_row(slot)
    a, nx, ny, nz, mx, my, mz = r[0], r[1], r[2], r[3], r[4], r[5], r[6]
    o = a + 8 * (nx + ny + nz)
    return (numba.carray(_f8_pointer(a), (nx,)), numba.carray(_f8_pointer(a + 8 * nx), (ny,)),
            numba.carray(_f8_pointer(a + 8 * (nx + ny)), (nz,)), numba.carray(_f8_pointer(o), (mx, my, mz)), r[7],
            numba.carray(_f8_pointer(o + 8 * mx * my * mz), (1,))[0])


_slot_lock = threading.Lock()
_free_slots = list(range(_SLOTS - 1, -1, -1))  # pop() hands out the lowest free slot: few distinct slots compile
_freed = collections.deque()                    # slots of collected splines, returned to _free_slots under the lock
_slot_data: dict = {}                           # slot -> its data buffer (kept alive while the slot is taken)
_slot_kernels: dict = {}                        # (d, slot) -> (value, grad, grad_scalar, grad_lanes)


class _Slot:
    """A table slot holding a snapshot of ``rep``'s knots, coefficients and wall, with its kernels; freed
    when ``rep`` is garbage collected."""

    def __init__(self, rep):
        # 1D: knots, coefficients, wall, _uniform_spans; 2D, 3D: knots, coefficients, wall
        uni = [_uniform_spans(rep.knots[0], rep.degree)] if rep.dim == 1 else []
        buf = np.concatenate([*rep.knots, np.asarray(rep.coefs, dtype=float).ravel(), [float(rep.wall)], *uni])
        with _slot_lock:
            while _freed:
                j = _freed.popleft()
                _slot_data.pop(j, None)
                _free_slots.append(j)
            _free_slots.sort(reverse=True)
            if not _free_slots:
                raise InputError(f"more than {_SLOTS} spline potentials alive at once")
            self.index = i = _free_slots.pop()
            _slot_data[i] = buf
            n = [t.size for t in rep.knots] + [0] * (3 - rep.dim)
            m = list(np.shape(rep.coefs)) + [0] * (3 - rep.dim)
            _TABLE[i] = [buf.ctypes.data, *n, *m, int(rep.degree)]
        weakref.finalize(rep, _free_slot, i)
        self.kernels = _kernels_of(rep.dim, i)


def _free_slot(i):
    # a finalizer: it may run from the garbage collector anywhere, also inside _Slot.__init__ holding _slot_lock, so
    # it takes no lock (deque.append is atomic); the slot's data stay alive until the slot is handed out again
    _freed.append(i)


def _kernels_of(d, slot):
    """(value, grad, grad_scalar, grad_lanes) of slot ``slot`` for d = 1, 2 (the lane pair None for d = 3), built
    once per process; their machine code comes from numba's cache after the first run on a machine."""
    key = (d, slot)
    hit = _slot_kernels.get(key)
    if hit is None:
        hit = _slot_kernels.setdefault(key, _make_kernels(d, slot))
    return hit


def _make_kernels(d, slot):
    from .kernels.state import LANES as L
    from .kernels.state import LANES_TAG

    jit = numba.njit(cache=True)
    gs = gl = None
    if d == 1:
        @jit
        def value(q):
            t, c, k, wall, uni = _slot_1d(slot)
            return _eval_1d_scalar(q[0], t, c, k, wall, uni)[0]

        @jit
        def grad(q, out):
            t, c, k, wall, uni = _slot_1d(slot)
            out[0] = _eval_1d_scalar(q[0], t, c, k, wall, uni)[1]

        @jit
        def gs(x):
            t, c, k, wall, uni = _slot_1d(slot)
            return _eval_1d_scalar(x, t, c, k, wall, uni)[1]

        @jit
        def gl(S):
            # layout of kernels.state.GRADL_SIG; a non-finite position (a walker that blew up) gives NaN
            # the operations of _eval_1d_ws: the closed form inline, the other lanes (rare on a learned U) in one
            # call of _lanes_1d_rest, so this loop allocates nothing and each slot compiles no Cox-de Boor
            t, c, k, wall, uni = _slot_1d(slot)
            rest = False
            for lane in range(L):
                x = S[lane]
                xc = _clip_1d(x, t, k)
                j = _closed_form_span(xc, t, k, uni)
                if j >= 0:
                    v, g = _uniform_cubic(xc, t, c, uni[0], j)
                    S[L + lane] = _continued(x, xc, v, g, wall)[1]
                else:
                    rest = True
            if rest:
                _lanes_1d_rest(S, t, c, k, wall, uni)
    elif d == 2:
        @jit
        def value(q):
            tx, ty, c, k, wall = _slot_2d(slot)
            g = np.empty(2)
            return _eval_2d(q, tx, ty, c, k, wall, g)

        @jit
        def grad(q, out):
            tx, ty, c, k, wall = _slot_2d(slot)
            _eval_2d(q, tx, ty, c, k, wall, out)

        @jit
        def gs(x, y):
            tx, ty, c, k, wall = _slot_2d(slot)
            q = np.empty(2)
            q[0] = x
            q[1] = y
            g = np.empty(2)
            _eval_2d(q, tx, ty, c, k, wall, g)
            return g[0], g[1]

        @jit
        def gl(S):
            tx, ty, c, k, wall = _slot_2d(slot)
            q = np.empty(2)
            g = np.empty(2)
            ws = np.empty((7, k + 1))
            for lane in range(L):
                q[0] = S[lane]
                q[1] = S[L + lane]
                if abs(q[0]) < math.inf and abs(q[1]) < math.inf:
                    _eval_2d_ws(q, tx, ty, c, k, wall, g, ws)
                else:
                    g[0] = g[1] = math.nan
                S[2 * L + lane] = g[0]
                S[3 * L + lane] = g[1]
    else:
        @jit
        def value(q):
            tx, ty, tz, c, k, wall = _slot_3d(slot)
            g = np.empty(3)
            return _eval_3d(q, tx, ty, tz, c, k, wall, g)

        @jit
        def grad(q, out):
            tx, ty, tz, c, k, wall = _slot_3d(slot)
            _eval_3d(q, tx, ty, tz, c, k, wall, out)
    if gl is not None:
        setattr(gl, LANES_TAG, True)
    return value, grad, gs, gl


def spline_potential(knots: list, coefs, degree: int = 3, wall: float = 0.0, variables=None):
    """A :class:`bayescg.potentials.Potential` for the spline U, d = 1, 2, 3.

    knots: list of d clamped knot vectors; coefs: (m,), (mx, my) or (mx, my, mz); wall: see :class:`SplineRep`.
    Its kernels read the spline from a runtime slot (:meth:`SplineRep.kernels`): no compilation after the first run
    on a machine; for d = 1, 2 it has a lane kernel, so simulate() runs it on the same lane driver as expression
    potentials (per walker the same arithmetic as ``grad``).
    """
    from .potentials import Potential, _check_variables  # late import: potentials.py is a sibling layer

    rep = SplineRep(knots, coefs, degree, wall)
    value, grad, grad_scalar, grad_lanes = rep._kernel_set()
    d = rep.dim
    variables = _check_variables(variables) if variables is not None else tuple(f"x{i}" for i in range(d))
    if len(variables) != d:
        raise InputError(f"{len(variables)} variable names for a spline of dimension {d}")
    return Potential(variables=variables, dim=d, expression=None, grad=grad, value=value, grad_scalar=grad_scalar,
                     grad_lanes=grad_lanes, data=rep)
