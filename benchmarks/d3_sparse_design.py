"""Feasibility of d = 3 effective-potential fits (issue 14, item 3): memory and time of a sparse tensor-product
spline design and a penalised Poisson MAP fit on a full 3D histogram.  A measurement to choose the design of
the 3D fit, NOT the fit itself (bayescg.fit is d = 1, 2).

Data: exact samples of exp(-U), U = x^2/2 + 2 y^2 + z^2/8 + 0.5 x y (anisotropic Gaussian, so the truth is known
everywhere).  Histogram (bins,)^3; clamped cubic B-splines with `knots` break points per dimension; design
X = B_x (x) B_y (x) B_z (Kronecker, scipy.sparse CSR, 64 non-zeros per row); f = X a; Poisson log-likelihood
sum_J n_J f... written as -sum_J [n_J f_J + c exp(-f_J)] with the total profiled (c = N / sum exp(-f)),
second-difference penalty lam * a^T P a per dimension; Newton steps on the Fisher information (sparse
X^T W X + lam P, Cholesky via scipy.sparse.linalg.splu).  Reports peak RSS, seconds per stage and the RMSE of
U = f (beta = 1) against the truth over cells with >= 20 counts.

Run: python benchmarks/d3_sparse_design.py [--bins 40] [--knots 12] [--samples 2000000]
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from bayescg.splines import clamped_knots, design_matrix_1d, difference_penalty


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--bins", type=int, default=40)
    ap.add_argument("--knots", type=int, default=12)
    ap.add_argument("--samples", type=int, default=2_000_000)
    ap.add_argument("--lam", type=float, default=1.0)
    a = ap.parse_args(argv)
    rng = np.random.default_rng(1)
    K = np.array([[1.0, 0.5, 0.0], [0.5, 4.0, 0.0], [0.0, 0.0, 0.25]])   # U = q^T K q / 2
    q = rng.multivariate_normal(np.zeros(3), np.linalg.inv(K), size=a.samples)
    t = {}
    t0 = time.perf_counter()
    lo, hi = q.min(axis=0), q.max(axis=0)
    edges = [np.linspace(l, h, a.bins + 1) for l, h in zip(lo, hi)]
    counts, _ = np.histogramdd(q, bins=edges)
    t["histogram"] = time.perf_counter() - t0
    centres = [0.5 * (e[1:] + e[:-1]) for e in edges]
    t0 = time.perf_counter()
    Bs = [sp.csr_matrix(design_matrix_1d(c, clamped_knots(c[0], c[-1], a.knots))) for c in centres]
    X = sp.kron(sp.kron(Bs[0], Bs[1]), Bs[2], format="csr")
    m1 = Bs[0].shape[1]
    D = sp.csr_matrix(difference_penalty(m1))
    I = sp.identity(m1, format="csr")
    P = (sp.kron(sp.kron(D, I), I) + sp.kron(sp.kron(I, D), I) + sp.kron(sp.kron(I, I), D)).tocsc()
    t["design"] = time.perf_counter() - t0
    n = counts.ravel()
    N = n.sum()
    def objective(ac):
        f = X @ ac
        fm = f.min()
        return -(n @ f) - N * (np.log(np.exp(-(f - fm)).sum()) - fm) - 0.5 * a.lam * ac @ (P @ ac)

    a_coef = np.zeros(X.shape[1])
    t0 = time.perf_counter()
    obj = objective(a_coef)
    for it in range(50):
        f = X @ a_coef
        w = np.exp(-(f - f.min()))
        mu = N * w / w.sum()                                   # expected counts with the total profiled
        grad = X.T @ (mu - n) - a.lam * (P @ a_coef)           # d/da of  -sum n f - N log sum e^-f  - pen
        H = (X.T @ sp.diags(mu) @ X + a.lam * P).tocsc()       # Fisher information (+ penalty)
        H = H + 1e-8 * sp.identity(H.shape[0], format="csc")
        step = splu(H).solve(grad)
        s = 1.0
        while s > 1e-6:                                        # step halving: Newton on exp(-f) overshoots
            new = objective(a_coef + s * step)
            if new >= obj:
                break
            s /= 2
        a_coef = a_coef + s * step
        gain, obj = new - obj, new
        if gain < 1e-6 * max(1.0, abs(obj)) * 1e-3:
            break
    t["newton"] = time.perf_counter() - t0
    f = X @ a_coef
    g = np.stack(np.meshgrid(*centres, indexing="ij"), axis=-1).reshape(-1, 3)
    U = 0.5 * np.einsum("ij,jk,ik->i", g, K, g)
    sel = n >= 20
    c = np.mean(f[sel] - U[sel])
    rmse = float(np.sqrt(np.mean((f[sel] - U[sel] - c) ** 2)))
    print(f"bins {a.bins}^3 = {n.size} cells, knots {a.knots} -> {X.shape[1]} coefficients, "
          f"design nnz {X.nnz} ({X.data.nbytes / 2**20:.1f} MB), {a.samples} samples")
    print(f"seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()) + f" ({it + 1} Newton steps)")
    print(f"RMSE of U against the truth over {int(sel.sum())} cells with >= 20 counts: {rmse:.4f}; "
          f"peak RSS {rss_mb():.0f} MB")


if __name__ == "__main__":
    main()
