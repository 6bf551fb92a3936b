"""Log density and gradient of the effective-potential posterior (bayescg.bayes.effective) for NUTS.

The same density as ``build_effective_potential_model`` with adaptive whitening, on the unconstrained
point x = [z (n,), log sigma_rw, (log beta)] (n = m - 1), up to an additive constant:

    prec = lam + sigma^-2,  u = c / prec + z / sqrt(prec),  b = V u,  a = Q b = M u  (M = Q V),
    log p = h(a) - |b|^2 / (2 ridge^2) - r log sigma - |b|_P^2 / (2 sigma^2) - (1/2) sum log prec
            - sigma^2 / (2 s0^2) + log sigma                          [HalfNormal(s0) + log-Jacobian]
            + (nu/2) log beta - beta S / 2 - 1e-3 beta + log beta     [momenta, Gamma(1, 1e-3), Jacobian]
    h(a) = nf sum_J c_J (L_J - logsumexp_I L_I),  L_J = logsumexp_{k in J} (logw_k - (N a)_k),

with |b|^2 = u^T G1 u (G1 = V^T V) and |b|_P^2 = u^T G2 u (G2 = V^T P_b V).  N is the node design
restricted to the active cells, stored sparse: node k has K non-zero basis values at kept coefficients
(K = 4 in 1D, 16 in 2D for cubic splines), nodes grouped by cell, g per cell, so one evaluation costs
O(nodes K + m n).

All data travel in one packed float64 buffer (layout: :data:`HEADER`, then M (m, n), G1 (n, n), G2 (n, n),
lam, c, node_idx (nodes, K) as floats, node_val (nodes, K), node_logw (nodes,), counts (n_act,)), so the
compiled code does not depend on grid sizes or data and ``cache=True`` compiles it once per machine.
:data:`effective_logp_cfunc` / :data:`effective_expand_cfunc` are the C callbacks nutpie calls directly
(no Python per gradient) with the buffer as ``user_data``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import carray, njit, types
from numba.extending import intrinsic

from .callbacks import EXPAND_SIG, LOGP_SIG, lazy_cfuncs, logp_into, packed
from .jit import inner

HEADER = ("length", "n", "m", "n_act", "K", "g", "nodes", "nf", "rank", "sigma_scale", "ridge_sd", "nu", "S")


@njit(cache=True, nogil=True, inline="always")
def cell_log_mass(buf, o_w, o_val, o_idx, a, K, g, J, eta, e0):
    """log sum_q exp(eta_q) over the g quadrature nodes q of active cell J, with eta_q = w_Jq - sum_j B_Jq,j a_j
    (node weights at buf[o_w:], K design values and column indices per node at buf[o_val:], buf[o_idx:]) written
    into eta[e0 + q]: the cell's log mass under f = the spline with coefficients a (both forms of the density)."""
    mx = -np.inf
    for q in range(g):
        k = J * g + q
        e = buf[o_w + k]
        for j in range(K):
            e -= buf[o_val + k * K + j] * a[int(buf[o_idx + k * K + j])]
        eta[e0 + q] = e
        if e > mx:
            mx = e
    acc = 0.0
    for q in range(g):
        acc += math.exp(eta[e0 + q] - mx)
    return mx + math.log(acc)


