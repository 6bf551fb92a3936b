"""Is the correction's Monte Carlo error (the white run's band) the size of the seed-to-seed spread of L[U_c]?  Double well,
delta 0.3, 4e6 steps, the first iterate of (B4); three white-run seeds.  python benchmarks/calibration/fdelta_mc_error.py
(output: fdelta_mc_error.json)"""
import numpy as np, json
from bayescg.config import load_model
from bayescg.pipeline import potential_from_model, sim_kwargs
from bayescg.simulate import simulate
from bayescg.fit import fit_effective_potential
from bayescg.bias import damped_white_learner, fixed_point_start, Z94, stable_continuation_1d
from bayescg.splines import SplineRep
m = load_model("models/test2-double-well.toml", {"simulation.steps": 4e6, "simulation.delta": 0.3})
kw = sim_kwargs(m); pot = potential_from_model(m)
sim = simulate(pot, 0.3, **kw)
fit = fit_effective_potential(sim, knots=m.fit.knots if m.fit else 40, method="map", draws=400)
x = fit.grid[:, 0]
T = SplineRep(fit.knots, fit.coef_mean).value(x)
s, Z, km, _ = fixed_point_start(x, T, 1 / sim.beta_hat, 0.3, sim.gamma, None, None)
t = np.asarray(fit.knots[0]); ct = np.asarray(fit.coef_mean)
grev = np.array([t[j + 1:j + 4].mean() for j in range(ct.size)])
inside = (grev >= x.min()) & (grev <= x.max())
coef = stable_continuation_1d(s * ct, inside, grev, km)
F, se, vp = [], [], []
for seed in (11, 12, 13):
    learn = damped_white_learner(sim, kw, knots=m.fit.knots if m.fit else 40, steps=4_000_000, seed=seed)
    f = learn(coef, Z)
    F.append(SplineRep(f.knots, f.coef_mean).value(x)); se.append(np.interp(x, f.grid[:, 0], (f.U_upper - f.U_lower) / (2 * Z94))); vp.append(1 / f.beta["beta_hat"])
F = np.array(F); reg = fit.mass_region; w = fit.grid_weights / fit.grid_weights.sum()
F = F - (F @ w)[:, None]
sd = F.std(axis=0, ddof=1)
print(json.dumps({"rms_seed_sd": float(np.sqrt(np.mean(sd[reg] ** 2))), "rms_band_se": float(np.sqrt(np.mean(np.mean(se, axis=0)[reg] ** 2))),
                  "var_p": vp, "target_var_p": 1 / sim.beta_hat, "Z": Z, "s": s}))
