"""Same-process A/B of the sparse MAP's Newton terms (stop 40): V and H on the precomputed pattern
(bayes.effective._NewtonPattern) against the scipy construction it replaced (COO -> CSR for V; V^T diag(mu) V +
P / sigma^2 + I / ridge^2, symmetrised, as CSC for H), swapped in by replacing the class.  A 2D test4-like run (2e6
steps, 200 x 200 bins, 25 knots), MAP fits alternated 6 times each; prints the median per fit, their ratio and the
largest change of U.

    python benchmarks/bench_fit2d_terms.py
"""
import time

import numpy as np

import bayescg.bayes.effective as BE
from bayescg.fit import fit_effective_potential
from bayescg.potentials import Potential
from bayescg.simulate import simulate


class ScipyTerms:
    """The replaced construction, behind _NewtonPattern's interface."""

    def __init__(self, basis, P):
        self.basis, self.P = basis, P

    def V(self, entries):
        from scipy import sparse

        b = self.basis
        idx = b.nodes[0]
        n_act = idx.shape[0] // b.quad ** b.dim
        rows = np.repeat(np.arange(n_act), b.quad ** b.dim * idx.shape[1])
        return sparse.csr_matrix((entries, (rows, idx.ravel())), shape=(n_act, b.n_coef))

    def H(self, V, mu, nf, sigma, ridge_sd):
        from scipy import sparse

        eye = sparse.identity(self.basis.n_coef, format="csr")
        H = nf * (V.T @ sparse.diags(mu) @ V) + self.P / sigma ** 2 + eye / ridge_sd ** 2
        return sparse.csc_matrix(0.5 * (H + H.T))


def main():
    pot = Potential.from_expression("(2*x + y - 1)**2/4 + (x - y - 1)**2 + 1e-5*(sin(x/1e-5) + sin((x + y)/1e-5))",
                                    ["x", "y"])
    ws = simulate(pot, 0.05, friction=np.array([[0.025, 0.012], [0.012, 0.011]]), steps=2_000_000, walkers=16, seed=1,
                  bins=200, hist_range=[(-1.5, 3.0), (-2.5, 2.0)])
    new = BE._NewtonPattern
    T, U = {"scipy": [], "pattern": []}, {}
    for k in range(7):
        for name in (("scipy", "pattern") if k % 2 == 0 else ("pattern", "scipy")):
            BE._NewtonPattern = new if name == "pattern" else ScipyTerms
            t = time.perf_counter()
            f = fit_effective_potential(ws, knots=25, method="map", seed=2, draws=400, predictive=False)
            if k:  # the first round warms up
                T[name].append(time.perf_counter() - t)
            U[name] = np.asarray(f.U_mean)
    BE._NewtonPattern = new
    med = {k: float(np.median(v)) for k, v in T.items()}
    print({k: np.round(v, 3).tolist() for k, v in T.items()})
    print(f"median s per fit: scipy {med['scipy']:.3f}, pattern {med['pattern']:.3f}, "
          f"ratio {med['pattern'] / med['scipy']:.2f}; max |dU| {np.abs(U['scipy'] - U['pattern']).max():.2e}")


if __name__ == "__main__":
    main()