@njit(cache=True, nogil=True)
def effective_logp_grad(x, buf, grad):
    """log p(x) (float) with its gradient written into ``grad`` (same shape as x); buf: the packed data
    (module docstring).  nu <= 0 means beta is fixed (x has n + 1 entries)."""
    n, m, n_act, K, g = int(buf[1]), int(buf[2]), int(buf[3]), int(buf[4]), int(buf[5])
    nodes = int(buf[6])
    nf, rank, sigma_scale, ridge_sd, nu, S = buf[7], buf[8], buf[9], buf[10], buf[11], buf[12]
    oM = 13
    oG1 = oM + m * n
    oG2 = oG1 + n * n
    olam = oG2 + n * n
    oc = olam + n
    oidx = oc + n
    oval = oidx + nodes * K
    ow = oval + nodes * K
    ocnt = ow + nodes
    s = x[n]
    isig2 = math.exp(-2.0 * s)
    sigma2 = math.exp(2.0 * s)
    prec = np.empty(n)
    u = np.empty(n)
    for i in range(n):
        prec[i] = buf[olam + i] + isig2
        u[i] = buf[oc + i] / prec[i] + x[i] / math.sqrt(prec[i])
    a = np.zeros(m)
    for r in range(m):
        acc = 0.0
        for i in range(n):
            acc += buf[oM + r * n + i] * u[i]
        a[r] = acc
    # likelihood h(a): cell log masses L_J and within-cell node weights exp(eta_k - L_J)
    eta = np.empty(n_act * g)
    L = np.empty(n_act)
    for J in range(n_act):
        L[J] = cell_log_mass(buf, ow, oval, oidx, a, K, g, J, eta, J * g)
    Lmax = L.max()
    acc = 0.0
    ctot = 0.0
    for J in range(n_act):
        acc += math.exp(L[J] - Lmax)
        ctot += buf[ocnt + J]
    logZ = Lmax + math.log(acc)
    hist = 0.0
    ga = np.zeros(m)
    for J in range(n_act):
        cJ = buf[ocnt + J]
        hist += cJ * (L[J] - logZ)
        wJ = nf * (cJ - ctot * math.exp(L[J] - logZ))
        for q in range(g):
            k = J * g + q
            coef = -wJ * math.exp(eta[k] - L[J])
            for j in range(K):
                ga[int(buf[oidx + k * K + j])] += coef * buf[oval + k * K + j]
    hist *= nf
    # prior terms in u: |b|^2 = u^T G1 u, |b|_P^2 = u^T G2 u; gu = M^T ga + d(prior)/du
    gu = np.zeros(n)
    for r in range(m):
        for i in range(n):
            gu[i] += buf[oM + r * n + i] * ga[r]
    bb = 0.0
    bPb = 0.0
    for i in range(n):
        g1 = 0.0
        g2 = 0.0
        for j in range(n):
            g1 += buf[oG1 + i * n + j] * u[j]
            g2 += buf[oG2 + i * n + j] * u[j]
        bb += u[i] * g1
        bPb += u[i] * g2
        gu[i] -= g1 / ridge_sd ** 2 + isig2 * g2
    logp = hist - 0.5 * bb / ridge_sd ** 2 - rank * s - 0.5 * isig2 * bPb - 0.5 * sigma2 / sigma_scale ** 2 + s
    gs = 0.0
    for i in range(n):
        logp -= 0.5 * math.log(prec[i])
        grad[i] = gu[i] / math.sqrt(prec[i])
        # du/ds through prec = lam + exp(-2 s), and the Jacobian term -1/2 log prec
        gs += gu[i] * (buf[oc + i] / prec[i] ** 2 + 0.5 * x[i] / prec[i] ** 1.5) * 2.0 * isig2 + isig2 / prec[i]
    grad[n] = gs - rank + isig2 * bPb - sigma2 / sigma_scale ** 2 + 1.0
    if nu > 0:
        lb = x[n + 1]
        beta = math.exp(lb)
        logp += 0.5 * nu * lb - 0.5 * beta * S - 1e-3 * beta + lb
        grad[n + 1] = 0.5 * nu - 0.5 * beta * S - 1e-3 * beta + 1.0
    return logp


def n_dim_of(buf) -> int:
    """Length of the unconstrained point for a packed buffer."""
    return int(buf[1]) + 1 + (buf[11] > 0)


# nutpie's C callbacks (bayescg.kernels.callbacks), made on first use by __getattr__ below
def _effective_logp_cfunc(dim, x_, out_, logp_, user_data):
    buf = packed(user_data)
    if dim != int(buf[1]) + 1 + (buf[11] > 0):
        return -1
    return logp_into(effective_logp_grad, buf, dim, x_, out_, logp_)


def _effective_expand_cfunc(dim, expanded, x_, out_, user_data):
    """Draw -> stored values [z, sigma_rw, (beta)]: the log-transformed entries exponentiated."""
    buf = carray(user_data, (2,), np.float64)
    n = int(buf[1])
    if expanded != dim:
        return -1
    x = carray(x_, (dim,))
    out = carray(out_, (dim,))
    for i in range(n):
        out[i] = x[i]
    for i in range(n, dim):
        out[i] = math.exp(x[i])
    return 0


# --------------------------------------------------------------------------------------------------
# sparse form (d >= 2): Poisson likelihood with a free constant, Cholesky whitening, cost linear in the cells
# --------------------------------------------------------------------------------------------------
SPARSE_HEADER = ("length", "m", "n_act", "K", "g", "nodes", "nf", "rank", "sigma_scale", "ridge_sd", "nu", "S",
                 "nnzL", "nnzP", "per_cell")


@njit(cache=True, nogil=True)
def sparse_offsets(buf):
    m, nodes, K = int(buf[1]), int(buf[5]), int(buf[3])
    nnzL, nnzP = int(buf[12]), int(buf[13])
    nnzC = int(buf[14])   # > 0: per-cell layout (kernel below), nnzC coefficient indices over all cells;
    #                       -1: tensor layout (d = 2, _tensor_likelihood)
    o_a0 = 15
    o_perm = o_a0 + m
    o_Lp = o_perm + m
    o_Li = o_Lp + m + 1
    o_Lx = o_Li + nnzL
    o_Pp = o_Lx + nnzL
    o_Pi = o_Pp + m + 1
    o_Px = o_Pi + nnzP
    o_idx = o_Px + nnzP
    if nnzC < 0:
        # tensor layout (d = 2): the counts right after P, then the tensor section (_tensor_arrays) at o_val = o_w
        return o_a0, o_perm, o_Lp, o_Li, o_Lx, o_Pp, o_Pi, o_Px, o_idx, o_idx + int(buf[2]), o_idx + int(buf[2]), o_idx
    if nnzC > 0:
        o_val = o_idx + int(buf[2]) + 1 + nnzC
        o_w = o_val + int(buf[4]) * nnzC
    else:
        o_val = o_idx + nodes * K
        o_w = o_val + nodes * K
    o_cnt = o_w + nodes
    return o_a0, o_perm, o_Lp, o_Li, o_Lx, o_Pp, o_Pi, o_Px, o_idx, o_val, o_w, o_cnt


