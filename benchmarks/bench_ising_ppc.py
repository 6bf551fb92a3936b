"""Same-process A/B of ising.checks.predictive_check on 200 posterior draws (branch ffbs42): all
replicated data sets from one batched FFBS (chain.ffbs with coef (J, T), CoarseModel.sample_coarse of
draws (J, K), sample_fine / sample_observables over the draws' axis) against the per-draw loop it
replaced (copied below: sample_coarse and sample_fine once per draw, whose one-draw paths give the
same numbers as before the change bit for bit, and the float sample_observables of before, now int8).

Model and data: models/ising-nn.toml (n_f = 32, l_c = 2, model 110, mu = 0.6, periodic, lags 1..16,
its 100 exact FFBS data configurations, seed 1); draws from the Laplace posterior of those data
(prior sd 2, as the pipeline's default), so that the p-values mean something.  Both variants consume
the random stream in a different order, so their p-values differ by Monte Carlo error only; they are
printed.  Alternates old and new (order flipped every round) after one warm-up call of each; prints
median and range of wall time per call and the ratio.

    python benchmarks/bench_ising_ppc.py [--rounds 5] [--draws 200] [--calls 3]
"""
import argparse
import os
from pathlib import Path

import numpy as np

from bayescg.config import load_model
from bayescg.ising.bayes import fit_laplace
from bayescg.ising.checks import PPC_P_MIN, predictive_check
from bayescg.ising.fine import default_lags
from bayescg.ising.pipeline import build, load_data
from bench_ising_predict import alternated, print_times  # the same A/B harness (this folder)


def sample_observables(x, periodic, lags):
    """The float64 sample_observables before the change (one data set)."""
    x = np.asarray(x, float)
    n = x.shape[-1]
    R = []
    for l in lags:
        if periodic:
            R.append(np.mean(x * np.roll(x, -l, axis=-1)))
        else:
            R.append(np.mean(x[:, : n - l] * x[:, l:]))
    return float(x.mean()), np.array(R)


def old_predictive_check(cm, x, draws_c, draws_cf, lags, rng, *, replicates=200):
    """predictive_check before batching: one replicated data set per draw in a Python loop."""
    tc = np.asarray(draws_c, float).reshape(-1, cm.K)
    tf = np.ravel(np.asarray(draws_cf, float))
    idx = np.unique(np.linspace(0, len(tf) - 1, min(len(tf), replicates)).round().astype(int))
    m_obs, R_obs = sample_observables(x, cm.periodic, lags)
    mr, Rr = [], []
    for j in idx:
        X = cm.sample_coarse(tc[j], len(x), rng)
        m, R = sample_observables(cm.sample_fine(X, float(tf[j]), rng), cm.periodic, lags)
        mr.append(m)
        Rr.append(R)
    mr, Rr = np.array(mr), np.array(Rr)

    def p(rep, obs):
        return np.minimum(1.0, 2 * np.minimum(np.mean(rep >= obs, axis=0), np.mean(rep <= obs, axis=0)))

    pm, pR = float(p(mr, m_obs)), p(Rr, R_obs)
    misfit = (["m"] if pm < PPC_P_MIN else []) + [f"R_{int(l)}" for l, v in zip(lags, pR) if v < PPC_P_MIN]
    return {"observed": {"m": m_obs, "R": R_obs}, "replicated": {"m": mr, "R": Rr},
            "p_value": {"m": pm, "R": pR}, "p_min": float(min(pm, pR.min())), "misfit": misfit,
            "replicates": int(len(idx)), "threshold": PPC_P_MIN}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--calls", type=int, default=3, help="calls per timing (the median is per call)")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    model = load_model(root / "models" / "ising-nn.toml")
    fine, cm = build(model)
    x, _ = load_data(model, fine)
    theta_c, theta_cf = fit_laplace(cm, x, 2.0).draws(args.draws, np.random.default_rng(0))
    lags = default_lags(fine.n)

    fns = {k: (lambda f=f: f(cm, x, theta_c, theta_cf, lags, np.random.default_rng(1)))
           for k, f in (("old", old_predictive_check), ("new", predictive_check))}
    out = {k: f() for k, f in fns.items()}  # warm-up, and the p-values to show
    times = alternated(fns, args.rounds, args.calls)
    print(f"predictive_check, {out['new']['replicates']} draws, {len(x)} data configurations, {cm.n_f} fine "
          f"sites, model {cm.code}, {len(lags)} lags; {args.rounds} alternated rounds x {args.calls} calls; "
          f"load average {', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for k, o in out.items():
        print(f"{k}: p-values m {o['p_value']['m']:.3f}, R_l {np.array2string(o['p_value']['R'], precision=2)}; "
              f"replicated m mean {o['replicated']['m'].mean():.4f} sd {o['replicated']['m'].std():.4f}")
    print_times(times)


if __name__ == "__main__":
    main()
