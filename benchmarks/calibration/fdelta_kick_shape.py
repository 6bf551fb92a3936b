"""Test 1 at delta 0.5: is the residual 1 % of the white-kick correction the non-Gaussian shape of the micro-scale kicks?

    python benchmarks/calibration/fdelta_kick_shape.py   (output: fdelta_kick_shape.txt)

An independent numba map (not bayescg.simulate) on U = q^2/2 driven by (a) Gaussian kicks and (b) the recorded
residual kicks of the V-run resampled i.i.d. (same variance); curvature learned by the recipe (MAP)."""
import math, sys, numpy as np, numba
from scipy import stats
from bayescg.potentials import catalogue
from bayescg.simulate import simulate, run_trajectories
from bayescg.fit import fit_effective_potential, learned_curvature

LO, HI, BINS = -7.0, 7.0, 100
@numba.njit(cache=True)
def wmap(kappa, delta, E, table, sd, gauss, n, burn, walkers, seed, hist, mom):
    np.random.seed(seed)
    per = (n - burn) // 20
    for w in range(walkers):
        q, p = np.random.normal(), np.random.normal()
        for i in range(n):
            qh = q + 0.5 * delta * p
            if gauss:
                xi = sd * np.random.normal()
            else:
                xi = table[np.random.randint(table.size)]
            p = E * p - delta * kappa * qh + xi
            q = qh + 0.5 * delta * p
            if i >= burn:
                c = int((q - LO) / (HI - LO) * BINS)
                if 0 <= c < BINS:
                    hist[c] += 1
                b = min((i - burn) // per, 19)
                mom[w, b, 0] += p
                mom[w, b, 1] += p * p

def learn(table, gauss, steps, seed, kappa=1.0, delta=0.5, gamma=0.1, W=16):
    n = steps // W; hist = np.zeros(BINS); mom = np.zeros((W, 20, 2))
    wmap(kappa, delta, math.exp(-gamma*delta), table, table.std(), gauss, n, n//10, W, seed, hist, mom)
    m = (n - n//10)//20
    v = mom[:,:,1].sum()/mom[:,:,1].size/m - (mom[:,:,0].sum()/mom[:,:,0].size/m)**2
    bm = (mom[:,:,1]/m).ravel()
    f = fit_effective_potential({"counts": hist, "edges": [np.linspace(LO,HI,BINS+1)], "beta_hat": 1/v,
        "beta_hat_se": bm.std(ddof=1)/math.sqrt(bm.size)/v**2, "n_eff_factor": 0.05}, knots=20, method="map", draws=300)
    return learned_curvature(f)

pot = catalogue("test1"); d, g = 0.5, 0.1
sim = simulate(pot, d, g, steps=20_000_000, walkers=16, seed=3, hist_range=[(LO, HI)], bins=BINS)
print("V-run learned curvature", learned_curvature(fit_effective_potential(sim, knots=20, method="map", draws=300)), flush=True)
_, q, p = run_trajectories(pot, d, 20000*d, sim.final_q, sim.final_p, integrator="damped", gamma=g, record_every=d)
E = math.exp(-g*d)
qh = q[:-1] + 0.5*d*p[:-1]
r = (p[1:] - E*p[:-1] + d*qh).ravel()
print("kick var/delta", r.var()/d, "excess kurtosis", stats.kurtosis(r), flush=True)
for s in (11, 12):
    print("seed", s, "gaussian", learn(r, True, 20_000_000, s), "resampled", learn(r, False, 20_000_000, s), flush=True)