@njit(cache=True, nogil=True)
def solve_lt(Lp, Li, Lx, z, x):
    """x = L^-T z for a lower-triangular L in CSC form (Lp, Li, Lx; each column's diagonal first)."""
    m = len(z)
    for i in range(m - 1, -1, -1):
        s = z[i]
        k0 = int(Lp[i])
        for k in range(k0 + 1, int(Lp[i + 1])):
            s -= Lx[k] * x[int(Li[k])]
        x[i] = s / Lx[k0]


@inner(cache=True, nogil=True)
def solve_l(Lp, Li, Lx, g, y):
    """y = L^-1 g for a lower-triangular L in CSC form (diagonal first in each column)."""
    m = len(g)
    for i in range(m):
        y[i] = g[i]
    for j in range(m):
        k0 = int(Lp[j])
        y[j] /= Lx[k0]
        for k in range(k0 + 1, int(Lp[j + 1])):
            y[int(Li[k])] -= Lx[k] * y[j]


@njit(cache=True, nogil=True)
def gram_pairs(indptr, cols, m, keys):
    """keys (sum_J n_J^2,) <- a * m + b for every ordered pair (a, b) of the columns of each row J of a CSR pattern
    (indptr (rows + 1,), cols), rows in order, a-major within a row: where the row's products land in V^T V."""
    t = 0
    for J in range(indptr.size - 1):
        for i in range(indptr[J], indptr[J + 1]):
            for j in range(indptr[J], indptr[J + 1]):
                keys[t] = cols[i] * m + cols[j]
                t += 1


@njit(cache=True, nogil=True)
def gram_accumulate(indptr, vdata, mu, pos, out):
    """out[pos[...]] += mu_J v_Ja v_Jb over the rows J of a CSR matrix V (indptr, vdata) in :func:`gram_pairs`'
    order: V^T diag(mu) V into a fixed pattern (out is not cleared).  mu_J (v_a v_b), not (mu_J v_a) v_b, so that
    (a, b) and (b, a) get the same float: the result is exactly symmetric."""
    t = 0
    for J in range(indptr.size - 1):
        w = mu[J]
        for i in range(indptr[J], indptr[J + 1]):
            vi = vdata[i]
            for j in range(indptr[J], indptr[J + 1]):
                out[pos[t]] += w * (vi * vdata[j])
                t += 1


@njit(cache=True, nogil=True)
def node_log_mass(a, idx, val, logw, g, eta, L):
    """Cell log masses L_J = logsumexp_{k in J} (logw_k - (N a)_k) of the active cells (nodes grouped by
    cell, g per cell; N sparse: node k has non-zeros val[k, :] at idx[k, :]); eta (nodes,) gets logw - N a."""
    n_act = len(L)
    K = idx.shape[1]
    for J in range(n_act):
        mx = -np.inf
        for q in range(g):
            k = J * g + q
            e = logw[k]
            for j in range(K):
                e -= val[k, j] * a[idx[k, j]]
            eta[k] = e
            if e > mx:
                mx = e
        acc = 0.0
        for q in range(g):
            acc += math.exp(eta[J * g + q] - mx)
        L[J] = mx + math.log(acc)


@njit(cache=True, nogil=True)
def sparse_a(x, buf, a, tmp):
    """a = a0 + P^T L^-T z (z = x[:m]); tmp (m,) scratch."""
    m = int(buf[1])
    o_a0, o_perm, o_Lp, o_Li, o_Lx = sparse_offsets(buf)[:5]
    if buf[14] < 0:
        t = _tensor_arrays(buf)
        solve_lt_int(t[9], t[10], buf[o_Lx:o_Lx + int(buf[12])], x[:m], tmp)
    else:
        solve_lt(buf[o_Lp:o_Lp + m + 1], buf[o_Li:o_Lx], buf[o_Lx:o_Lx + int(buf[12])], x[:m], tmp)
    for i in range(m):
        a[i] = buf[o_a0 + i]
    for i in range(m):
        a[int(buf[o_perm + i])] += tmp[i]


@inner(cache=True, nogil=True)
def solve_lt_int(Lp, Li, Lx, z, x):
    """x = L^-T z for a lower-triangular L in CSC form (int64 Lp, Li; each column's diagonal first): one
    gathered dot product per row of L^T."""
    m = len(z)
    for i in range(m - 1, -1, -1):
        s = z[i]
        k0 = Lp[i]
        for k in range(k0 + 1, Lp[i + 1]):
            s -= Lx[k] * x[Li[k]]
        x[i] = s / Lx[k0]


@inner(cache=True, nogil=True)
def solve_l_rows(Rp, Ri, Rx, g, y):
    """y = L^-1 g for a lower-triangular L stored by rows (CSR: int64 Rp, Ri; each row's diagonal last): one
    gathered dot product per row (the column form scatters: a read-modify-write per non-zero)."""
    m = len(g)
    for i in range(m):
        s = g[i]
        k1 = Rp[i + 1] - 1
        for k in range(Rp[i], k1):
            s -= Rx[k] * y[Ri[k]]
        y[i] = s / Rx[k1]


