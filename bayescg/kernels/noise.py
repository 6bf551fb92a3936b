"""Log density and gradient of the noise model's posterior (bayescg.bayes.noise.noise_model) for NUTS.

The same density as the PyMC model, on PyMC's unconstrained point, up to an additive constant:

* d >= 2: x = the packed lower-triangular Cholesky factor L of Z (row by row: L00, L10, L11, L20, ...), its
  diagonal log-transformed (PyMC's LKJCholeskyCov with its packed transform).  With sd_i = |row i of L| and the
  LKJ(eta) prior on the correlation Cholesky factor, HalfNormal(s) priors on sd_i (PyMC's _LKJCholeskyCov.logp):

      log p = sum_i [ -sd_i^2 / (2 s^2) + (c_i + 1) log(L_ii / sd_i) - i log sd_i + log L_ii ]  + loglik(L L^T),
      c_i = 2 eta - 3 + d - i   (the last log L_ii: the log transform's Jacobian)

* d = 1: x = log z, z ~ HalfNormal(s^2):  log p = -z^2 / (2 s^4) + x + loglik(z).

loglik(Z) = -sum_k (y_k - tr(Z A_k))^2 / (2 sy_k^2) (y = 2 gamma m, sy = 2 gamma s, A_k symmetric).

Packed float64 buffer: [length, d, K, eta, s, y (K), sy (K), A (K, d, d)].  The callbacks are compiled once per
machine (``cache=True``): no PyTensor or nutpie compilation per run.  The expand step stores Z = L L^T (d, d).
"""
from __future__ import annotations

import math

import numpy as np
from numba import carray, njit

from .callbacks import EXPAND_SIG, LOGP_SIG, lazy_cfuncs, logp_into, packed


@njit(cache=True, nogil=True)
def _chol_of(x, d, L):
    """L (d, d) from the unconstrained packed point (row-major lower triangle, diagonal log-transformed)."""
    p = 0
    for i in range(d):
        for j in range(d):
            L[i, j] = 0.0
        for j in range(i + 1):
            L[i, j] = math.exp(x[p]) if j == i else x[p]
            p += 1


@njit(cache=True, nogil=True)
def noise_logp_grad(x, buf, grad):
    """log p(x) (module docstring) with its gradient in ``grad``."""
    d, K = int(buf[1]), int(buf[2])
    eta, s = buf[3], buf[4]
    oy = 5
    osy = oy + K
    oA = osy + K
    # loglik and G = d loglik / dZ = sum_k r_k A_k
    G = np.zeros((d, d))
    L = np.empty((d, d))
    if d == 1:
        Z00 = math.exp(x[0])
    else:
        _chol_of(x, d, L)
    ll = 0.0
    for k in range(K):
        tr = 0.0
        for a in range(d):
            for b in range(d):
                if d == 1:
                    zab = Z00
                else:
                    zab = 0.0
                    for c in range(min(a, b) + 1):
                        zab += L[a, c] * L[b, c]
                tr += zab * buf[oA + k * d * d + a * d + b]
        r = (buf[oy + k] - tr) / buf[osy + k]
        ll -= 0.5 * r * r
        w = r / buf[osy + k]
        for a in range(d):
            for b in range(d):
                G[a, b] += w * buf[oA + k * d * d + a * d + b]
    if d == 1:
        z = Z00
        sz = s * s
        grad[0] = (-z / (sz * sz) + G[0, 0]) * z + 1.0
        return ll - 0.5 * z * z / (sz * sz) + x[0]
    # d loglik / dL = (G + G^T) L
    dL = np.zeros((d, d))
    for i in range(d):
        for j in range(i + 1):
            acc = 0.0
            for a in range(d):
                acc += (G[i, a] + G[a, i]) * L[a, j]
            dL[i, j] = acc
    lp = ll
    for i in range(d):
        sd2 = 0.0
        for j in range(i + 1):
            sd2 += L[i, j] * L[i, j]
        ci1 = 2.0 * eta - 3.0 + d - i + 1.0
        lsd = 0.5 * math.log(sd2)
        lLii = math.log(L[i, i])
        lp += -0.5 * sd2 / (s * s) + ci1 * (lLii - lsd) - i * lsd + lLii
        # d/dL_ij of -sd^2/(2 s^2) - (ci1 + i) log sd, and (ci1 + 1) log L_ii
        f = -1.0 / (s * s) - (ci1 + i) / sd2
        for j in range(i + 1):
            dL[i, j] += f * L[i, j]
        dL[i, i] += (ci1 + 1.0) / L[i, i]
    p = 0
    for i in range(d):
        for j in range(i + 1):
            grad[p] = dL[i, j] * L[i, i] if j == i else dL[i, j]
            p += 1
    return lp


def n_dim_of(d: int) -> int:
    return d * (d + 1) // 2


def _noise_logp_cfunc(dim, x_, out_, logp_, user_data):
    buf = packed(user_data)
    d = int(buf[1])
    if dim != d * (d + 1) // 2:
        return -1
    return logp_into(noise_logp_grad, buf, dim, x_, out_, logp_)


def _noise_expand_cfunc(dim, expanded, x_, out_, user_data):
    """Draw -> Z = L L^T (d, d), row-major."""
    buf = carray(user_data, (2,), np.float64)
    d = int(buf[1])
    if expanded != d * d:
        return -1
    x = carray(x_, (dim,))
    out = carray(out_, (expanded,))
    if d == 1:
        out[0] = math.exp(x[0])
        return 0
    L = np.empty((d, d))
    _chol_of(x, d, L)
    for a in range(d):
        for b in range(d):
            acc = 0.0
            for c in range(min(a, b) + 1):
                acc += L[a, c] * L[b, c]
            out[a * d + b] = acc
    return 0


__getattr__ = lazy_cfuncs(globals(), {"noise_logp_cfunc": (LOGP_SIG, _noise_logp_cfunc),
                                       "noise_expand_cfunc": (EXPAND_SIG, _noise_expand_cfunc)})
