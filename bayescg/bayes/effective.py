"""PyMC model of the effective potential U_k from a histogram of q and the momenta (3.5), (3.6), (3.9).

Law (3.9) with the correct sign: log pi(q) = -log Z - beta U_k(q), f = beta U_k.

Likelihood grid.  The fine histogram (bins,)*d is aggregated into likelihood cells J of ``coarsen`` fine
bins per dimension (unions of fine cells, so the aggregated counts are exact), and the probability mass of
each cell is integrated with a ``quad``-point Gauss-Legendre rule per dimension,

    L_J = log sum_{k in J} w_k exp(-f(x_k)),    pi_J = exp(L_J) / sum_{I in R} exp(L_I),

where R is the set of *active* cells.  coarsen = quad = 1 is the midpoint rule on the fine histogram.
The counts in R are multinomial given their total (equivalently Poisson with the total profiled out).

Active region (the normaliser).  The multinomial above is the exact law of the counts *conditional on q
lying in R* (i.i.d. samples: the counts in R given their total are multinomial with the renormalised cell
masses).  With ``trim`` (the 2D default) R is the set of cells holding data, dilated by ``margin`` cells;
every count lies in R, so no datum is dropped, and the only information given up is "no sample fell
outside R", which bounds f from below outside R, where U is not reported.  Spline coefficients whose
support misses R do not enter this likelihood; they are removed (the model and the P-spline penalty are
built on the kept coefficients; penalty rows are the difference rows whose coefficients are all kept).
Without trim R is the whole histogram box and every coefficient is kept.  Trimming removes the
prior-only coefficients of the empty parts of the box (e.g. around the three Mueller-Brown wells), whose
one-sided posteriors made NUTS slow; coarsening makes each gradient cheap.

Parameterisation.  f = B(x) a on a clamped cubic B-spline basis (tensor product in 2D).  The data
determine f, the momenta determine beta, and U = f / beta, so the beta uncertainty reaches U.  On R the
kept basis functions sum to one, so the likelihood does not see constants: a = Q b with Q an orthonormal
basis of the sum-to-zero subspace fixes the constant exactly and b is identified.  Smoothness: P-spline
random-walk prior of second order, log p(b | tau) = (r/2) log tau - (tau/2) b^T Q^T P Q b (r = rank),
with sigma_rw = tau^-1/2 ~ HalfNormal(1) (f is in units of kT); a weak ridge N(0, 100^2) on b makes the
prior proper in the penalty's null space (linear trends), which the data identify.

Temperature.  With momenta p ~ N(0, I / beta), d components and n independent samples the likelihood of
beta is beta^{nd/2} exp(-beta S/2), S = sum |p|^2.  We use the effective count nu = n d implied by the
measured beta_hat and its (batch-means) standard error, nu = 2 (beta_hat / se)^2 and S = nu / beta_hat, so the
autocorrelation of the trajectory is respected; prior beta ~ Gamma(1, 1e-3) (nearly flat).

Effective sample size.  Histogram counts of an autocorrelated trajectory are not independent.  The
multinomial log-likelihood is multiplied by n_eff_factor = n_eff / n (a tempered, "power" likelihood),
which gives the posterior width of n_eff independent samples; bands are then honest rather than
n / n_eff times too narrow.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import numpy as np

from .. import splines
from ..errors import InputError


@dataclasses.dataclass
class EffectiveBasis:
    """Spline basis, likelihood grid and active region over a histogram box.

    knots: list of d clamped knot vectors; Bs: list of d design matrices (bins_i, m_i) at the fine cell
    centres (all coefficients); centres: fine cell centres; log_volume: (bins,)*d log fine-cell volumes.
    Likelihood grid: coarsen (d,) fine bins per likelihood cell; quad: Gauss points per cell and dimension;
    lik_edges: d arrays of likelihood-cell edges; node_B: d arrays (cells_i * quad, m_i) of the basis at
    the Gauss nodes; node_logw: d arrays (cells_i * quad,) of log quadrature weights (length units);
    active: (cells,)*d bool, the region R.  keep: (m_full,) bool, coefficients kept (flat a * my + b);
    Q: (m, m - 1) orthonormal sum-to-zero basis and P: (m, m) difference penalty on the m kept ones.
    """

    knots: list
    degree: int
    Bs: list
    P: np.ndarray
    centres: list
    log_volume: np.ndarray
    coarsen: tuple = (1,)
    quad: int = 1
    lik_edges: list = None
    node_B: list = None
    node_logw: list = None
    active: np.ndarray = None
    keep: np.ndarray = None

    @property
    def dim(self) -> int:
        return len(self.knots)

    @property
    def n_coef(self) -> int:
        """Number of kept coefficients m."""
        return int(self.keep.sum())

    @functools.cached_property
    def Q(self) -> np.ndarray:
        """(m, m - 1) orthonormal basis of the sum-to-zero coefficients (the dense form's b; dense, so built
        only when used: d = 1)."""
        return _sum_to_zero_basis(self.n_coef)

    @functools.cached_property
    def nodes(self):
        """Sparse node design of the active cells: (idx (nodes, K) int64, val (nodes, K), logw (nodes,)),
        nodes grouped by cell (quad^d per cell, cells in C order like :meth:`active_counts`); idx indexes the
        kept coefficients."""
        return _active_nodes(self)

    @property
    def shape(self) -> tuple:
        """Full coefficient shape (m_1, ..., m_d)."""
        return tuple(b.shape[1] for b in self.Bs)

    @property
    def lik_shape(self) -> tuple:
        return tuple(len(e) - 1 for e in self.lik_edges)

    def coefficients(self, b) -> np.ndarray:
        """Kept coefficients a = Q b; b: (..., m - 1) -> (..., m)."""
        return np.asarray(b) @ self.Q.T

    def expand(self, a, fill: float = 0.0) -> np.ndarray:
        """Kept coefficients (..., m) -> full (..., m_full); removed ones set to ``fill`` (they do not
        affect f on the active region)."""
        a = np.asarray(a, dtype=float)
        out = np.full(a.shape[:-1] + (self.keep.size,), fill, dtype=float)
        out[..., self.keep] = a
        return out

    def evaluate(self, a, points) -> np.ndarray:
        """f(points) for kept coefficients a (..., m); points (n,) or (n, d) -> (..., n)."""
        x = splines.design_matrix(np.asarray(points, dtype=float), self.knots, self.degree)
        return self.expand(a) @ x.T

    def aggregate(self, counts) -> np.ndarray:
        """Fine counts (bins,)*d -> likelihood-cell counts (cells,)*d (exact sums)."""
        c = np.asarray(counts, dtype=float)
        shp = []
        for n, r in zip(self.lik_shape, self.coarsen):
            shp += [n, r]
        return c.reshape(shp).sum(axis=tuple(range(1, 2 * self.dim, 2)))

    def active_counts(self, counts) -> np.ndarray:
        """Counts of the active likelihood cells, flat (n_active,)."""
        return self.aggregate(counts)[self.active]

    def describe(self) -> dict:
        """JSON-able description of the likelihood grid (for result.json)."""
        return {"cells_per_dim": list(self.lik_shape), "fine_bins_per_cell": list(self.coarsen),
                "gauss_points_per_dim": int(self.quad), "active_cells": int(self.active.sum()),
                "cells": int(self.active.size), "coefficients_kept": int(self.n_coef),
                "coefficients_full": int(self.keep.size),
                "normaliser": ("multinomial over all cells of the histogram box" if self.active.all() else
                               "multinomial over the active cells (cells with data dilated by one cell), i.e. the "
                               "exact law of the counts given q in that region; every count lies in it")}


def _sum_to_zero_basis(m: int) -> np.ndarray:
    # columns orthonormal and orthogonal to the ones vector (QR of [1 | I])
    q, _ = np.linalg.qr(np.column_stack([np.ones(m), np.eye(m)[:, : m - 1]]))
    return q[:, 1:m]


def _divisor_at_most(n: int, r: float) -> int:
    """Largest divisor of n that is <= r (at least 1)."""
    best = 1
    for k in range(1, n + 1):
        if k > r:
            break
        if n % k == 0:
            best = k
    return best


def _support_on_cells(t, k, edges) -> np.ndarray:
    """(cells, m) bool: basis function j is non-zero somewhere inside cell [e_i, e_{i+1}]."""
    m = len(t) - k - 1
    lo, hi = t[:m], t[k + 1: k + 1 + m]
    return (lo[None, :] < edges[1:, None]) & (hi[None, :] > edges[:-1, None])


def _kept_penalty(shape, keep, order) -> np.ndarray:
    """Difference penalty D^T D on the kept coefficients, D = the difference rows (along each dimension)
    whose coefficients are all kept.  Without removal it equals the usual (tensor) P-spline penalty."""
    rows = []
    from scipy import sparse

    for i, mi in enumerate(shape):  # differences along dimension i: I x .. x D_i x .. x I (sparse)
        D = sparse.csr_matrix(np.diff(np.eye(mi), n=order, axis=0))
        for j, mj in enumerate(shape):
            if j != i:
                D = sparse.kron(D, sparse.eye(mj), format="csr") if j > i else sparse.kron(sparse.eye(mj), D, format="csr")
        rows.append(D)
    D = sparse.vstack(rows, format="csr")
    drop = sparse.csr_matrix((~keep).astype(float)[None, :])
    ok = np.asarray((abs(D) @ drop.T).todense()).ravel() == 0
    Dk = D[ok][:, np.flatnonzero(keep)]
    return (Dk.T @ Dk).toarray()


def effective_basis(edges, knots, degree: int = 3, order: int = 2, *, counts=None, coarsen=None, quad=None,
                    trim=None, margin: int = 1) -> EffectiveBasis:
    """Basis and likelihood grid over the histogram box given by ``edges`` (list of d edge arrays).

    knots: int or list per dimension.  coarsen: fine bins per likelihood cell (int or per dimension; it
    must divide the bin count); default 1 in 1D and, in 2D, the largest divisor of the bin count that
    gives cells of at most half the knot spacing.  quad: Gauss points per cell and dimension (default 1
    when coarsen is 1 everywhere, else 3).  trim (default: d == 2, needs ``counts``): restrict the
    normaliser to the cells with data dilated by ``margin`` cells and drop the coefficients that do not
    reach them (see the module docstring).
    """
    from scipy import ndimage

    edges = [np.asarray(e, dtype=float) for e in edges]
    d = len(edges)
    if d not in (1, 2, 3):
        raise InputError(f"effective potentials are fitted for d = 1, 2 or 3, got d = {d}")
    kn = [int(knots)] * d if np.isscalar(knots) else [int(k) for k in knots]
    if len(kn) != d or min(kn) < 4:
        raise InputError(f"need at least 4 knots per dimension, got {knots}")
    tvec = [splines.clamped_knots(e[0], e[-1], k, degree) for e, k in zip(edges, kn)]
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    Bs = [splines.design_matrix_1d(c, t, degree) for c, t in zip(centres, tvec)]
    ms = [b.shape[1] for b in Bs]
    nb = [len(e) - 1 for e in edges]
    if coarsen is None:
        if d == 1:
            coarsen = [1]
        else:  # d >= 2
            coarsen = [_divisor_at_most(n, 0.5 * (e[-1] - e[0]) / (k - 1) / np.diff(e).max())
                       for n, e, k in zip(nb, edges, kn)]
    elif np.isscalar(coarsen):
        coarsen = [int(coarsen)] * d
    coarsen = [int(r) for r in coarsen]
    for n, r in zip(nb, coarsen):
        if r < 1 or n % r:
            raise InputError(f"coarsen = {r} must be a positive divisor of the bin count {n}")
    if quad is None:
        quad = 1 if all(r == 1 for r in coarsen) else 3
    quad = int(quad)
    if quad < 1:
        raise InputError(f"quad must be at least 1, got {quad}")
    lik_edges = [e[::r] for e, r in zip(edges, coarsen)]
    gx, gw = np.polynomial.legendre.leggauss(quad)
    node_B, node_logw = [], []
    for e, t in zip(lik_edges, tvec):
        mid, half = 0.5 * (e[1:] + e[:-1]), 0.5 * np.diff(e)
        nodes = (mid[:, None] + half[:, None] * gx[None, :]).ravel()
        node_B.append(splines.design_matrix_1d(nodes, t, degree))
        node_logw.append(np.log((half[:, None] * gw[None, :]).ravel()))
    lshape = tuple(len(e) - 1 for e in lik_edges)
    if trim is None:
        trim = d >= 2 and counts is not None
    if trim:
        if counts is None:
            raise InputError("trim needs the counts")
        c = np.asarray(counts, dtype=float)
        shp = []
        for n, r in zip(lshape, coarsen):
            shp += [n, r]
        agg = c.reshape(shp).sum(axis=tuple(range(1, 2 * d, 2)))
        active = agg > 0
        if margin > 0:
            active = ndimage.binary_dilation(active, structure=np.ones((3,) * d, bool), iterations=int(margin))
    else:
        active = np.ones(lshape, dtype=bool)
    sup = [_support_on_cells(t, degree, e) for t, e in zip(tvec, lik_edges)]
    keep = active.astype(float)
    for s in sup:  # contract each cell axis with the support of that dimension's basis: (cells...) -> (m...)
        keep = np.tensordot(keep, s.astype(float), axes=([0], [0]))
    keep = (keep > 0).ravel()
    if keep.sum() < 3:
        raise InputError("fewer than 3 spline coefficients reach the cells with data: use more knots")
    P = _kept_penalty(tuple(ms), keep, order)
    logv = np.zeros(())
    for e in edges:
        logv = np.add.outer(logv, np.log(np.diff(e)))
    return EffectiveBasis(knots=tvec, degree=degree, Bs=Bs, P=P, centres=centres, log_volume=logv,
                          coarsen=tuple(coarsen), quad=quad, lik_edges=lik_edges, node_B=node_B,
                          node_logw=node_logw, active=active, keep=keep)


def momenta_likelihood_params(beta_hat: float, beta_hat_se: float) -> tuple[float, float]:
    """(nu, S) with nu = 2 (beta_hat / se)^2 effective momentum components and S = nu / beta_hat."""
    if not (np.isfinite(beta_hat) and beta_hat > 0 and np.isfinite(beta_hat_se) and beta_hat_se > 0):
        raise InputError(f"need a positive beta_hat and standard error, got {beta_hat} +- {beta_hat_se}")
    nu = 2.0 * (beta_hat / beta_hat_se) ** 2
    return nu, nu / beta_hat


def build_effective_potential_model(counts, edges, *, knots=40, momenta_stats=None, n_eff_factor: float = 1.0,
                                    beta: float | None = None, basis: EffectiveBasis | None = None,
                                    degree: int = 3, sigma_rw_scale: float = 1.0, ridge_sd: float = 100.0,
                                    whitening=None):
    """pm.Model of f = beta U on a B-spline basis given histogram ``counts`` (bins,)*d with ``edges``.

    basis: the :class:`EffectiveBasis` (likelihood grid, active region, kept coefficients); default
    ``effective_basis(edges, knots, degree, counts=counts)``.  The histogram term is the multinomial of the
    active-cell counts (module docstring).

    momenta_stats: dict with ``beta_hat`` and ``beta_hat_se`` (the momentum likelihood, see module doc),
    or None with a fixed ``beta``.  n_eff_factor in (0, 1]: tempering of the histogram likelihood.
    whitening: optional reparameterisation of b for NUTS (same posterior, better geometry):
      * a tuple (b0, W): b = b0 + W z (constant Jacobian; W ~ H^-1/2 at the MAP);
      * an :class:`AdaptiveWhitening` (see :func:`adaptive_whitening`): b = V [c / (lam + sigma^-2)
        + (lam + sigma^-2)^-1/2 z], which follows the conditional mode and width of b as the smoothing scale
        sigma_rw changes (removes the funnel between sigma_rw and the prior-dominated coefficients); its
        log-Jacobian -1/2 sum log(lam + sigma^-2) is added to the density.
    Free variables: ``b`` (or ``z``), ``sigma_rw``, ``beta``.
    """
    import pymc as pm
    import pytensor.tensor as pt

    counts = np.asarray(counts, dtype=float)
    if np.any(counts < 0) or not np.all(np.isfinite(counts)) or counts.sum() <= 0:
        raise InputError("histogram counts must be finite, non-negative and not all zero")
    if basis is None:
        basis = effective_basis(edges, knots, degree, counts=counts)
    if counts.shape != basis.log_volume.shape:
        raise InputError(f"counts have shape {counts.shape}, edges imply {basis.log_volume.shape}")
    if not 0 < n_eff_factor <= 1:
        raise InputError(f"n_eff_factor must be in (0, 1], got {n_eff_factor}")
    c_act = basis.active_counts(counts)
    if c_act.sum() < counts.sum():
        raise InputError("some counts lie outside the active region of the likelihood grid")
    m = basis.n_coef
    P_b = basis.Q.T @ basis.P @ basis.Q
    rank = penalty_rank(P_b)
    keep_idx = np.flatnonzero(basis.keep)
    act_idx = np.flatnonzero(basis.active.ravel())
    g = basis.quad
    with pm.Model() as model:
        # data are inputs (shared variables), not constants: the compiled graph depends only on the structure
        # (grid sizes, knots), so it can be reused with other data (nutpie's ``with_data``, ``pm.set_data``)
        data = lambda name, v: pm.Data(name, np.asarray(v, dtype=float))  # noqa: E731
        sigma_rw = pm.HalfNormal("sigma_rw", sigma_rw_scale)
        if whitening is None:
            b = pm.Normal("b", 0.0, ridge_sd, shape=m - 1)
        elif isinstance(whitening, AdaptiveWhitening):
            z = pm.Flat("z", shape=m - 1)
            prec = data("w_lam", whitening.lam) + 1.0 / sigma_rw ** 2
            b = pt.dot(data("w_V", whitening.V), data("w_c", whitening.c) / prec + z / pt.sqrt(prec))
            pm.Potential("jacobian", -0.5 * pt.sum(pt.log(prec)))
            pm.Potential("ridge", -0.5 * pt.sum(b ** 2) / ridge_sd ** 2)
        else:
            b0, W = (np.asarray(x, dtype=float) for x in whitening)
            z = pm.Flat("z", shape=m - 1)
            b = data("w_b0", b0) + pt.dot(data("w_W", W), z)
            pm.Potential("ridge", -0.5 * pt.sum(b ** 2) / ridge_sd ** 2)
        tau = 1.0 / sigma_rw ** 2
        pm.Potential("smoothness", 0.5 * rank * pt.log(tau) - 0.5 * tau * pt.dot(b, pt.dot(data("P_b", P_b), b)))
        a = pt.dot(data("Q", basis.Q), b)
        af = a if len(keep_idx) == basis.keep.size else pt.set_subtensor(pt.zeros(basis.keep.size)[keep_idx], a)
        # f at the Gauss nodes, log cell masses L_J = log sum_k w_k exp(-f(x_k)) (module docstring)
        if basis.dim == 1:
            eta = -pt.dot(data("node_B0", basis.node_B[0]), af) + data("node_logw0", basis.node_logw[0])
            L = eta if g == 1 else pt.logsumexp(eta.reshape((basis.lik_shape[0], g)), axis=1)
        else:
            C = af.reshape(basis.shape)
            eta = (-pt.dot(pt.dot(data("node_B0", basis.node_B[0]), C), data("node_B1", basis.node_B[1]).T)
                   + data("node_logw0", basis.node_logw[0])[:, None] + data("node_logw1", basis.node_logw[1])[None, :])
            if g > 1:
                nx, ny = basis.lik_shape
                eta = pt.logsumexp(eta.reshape((nx, g, ny, g)), axis=(1, 3))
            L = eta
        La = L.ravel()[act_idx]
        logpi = La - pt.logsumexp(La)
        pm.Potential("histogram", data("n_eff_factor", n_eff_factor) * pt.sum(data("counts", c_act) * logpi))
        if momenta_stats is not None:
            nu, S = momenta_likelihood_params(float(momenta_stats["beta_hat"]), float(momenta_stats["beta_hat_se"]))
            beta_rv = pm.Gamma("beta", alpha=1.0, beta=1e-3)
            pm.Potential("momenta", 0.5 * data("nu", nu) * pt.log(beta_rv) - 0.5 * beta_rv * data("S", S))
        elif beta is None or not beta > 0:
            raise InputError("give momenta_stats or a positive fixed beta")
    return model


@dataclasses.dataclass
class AdaptiveWhitening:
    """b = V [c / (lam + sigma^-2) + (lam + sigma^-2)^-1/2 z]; V^T H_data V = diag(lam), V^T P~ V = I."""

    V: np.ndarray
    lam: np.ndarray
    c: np.ndarray

    def b_of(self, z, sigma):
        """Coefficients b for draws z (S, m-1) and sigma (S,)."""
        prec = self.lam[None, :] + 1.0 / np.asarray(sigma, dtype=float).reshape(-1, 1) ** 2
        return (self.c[None, :] / prec + np.asarray(z) / np.sqrt(prec)) @ self.V.T


def adaptive_whitening(basis: EffectiveBasis, b_map, sigma_map, H_data, ridge_sd: float = 100.0) -> AdaptiveWhitening:
    """Generalised eigenbasis of (H_data, P~) with P~ = P_b + (sigma_map / ridge_sd)^2 I, so that
    H_data + P~ / sigma^2 = V^-T diag(lam + sigma^-2) V^-1 is the (Laplace) posterior precision of b given sigma
    (exact at sigma_map); c = V^T g with g the precision times the MAP, so the centre is the MAP at sigma_map."""
    from scipy.linalg import eigh

    P_b = basis.Q.T @ basis.P @ basis.Q
    Pt = P_b + (sigma_map / ridge_sd) ** 2 * np.eye(P_b.shape[0])
    lam, V = eigh(0.5 * (H_data + H_data.T), Pt)
    lam = np.maximum(lam, 0.0)
    g = (H_data + Pt / sigma_map ** 2) @ b_map
    return AdaptiveWhitening(V=V, lam=lam, c=V.T @ g)


def penalty_rank(P_b) -> int:
    return int(np.linalg.matrix_rank(P_b, tol=1e-9 * np.abs(P_b).max()))


def f_cells(basis: EffectiveBasis, a) -> np.ndarray:
    """f = B a on all fine histogram cells (centres), kept coefficients a (m,) -> (bins,)*d.

    Meaningful on the active region only (removed coefficients are taken as 0)."""
    out = basis.expand(a).reshape(basis.shape)
    for B in basis.Bs:  # contract one coefficient axis at a time; the cell axes rotate to the back
        out = np.tensordot(out, B, axes=([0], [1]))
    return out


def cell_log_mass(basis: EffectiveBasis, a, *, weights: bool = False):
    """L_J = log sum_{k in J} w_k exp(-f(x_k)) on all likelihood cells, kept coefficients a (m,).

    Returns L (cells,)*d and, with ``weights``, the within-cell node weights r_k = w_k exp(-f_k - L_J)
    shaped (cells, quad) in 1D or (cells_x, quad, cells_y, quad) in 2D.
    """
    af = basis.expand(a)
    g = basis.quad
    if basis.dim == 1:
        eta = -(basis.node_B[0] @ af) + basis.node_logw[0]
        eta = eta.reshape(basis.lik_shape[0], g)
        axes = (1,)
    else:
        nx, ny = basis.lik_shape
        eta = -(basis.node_B[0] @ af.reshape(basis.shape) @ basis.node_B[1].T)
        eta = (eta + basis.node_logw[0][:, None] + basis.node_logw[1][None, :]).reshape(nx, g, ny, g)
        axes = (1, 3)
    mx = eta.max(axis=axes, keepdims=True)
    L = np.log(np.exp(eta - mx).sum(axis=axes, keepdims=True)) + mx
    if not weights:
        return L.squeeze(axis=axes)
    return L.squeeze(axis=axes), np.exp(eta - L)


def active_probabilities(basis: EffectiveBasis, a) -> np.ndarray:
    """pi_J over the active cells (flat, sums to one) for kept coefficients a (m,)."""
    La = cell_log_mass(basis, a)[basis.active]
    p = np.exp(La - La.max())
    return p / p.sum()


def _cell_design(basis: EffectiveBasis, R) -> np.ndarray:
    """v_J = sum_{k in J} r_k B(x_k) for the active cells and kept coefficients: (n_active, m).

    With quad = 1 (r = 1) this is the design matrix at the cell centres."""
    g = basis.quad
    if basis.dim == 1:
        nx = basis.lik_shape[0]
        V = np.einsum("xg,xga->xa", R, basis.node_B[0].reshape(nx, g, -1))
    else:
        nx, ny = basis.lik_shape
        Bx = basis.node_B[0].reshape(nx, g, -1)
        By = basis.node_B[1].reshape(ny, g, -1)
        T = np.einsum("xgyh,yhb->xgyb", R, By)
        V = np.einsum("xgyb,xga->xyab", T, Bx).reshape(nx * ny, -1)
    return V[basis.active.ravel()][:, basis.keep]


def _xt(basis: EffectiveBasis, v) -> np.ndarray:
    """X^T v (m_full,) for a likelihood-cell array v (cells,)*d, X the design at the cell centres (quad = 1)."""
    if basis.dim == 1:
        return basis.node_B[0].T @ v
    return (basis.node_B[0].T @ v @ basis.node_B[1]).ravel()


def _xtwx(basis: EffectiveBasis, w) -> np.ndarray:
    """X^T diag(w) X (m_full, m_full) for cell weights w (cells,)*d, by separability in 2D (quad = 1)."""
    if basis.dim == 1:
        X = basis.node_B[0]
        return X.T @ (w[:, None] * X)
    Bx, By = basis.node_B
    t = np.einsum("ia,ic,ij->acj", Bx, Bx, w)
    return np.einsum("acj,jb,jd->abcd", t, By, By).reshape(Bx.shape[1] * By.shape[1], -1)


def map_estimate(basis: EffectiveBasis, counts, n_eff_factor: float = 1.0, *, sigma_rw_scale: float = 1.0,
                 ridge_sd: float = 100.0, newton_steps: int = 60):
    """MAP of (b, sigma_rw) of the model above (the beta part is separate and conjugate).

    counts: the fine histogram (bins,)*d (aggregated onto the likelihood cells here).  Alternates
    Fisher-scoring steps in b with a line search (with quad = 1 the Fisher information is the exact
    Hessian and the conditional log posterior is concave) with the closed-form update of sigma_rw given b
    (a quadratic equation from d/d sigma of the HalfNormal + penalty terms).  Gradient of -log lik in the
    kept coefficients a: V^T (c - N pi), Fisher information N (V^T diag(pi) V - (V^T pi)(V^T pi)^T),
    V = :func:`_cell_design`.  Returns (b, sigma, H, H_data): H is the (Fisher) Hessian of
    -log p(b | sigma, data) at the MAP (Laplace band, NUTS whitening), H_data its likelihood part.
    """
    counts = np.asarray(counts, dtype=float)
    c = basis.active_counts(counts)
    Q = basis.Q
    P_b = Q.T @ basis.P @ Q
    r = penalty_rank(P_b)
    n = c.sum()
    b = np.zeros(Q.shape[1])
    sigma = 0.1
    act = basis.active

    def loglik(b):
        La = cell_log_mass(basis, Q @ b)[act]
        mx = La.max()
        return float(c @ (La - mx) - n * np.log(np.exp(La - mx).sum()))

    def objective(b, sigma):
        return -n_eff_factor * loglik(b) + 0.5 * b @ P_b @ b / sigma ** 2 + 0.5 * b @ b / ridge_sd ** 2

    def data_terms(b):
        L, R = cell_log_mass(basis, Q @ b, weights=True)
        La = L[act]
        pi = np.exp(La - La.max())
        pi /= pi.sum()
        if basis.quad == 1:
            # V is the centre design: use the separable (tensor) products, O(cells m) not O(cells m^2)
            w = np.zeros(L.shape)
            w[act] = pi
            r = np.zeros(L.shape)
            r[act] = c - n * pi
            k = basis.keep
            vp = Q.T @ _xt(basis, w)[k]
            Hd = Q.T @ _xtwx(basis, w)[np.ix_(k, k)] @ Q - np.outer(vp, vp)
            gd = Q.T @ _xt(basis, r)[k]
        else:
            V = _cell_design(basis, R) @ Q
            vp = V.T @ pi
            Hd = V.T @ (pi[:, None] * V) - np.outer(vp, vp)
            gd = V.T @ (c - n * pi)
        Hd = n_eff_factor * n * Hd
        return n_eff_factor * gd, 0.5 * (Hd + Hd.T)

    for _ in range(newton_steps):
        gd, Hd = data_terms(b)
        g = gd + P_b @ b / sigma ** 2 + b / ridge_sd ** 2
        H = Hd + P_b / sigma ** 2 + np.eye(len(b)) / ridge_sd ** 2
        step = np.linalg.solve(H, g)
        f0 = objective(b, sigma)
        t = 1.0
        while objective(b - t * step, sigma) > f0 + 1e-12 * abs(f0) and t > 1e-6:
            t *= 0.5
        b = b - t * step
        # sigma | b: maximise -r log sigma - q / (2 sigma^2) - sigma^2 / (2 s^2)  (tau = sigma^-2)
        qf = float(b @ P_b @ b)
        s2 = sigma_rw_scale ** 2
        # stationarity: sigma^4 / s^2 + r sigma^2 - qf = 0
        new_sigma = math.sqrt((-r + math.sqrt(r * r + 4 * qf / s2)) / (2 / s2)) if qf > 0 else 1e-6
        converged = abs(new_sigma - sigma) < 1e-6 * sigma and t * np.abs(step).max() < 1e-8
        sigma = max(new_sigma, 1e-8)
        if converged:
            break
    _, Hd = data_terms(b)
    H = Hd + P_b / sigma ** 2 + np.eye(len(b)) / ridge_sd ** 2
    return b, sigma, H, Hd


@dataclasses.dataclass
class EffectiveDensity:
    """The posterior of :func:`build_effective_potential_model` (adaptive whitening) as one packed float64
    buffer for the compiled kernel :func:`bayescg.kernels.effective.effective_logp_grad`.

    Unconstrained point x = [z (m-1,), log sigma_rw, log beta (when beta is not fixed)], the same variables
    (and transforms) PyMC uses, so draws map to the same ``z``, ``sigma_rw``, ``beta``.  ``buf``: the data
    (layout in :mod:`bayescg.kernels.effective`); ``init_centre`` (x,) is where chains start (jittered).
    """

    buf: np.ndarray
    init_centre: np.ndarray
    init_scale: np.ndarray
    fixed_beta: float | None

    @property
    def n_dim(self) -> int:
        return len(self.init_centre)

    @property
    def n_z(self) -> int:
        return int(self.buf[1])

    #: name of the stored coefficient draws and the kernel's functions in bayescg.kernels.effective
    coef_name = "z"
    kernel = ("effective_logp_grad", "effective_logp_cfunc", "effective_expand_cfunc")

    @property
    def names(self) -> list:
        return [self.coef_name, "sigma_rw"] + ([] if self.fixed_beta is not None else ["beta"])

    def logp_grad(self, x):
        """(log p(x) up to a constant, gradient (n_dim,)), through the logp callback (one compiled kernel)."""
        from ..kernels import effective as k
        from ..sampling import cfunc_logp_grad

        return cfunc_logp_grad(getattr(k, self.kernel[1]), self.buf, x, self.n_dim)

    def initial_point(self, seed) -> np.ndarray:
        """init_centre + uniform(-1, 1) init_scale jitter (as PyMC/nutpie jitter the initial point)."""
        rng = np.random.default_rng(seed)
        return self.init_centre + self.init_scale * rng.uniform(-1.0, 1.0, self.n_dim)

    def callbacks(self):
        """The cached C callbacks of :mod:`bayescg.kernels.effective` with ``buf`` as user data, for
        :func:`bayescg.sampling.sample` (nothing compiled per run, no Python call per gradient)."""
        from ..kernels import effective as k
        from ..sampling import CompiledDensity

        shapes = {self.coef_name: (self.n_z,), **{name: () for name in self.names[1:]}}
        return CompiledDensity(getattr(k, self.kernel[1]), getattr(k, self.kernel[2]), self.buf, shapes,
                               self.initial_point, self.n_dim)


def _sparse_rows(B, k: int):
    """Column indices (rows, k) and values (rows, k) of the (at most k) non-zeros of each row of B."""
    idx = np.sort(np.argsort(-np.abs(B), axis=1, kind="stable")[:, :k], axis=1)
    return idx, np.take_along_axis(B, idx, axis=1)


def _density_inputs(counts, basis: EffectiveBasis, n_eff_factor: float, momenta_stats, beta):
    """Checked inputs shared by the dense and sparse densities: (active counts, nu, S, fixed beta or None)."""
    counts = np.asarray(counts, dtype=float)
    if not 0 < n_eff_factor <= 1:
        raise InputError(f"n_eff_factor must be in (0, 1], got {n_eff_factor}")
    c_act = basis.active_counts(counts)
    if c_act.sum() < counts.sum():
        raise InputError("some counts lie outside the active region of the likelihood grid")
    if momenta_stats is not None:
        nu, S = momenta_likelihood_params(float(momenta_stats["beta_hat"]), float(momenta_stats["beta_hat_se"]))
        fixed = None
    elif beta is None or not beta > 0:
        raise InputError("give momenta_stats or a positive fixed beta")
    else:
        nu, S, fixed = 0.0, 0.0, float(beta)
    return c_act, nu, S, fixed


def _pack(parts) -> np.ndarray:
    """One contiguous float64 buffer of ``parts`` (raveled); entry 0 holds its length."""
    buf = np.ascontiguousarray(np.concatenate([np.asarray(p, dtype=float).ravel() for p in parts]))
    buf[0] = len(buf)
    return buf


def effective_density(counts, basis: EffectiveBasis, whitening: AdaptiveWhitening, *, momenta_stats=None,
                      n_eff_factor: float = 1.0, beta: float | None = None, sigma_rw_scale: float = 1.0,
                      ridge_sd: float = 100.0, sigma_init: float = 0.1) -> EffectiveDensity:
    """The arrays of :class:`EffectiveDensity` for ``counts`` (bins,)*d on ``basis`` (same model and
    arguments as :func:`build_effective_potential_model` with an :class:`AdaptiveWhitening`); sigma_init:
    centre of the starting points of sigma_rw (e.g. its MAP)."""
    c_act, nu, S, fixed = _density_inputs(counts, basis, n_eff_factor, momenta_stats, beta)
    P_b = basis.Q.T @ basis.P @ basis.Q
    V = whitening.V
    M = np.ascontiguousarray(basis.Q @ V)
    G1 = np.ascontiguousarray(V.T @ V)
    G2 = np.ascontiguousarray(V.T @ P_b @ V)
    node_idx, node_val, logw = basis.nodes
    g = basis.quad
    n = V.shape[1]
    head = [0.0, n, M.shape[0], len(c_act), node_idx.shape[1], g ** basis.dim, node_idx.shape[0], n_eff_factor,
            penalty_rank(P_b), sigma_rw_scale, ridge_sd, nu, S]
    parts = [np.asarray(head, dtype=float), M, G1, G2, whitening.lam, whitening.c, node_idx, node_val, logw, c_act]
    buf = _pack(parts)
    centre = np.zeros(n + 1 + (fixed is None))
    scale = np.ones_like(centre)
    centre[n] = math.log(sigma_init)
    if fixed is None:
        centre[n + 1] = math.log(nu / S)                  # beta_hat; its posterior sd in log is ~ sqrt(2 / nu)
        scale[n + 1] = min(1.0, math.sqrt(2.0 / nu))
    return EffectiveDensity(buf=buf, init_centre=centre, init_scale=scale, fixed_beta=fixed)


def _active_nodes(basis: EffectiveBasis):
    """(idx, val, logw) of :attr:`EffectiveBasis.nodes`: the Gauss nodes of the active cells with their K =
    (degree + 1)^d non-zero tensor basis values (kept-coefficient indices) and log quadrature weights."""
    kmap = np.cumsum(basis.keep) - 1
    g, K1, d = basis.quad, basis.degree + 1, basis.dim
    sp = [_sparse_rows(B, K1) for B in basis.node_B]
    act = np.argwhere(basis.active)                      # (n_active, d), C order like active_counts
    q = np.arange(g)
    # node (cell J, local multi-index (q_1..q_d)) -> per-dimension node rows act[J, i] * g + q_i
    loc = np.stack(np.meshgrid(*([q] * d), indexing="ij"), axis=-1).reshape(-1, d)   # (g^d, d)
    rows = (act[:, None, :] * g + loc[None, :, :]).reshape(-1, d)                       # (nodes, d)
    full = np.zeros((len(rows), 1), dtype=np.int64)
    val = np.ones((len(rows), 1))
    logw = np.zeros(len(rows))
    for i in range(d):
        ii, vv = sp[i][0][rows[:, i]], sp[i][1][rows[:, i]]
        full = (full[:, :, None] * basis.shape[i] + ii[:, None, :]).reshape(len(rows), -1)
        val = (val[:, :, None] * vv[:, None, :]).reshape(len(rows), -1)
        logw = logw + basis.node_logw[i][rows[:, i]]
    kept = basis.keep[full]
    if np.any(np.abs(val[~kept]) > 0):
        raise AssertionError("a removed coefficient is non-zero on an active cell")  # effective_basis invariant
    return (np.ascontiguousarray(np.where(kept, kmap[full], 0), dtype=np.int64),
            np.ascontiguousarray(np.where(kept, val, 0.0)), np.ascontiguousarray(logw))


# --------------------------------------------------------------------------------------------------
# sparse form (d >= 2): the same posterior of f in the kept coefficients a, every product sparse
# --------------------------------------------------------------------------------------------------
# The multinomial of the active-cell counts is the Poisson likelihood  sum_J c_J L_J - exp(L_J)  with a free
# constant integrated out under a flat prior (on R the kept basis sums to one, so a -> a + c 1 shifts every L_J
# by -c, and the Poisson total factorises out).  So sampling a (m,) with that Poisson term, the P-spline
# prior on a and the ridge on the centred a, a - mean(a) = Q b, gives the dense form's posterior of b exactly,
# times an independent law of the constant, which U never sees (every draw of U is aligned).  The Poisson
# Fisher information nf V^T diag(mu) V has the sparsity of the basis overlaps (no rank-one normaliser term),
# so the MAP takes sparse Newton steps and NUTS runs on z with a = a_w + P^T L^-T z, L L^T the permuted
# sparse Cholesky factor of the Laplace precision at (a_w, sigma_w).  sigma_w is the Laplace-marginal mode of
# sigma_rw (map_estimate_sparse(marginal_sigma=True)), a_w the conditional mode there: the joint mode shrinks
# sigma_rw (2D test4, 2e6 steps: 0.19 vs posterior mean 0.47), and whitening there left z with variances of
# 1.3-8 and means up to 5 sd off; at sigma_w the whitening is a fixed linear map (sigma_rw's posterior sd is
# ~6 %, so the remaining funnel is small; measured in benchmarks/RESULTS_D3.md).


def _node_entries(basis: EffectiveBasis, a):
    """(L (n_active,), entries (nodes * K,)): active-cell log masses for kept coefficients a and the node design's
    entries r_k B_j(x_k), r_k = w_k exp(-f_k - L_J), at (cell of node k, idx[k, j]), flat in the nodes' order."""
    eta, L = _node_masses(basis, a)
    r = np.exp(eta - np.repeat(L, basis.quad ** basis.dim))
    return L, (r[:, None] * basis.nodes[1]).ravel()