#: the float header of the tensor section: coefficients along y of the full grid, x cells, y cells, Gauss points
#: per dimension, the widest 1D block, full coefficient count
TENSOR_HEADER = ("my", "nx", "ny", "g1", "W", "m_full")


@njit(cache=True, nogil=True)
def _tensor_arrays(buf):
    """Views of the tensor section (d = 2) of a packed sparse buffer.  int64 (stored bit for bit in the float
    buffer): kfull (m,) full index of each kept coefficient (ix my + iy), xs0 / xw (nx,) first full x index and
    width of the x-cells' 1D blocks, ys0 / yw (ny,), cx / cy (n_act,) the active cells' x and y cell numbers,
    Cp (m + 1,) / Ci (nnzL,) L's columns, Rp (m + 1,) / Ri (nnzL,) L's rows; float: xv (nx, g1, W) the 1D basis
    values at each x-cell's Gauss nodes on its block (zero-padded), yv (ny, g1, W), lwx (nx g1,) / lwy (ny g1,)
    log quadrature weights, Rx (nnzL,) L's values by rows."""
    m, n_act, nnzL = int(buf[1]), int(buf[2]), int(buf[12])
    o = sparse_offsets(buf)[9]
    my, nx, ny, g1, W, mf = int(buf[o]), int(buf[o + 1]), int(buf[o + 2]), int(buf[o + 3]), int(buf[o + 4]), \
        int(buf[o + 5])
    p = o + 6
    ni = m + 2 * nx + 2 * ny + 2 * n_act + 2 * (m + 1) + 2 * nnzL
    iv = buf[p:p + ni].view(np.int64)
    p += ni
    q = 0
    kfull = iv[q:q + m]
    q += m
    xs0 = iv[q:q + nx]
    q += nx
    xw = iv[q:q + nx]
    q += nx
    ys0 = iv[q:q + ny]
    q += ny
    yw = iv[q:q + ny]
    q += ny
    cx = iv[q:q + n_act]
    q += n_act
    cy = iv[q:q + n_act]
    q += n_act
    Cp = iv[q:q + m + 1]
    q += m + 1
    Ci = iv[q:q + nnzL]
    q += nnzL
    Rp = iv[q:q + m + 1]
    q += m + 1
    Ri = iv[q:q + nnzL]
    xv = buf[p:p + nx * g1 * W]
    p += nx * g1 * W
    yv = buf[p:p + ny * g1 * W]
    p += ny * g1 * W
    lwx = buf[p:p + nx * g1]
    p += nx * g1
    lwy = buf[p:p + ny * g1]
    p += ny * g1
    Rx = buf[p:p + nnzL]
    return (kfull, xs0, xw, ys0, yw, cx, cy, xv, yv, Cp, Ci, Rp, Ri, Rx, lwx, lwy, my, g1, W, mf)


@intrinsic
def _f64_bits(typingctx, x):
    """The bits of a float64 as an int64 (a bitcast: vectorizes, unlike a conversion)."""
    from llvmlite import ir

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@intrinsic
def _bits_f64(typingctx, i):
    """An int64's bits as a float64."""
    from llvmlite import ir

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


_EXP_SHIFT = 6755399441055744.0          # 1.5 * 2^52: t = y / ln 2 + this holds round(y / ln 2) in its low bits
_EXP_SHIFT_BITS = 0x4338000000000000


@njit(cache=True, nogil=True, inline="always", fastmath={"contract"})
def _exp(y):
    """exp(y) within 1 ulp of libm's (tested) without a libm call, so a loop over it vectorizes (libm's exp is ~5 ns a
    call, a third of the 2D likelihood): y = k ln 2 + r, |r| <= ln 2 / 2 (Cody-Waite), exp(r) by its Taylor
    polynomial to r^13 (truncation 4e-18), 2^k from k's bits.  0 below -708 (libm: subnormals to exp(-745)),
    inf above 709 (libm: 709.78); NaN in, NaN out."""
    yc = y if y > -708.0 else -708.0       # selects, not min/max (numba's take a NaN-aware branch)
    yc = yc if yc < 709.0 else 709.0
    t = yc * 1.4426950408889634 + _EXP_SHIFT
    k = t - _EXP_SHIFT
    r = (yc - k * 6.93147180369123816490e-01) - k * 1.90821492927058770002e-10
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    v = p * _bits_f64((_f64_bits(t) - _EXP_SHIFT_BITS + 1023) << 52)
    v = 0.0 if y < -708.0 else v
    v = math.inf if y > 709.0 else v
    return v if y == y else y


@njit(cache=True, nogil=True, inline="always")
def _row_extent(cx, cy, ys0, yw, J):
    """(J1, ylo, yhi): the active cells J .. J1 - 1 of cell J's x-cell row (cells in C order: rows of equal x cell,
    increasing y cell) and the y coefficients ylo .. yhi - 1 their blocks span."""
    J1 = J
    while J1 < len(cx) and cx[J1] == cx[J]:
        J1 += 1
    return J1, ys0[cy[J]], ys0[cy[J1 - 1]] + yw[cy[J1 - 1]]


