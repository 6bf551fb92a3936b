"""Fine-scale predictions with uncertainty (slides, "Predictive uncertainty").

For posterior draws theta^j = (theta_c^j, theta_cf^j), j = 1..J (J <= ``max_thetas``, evenly
thinned), we draw X ~ p_c(X | theta_c^j) exactly (FFBS) and x ~ p_cf(x | X, theta_cf^j), with
S_pred / J fine configurations per draw (chain.observables definitions).  Reported: ``mean``, the
Monte Carlo posterior predictive mean over all S_pred samples, and the 94 % interval (3 % and
97 % quantiles over the draws) of the per-draw expectations E[m | theta^j], E[R_l | theta^j].
Those are computed exactly (coarse transfer matrices and the map (C2):
<x_i> = (2 theta_cf - 1) <X_r(i)>, ...; CoarseModel.exact_prediction) -- a Rao-Blackwellized
interval: the per-draw sample averages of S_pred / J configurations would add Monte Carlo noise
of the order of 0.1 to R_l and make the interval reflect S_pred rather than the posterior.

Point estimates (em, exact_em, relent): the S_pred samples are split into 20 batches and the
interval is mean +- 1.88 standard errors of the batch means (94 %, normal): Monte Carlo error
only, there is no parameter uncertainty to propagate.

Errors against the exact truth: err_mag = |m - m_true| / |m_true|, err_corr = ||R - R_true|| /
||R_true|| (Euclidean norm over the lags).  When |m_true| < 1e-10 (mu = 0 by symmetry) the
relative error is undefined: err_mag is None with a note, and abs_err_mag = |m - m_true| is always given.
"""
from __future__ import annotations

import numpy as np

from .coarse import CoarseModel, sample_observables

Z94 = 1.8807936081512509  # normal quantile 0.97


def posterior_predictive(cm: CoarseModel, theta_c, theta_cf, S_pred: int, rng, lags, *, backmap: str = "pcf",
                         max_thetas: int = 200, batches: int = 20) -> dict:
    """theta_c (J, K) draws (J = 1: point estimate), theta_cf (J,) (ignored for the majority
    back-map).  Returns {"magnetization": {mean, lower, upper}, "correlation": {...},
    "per_draw": (m (J',), R (J', len(lags)))}."""
    theta_c = np.atleast_2d(np.asarray(theta_c, float))
    if cm.K == 0:
        theta_c = theta_c.reshape(max(1, theta_c.shape[0]), 0)
    J = theta_c.shape[0]
    theta_cf = np.broadcast_to(np.asarray(theta_cf if theta_cf is not None else np.nan, float), (J,))
    point = J == 1
    if point:
        idx = np.zeros(batches, dtype=int)
    else:
        idx = np.unique(np.linspace(0, J - 1, min(J, max_thetas)).round().astype(int))
    per = max(1, int(S_pred) // len(idx))
    ms, Rs = [], []
    for j in idx:
        X = cm.sample_coarse(theta_c[j], per, rng)
        if backmap == "majority":
            x = cm.backmap_majority(X, rng)
        else:
            x = cm.sample_fine(X, float(theta_cf[j]), rng)
        m, R = sample_observables(x, cm.periodic, lags)
        ms.append(m)
        Rs.append(R)
    ms, Rs = np.array(ms), np.array(Rs)
    if point:
        se_m = ms.std(ddof=1) / np.sqrt(len(ms))
        se_R = Rs.std(axis=0, ddof=1) / np.sqrt(len(ms))
        mm, RR = ms.mean(), Rs.mean(0)
        mag = {"mean": mm, "lower": mm - Z94 * se_m, "upper": mm + Z94 * se_m}
        cor = {"mean": RR, "lower": RR - Z94 * se_R, "upper": RR + Z94 * se_R}
    else:
        ex = [cm.exact_prediction(theta_c[j], float(theta_cf[j]), lags) for j in idx]
        me = np.array([e[0] for e in ex])
        Re = np.array([e[1] for e in ex])
        mag = {"mean": ms.mean(), "lower": np.quantile(me, 0.03), "upper": np.quantile(me, 0.97)}
        cor = {"mean": Rs.mean(0), "lower": np.quantile(Re, 0.03, axis=0), "upper": np.quantile(Re, 0.97, axis=0)}
    return {"magnetization": {k: float(v) for k, v in mag.items()},
            "correlation": {k: np.asarray(v, float) for k, v in cor.items()},
            "per_draw": (ms, Rs)}


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
