"""Replicate study of the bands of the learned U (issue 11, item 1): are they as wide as the seed-to-seed spread?

For each case, ``--seeds`` independent simulations (seeds 1..S, everything else fixed) are fitted; on the grid
points common to all fits, inside the 98 % mass region of the mean histogram, it reports
  * width ratio = mean band half-width / (1.88 x seed-to-seed sd of U_mean) (1 for a calibrated 94 % band);
  * coverage of the replicate mean: fraction of (seed, point) whose band holds the mean of U_mean over seeds
    (what the raw estimator targets; the finite-delta bias is not part of this study);
  * the same two numbers for the model band before the walker-clustered sandwich scaling (``calibrate_band
    = False``) and for the n_eff rule of main (largest IAT of any statistic), recomputed from the same runs.
Every U is aligned to the count-weighted mean (weights: mean histogram over seeds) on the common grid before
the spread is taken.  Settings were fixed before any run (the models' own delta/gamma, modest budgets); the
2D case uses one friction Gamma = Z / 2 from a stage-1 noise estimate (seed 0) for all seeds, so only the
simulation noise varies.

    nice python benchmarks/calibration/replicates.py --seeds 20 --out benchmarks/calibration/results.json
    nice python benchmarks/calibration/replicates.py --plot benchmarks/calibration/results*.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bayescg.fit import fit_effective_potential, grid_weights, replicate_band_summary
from bayescg.potentials import catalogue
from bayescg.simulate import simulate

CASES = {
    # name: potential, delta, gamma, steps, hist_range, bins, knots, methods
    "test1-d0.5": dict(pot="test1", delta=0.5, gamma=0.1, steps=4_000_000, rng=[(-7.0, 7.0)], bins=200, knots=40,
                       methods=("map", "nuts")),
    "test2-d0.25": dict(pot="test2", delta=0.25, gamma=0.1, steps=4_000_000, rng=[(-3.0, 3.0)], bins=200, knots=40,
                        methods=("map", "nuts")),
    # Z: the stage-1 estimate (estimate_noise(test4, 0.05, 0.1, steps=2e6, walkers=16, seed=0, bayesian=False),
    # which this script computes when "Z" is absent; fixed here to save its ~15 min on the loaded machine)
    "test4-d0.05": dict(pot="test4", delta=0.05, gamma=0.1, steps=8_000_000, rng=[(-1.5, 3.0), (-2.5, 2.0)],
                        bins=60, knots=15, methods=("map",),
                        Z=[[0.05031484922112986, 0.028224252509647323], [0.028224252509647323, 0.02468827294702154]]),
}


def _old_rule_factor(sim):
    """n_eff / n of main's rule (largest streaming IAT of q, q^2, |p|^2), for the comparison column."""
    from bayescg import stats

    q = np.asarray(sim.samples_q, float)
    p = np.asarray(sim.samples_p, float)
    w = np.asarray(sim.sample_walker)
    tau = max(stats.pooled_iat(q, w), stats.pooled_iat(p, w))
    p2 = stats.p2_iat_steps(sim.beta_hat, sim.beta_hat_se, sim.momentum_covariance, sim.accumulated_steps)
    it, _ = stats.effective_iat_steps(sim.q_iat_steps, sim.accumulated_steps, tau, sim.sample_stride,
                                      getattr(sim, "q2_iat_steps", None), p2)
    return min(1.0, sim.accumulated_steps / it / float(np.sum(sim.hist_counts)))


def run_case(name, spec, seeds, draws, main_rule=True):
    pot = catalogue(spec["pot"])
    d = pot.dim
    kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"])
    if d == 2:
        from bayescg.noise import calibrate, estimate_noise

        Z = spec.get("Z")
        if Z is None:
            t = time.time()
            Z = estimate_noise(pot, spec["delta"], spec["gamma"], steps=2_000_000, walkers=16, seed=0,
                               bayesian=False, calibrated_run=False, hist_range=spec["rng"]).noise_covariance
            print(f"{name}: Z = {np.asarray(Z).tolist()} ({time.time() - t:.0f} s)", flush=True)
        kw.update(mass=np.eye(d), friction=calibrate(np.asarray(Z))[1])
    else:
        kw.update(gamma=spec["gamma"])
    runs = []
    for s in seeds:
        t0 = time.time()
        sim = simulate(pot, spec["delta"], seed=int(s), **kw)
        t_sim = time.time() - t0
        row = {"seed": int(s), "sim_seconds": t_sim, "fits": {}}
        old = _old_rule_factor(sim)
        for m in spec["methods"]:
            for variant in ("calibrated", "main_rule") if m == "map" and main_rule else ("calibrated",):
                src = sim
                if variant == "main_rule":
                    from bayescg.stats import equilibrium_summary

                    eq = equilibrium_summary(sim)
                    src = {"counts": sim.hist_counts, "edges": sim.hist_edges, "beta_hat": eq.beta_hat,
                           "beta_hat_se": eq.beta_hat_se, "n_eff_factor": old}
                t1 = time.time()
                f = fit_effective_potential(src, knots=spec["knots"], method=m, draws=draws, tune=draws, chains=2,
                                            seed=int(s), calibrate_band=variant == "calibrated")
                rec = {"grid": f.grid, "U_mean": f.U_mean, "U_lower": f.U_lower, "U_upper": f.U_upper,
                       "weight": grid_weights(f), "n_eff_factor": f.n_eff_factor, "seconds": time.time() - t1,
                       "band_calibration": f.band_calibration, "warnings": f.warnings, "diagnostics": f.diagnostics}
                row["fits"][f"{m}/{variant}"] = rec
                if variant == "calibrated":
                    # the model band before scaling: the scaling is affine about the draws' mean, so its
                    # quantiles scale exactly (no refit needed)
                    k = f.band_calibration.get("scale", 1.0)
                    row["fits"][f"{m}/model"] = dict(rec, U_lower=f.U_mean + (f.U_lower - f.U_mean) / k,
                                                     U_upper=f.U_mean + (f.U_upper - f.U_mean) / k,
                                                     band_calibration={"scale": 1.0})
        print(f"{name} seed {s}: sim {t_sim:.1f} s, fits " +
              ", ".join(f"{k} {v['seconds']:.1f} s" for k, v in row["fits"].items()), flush=True)
        runs.append(row)
    return runs