@njit(cache=True, nogil=True, inline="always")
def _row_T(T, af, xv, ix, x0, wx, g1, W, my, ylo, yhi):
    """T = Bx A_row (g1, my) of x-cell ix (1D block: full x coefficients x0 .. x0 + wx - 1, values xv[ix]) on the
    row's y range ylo .. yhi - 1 (zero elsewhere); af the full coefficients (x-major, my along y)."""
    for t in range(g1 * my):
        T[t] = 0.0
    ox = ix * g1 * W
    for i in range(wx):
        rb = (x0 + i) * my
        for q in range(g1):
            b = xv[ox + q * W + i]
            for y in range(ylo, yhi):
                T[q * my + y] += b * af[rb + y]


@njit(cache=True, nogil=True, inline="always", fastmath={"contract"})
def _row_33_nodes(T, yv, lwx, lwy, ys0, cy, J, n, ix, my, X, Y, E, C):
    """The node values of the cells J .. J + n - 1 of one x-cell row ix (3 x 3 Gauss nodes, 1D blocks padded to width
    5), from the row's T = Bx A_row (g1, my): gathers the cells' operands into cell-minor scratch (:func:`_row_33`),
    then per cell its max node value mx into C[:n], its node weights exp(eta - mx) into E (9 n,) and their sum into
    C[n:2 n], so L_J = mx + log(sum).  Shared by the NUTS likelihood (:func:`_row_33`) and :func:`tensor_log_mass`."""
    for k in range(n):
        iy = cy[J + k]
        tb = ys0[iy]
        for qx in range(3):
            for j in range(5):
                X[(qx * 5 + j) * n + k] = T[qx * my + tb + j]
        for t in range(15):
            Y[t * n + k] = yv[iy * 15 + t]
        for qy in range(3):
            C[qy * n + k] = lwy[iy * 3 + qy]
    # node values eta = lw_x + lw_y - (T By^T), summed in the per-cell loop's order
    for qx in range(3):
        lx = lwx[ix * 3 + qx]
        for qy in range(3):
            eo = (qx * 3 + qy) * n
            for k in range(n):
                e = lx + C[qy * n + k]
                for j in range(5):
                    e -= X[(qx * 5 + j) * n + k] * Y[(qy * 5 + j) * n + k]
                E[eo + k] = e
    # per cell: max, node weights exp(eta - max), their sum (one simple loop per step: LLVM vectorizes each, not one
    # loop doing all)
    for k in range(n):
        mx = E[k]
        for t in range(1, 9):
            e = E[t * n + k]
            mx = e if e > mx else mx
        C[k] = mx
    for t in range(9):
        for k in range(n):
            E[t * n + k] = _exp(E[t * n + k] - C[k])
    for k in range(n):
        acc = 0.0
        for t in range(9):
            acc += E[t * n + k]
        C[n + k] = acc


@inner(cache=True, nogil=True, fastmath={"contract"})
def _row_33(T, S, yv, lwx, lwy, ys0, cy, cnt, J, n, ix, my, nf, X, Y, E, C):
    """The cells J .. J + n - 1 of one x-cell row ix for :func:`_tensor_likelihood` with 3 x 3 Gauss nodes and 1D
    blocks padded to width 5 (the 2D default): the same sums as its per-cell loop, but the cells' operands are
    gathered first into cell-minor scratch (X (15 n,): T's 5 columns from each cell's first y coefficient; Y
    (15 n,): the cells' y blocks; E (9 n,): the node values; C (4 n,): y log weights and per-cell scalars), so
    every per-node loop runs over the cells with constant inner trip counts and vectorizes (exp included:
    :func:`_exp`; ``contract``: multiply-adds fused).  The padded block values are 0 and add exact zeros.  Returns
    sum_J (c_J L_J - exp L_J) over the row and adds each cell's (3, 5) block of R By to S (R its node weights)."""
    _row_33_nodes(T, yv, lwx, lwy, ys0, cy, J, n, ix, my, X, Y, E, C)
    # mu = exp L = exp(max) sum, the gradient weight
    for k in range(n):
        acc = C[n + k]
        mu = _exp(C[k]) * acc
        C[2 * n + k] = mu
        C[3 * n + k] = -nf * (cnt[J + k] - mu) / acc
    hist = 0.0
    for k in range(n):
        cJ = cnt[J + k]     # L_J only where it is weighted (the margin cells have no counts)
        hist += (cJ * (C[k] + math.log(C[n + k])) if cJ > 0 else 0.0) - C[2 * n + k]
    # the gradient's y side: per cell (3 x 5) = (3 x 3 weights) (3 x 5 block), into X, then scattered into S
    for qx in range(3):
        for j in range(5):
            xo = (qx * 5 + j) * n
            for k in range(n):
                w = C[3 * n + k]
                s = 0.0
                for qy in range(3):
                    s += w * E[(qx * 3 + qy) * n + k] * Y[(qy * 5 + j) * n + k]
                X[xo + k] = s
    for k in range(n):
        tb = ys0[cy[J + k]]
        for qx in range(3):
            for j in range(5):
                S[qx * my + tb + j] += X[(qx * 5 + j) * n + k]
    return hist


