"""Same-process A/B of the sparse MAP's factorisation (stop 40): bayes.effective.spd_lu (symmetric minimum-degree
ordering, no pivoting) against SuperLU's defaults (column ordering, partial pivoting) in the Newton steps and
tr(P H^-1); the Laplace draws' Cholesky keeps the symmetric one in both.  A 2D test4-like run (2e6 steps,
200 x 200 bins, 25 knots), 6 alternated MAP fits each; prints the times and the largest change of U and its band.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_fit2d_lu.py
"""
import time, numpy as np
from scipy.sparse.linalg import splu
from scipy import sparse
from bayescg.simulate import simulate
from bayescg.potentials import Potential
from bayescg.fit import fit_effective_potential
import bayescg.bayes.effective as BE
pot = Potential.from_expression("(2*x + y - 1)**2/4 + (x - y - 1)**2 + 1e-5*(sin(x/1e-5) + sin((x + y)/1e-5))", ["x", "y"])
ws = simulate(pot, 0.05, friction=np.array([[0.025, 0.012], [0.012, 0.011]]), steps=2_000_000, walkers=16, seed=1, bins=200, hist_range=[(-1.5, 3.0), (-2.5, 2.0)])
new = BE.spd_lu
import sys
def old(H):
    if sys._getframe(1).f_code.co_name == "sparse_cholesky":
        return new(H)
    return splu(sparse.csc_matrix(H))
T = {"old": [], "new": []}; U = {}
for k in range(6):
    for name in (("old", "new") if k % 2 == 0 else ("new", "old")):
        BE.spd_lu = new if name == "new" else old
        t = time.perf_counter()
        f = fit_effective_potential(ws, knots=25, method="map", seed=2, draws=400, predictive=False)
        T[name].append(time.perf_counter() - t); U[name] = (np.asarray(f.U_mean), np.asarray(f.U_upper))
print({k: np.round(v, 3).tolist() for k, v in T.items()})
print("median old/new", np.median(T["old"]), np.median(T["new"]), "max |dU_mean|", np.abs(U["old"][0] - U["new"][0]).max(), "max |dU_upper|", np.abs(U["old"][1] - U["new"][1]).max())
