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

import dataclasses

import numba
import numpy as np
from scipy.interpolate import BSpline

from .errors import InputError

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
@numba.njit(cache=True)
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


@numba.njit(cache=True)
def _basis_and_deriv(x, t, k, s, out, dout):
    """Non-zero basis values out[0..k] = B_{s-k+j,k}(x) and derivatives dout (Cox-de Boor)."""
    # N[j] holds degree-p basis B_{s-p+j,p}, built up from p = 0
    n = np.zeros(k + 1)
    n[0] = 1.0
    nprev = np.zeros(k + 1)
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
    lower = np.zeros(k + 1)
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
    s = _find_span(x, t, k)
    b = np.zeros(k + 1)
    db = np.zeros(k + 1)
    _basis_and_deriv(x, t, k, s, b, db)
    v = 0.0
    g = 0.0
    for j in range(k + 1):
        v += c[s - k + j] * b[j]
        g += c[s - k + j] * db[j]
    return v, g


@numba.njit(cache=True)
def _tensor_value_grad(x, y, tx, ty, c, k, dx, dy):
    """Tensor spline with each 1D basis continued linearly by (dx, dy) from the evaluation point (x, y):
    B(x + dx) ~ B(x) + B'(x) dx.  Returns (value, dU/dx, dU/dy); dx = dy = 0 is the plain spline."""
    sx = _find_span(x, tx, k)
    sy = _find_span(y, ty, k)
    bx = np.zeros(k + 1)
    dbx = np.zeros(k + 1)
    by = np.zeros(k + 1)
    dby = np.zeros(k + 1)
    _basis_and_deriv(x, tx, k, sx, bx, dbx)
    _basis_and_deriv(y, ty, k, sy, by, dby)
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


@numba.njit(cache=True)
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


@numba.njit(cache=True)
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


@numba.njit(cache=True)
def _eval_1d(q, t, c, k, wall, out_g):
    lo = t[k]
    hi = t[len(t) - k - 1]
    x = min(max(q[0], lo), hi)
    v, g = bspline_value_grad_1d(x, t, c, k)
    dx = q[0] - x
    out_g[0] = g + wall * dx
    return v + g * dx + 0.5 * wall * dx * dx


@numba.njit(cache=True)
def _eval_2d(q, tx, ty, c, k, wall, out_g):
    # each 1D basis is continued linearly beyond the box, B(x) ~ B(xc) + B'(xc)(x - xc), so the
    # tensor product stays differentiable and out_g is the exact gradient of the returned value
    x = min(max(q[0], tx[k]), tx[len(tx) - k - 1])
    y = min(max(q[1], ty[k]), ty[len(ty) - k - 1])
    dx = q[0] - x
    dy = q[1] - y
    v, gx, gy = _tensor_value_grad(x, y, tx, ty, c, k, dx, dy)
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
        else:
            _loop_eval(flat, self.knots[0], self.knots[-1], np.ascontiguousarray(self.coefs.reshape(-1)),
                       self.degree, float(self.wall), self.dim, v, g)
        return v.reshape(q.shape[:-1]), g.reshape(q.shape)

    def value(self, q):
        return self.value_grad(q)[0]

    def gradient(self, q):
        return self.value_grad(q)[1]

    def kernels(self):
        """(value(q (d,)) -> float, grad(q (d,), out (d,)) -> None) as njit closures over the coefficients.

        The convention is that of :meth:`bayescg.potentials.Potential.from_numba`: grad writes into out.
        """
        k, wall = self.degree, float(self.wall)
        if self.dim == 1:
            t, c = self.knots[0], self.coefs.reshape(-1)

            @numba.njit
            def value(q):
                g = np.empty(1)
                return _eval_1d(q, t, c, k, wall, g)

            @numba.njit
            def grad(q, out):
                _eval_1d(q, t, c, k, wall, out)
        elif self.dim == 2:
            tx, ty, c2 = self.knots[0], self.knots[1], self.coefs

            @numba.njit
            def value(q):
                g = np.empty(2)
                return _eval_2d(q, tx, ty, c2, k, wall, g)

            @numba.njit
            def grad(q, out):
                _eval_2d(q, tx, ty, c2, k, wall, out)
        else:
            tx, ty, tz, c3 = self.knots[0], self.knots[1], self.knots[2], self.coefs

            @numba.njit
            def value(q):
                g = np.empty(3)
                return _eval_3d(q, tx, ty, tz, c3, k, wall, g)

            @numba.njit
            def grad(q, out):
                _eval_3d(q, tx, ty, tz, c3, k, wall, out)
        return value, grad


@numba.njit(cache=True)
def _loop_eval(q, t0, t1, c, k, wall, dim, v, g):
    """Vectorised evaluation; c is the flat coefficient vector (a * my + b ordering in 2D)."""
    gi = np.empty(dim)
    c2 = c.reshape((len(t0) - k - 1, c.size // (len(t0) - k - 1)))
    for i in range(q.shape[0]):
        if dim == 1:
            v[i] = _eval_1d(q[i], t0, c, k, wall, gi)
        else:
            v[i] = _eval_2d(q[i], t0, t1, c2, k, wall, gi)
        for j in range(dim):
            g[i, j] = gi[j]


@numba.njit(cache=True)
def _loop_eval_3d(q, tx, ty, tz, c, k, wall, v, g):
    """Vectorised 3D evaluation, c: (mx, my, mz)."""
    gi = np.empty(3)
    for i in range(q.shape[0]):
        v[i] = _eval_3d(q[i], tx, ty, tz, c, k, wall, gi)
        for j in range(3):
            g[i, j] = gi[j]


def spline_potential(knots: list, coefs, degree: int = 3, wall: float = 0.0, variables=None):
    """A :class:`bayescg.potentials.Potential` for the spline U (via ``Potential.from_numba``).

    knots: list of d clamped knot vectors; coefs: (m,) or (mx, my); wall: see :class:`SplineRep`.
    """
    from .potentials import Potential  # late import: potentials.py is a sibling layer

    rep = SplineRep(knots, coefs, degree, wall)
    value, grad = rep.kernels()
    return Potential.from_numba(grad, rep.dim, value, variables=variables)