@inner(cache=True, nogil=True)
def _tensor_likelihood(a, buf, nf, ga):
    """The Poisson term sum_J (c_J L_J - exp L_J) (not yet times nf) of the tensor layout, its gradient in the
    kept coefficients added to ``ga`` (times nf).  Cell J = (ix, iy) has g1 x g1 Gauss nodes; the bicubic basis
    there is the outer product of the x-cell's (g1, wx) and the y-cell's (g1, wy) 1D blocks, so with the cell's
    (wx, wy) coefficient block A:  eta = lw_x + lw_y - Bx A By^T,  and dL/dA = -Bx^T R By (R the node weights).
    Active cells come in C order (rows of equal ix), so T = Bx A_row (g1, my) is formed once per x-cell row and
    the gradient's Bx^T S_row once per row: per cell only the (g1, g1) node block and its weights (3 x 3 nodes and
    blocks padded to width 5, the 2D default: :func:`_row_33`, the row's cells at once)."""
    (kfull, xs0, xw, ys0, yw, cx, cy, xv, yv, Cp, Ci, Rp, Ri, Rx, lwx, lwy, my, g1, W, mf) = _tensor_arrays(buf)
    m, n_act = int(buf[1]), int(buf[2])
    o_cnt = sparse_offsets(buf)[11]
    af = np.zeros(mf)
    gf = np.zeros(mf)
    for k in range(m):
        af[kfull[k]] = a[k]
    # T, S padded by W: the fast path below reads W columns from a cell's first one (the padded block values are 0)
    T = np.zeros(g1 * my + W)
    S = np.zeros(g1 * my + W)
    E = np.empty(g1 * g1)
    fast = g1 == 3 and W == 5
    nr = len(yw) if fast else 0                        # at most ny cells in a row: _row_33's scratch
    X, Y, E9, C = np.empty(15 * nr), np.empty(15 * nr), np.empty(9 * nr), np.empty(4 * nr)
    cnt = buf[o_cnt:o_cnt + n_act]
    hist = 0.0
    J = 0
    while J < n_act:
        ix = cx[J]
        J1, ylo, yhi = _row_extent(cx, cy, ys0, yw, J)
        wx = xw[ix]
        ox = ix * g1 * W
        xbase = xs0[ix] * my
        for t in range(g1 * my):
            S[t] = 0.0
        _row_T(T, af, xv, ix, xs0[ix], wx, g1, W, my, ylo, yhi)
        if fast:
            hist += _row_33(T, S, yv, lwx, lwy, ys0, cy, cnt, J, J1 - J, ix, my, nf, X, Y, E9, C)
        else:
            for K in range(J, J1):
                iy = cy[K]
                wy = yw[iy]
                y0 = ys0[iy]
                oy = iy * g1 * W
                mx = -np.inf
                for qx in range(g1):
                    lx = lwx[ix * g1 + qx]
                    tb = qx * my + y0
                    for qy in range(g1):
                        e = lx + lwy[iy * g1 + qy]
                        for j in range(wy):
                            e -= T[tb + j] * yv[oy + qy * W + j]
                        E[qx * g1 + qy] = e
                        if e > mx:
                            mx = e
                acc = 0.0
                for t in range(g1 * g1):
                    v = math.exp(E[t] - mx)
                    E[t] = v
                    acc += v
                LJ = mx + math.log(acc)
                cJ = buf[o_cnt + K]
                mu = math.exp(LJ)
                hist += cJ * LJ - mu
                wJ = -nf * (cJ - mu) / acc
                # S_row += wJ E By on the cell's y block
                for qx in range(g1):
                    sb = qx * my + y0
                    for qy in range(g1):
                        c = wJ * E[qx * g1 + qy]
                        for j in range(wy):
                            S[sb + j] += c * yv[oy + qy * W + j]
        # dL/dA_row = Bx^T S_row, scattered into the full gradient
        for i in range(wx):
            rb = xbase + i * my
            for q in range(g1):
                b = xv[ox + q * W + i]
                for y in range(ylo, yhi):
                    gf[rb + y] += b * S[q * my + y]
        J = J1
    for k in range(m):
        ga[k] += gf[kfull[k]]
    return hist


# --------------------------------------------------------------------------------------------------
# log pi_J of posterior draws (fit's pointwise log-likelihood): per draw the cell log masses, normalised
# --------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def log_normalise(L):
    """L -= logsumexp(L) in place: cell log masses -> log pi_J (the cells' probabilities, normalised over L)."""
    mx = -np.inf
    for J in range(len(L)):
        mx = L[J] if L[J] > mx else mx
    acc = 0.0
    for J in range(len(L)):
        acc += math.exp(L[J] - mx)
    lz = mx + math.log(acc)
    for J in range(len(L)):
        L[J] -= lz


@inner(cache=True, nogil=True)
def node_log_pi(a, idx, val, logw, g, eta, L):
    """log pi_J of the active cells into L for kept coefficients a: :func:`node_log_mass` (node design), then
    :func:`log_normalise`; eta (nodes,) scratch."""
    node_log_mass(a, idx, val, logw, g, eta, L)
    log_normalise(L)


