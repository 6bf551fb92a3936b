"""Beyond the paper (issue 3, 6a): the accuracy at 1/100 of the paper's 5e9-step budget against the paper's budget.

    python results/effective/budget.py [--budgets 5e7,5e9]

For (4.5) at delta 0.5 (target U_0) and at delta 0.065 (target U_1 = q^2/2 + 0.05 sin(q/0.05), auto
gamma, 256 walkers against trapping) the same pipeline runs at each budget; reported: RMSE of the learned
U against U_0 and U_1 over the 98 % mass region (grid points), as learned and with the finite-delta
correction (bayescg.bias), beta_hat, trapped fraction, wall time.  Writes budget.json and a section of
budget.md next to this script.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bayescg.bias import learned_U_correction
from bayescg.config import load_model
from bayescg.pipeline import learn_model
from bayescg.potentials import Potential

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent.parent / "models"
U0, U1 = "q**2/2", "q**2/2 + 0.05*sin(q/0.05)"
CASES = [("4.5 d=0.5", "test1-quadratic.toml", {}),
         ("4.5 d=0.065", "test1-quadratic-d0065.toml",
          {"simulation.auto_gamma": True, "simulation.walkers": 256, "fit.knots": 60})]


def rmse_on_region(fit, expr):
    x = fit.grid[:, 0]
    m = np.asarray(fit.mass_region, bool)
    r = Potential.from_expression(expr, ["q"]).V(x[m][:, None])

    def f(u):
        e = u[m] - r
        return float(np.sqrt(np.mean((e - e.mean()) ** 2)))
    return f


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--budgets", default="5e7,5e9")
    ap.add_argument("--only", default="")
    args = ap.parse_args(argv)
    rows = []
    for cid, fname, over in CASES:
        if args.only and cid != args.only:
            continue
        for b in [float(v) for v in args.budgets.split(",")]:
            model = load_model(MODELS / fname, {**over, "simulation.steps": int(b), "fit.chains": 2})
            t0 = time.perf_counter()
            res = learn_model(model)
            wall = time.perf_counter() - t0
            fit, sim = res.fit, res.simulation
            u = fit.U_mean - fit.U_mean.min()
            c = learned_U_correction(fit.grid[:, 0], u, fit.beta["mean"], sim.delta, sim.gamma)
            row = {"case": cid, "steps": sim.steps, "gamma": sim.gamma, "walkers": sim.walkers,
                   "beta_hat": res.equilibrium.beta_hat, "trapped": sim.trapped_fraction, "wall_s": wall,
                   "n_eff": fit.n_eff, "factor": c.factor, "method": fit.method}
            for name, expr in (("U0", U0), ("U1", U1)):
                f = rmse_on_region(fit, expr)
                row[f"rmse_{name}"], row[f"rmse_{name}_corrected"] = f(u), f(c.factor * u)
            rows.append(row)
            print(json.dumps(row), flush=True)
    (HERE / "budget.json").write_text(json.dumps(rows, indent=2))
    lines = ["| case | steps | gamma | walkers | beta_hat | trapped | n_eff | RMSE vs U_0 (corrected) | "
             "RMSE vs U_1 (corrected) | wall s |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['steps']:.0e} | {r['gamma']:.3g} | {r['walkers']} | {r['beta_hat']:.4f} | "
                     f"{r['trapped']:.2f} | {r['n_eff']:.3g} | {r['rmse_U0']:.4f} ({r['rmse_U0_corrected']:.4f}) | "
                     f"{r['rmse_U1']:.4f} ({r['rmse_U1_corrected']:.4f}) | {r['wall_s']:.0f} |")
    (HERE / "budget.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
