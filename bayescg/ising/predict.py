"""Fine-scale predictions with uncertainty (slides, "Predictive uncertainty"), and what they mean.

Every prediction (magnetization m, correlations R_l) has ``mean``, ``lower``, ``upper`` computed
from one set of values, and an ``interval_kind``:

* ``"posterior"`` (laplace, laplace_slides, nuts, gibbs): for posterior draws theta^j, j = 1..J
  (J <= ``max_thetas``, evenly thinned), the exact per-draw expectations E[m | theta^j],
  E[R_l | theta^j] (coarse transfer matrices and the map (C2): <x_i> = (2 theta_cf - 1) <X_r(i)>,
  ...; CoarseModel.exact_predictions, all draws at once).  ``mean`` is their average (the
  posterior predictive mean, exact given the draws), the interval their 94 % interval: epistemic
  uncertainty about theta.
  No fine configurations are sampled, so S_pred does not enter.
* ``"monte_carlo"`` (point estimates: exact_em, em, relent): S_pred fine configurations at the
  point estimate in 20 batches; ``mean`` is their average and the interval mean +- 1.88 standard
  errors of the batch means (94 %, normal): the Monte Carlo error of the mean only, there is no
  parameter uncertainty to propagate.  Say so when comparing with a posterior interval.

The posterior interval is the equal-tailed one (3 % and 97 % quantiles).  When the per-draw
values are so skewed that their mean falls outside it (a few draws far out in a tail, e.g. a
Laplace approximation putting mass on the wrong sign of m), the interval is moved to the 94 %
interval of the same values that ends at the mean (``shifted = True``) and the caller warns.

Errors against the exact truth: err_mag = |m - m_true| / |m_true|, err_corr = ||R - R_true|| /
||R_true|| (Euclidean norm over the lags).  When |m_true| < 1e-10 (mu = 0 by symmetry) the
relative error is undefined: err_mag is None with a note, and abs_err_mag = |m - m_true| is always given.
"""
from __future__ import annotations

import numpy as np

from .coarse import CoarseModel, sample_observables

Z94 = 1.8807936081512509  # normal quantile 0.97
PROB = 0.94
KINDS = ("posterior", "monte_carlo")


def interval_containing_mean(v, prob: float = PROB) -> tuple[float, float, float, bool]:
    """(mean, lower, upper, shifted) of values v (J,): the equal-tailed ``prob`` interval, or, when
    the mean lies outside it, the ``prob`` interval of the same values with the mean as one end."""
    v = np.asarray(v, float)
    mean = float(v.mean())
    a = (1.0 - prob) / 2
    lo, hi = np.quantile(v, [a, 1.0 - a])
    if lo <= mean <= hi:
        return mean, float(lo), float(hi), False
    F = float(np.mean(v < mean))  # fraction of draws below the mean
    if mean < lo:
        return mean, mean, float(np.quantile(v, min(1.0, F + prob))), True
    return mean, float(np.quantile(v, max(0.0, F - prob))), mean, True


def posterior_predictive(cm: CoarseModel, theta_c, theta_cf, S_pred: int, rng, lags, *, backmap: str = "pcf",
                         max_thetas: int = 200, batches: int = 20) -> dict:
    """theta_c (J, K) draws (J = 1: point estimate), theta_cf (J,) (ignored for the majority
    back-map).  Returns {"magnetization": {mean, lower, upper, interval_kind, shifted},
    "correlation": {mean (L,), lower, upper, interval_kind, shifted}, "interval_kind",
    "per_draw": (m (J',), R (J', L))}: the values mean and interval come from (exact per-draw
    expectations, or Monte Carlo batch means for a point estimate)."""
    theta_c = np.atleast_2d(np.asarray(theta_c, float))
    if cm.K == 0:
        theta_c = theta_c.reshape(max(1, theta_c.shape[0]), 0)
    J = theta_c.shape[0]
    theta_cf = np.broadcast_to(np.asarray(theta_cf if theta_cf is not None else np.nan, float), (J,))
    lags = np.asarray(lags)
    if J == 1:
        per = max(1, int(S_pred) // batches)
        ms, Rs = [], []
        for _ in range(batches):
            X = cm.sample_coarse(theta_c[0], per, rng)
            x = cm.backmap_majority(X, rng) if backmap == "majority" else cm.sample_fine(X, float(theta_cf[0]), rng)
            m, R = sample_observables(x, cm.periodic, lags)
            ms.append(m)
            Rs.append(R)
        ms, Rs = np.array(ms), np.array(Rs)
        se_m = ms.std(ddof=1) / np.sqrt(len(ms))
        se_R = Rs.std(axis=0, ddof=1) / np.sqrt(len(ms))
        mm, RR = ms.mean(), Rs.mean(0)
        kind = "monte_carlo"
        mag = {"mean": mm, "lower": mm - Z94 * se_m, "upper": mm + Z94 * se_m, "shifted": False}
        cor = {"mean": RR, "lower": RR - Z94 * se_R, "upper": RR + Z94 * se_R, "shifted": False}
    else:
        if backmap != "pcf":
            raise ValueError("posterior predictions need the map p_cf")
        idx = np.unique(np.linspace(0, J - 1, min(J, max_thetas)).round().astype(int))
        ms, Rs = cm.exact_predictions(theta_c[idx], theta_cf[idx], lags)
        kind = "posterior"
        m0, l0, u0, s0 = interval_containing_mean(ms)
        mag = {"mean": m0, "lower": l0, "upper": u0, "shifted": s0}
        cols = [interval_containing_mean(Rs[:, i]) for i in range(len(lags))]
        cor = {"mean": np.array([c[0] for c in cols]), "lower": np.array([c[1] for c in cols]),
               "upper": np.array([c[2] for c in cols]), "shifted": bool(any(c[3] for c in cols))}
    out_m = {k: (float(v) if k != "shifted" else bool(v)) for k, v in mag.items()}
    out_c = {k: (np.asarray(v, float) if k != "shifted" else bool(v)) for k, v in cor.items()}
    out_m["interval_kind"] = out_c["interval_kind"] = kind
    return {"magnetization": out_m, "correlation": out_c, "interval_kind": kind, "per_draw": (ms, Rs)}


def errors(m: float, R, m_true: float, R_true) -> dict:
    """err_mag (None with a note when m_true = 0), abs_err_mag, err_corr."""
    out = {"abs_err_mag": abs(m - m_true)}
    if abs(m_true) < 1e-10:
        out["err_mag"] = None
        out["err_mag_note"] = "true magnetization is 0 (zero field): relative error undefined, see abs_err_mag"
    else:
        out["err_mag"] = abs(m - m_true) / abs(m_true)
    R, R_true = np.asarray(R, float), np.asarray(R_true, float)
    out["err_corr"] = float(np.linalg.norm(R - R_true) / np.linalg.norm(R_true))
    return out