@inner(cache=True, nogil=True)
def _gather_log_pi(L, cells, row):
    """row[i] = L[cells[i]] (log pi), -inf where pi = exp(log pi) underflows to 0 (as np.log of the probabilities)."""
    for i in range(len(cells)):
        v = L[cells[i]]
        row[i] = v if math.exp(v) > 0.0 else -np.inf


@njit(cache=True, nogil=True)
def node_draws_log_pi(A, idx, val, logw, g, cells, out, lo, hi):
    """out[s] = log pi at ``cells`` for the draws s = lo .. hi - 1 of kept coefficients A (S, m), node design (any
    d; :func:`node_log_pi`).  Each draw writes only its row: the same numbers for any split into parts."""
    eta = np.empty(len(logw))
    L = np.empty(len(logw) // g)
    for s in range(lo, hi):
        node_log_pi(A[s], idx, val, logw, g, eta, L)
        _gather_log_pi(L, cells, out[s])


@inner(cache=True, nogil=True)
def tensor_log_mass(a, tb, af, T, X, Y, E, C, L):
    """Cell log masses L_J of the active cells (d = 2, 3 x 3 Gauss nodes, 1D blocks padded to width 5) for kept
    coefficients a, in the tensor layout of the NUTS kernel (:func:`_tensor_likelihood`: T = Bx A_row once per x-cell
    row, then :func:`_row_33_nodes` for the row's cells).  tb: (kfull, xs0, xw, ys0, yw, cx, cy, xv, yv, lwx, lwy, my,
    g1, W, mf) as :func:`_tensor_arrays` (bayescg.bayes.effective._tensor_blocks); scratch af (mf,), T (g1 my + W,),
    X, Y (15 ny,), E (9 ny,), C (4 ny,)."""
    kfull, xs0, xw, ys0, yw, cx, cy, xv, yv, lwx, lwy, my, g1, W, mf = tb
    for k in range(len(kfull)):
        af[kfull[k]] = a[k]
    J = 0
    while J < len(cx):
        ix = cx[J]
        J1, ylo, yhi = _row_extent(cx, cy, ys0, yw, J)
        _row_T(T, af, xv, ix, xs0[ix], xw[ix], g1, W, my, ylo, yhi)
        n = J1 - J
        _row_33_nodes(T, yv, lwx, lwy, ys0, cy, J, n, ix, my, X, Y, E, C)
        for k in range(n):
            L[J + k] = C[k] + math.log(C[n + k])
        J = J1


@njit(cache=True, nogil=True)
def tensor_draws_log_pi(A, tb, cells, out, lo, hi):
    """:func:`node_draws_log_pi` in the tensor layout (:func:`tensor_log_mass`; d = 2, 3 x 3 nodes, width-5 blocks)."""
    g1, W, mf, ny = tb[12], tb[13], tb[14], len(tb[4])
    af = np.zeros(mf)
    T = np.zeros(g1 * tb[11] + W)
    X, Y, E, C = np.empty(15 * ny), np.empty(15 * ny), np.empty(9 * ny), np.empty(4 * ny)
    L = np.empty(len(tb[5]))
    for s in range(lo, hi):
        tensor_log_mass(A[s], tb, af, T, X, Y, E, C, L)
        log_normalise(L)
        _gather_log_pi(L, cells, out[s])


@njit(cache=True, nogil=True)
def sparse_logp_grad(x, buf, grad):
    """log p(x) of the sparse form (bayescg.bayes.effective.sparse_density) with its gradient in ``grad``.

    x = [z (m,), log sigma_rw, (log beta)]; a = a0 + P^T L^-T z (P the fill-reducing permutation, L L^T the
    permuted Laplace precision), and up to a constant
        log p = nf sum_J (c_J L_J - exp L_J) - |a - mean(a)|^2 / (2 ridge^2) - a^T P a / (2 sigma^2)
                - r log sigma - sigma^2 / (2 s0^2) + log sigma + [momenta: as effective_logp_grad].
    Every array product is sparse: cost O(nodes K + nnz L + nnz P)."""
    m, n_act, K, g = int(buf[1]), int(buf[2]), int(buf[3]), int(buf[4])
    nf, rank, sigma_scale, ridge_sd, nu, S = buf[6], buf[7], buf[8], buf[9], buf[10], buf[11]
    o_a0, o_perm, o_Lp, o_Li, o_Lx, o_Pp, o_Pi, o_Px, o_idx, o_val, o_w, o_cnt = sparse_offsets(buf)
    a = np.empty(m)
    tmp = np.empty(m)
    sparse_a(x, buf, a, tmp)
    # likelihood: Poisson over the active cells; its free constant (a -> a + c 1 shifts every L_J by -c)
    # integrates out to the multinomial of the dense form exactly (flat prior on the constant)
    hist = 0.0
    ga = np.zeros(m)
    eta = np.empty(g)
    if buf[14] < 0:
        hist = _tensor_likelihood(a, buf, nf, ga)
    elif buf[14] > 0:
        # per-cell layout: cell J's n_J coefficients (the union over its nodes: 16-25 for bicubic splines on
        # cells straddling knots) at cidx[cptr[J]:cptr[J+1]] are gathered once, its g nodes form a dense
        # (g, n_J) block, and the gradient is accumulated over the nodes before one scatter
        o_ci = o_idx + n_act + 1
        aJ = np.empty(m)
        gJ = np.empty(m)
        for J in range(n_act):
            c0 = int(buf[o_idx + J])
            nJ = int(buf[o_idx + J + 1]) - c0
            for j in range(nJ):
                aJ[j] = a[int(buf[o_ci + c0 + j])]
                gJ[j] = 0.0
            mx = -np.inf
            for q in range(g):
                k0 = o_val + g * c0 + q * nJ
                e = buf[o_w + J * g + q]
                for j in range(nJ):
                    e -= buf[k0 + j] * aJ[j]
                eta[q] = e
                if e > mx:
                    mx = e
            acc = 0.0
            for q in range(g):
                eta[q] = math.exp(eta[q] - mx)
                acc += eta[q]
            LJ = mx + math.log(acc)
            cJ = buf[o_cnt + J]
            mu = math.exp(LJ)
            hist += cJ * LJ - mu
            wJ = -nf * (cJ - mu) / acc
            for q in range(g):
                k0 = o_val + g * c0 + q * nJ
                coef = wJ * eta[q]
                for j in range(nJ):
                    gJ[j] += coef * buf[k0 + j]
            for j in range(nJ):
                ga[int(buf[o_ci + c0 + j])] += gJ[j]
    else:
        for J in range(n_act):
            LJ = cell_log_mass(buf, o_w, o_val, o_idx, a, K, g, J, eta, 0)
            cJ = buf[o_cnt + J]
            mu = math.exp(LJ)
            hist += cJ * LJ - mu
            wJ = nf * (cJ - mu)
            for q in range(g):
                k = J * g + q
                coef = -wJ * math.exp(eta[q] - LJ)
                for j in range(K):
                    ga[int(buf[o_idx + k * K + j])] += coef * buf[o_val + k * K + j]
    hist *= nf
    s = x[m]
    isig2 = math.exp(-2.0 * s)
    sigma2 = math.exp(2.0 * s)
    mean = 0.0
    for i in range(m):
        mean += a[i]
    mean /= m
    rr = 0.0
    aPa = 0.0
    for i in range(m):
        pa = 0.0
        for k in range(int(buf[o_Pp + i]), int(buf[o_Pp + i + 1])):
            pa += buf[o_Px + k] * a[int(buf[o_Pi + k])]
        aPa += a[i] * pa
        rr += (a[i] - mean) ** 2
        ga[i] -= (a[i] - mean) / ridge_sd ** 2 + isig2 * pa
    logp = hist - 0.5 * rr / ridge_sd ** 2 - 0.5 * isig2 * aPa - rank * s - 0.5 * sigma2 / sigma_scale ** 2 + s
    for i in range(m):
        tmp[i] = ga[int(buf[o_perm + i])]
    if buf[14] < 0:
        t = _tensor_arrays(buf)
        solve_l_rows(t[11], t[12], t[13], tmp, grad[:m])
    else:
        solve_l(buf[o_Lp:o_Lp + m + 1], buf[o_Li:o_Lx], buf[o_Lx:o_Lx + int(buf[12])], tmp, grad[:m])
    grad[m] = -rank + isig2 * aPa - sigma2 / sigma_scale ** 2 + 1.0
    if nu > 0:
        lb = x[m + 1]
        beta = math.exp(lb)
        logp += 0.5 * nu * lb - 0.5 * beta * S - 1e-3 * beta + lb
        grad[m + 1] = 0.5 * nu - 0.5 * beta * S - 1e-3 * beta + 1.0
    return logp


def _sparse_logp_cfunc(dim, x_, out_, logp_, user_data):
    buf = packed(user_data)
    if dim != int(buf[1]) + 1 + (buf[10] > 0):
        return -1
    return logp_into(sparse_logp_grad, buf, dim, x_, out_, logp_)


def _sparse_expand_cfunc(dim, expanded, x_, out_, user_data):
    """Draw -> stored values [a (m,), sigma_rw, (beta)]: the spline coefficients of f and the scales."""
    buf = packed(user_data)
    m = int(buf[1])
    if expanded != dim:
        return -1
    x = carray(x_, (dim,))
    out = carray(out_, (dim,))
    a = np.empty(m)
    tmp = np.empty(m)
    sparse_a(x, buf, a, tmp)
    for i in range(m):
        out[i] = a[i]
    for i in range(m, dim):
        out[i] = math.exp(x[i])
    return 0


__getattr__ = lazy_cfuncs(globals(), {"effective_logp_cfunc": (LOGP_SIG, _effective_logp_cfunc),
                                       "effective_expand_cfunc": (EXPAND_SIG, _effective_expand_cfunc),
                                       "sparse_logp_cfunc": (LOGP_SIG, _sparse_logp_cfunc),
                                       "sparse_expand_cfunc": (EXPAND_SIG, _sparse_expand_cfunc)})
# (creating all four at import cost ~3 s CPU of a cold 1D run that needs only the dense pair, and a MAP fit none)