def analyse(runs):
    """Width ratio and coverage of the replicate mean per fit variant (bayescg.fit.replicate_band_summary)."""
    out = {}
    for key in runs[0]["fits"]:
        fits = [r["fits"][key] for r in runs]
        out[key] = dict(replicate_band_summary(fits),
                        band_scale_mean=float(np.mean([f["band_calibration"].get("scale", 1.0) for f in fits])),
                        n_eff_factor_mean=float(np.mean([f["n_eff_factor"] for f in fits])),
                        fit_seconds_mean=float(np.mean([f["seconds"] for f in fits])),
                        fits_with_warnings=int(sum(bool(f["warnings"]) for f in fits)))
    return out




def plot(result_files, png):
    """Band half-width against 1.88 x seed-to-seed sd of U_mean, per grid point (mass region), per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = {}
    for f in result_files:
        if Path(f).exists():
            cases.update(json.loads(Path(f).read_text()))
    fig, axs = plt.subplots(1, len(cases), figsize=(4.6 * len(cases), 4.4), squeeze=False)
    style = {"map/calibrated": ("C0", "o", "MAP+Laplace, sandwich-scaled"),
             "nuts/calibrated": ("C1", "s", "NUTS, sandwich-scaled"),
             "map/model": ("C2", "^", "model band (n_eff from counts, unscaled)"),
             "map/main_rule": ("C3", "x", "main's rule (largest IAT)")}
    for ax, (name, c) in zip(axs[0], cases.items()):
        top = 0.0
        for key, (col, mk, lab) in style.items():
            r = c["results"].get(key)
            if r is None:
                continue
            x = 1.88 * np.asarray(r["profile"]["seed_sd"])
            y = np.asarray(r["profile"]["half_width"])
            ax.scatter(x, y, s=8, color=col, marker=mk, alpha=0.6,
                       label=f"{lab}: ratio {r['width_ratio']:.2f}, cover {r['coverage']:.2f}")
            if key == "map/calibrated":
                top = 1.6 * max(x.max(), y.max())
        t = np.linspace(0, top, 2)
        ax.plot(t, t, "k-", lw=1)
        ax.plot(t, 0.8 * t, "k:", lw=0.8)
        ax.plot(t, 1.25 * t, "k:", lw=0.8)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top * 1.3)
        ax.set_xlabel("1.88 x seed-to-seed sd of U_mean")
        ax.set_ylabel("mean band half-width")
        ax.set_title(f"{name} ({c['results']['map/calibrated']['fits']} seeds)", fontsize=10)
        ax.legend(fontsize=6.5, loc="upper left")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--cases", nargs="*", default=list(CASES))
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--methods", nargs="*", help="override the cases' fit methods (e.g. map)")
    ap.add_argument("--no-main-rule", action="store_true", help="skip the refit with main's n_eff rule")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    ap.add_argument("--plot", nargs="*", help="only plot these result files into band_vs_spread.png")
    a = ap.parse_args()
    if a.plot:
        plot(a.plot, Path(__file__).with_name("band_vs_spread.png"))
        return
    out = json.loads(Path(a.out).read_text()) if Path(a.out).exists() else {}
    for name in a.cases:
        spec = dict(CASES[name], **({"methods": tuple(a.methods)} if a.methods else {}))
        t0 = time.time()
        runs = run_case(name, spec, range(1, a.seeds + 1), a.draws, not a.no_main_rule)
        res = analyse(runs)
        raw = {f"{k}|{r['seed']}|{a}": np.asarray(v[a]) for r in runs for k, v in r["fits"].items()
               for a in ("grid", "U_mean", "U_lower", "U_upper", "weight")}
        np.savez_compressed(Path(a.out).with_name(f"raw-{name}.npz"), **raw)  # re-analysable without rerunning
        per_seed = [{"seed": r["seed"], "sim_seconds": r["sim_seconds"],
                     **{k: {"band_calibration": f["band_calibration"], "warnings": f["warnings"],
                            "diagnostics": f["diagnostics"], "seconds": f["seconds"], "n_eff_factor": f["n_eff_factor"]}
                        for k, f in r["fits"].items() if not k.endswith("/model")}} for r in runs]
        out[name] = {"settings": {k: v for k, v in spec.items()}, "wall_seconds": time.time() - t0,
                     "sim_seconds_mean": float(np.mean([r["sim_seconds"] for r in runs])), "results": res,
                     "per_seed": per_seed}
        Path(a.out).write_text(json.dumps(out, indent=1, default=list))
        for k, v in res.items():
            print(f"{name} {k}: width ratio {v['width_ratio']:.3f}, coverage {v['coverage']:.3f}, "
                  f"scale {v['band_scale_mean']:.3f}, n_eff/n {v['n_eff_factor_mean']:.3f}", flush=True)


if __name__ == "__main__":
    main()