def node_cell_design(basis: EffectiveBasis, a):
    """(L (n_active,), V sparse (n_active, m)): active-cell log masses for kept coefficients a and the
    cell design v_J = sum_{k in J} r_k B(x_k), r_k = w_k exp(-f_k - L_J) (so dL_J / da = -v_J)."""
    from scipy import sparse

    idx = basis.nodes[0]
    L, ent = _node_entries(basis, a)
    rows = np.repeat(np.arange(L.size), (basis.quad ** basis.dim) * idx.shape[1])
    return L, sparse.csr_matrix((ent, (rows, idx.ravel())), shape=(L.size, basis.n_coef))


def _csr_pattern(keys, m, rows):
    """(indices, indptr) of the CSR pattern whose non-zeros are the sorted unique keys row * m + column."""
    return keys % m, np.concatenate([[0], np.cumsum(np.bincount(keys // m, minlength=rows))]).astype(np.int64)


class _NewtonPattern:
    """The fixed sparsity of the sparse MAP's Newton terms on one basis: V's CSR pattern (rows: the active cells)
    with each node entry's slot in its data, and H's (V^T V + P + I: symmetric, so its CSR arrays are its CSC
    ones) with the slots of every cell's products, of P's entries and of the diagonal.  Building V through
    scipy's COO -> CSR and H as V^T diag(mu) V plus two sparse sums and a symmetrisation took 35 ms per Newton step
    of the 2D test4 fit, this 7 ms (benchmarks/RESULTS_FIT2D.md); the same products, the same non-zeros."""

    def __init__(self, basis: EffectiveBasis, P):
        from scipy import sparse

        from ..kernels.effective import gram_pairs

        idx, val, _ = basis.nodes
        g = basis.quad ** basis.dim
        m = self.m = basis.n_coef
        n_act = idx.shape[0] // g
        self.shape_v = (n_act, m)
        rows = np.repeat(np.arange(n_act, dtype=np.int64), g * idx.shape[1])
        # the node design's structural zeros (removed coefficients) stay out of both patterns, as scipy's sums drop
        # them: the same non-zeros, so sparse_cholesky orders H, and the Laplace draws fall, as before
        nz = val.ravel() != 0
        ukey, inv = np.unique((rows * m + idx.ravel())[nz], return_inverse=True)
        self.v_slot = np.full(nz.size, ukey.size, dtype=np.int64)  # zeros go to one extra bin, dropped
        self.v_slot[nz] = inv
        self.v_indices, self.v_indptr = _csr_pattern(ukey, m, n_act)
        n_row = np.diff(self.v_indptr)
        gk = np.empty(int(np.sum(n_row * n_row)), dtype=np.int64)
        gram_pairs(self.v_indptr, self.v_indices, m, gk)
        Pc = sparse.coo_matrix(P)
        Pc.sum_duplicates()
        dk = np.arange(m, dtype=np.int64) * (m + 1)
        hkey, inv = np.unique(np.concatenate([gk, Pc.row.astype(np.int64) * m + Pc.col, dk]), return_inverse=True)
        self.h_indices, self.h_indptr = _csr_pattern(hkey, m, m)
        self.gram_slot = inv[:gk.size]
        self.p_slot, self.p_val = inv[gk.size:gk.size + Pc.nnz], Pc.data
        self.d_slot = inv[gk.size + Pc.nnz:]

    def V(self, entries):
        """The cell design V (n_active, m) CSR from :func:`_node_entries`' entries (duplicates summed)."""
        from scipy import sparse

        data = np.bincount(self.v_slot, weights=entries, minlength=self.v_indices.size + 1)[:-1]
        return sparse.csr_matrix((data, self.v_indices, self.v_indptr), shape=self.shape_v)

    def H(self, V, mu, nf, sigma, ridge_sd):
        """nf V^T diag(mu) V + P / sigma^2 + I / ridge_sd^2 (m, m), CSC."""
        from scipy import sparse

        from ..kernels.effective import gram_accumulate

        data = np.zeros(self.h_indices.size)
        gram_accumulate(self.v_indptr, V.data, mu, self.gram_slot, data)
        data *= nf
        data[self.p_slot] += self.p_val / sigma ** 2
        data[self.d_slot] += 1.0 / ridge_sd ** 2
        return sparse.csc_matrix((data, self.h_indices, self.h_indptr), shape=(self.m, self.m))


def _node_masses(basis: EffectiveBasis, a):
    """(eta (nodes,), L (n_active,)): the nodes' log weights logw - f and the active cells' log masses for kept
    coefficients a (m,), from the sparse node design (kernels.effective.node_log_mass)."""
    from ..kernels.effective import node_log_mass

    idx, val, logw = basis.nodes
    g = basis.quad ** basis.dim
    eta, L = np.empty(len(logw)), np.empty(len(logw) // g)
    node_log_mass(np.ascontiguousarray(a, dtype=float), idx, val, logw, g, eta, L)
    return eta, L


def _node_log_mass(basis: EffectiveBasis, a) -> np.ndarray:
    """L_J of the active cells (flat) for kept coefficients a (m,), from the sparse node design."""
    return _node_masses(basis, a)[1]


def active_log_probabilities(basis: EffectiveBasis, a) -> np.ndarray:
    """log pi_J over the active cells (flat) for kept coefficients a (m,), from the sparse node design."""
    from ..kernels.effective import log_normalise

    L = _node_log_mass(basis, a)
    log_normalise(L)
    return L


@dataclasses.dataclass
class SparseCholesky:
    """H[perm][:, perm] = L L^T (L lower triangular, CSC, diagonal first in each column) of a sparse SPD H (m, m);
    ``lu``: the factorisation (solves with H)."""

    perm: np.ndarray
    L: Any
    lu: Any

    def solve(self, rhs) -> np.ndarray:
        """H^-1 rhs, rhs (m,) or (m, k)."""
        return self.lu.solve(np.asarray(rhs, dtype=float))

    def draws(self, centre, z) -> np.ndarray:
        """centre + P^T L^-T z for z (S, m): Gaussian draws with precision H when z is standard normal."""
        from ..kernels.effective import solve_lt

        z = np.atleast_2d(np.asarray(z, dtype=float))
        out = np.empty_like(z)
        x = np.empty(z.shape[1])
        Lp, Li, Lx = (np.asarray(v, dtype=float) for v in (self.L.indptr, self.L.indices, self.L.data))
        for s in range(z.shape[0]):
            solve_lt(Lp, Li, Lx, np.ascontiguousarray(z[s]), x)
            out[s, self.perm] = x
        return np.asarray(centre, dtype=float)[None, :] + out


def spd_lu(H):
    """SuperLU of a sparse SPD matrix H (m, m) as a symmetric factorisation: minimum-degree ordering of H + H^T, no
    pivoting (H[perm][:, perm] = L D L^T).  The 2D effective fit's Laplace precision (m = 671, 41087 non-zeros)
    factorises in 9 ms this way against 34 ms with SuperLU's default column ordering and partial pivoting
    (benchmarks/RESULTS_FIT2D.md); the solutions agree to round-off."""
    from scipy import sparse
    from scipy.sparse.linalg import splu

    return splu(sparse.csc_matrix(H), permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0,
                options={"SymmetricMode": True})


def sparse_cholesky(H) -> SparseCholesky:
    """Fill-reducing sparse Cholesky of an SPD matrix (:func:`spd_lu`; L D^1/2 is the Cholesky factor)."""
    from scipy import sparse

    lu = spd_lu(H)
    dg = lu.U.diagonal()
    if not (np.array_equal(lu.perm_r, lu.perm_c) and np.all(dg > 0)):
        raise InputError("the Laplace precision of the spline coefficients is not positive definite")
    L = sparse.csc_matrix(lu.L @ sparse.diags(np.sqrt(dg)))
    L.sort_indices()
    return SparseCholesky(perm=np.argsort(lu.perm_c), L=L, lu=lu)


def sparse_penalty_rank(P) -> int:
    """Rank of the (kept) difference penalty (dense symmetric eigenvalues; its null space holds the constants)."""
    ev = np.linalg.eigvalsh(np.asarray(P, dtype=float))
    return int(np.sum(ev > 1e-9 * max(ev.max(), 1e-300)))


def map_estimate_sparse(basis: EffectiveBasis, counts, n_eff_factor: float = 1.0, *, sigma_rw_scale: float = 1.0,
                        ridge_sd: float = 100.0, newton_steps: int = 60, marginal_sigma: bool = False, start=None):
    """MAP of (a, sigma_rw) of the sparse form (section comment above): Fisher-scoring steps in a with sparse
    solves and a line search, alternated with the closed-form sigma_rw | a of :func:`map_estimate`.

    marginal_sigma: instead of the joint mode, sigma_rw maximises its Laplace-marginal posterior (a integrated
    out): the EM update replaces a^T P a by its expectation a^T P a + tr(P H^-1) under N(a, H^-1); a is then
    the conditional mode at that sigma.  The joint mode shrinks sigma_rw (2D test4 at 2e6 steps: 0.19 joint,
    0.47 marginal = the NUTS posterior mean), so this is the centre and scale NUTS is whitened with.
    start: (a, sigma) to start from (e.g. the joint MAP).
    Returns (a (m,), sigma, H, rank): H (m, m) sparse Laplace precision at the MAP (Poisson Fisher information
    + P / sigma^2 + I / ridge^2; the ridge on the constant direction stands in for its Poisson-pinned law),
    rank the penalty rank."""
    from scipy import sparse

    c = basis.active_counts(np.asarray(counts, dtype=float))
    nf = float(n_eff_factor)
    P = sparse.csr_matrix(basis.P)
    r = sparse_penalty_rank(basis.P)
    m = basis.n_coef
    if start is None:
        L0 = _node_log_mass(basis, np.zeros(m))
        a = np.full(m, math.log(np.exp(L0).sum() / c.sum()))   # the constant that matches the Poisson total
        sigma = 0.1
    else:
        a, sigma = np.array(start[0], dtype=float), float(start[1])
    pat = _NewtonPattern(basis, P)

    def objective(a, sigma):
        L = _node_log_mass(basis, a)
        ac = a - a.mean()
        return -nf * float(c @ L - np.exp(L).sum()) + 0.5 * float(a @ (P @ a)) / sigma ** 2 + 0.5 * float(ac @ ac) / ridge_sd ** 2

    def terms(a, sigma):
        L, ent = _node_entries(basis, a)
        V = pat.V(ent)
        mu = np.exp(L)
        g = nf * (V.T @ (c - mu)) + (P @ a) / sigma ** 2 + (a - a.mean()) / ridge_sd ** 2
        return g, pat.H(V, mu, nf, sigma, ridge_sd)

    s2 = sigma_rw_scale ** 2

    def sigma_given(qf):
        # sigma | a: maximise -r log sigma - q / (2 sigma^2) - sigma^2 / (2 s^2): sigma^4 / s^2 + r sigma^2 = q
        return max(math.sqrt((-r + math.sqrt(r * r + 4 * qf / s2)) / (2 / s2)) if qf > 0 else 1e-6, 1e-8)

    def newton(a, sigma, joint, steps=newton_steps):
        """Fisher-scoring steps in a (with the closed-form sigma | a after each when ``joint``)."""
        tail = []  # joint: sigma after each of the latest full, small a-steps
        for _ in range(steps):
            g, H = terms(a, sigma)
            step = spd_lu(H).solve(g)
            f0 = objective(a, sigma)
            t = 1.0
            while objective(a - t * step, sigma) > f0 + 1e-12 * abs(f0) and t > 1e-6:
                t *= 0.5
            a = a - t * step
            new_sigma = sigma_given(float(a @ (P @ a))) if joint else sigma
            if joint:
                # a-step, then sigma | a: the alternation converges only linearly (sigma's error x ~0.48 per step on
                # 2D test4, 22 of 32 steps), so once the a-steps are full and small, Aitken's delta^2 on three
                # successive sigmas jumps to the limit (the same fixed point; a then follows in a Newton step or two)
                tail = tail + [new_sigma] if t == 1.0 and np.abs(step).max() < 0.1 else []
                if len(tail) == 3:
                    d1, d2 = tail[1] - tail[0], tail[2] - tail[1]
                    if d2 != d1 and 0.0 < d2 / d1 < 0.9:  # a contraction: the extrapolation is defined and safe
                        new_sigma = tail[2] - d2 * d2 / (d2 - d1)
                    tail = []
            converged = abs(new_sigma - sigma) < 1e-6 * sigma and t * np.abs(step).max() < 1e-8
            sigma = new_sigma
            if converged:
                break
        return a, sigma

    a, sigma = newton(a, sigma, True)
    if marginal_sigma:
        # EM fixed point log sigma = log sigma_given(a_s^T P a_s + tr(P H_s^-1)) (a_s, H_s: conditional mode and
        # Laplace precision at sigma) by secant steps on log sigma (plain EM iterations converge slowly)
        def gap(ls):
            nonlocal a
            a, _ = newton(a, math.exp(ls), False, steps=3)   # warm start: a follows as the secant converges
            _, H = terms(a, math.exp(ls))
            return math.log(sigma_given(float(a @ (P @ a)) + trace_p_hinv(P, H))) - ls

        x0 = math.log(sigma)
        g0 = gap(x0)
        x1 = x0 + g0
        for _ in range(30):
            g1 = gap(x1)
            if abs(g1) < 1e-5:
                break
            x0, x1, g0 = x1, (x1 - g1 * (x1 - x0) / (g1 - g0) if g1 != g0 else x1 + g1), g1
        sigma = math.exp(x1)
        a, _ = newton(a, sigma, False)
    _, H = terms(a, sigma)
    return a, sigma, H, r


def trace_p_hinv(P, H, exact_up_to: int = 1000, probes: int = 64) -> float:
    """tr(P H^-1) = tr(H^-1 P) for sparse P and SPD H (m, m): one sparse LU of H and m right-hand sides (no
    multithreaded dense BLAS: on the shared machine OpenBLAS's two spinning threads cost up to 70x the CPU); for
    m > exact_up_to Hutchinson's estimate with ``probes`` fixed Rademacher vectors (a smooth function of H, so the
    secant on sigma still converges; it only sets the whitening, which does not change the sampled posterior)."""
    lu = spd_lu(H)
    m = H.shape[0]
    if m <= exact_up_to:
        return float(np.trace(lu.solve(P.toarray())))
    Z = np.random.default_rng(0).choice([-1.0, 1.0], size=(m, probes))
    return float(np.einsum("ij,ij->", Z, lu.solve(np.asarray(P @ Z))) / probes)


@dataclasses.dataclass
class SparseDensity(EffectiveDensity):
    """The sparse form's posterior as one packed buffer for :func:`bayescg.kernels.effective.sparse_logp_grad`.

    Unconstrained point x = [z (m,), log sigma_rw, (log beta)]; nutpie stores the expanded draws
    [a (m,), sigma_rw, (beta)] (a: kept spline coefficients of f = beta U)."""

    coef_name = "a"
    kernel = ("sparse_logp_grad", "sparse_logp_cfunc", "sparse_expand_cfunc")


def _per_cell_nodes(idx, val, g: int):
    """The node design by cell: (cptr (n_act + 1,), cidx (nnzC,), cval (g nnzC,)): cell J's coefficients
    cidx[cptr[J]:cptr[J+1]] (the union of its nodes' non-zero columns) and its (g, n_J) block of basis values,
    row-major, at cval[g cptr[J]:g cptr[J+1]]."""
    K = idx.shape[1]
    I = idx.reshape(-1, g, K)
    V = val.reshape(-1, g, K)
    cptr = [0]
    cidx = []
    cval = []
    for J in range(I.shape[0]):
        nz = V[J] != 0
        cols = np.unique(I[J][nz])
        block = np.zeros((g, len(cols)))
        q, j = np.nonzero(nz)
        block[q, np.searchsorted(cols, I[J][nz])] = V[J][nz]
        cptr.append(cptr[-1] + len(cols))
        cidx.append(cols)
        cval.append(block.ravel())
    return np.asarray(cptr, dtype=float), np.concatenate(cidx), np.concatenate(cval)


def _blocks_1d(B, g: int):
    """Per likelihood cell of one dimension (B: (cells g, m_i) basis at its Gauss nodes): (start (cells,), width
    (cells,), values (cells, g, W)) with the cell's non-zero columns start .. start + width - 1 (contiguous for a
    B-spline basis: 4 for a cubic inside one knot interval, 5 across a knot), zero-padded to the widest W."""
    nc = B.shape[0] // g
    nz = (B != 0).reshape(nc, g, -1).any(axis=1)
    start = nz.argmax(axis=1)
    width = B.shape[1] - nz[:, ::-1].argmax(axis=1) - start
    W = int(width.max())
    val = np.zeros((nc, g, W))
    for c in range(nc):
        val[c, :, :width[c]] = B[c * g:(c + 1) * g, start[c]:start[c] + width[c]]
    return start.astype(np.int64), width.astype(np.int64), val


def _tensor_blocks(basis: EffectiveBasis) -> tuple:
    """The tensor layout of the active cells' node design (d = 2): (kfull, xs0, xw, ys0, yw, cx, cy, xv, yv, lwx, lwy,
    my, g1, W, m_full) as :func:`bayescg.kernels.effective._tensor_arrays` names them (xv, yv flat)."""
    g1 = basis.quad
    xs0, xw, xv = _blocks_1d(basis.node_B[0], g1)
    ys0, yw, yv = _blocks_1d(basis.node_B[1], g1)
    W = max(xv.shape[2], yv.shape[2])
    if g1 == 3 and W in (4, 5):   # the kernel's unrolled path for the 2D default (3 x 3 nodes, cubic blocks)
        W = 5
    xv = np.pad(xv, ((0, 0), (0, 0), (0, W - xv.shape[2])))
    yv = np.pad(yv, ((0, 0), (0, 0), (0, W - yv.shape[2])))
    act = np.argwhere(basis.active)                       # (n_act, 2), C order like active_counts
    my = basis.shape[1]
    # every coefficient of an active cell's block is kept (each block column is non-zero at some node there)
    ii = (xs0[act[:, 0]][:, None, None] + np.arange(W)[None, :, None]) * my + ys0[act[:, 1]][:, None, None] \
        + np.arange(W)[None, None, :]
    inside = (np.arange(W)[None, :, None] < xw[act[:, 0]][:, None, None]) & \
        (np.arange(W)[None, None, :] < yw[act[:, 1]][:, None, None])
    if not basis.keep[ii[inside]].all():
        raise AssertionError("a removed coefficient is non-zero on an active cell")   # effective_basis invariant
    return (np.flatnonzero(basis.keep).astype(np.int64), xs0, xw, ys0, yw, act[:, 0].astype(np.int64),
            act[:, 1].astype(np.int64), np.ascontiguousarray(xv.ravel()), np.ascontiguousarray(yv.ravel()),
            np.ascontiguousarray(basis.node_logw[0], dtype=float),
            np.ascontiguousarray(basis.node_logw[1], dtype=float),
            my, g1, W, basis.keep.size)


def tensor_blocks_33(basis: EffectiveBasis):
    """:func:`_tensor_blocks` when the tensor kernels' fast path applies (d = 2, 3 x 3 Gauss nodes, 1D blocks of
    width <= 5: cubic splines, the 2D default), else None."""
    if basis.dim != 2 or basis.quad != 3:
        return None
    tb = _tensor_blocks(basis)
    return tb if tb[13] == 5 else None


def _tensor_section(basis: EffectiveBasis, L):
    """The tensor section of the packed buffer (d = 2; layout in :func:`bayescg.kernels.effective._tensor_arrays`):
    a float header, the int64 arrays stored bit for bit as float64, then the float arrays."""
    from scipy import sparse

    kfull, xs0, xw, ys0, yw, cx, cy, xv, yv, lwx, lwy, my, g1, W, mf = _tensor_blocks(basis)
    R = sparse.csr_matrix(L)
    R.sort_indices()
    C = sparse.csc_matrix(L)
    C.sort_indices()
    ints = np.concatenate([kfull, xs0, xw, ys0, yw, cx, cy, C.indptr, C.indices, R.indptr, R.indices]).astype(np.int64)
    head = np.array([my, len(xw), len(yw), g1, W, mf], dtype=float)
    return [head, ints.view(np.float64), xv, yv, lwx, lwy, R.data]


def sparse_density(counts, basis: EffectiveBasis, a_map, chol: SparseCholesky, rank: int, *, momenta_stats=None,
                   n_eff_factor: float = 1.0, beta: float | None = None, sigma_rw_scale: float = 1.0,
                   ridge_sd: float = 100.0, sigma_init: float = 0.1, layout: str | None = None) -> SparseDensity:
    """:class:`SparseDensity` for ``counts`` (bins,)*d on ``basis`` whitened by ``chol`` at ``a_map``.

    layout: how the kernel reads the node design: "tensor" (d = 2 only, the default there: per cell the outer
    product of two 1D blocks, the Cholesky factor also stored by rows), "cell" (the default for d = 3: per cell a
    dense block over the union of its nodes' coefficients) or "node" (node by node); the same density."""
    from scipy import sparse

    c_act, nu, S, fixed = _density_inputs(counts, basis, n_eff_factor, momenta_stats, beta)
    idx, val, logw = basis.nodes
    m = basis.n_coef
    P = sparse.csr_matrix(basis.P)
    P.sort_indices()
    L = chol.L
    g = basis.quad ** basis.dim
    head = [0.0, m, len(c_act), idx.shape[1], g, len(logw), n_eff_factor, rank,
            sigma_rw_scale, ridge_sd, nu, S, L.nnz, P.nnz, 0]
    parts = [np.asarray(head, dtype=float), a_map, chol.perm, L.indptr, L.indices, L.data, P.indptr, P.indices,
             P.data]
    if layout is None:
        layout = "tensor" if basis.dim == 2 else "cell"
    if layout == "tensor":      # the kernel's tensor layout (per_cell = -1): 1D blocks per cell, L also by rows
        head[14] = -1
        parts += [c_act] + _tensor_section(basis, L)
    elif layout == "cell":      # per-cell layout (nnzC = len(cidx) > 0)
        cptr, cidx, cval = _per_cell_nodes(idx, val, g)
        head[14] = len(cidx)
        parts += [cptr, cidx, cval, logw, c_act]
    else:                       # node by node
        parts += [idx, val, logw, c_act]
    parts[0] = np.asarray(head, dtype=float)
    buf = _pack(parts)
    centre = np.zeros(m + 1 + (fixed is None))
    scale = np.ones_like(centre)
    centre[m] = math.log(sigma_init)
    scale[m] = 0.1
    if fixed is None:
        centre[m + 1] = math.log(nu / S)
        scale[m + 1] = min(1.0, math.sqrt(2.0 / nu))
    return SparseDensity(buf=buf, init_centre=centre, init_scale=scale, fixed_beta=fixed)
