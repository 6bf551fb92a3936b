"""How often does learn warn "finite-delta correction not converged", before and after the warning tests the returned
iterate's residual against the 95 % range of its Monte Carlo law (bias.FixedPointCorrection.residual_consistent)?

Per seed: V-run, MAP fit and the fixed point exactly as learn runs them (replicates.py's cases; the kick-shape step is
left out: it does not change the fixed point's residuals).  "converged" is the stop rule's verdict (the old warning
fired on every run not converged), "consistent" the new one's.

    python benchmarks/calibration/stop_warning.py test2-d0.3 24   # -> stop_warning-test2-d0.3.json
"""
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from replicates import CASES  # noqa: E402

from bayescg.config import FitSection  # noqa: E402
from bayescg.fit import fit_effective_potential  # noqa: E402
from bayescg.pipeline import correct_finite_delta  # noqa: E402
from bayescg.potentials import catalogue  # noqa: E402
from bayescg.simulate import simulate  # noqa: E402
case = sys.argv[1]; n = int(sys.argv[2])
spec = CASES[case]; pot = catalogue(spec["pot"]); fs = FitSection()
rows = []
for seed in range(1, n + 1):
    kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"], gamma=spec["gamma"])
    try:
        sim = simulate(pot, spec["delta"], seed=seed, **kw)
    except Exception as e:
        print(seed, "failed", e); continue
    f = fit_effective_potential(sim, knots=spec["knots"], method="map", draws=400, seed=seed)
    w = []
    _, raw, corr, note = correct_finite_delta(sim, f, kw, mode=fs.delta_correction, knots=spec["knots"],
        mass_fraction=fs.mass_fraction, steps=spec["steps"], max_iter=fs.correction_iterations,
        min_iter=fs.correction_min_iterations, reference=None, seed=seed, warnings=w, potential=pot, kick_shape=False)
    h = [x for x in corr.history if "update_rms" in x]
    rows.append({"seed": seed, "converged": corr.converged, "consistent": corr.residual_consistent,
                 "warn": any("not converged" in x for x in w),
                 "hist": [(x["update_rms"], x["mc_error_rms"], x["mc_rms_q95"]) for x in h]})
    print(seed, corr.converged, corr.residual_consistent, flush=True)
(HERE / f"stop_warning-{case}.json").write_text(json.dumps(rows))
c = sum(r["converged"] for r in rows); k = sum(r["consistent"] for r in rows)
q = np.array([x[2] / x[1] for r in rows for x in r["hist"]])
print(case, len(rows), "converged", c, "consistent", k, "warn", sum(r["warn"] for r in rows), "q95/mc_rms", q.mean().round(3), q.min().round(3), q.max().round(3))
