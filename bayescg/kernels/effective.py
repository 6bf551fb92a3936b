"""Log density and gradient of the effective-potential posterior (bayescg.bayes.effective) for NUTS.

The same density as ``build_effective_potential_model`` with adaptive whitening, on the unconstrained
point x = [z (n,), log sigma_rw, (log beta)] (n = m - 1), up to an additive constant:

    prec = lam + sigma^-2,  u = c / prec + z / sqrt(prec),  b = V u,  a = Q b = M u  (M = Q V),
    log p = h(a) - |b|^2 / (2 ridge^2) - r log sigma - |b|_P^2 / (2 sigma^2) - (1/2) sum log prec
            - sigma^2 / (2 s0^2) + log sigma                          [HalfNormal(s0) + log-Jacobian]
            + (nu/2) log beta - beta S / 2 - 1e-3 beta + log beta     [momenta, Gamma(1, 1e-3), Jacobian]
    h(a) = nf sum_J c_J (L_J - logsumexp_I L_I),  L_J = logsumexp_{k in J} (logw_k - (N a)_k),

with |b|^2 = u^T G1 u (G1 = V^T V) and |b|_P^2 = u^T G2 u (G2 = V^T P_b V).  N is the node design
restricted to the active cells, stored sparse: node k has K non-zero basis values ``node_val[k]`` at kept
coefficients ``node_idx[k]`` (K = 4 in 1D, 16 in 2D for cubic splines), nodes grouped by cell, ``g``
per cell, so one evaluation costs O(nodes K + m n).  Everything is data (arrays), so the compiled
function does not depend on the grid sizes: ``cache=True`` compiles it once per machine.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def effective_logp_grad(x, M, G1, G2, lam, cvec, node_idx, node_val, node_logw, g, counts, nf, rank,
                        sigma_scale, ridge_sd, nu, S, grad):
    """log p(x) (float) with its gradient written into ``grad`` (same shape as x); see the module doc.

    nu <= 0 means beta is fixed (x has n + 1 entries)."""
    n = lam.shape[0]
    m = M.shape[0]
    s = x[n]
    isig2 = math.exp(-2.0 * s)
    sigma2 = math.exp(2.0 * s)
    prec = np.empty(n)
    u = np.empty(n)
    for i in range(n):
        prec[i] = lam[i] + isig2
        u[i] = cvec[i] / prec[i] + x[i] / math.sqrt(prec[i])
    a = M @ u
    # likelihood h(a): cell log masses L_J and within-cell node weights r_k
    n_act = counts.shape[0]
    K = node_idx.shape[1]
    eta = np.empty(n_act * g)
    L = np.empty(n_act)
    for J in range(n_act):
        mx = -np.inf
        for q in range(g):
            k = J * g + q
            e = node_logw[k]
            for j in range(K):
                e -= node_val[k, j] * a[node_idx[k, j]]
            eta[k] = e
            if e > mx:
                mx = e
        acc = 0.0
        for q in range(g):
            acc += math.exp(eta[J * g + q] - mx)
        L[J] = mx + math.log(acc)
    Lmax = L.max()
    acc = 0.0
    ctot = 0.0
    for J in range(n_act):
        acc += math.exp(L[J] - Lmax)
        ctot += counts[J]
    logZ = Lmax + math.log(acc)
    hist = 0.0
    ga = np.zeros(m)
    for J in range(n_act):
        hist += counts[J] * (L[J] - logZ)
        wJ = nf * (counts[J] - ctot * math.exp(L[J] - logZ))
        for q in range(g):
            k = J * g + q
            coef = -wJ * math.exp(eta[k] - L[J])
            for j in range(K):
                ga[node_idx[k, j]] += coef * node_val[k, j]
    hist *= nf
    # prior terms in u
    G1u = G1 @ u
    G2u = G2 @ u
    bb = 0.0
    bPb = 0.0
    for i in range(n):
        bb += u[i] * G1u[i]
        bPb += u[i] * G2u[i]
    gu = M.T @ ga
    logp = hist - 0.5 * bb / ridge_sd ** 2 - rank * s - 0.5 * isig2 * bPb - 0.5 * sigma2 / sigma_scale ** 2 + s
    gs = 0.0
    for i in range(n):
        logp -= 0.5 * math.log(prec[i])
        gu[i] -= G1u[i] / ridge_sd ** 2 + isig2 * G2u[i]
        grad[i] = gu[i] / math.sqrt(prec[i])
        # du/ds through prec = lam + exp(-2 s), and the Jacobian term -1/2 log prec
        gs += gu[i] * (cvec[i] / prec[i] ** 2 + 0.5 * x[i] / prec[i] ** 1.5) * 2.0 * isig2 + isig2 / prec[i]
    grad[n] = gs - rank + isig2 * bPb - sigma2 / sigma_scale ** 2 + 1.0
    if nu > 0:
        lb = x[n + 1]
        beta = math.exp(lb)
        logp += 0.5 * nu * lb - 0.5 * beta * S - 1e-3 * beta + lb
        grad[n + 1] = 0.5 * nu - 0.5 * beta * S - 1e-3 * beta + 1.0
    return logp
