"""Same-process A/B of ising.predict.posterior_predictive on 200 posterior draws (branch pred42): the
exact per-draw predictions batched over draws (CoarseModel.exact_predictions, one exact_moments call)
against the per-draw loop it replaced (copied below: exact_prediction per draw, the old one-vector
exact_moments, the fine (n_f, n_f) matrix and observables).  The baseline runs through the same
posterior_predictive (a CoarseModel subclass overriding exact_predictions), so intervals etc. are
timed in both.

Model: models/ising-nn.toml (n_f = 32, l_c = 2, model 110, mu = 0.6, periodic, lags 1..16).  The
draws are synthetic (normal around theta_c = (0.05, 0.55), theta_cf ~ U(0.8, 0.99)): the work
depends only on their number.  Alternates old and new (order flipped every round) after one
warm-up call of each; prints the max relative difference of the per-draw values, median and range
of wall time per call and the ratio.

    python benchmarks/bench_ising_predict.py [--rounds 5] [--draws 200] [--calls 5]
"""
import argparse
import os
import time
from pathlib import Path

import numpy as np

from bayescg.config import load_model
from bayescg.ising.chain import observables
from bayescg.ising.coarse import CoarseModel
from bayescg.ising.fine import default_lags
from bayescg.ising.pipeline import build
from bayescg.ising.predict import posterior_predictive


def old_exact_moments(struct, coef):
    """The one-vector exact_moments before batching, periodic branch (the benchmark model's)."""
    assert struct.periodic
    tb = struct.tables
    S, n = struct.S, struct.n
    c = np.asarray(coef, float)
    logt = np.tensordot(c, tb["mono"], axes=1)
    pred, nb = tb["pred"], tb["newbit"]
    spin_new = (2 * nb - 1).astype(float)
    w = logt[pred, nb[None, :]]
    w = np.exp(w - w.max())
    half = n // 2
    logs = np.zeros(n + 1)
    store = {}
    cur = np.eye(S)
    for l in range(1, n + 1):
        cur = cur[:, pred[0]] * w[0][None, :] + cur[:, pred[1]] * w[1][None, :]
        s = np.abs(cur).max()
        cur = cur / s
        logs[l] = logs[l - 1] + np.log(s)
        if l <= half:
            store[l] = cur.copy()
    Z = np.trace(cur)
    mag = np.sum(spin_new * np.diag(cur)) / Z
    corr = np.zeros(n)
    corr[0] = 1.0
    cur = np.eye(S)
    for l in range(1, n):
        cur = cur[:, pred[0]] * w[0][None, :] + cur[:, pred[1]] * w[1][None, :]
        cur = cur / np.exp(logs[l] - logs[l - 1])
        lp = n - l
        if 1 <= lp <= half:
            val = np.sum((spin_new[:, None] * store[lp] * spin_new[None, :]) * cur.T)
            corr[lp] = val * np.exp(logs[lp] + logs[l] - logs[n]) / Z
    for l in range(half + 1, n):
        corr[l] = corr[n - l]
    i = np.arange(n)
    C = corr[(i[None, :] - i[:, None]) % n]
    return np.full(n, mag), C


class OldCoarse(CoarseModel):
    """exact_predictions as the loop over draws of the old exact_prediction."""

    def exact_predictions(self, theta_c, theta_cf, lags):
        ms, Rs = [], []
        for th, tf in zip(theta_c, theta_cf):
            mX, CX = old_exact_moments(self.structure, self.coef(th))
            g = 2.0 * float(tf) - 1.0
            r = np.arange(self.n_f) // self.level
            C = g * g * CX[np.ix_(r, r)]
            np.fill_diagonal(C, 1.0)
            m, R = observables(g * mX[r], C, self.periodic, lags)
            ms.append(m)
            Rs.append(R)
        return np.array(ms), np.array(Rs).reshape(len(ms), len(lags))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--calls", type=int, default=5, help="calls per timing (the median is per call)")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    fine, cm = build(load_model(root / "models" / "ising-nn.toml"))
    old_cm = OldCoarse(cm.n_f, cm.level, cm.code, cm.beta, cm.mu_c, cm.periodic)
    rng = np.random.default_rng(0)
    J = args.draws
    theta_c = np.array([0.05, 0.55]) + 0.05 * rng.normal(size=(J, cm.K))
    theta_cf = rng.uniform(0.8, 0.99, J)
    lags = default_lags(fine.n)

    def run(model):
        return posterior_predictive(model, theta_c, theta_cf, 20000, np.random.default_rng(1), lags)

    fns = {"old": lambda: run(old_cm), "new": lambda: run(cm)}
    out = {k: f() for k, f in fns.items()}  # warm-up, and the values to compare
    (mo, Ro), (mn, Rn) = out["old"]["per_draw"], out["new"]["per_draw"]
    rel = max(np.max(np.abs(mn - mo) / np.abs(mo)), np.max(np.abs(Rn - Ro) / np.abs(Ro)))
    assert rel < 1e-12, rel
    times = alternated(fns, args.rounds, args.calls)
    print(f"posterior_predictive, {J} draws, {cm.n_f} fine sites, model {cm.code}, {len(lags)} lags; "
          f"{args.rounds} alternated rounds x {args.calls} calls; load average "
          f"{', '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(f"max relative difference of per-draw m, R: {rel:.1e}")
    print_times(times)


def alternated(fns: dict, rounds: int, calls: int) -> dict:
    """{"old": [s per call, per round], "new": [...]}: ``calls`` calls of each of fns["old"], fns["new"] per
    round, the order flipped every round (so a drift of the machine's speed hits both alike)."""
    times = {k: [] for k in fns}
    for r in range(rounds):
        for k in (("old", "new") if r % 2 == 0 else ("new", "old")):
            t0 = time.perf_counter()
            for _ in range(calls):
                fns[k]()
            times[k].append((time.perf_counter() - t0) / calls)
    return times


def print_times(times: dict) -> None:
    """Median and range per call of each side of :func:`alternated`, and the ratio old / new."""
    med = {k: float(np.median(v)) for k, v in times.items()}
    for k, v in times.items():
        print(f"{k}: median {1e3 * med[k]:.2f} ms per call (range {1e3 * min(v):.2f}-{1e3 * max(v):.2f})")
    print(f"ratio old / new: {med['old'] / med['new']:.1f}x")


if __name__ == "__main__":
    main()
