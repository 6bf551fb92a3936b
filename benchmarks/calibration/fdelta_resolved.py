"""(4.7) at delta 0.65: which truncation does the step treat as noise?  Residual-kick autocorrelation
(bayescg.bias.residual_kick_correlation) of the V-run about the N = 0, 1, 2 truncations of (4.7).

    python benchmarks/calibration/fdelta_resolved.py

About the right U_k the kicks -delta grad(V - U_k) are white; about a truncation that leaves out a scale the step
resolves they are correlated from step to step.  This uses the truncations as candidates (to document why the
N = 0 target is missed), not to choose any setting.
"""
import json
import math

from bayescg.bias import residual_kick_correlation
from bayescg.config import load_model
from bayescg.pipeline import potential_from_model, sim_kwargs
from bayescg.potentials import Potential
from bayescg.simulate import run_trajectories, simulate

m = load_model("models/test3-cosine-series.toml", {"simulation.steps": 2e6})
pot = potential_from_model(m)
kw = sim_kwargs(m)
sim = simulate(pot, m.simulation.delta, **kw)
d, g = sim.delta, sim.gamma
_, q, p = run_trajectories(pot, d, 20000 * d, sim.final_q, sim.final_p, integrator="damped", gamma=g, record_every=d)
out = {"delta": d, "gamma": g, "beta_hat": sim.beta_hat}
for name, expr in (("N=0", "(q - pi/2)**2/4"), ("N=1", "(q - pi/2)**2/4 + cos(q)"),
                   ("N=2", "(q - pi/2)**2/4 + cos(q) + cos(4*q)/4")):
    c = Potential.from_expression(expr, ["q"])
    out[name] = residual_kick_correlation(q, p, c.gradient, delta=d, A=[[1.0]], E=[[math.exp(-g * d)]])
# mean |displacement| per step against the wavelengths of cos q (2 pi) and cos 4q (pi / 2)
out["mean_abs_step"] = float(abs(d * p).mean())
print(json.dumps(out, indent=1))
