"""How the double well's kicks at delta 0.3 depart from the white model of the finite-delta correction
(diagnosis for benchmarks/calibration/RESULTS.md; U_0 is used to define the kicks, so this is not something
learn can compute).

A fresh stretch of the V-run (bias.check_frames: 16 walkers x 1e5 steps from the final states of a 4e6-step run,
seed 1), residual kicks about U_0 = (q^2 - 1)^2 / 4 (bias.residual_kick_correlation), their variance per unit step
Z, lag-1 / lag-2 autocorrelation and mean, conditional on |p_n| and on q_{n+1/2}.

    python benchmarks/calibration/dw_kick_structure.py > benchmarks/calibration/dw_kick_structure.txt
"""
import numpy as np

from bayescg.bias import check_frames, residual_kick_correlation
from bayescg.potentials import catalogue
from bayescg.simulate import simulate


def main():
    V = catalogue("test2")
    delta, gamma = 0.3, 0.1
    sim = simulate(V, delta, gamma, steps=4_000_000, walkers=16, seed=1)
    q, p, A, E = check_frames(V, sim, steps_per_walker=100_000)
    r = residual_kick_correlation(q, p, lambda x: x * (x ** 2 - 1), delta=delta, A=A, E=E,
                                  return_kicks=True)[..., 0]          # (n - 1, W)
    qh = (q[:-1] + 0.5 * delta * p[:-1])[..., 0]
    ap = np.abs(p[:-1, :, 0])
    print(f"kicks {r.size}, se of a correlation {1 / np.sqrt(r.size):.4f}; Z {r.var() / delta:.4f}; rho1..3 "
          + " ".join(f"{np.corrcoef(r[:-k].ravel(), r[k:].ravel())[0, 1]:+.4f}" for k in (1, 2, 3)))

    def row(label, m):
        m2 = m[:-2]
        x = r[:-2][m2]
        print(f"{label}: n {int(m.sum()):7d}  Z {r[m].var() / delta:.4f}  mean/delta {r[m].mean() / delta:+.4f}  "
              f"rho1 {np.corrcoef(x, r[1:-1][m2])[0, 1]:+.4f}  rho2 {np.corrcoef(x, r[2:][m2])[0, 1]:+.4f}")

    print("by |p_n| (octiles)")
    e = np.quantile(ap, np.linspace(0, 1, 9))
    for a, b in zip(e[:-1], e[1:]):
        row(f"|p| {a:.2f}-{b:.2f}", (ap >= a) & (ap < b))
    print("by q_{n+1/2}")
    e = np.linspace(-2.1, 2.1, 15)
    for a, b in zip(e[:-1], e[1:]):
        row(f"q {a:+.2f}..{b:+.2f}", (qh >= a) & (qh < b))


if __name__ == "__main__":
    main()
