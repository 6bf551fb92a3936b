"""One 2D MAP fit's time and result, for an A/B between two checkouts (stop 40: Aitken's delta^2 on sigma_rw in
the sparse MAP's joint Newton iteration): a test4-like run (2e6 steps, 200 x 200 bins, 25 knots), 4 timed fits after
one warm-up; saves U, its band and the coefficients to the .npz given.

    python benchmarks/bench_fit2d_newton.py /tmp/new.npz   # then in the other checkout, and compare the two files
"""
import numpy as np, subprocess, time, sys
from bayescg.simulate import simulate
from bayescg.potentials import Potential
from bayescg.fit import fit_effective_potential
pot = Potential.from_expression("(2*x + y - 1)**2/4 + (x - y - 1)**2 + 1e-5*(sin(x/1e-5) + sin((x + y)/1e-5))", ["x", "y"])
ws = simulate(pot, 0.05, friction=np.array([[0.025, 0.012], [0.012, 0.011]]), steps=2_000_000, walkers=16, seed=1, bins=200, hist_range=[(-1.5, 3.0), (-2.5, 2.0)])
f = fit_effective_potential(ws, knots=25, method="map", seed=2, draws=400, predictive=False)
ts = []
for _ in range(4):
    t = time.perf_counter(); fit_effective_potential(ws, knots=25, method="map", seed=2, draws=400, predictive=False); ts.append(time.perf_counter() - t)
np.savez(sys.argv[1], U=np.asarray(f.U_mean), lo=np.asarray(f.U_lower), hi=np.asarray(f.U_upper), coef=np.asarray(f.coef_mean))
print(sys.argv[1], "fit s", np.round(ts, 3))
