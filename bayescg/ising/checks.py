"""Checks that say when PCG's answers cannot be trusted: identifiability, the exact posterior,
Laplace against NUTS on predictions, posterior predictive checks, stacking over [abc] candidates.

* :func:`identifiability`: profile likelihood of every parameter in u = (theta_c, z),
  z = logit(2 theta_cf - 1), from the maximum-likelihood point.  A side of a profile that never
  drops by 1.92 (chi^2_1(0.95) / 2, the 95 % likelihood-ratio cut) within ``reach`` is
  unbounded: the data do not identify that parameter (a ridge, or a maximum not attained when
  the profile keeps rising).
* :func:`grid_posterior`: the exact marginal posterior of the NUTS model (Normal(0, prior_sd)
  on theta_c, uniform theta_cf, density in u with the Jacobian) by quadrature on a grid (K+1 <= 3).
* :func:`prediction_shift`: Laplace's per-draw predictions against NUTS's.
* :func:`predictive_check`: replicated data sets (size S_f) from posterior draws; the data's
  own fine statistics (m, R_l) against them; two-sided posterior predictive p-values.
* :func:`stacking`: Laplace posterior of every candidate coarse model, PSIS-LOO, stacking weights
  (arviz.compare), and each candidate's predictive check.
"""
from __future__ import annotations

import warnings

import numpy as np

from .coarse import CoarseModel, sample_observables

LR95 = 1.920729410347062  # chi2(1).ppf(0.95) / 2
SHIFT_SD_MAX = 0.5  # Laplace vs NUTS: predictions further apart than this (in NUTS posterior sds) warn
PPC_P_MIN = 0.01  # posterior predictive p-value below which a statistic is called misfit
PPC_FLOATS = 1 << 22  # predictive_check's scratch (32 MB: sample_fine's float64 uniforms): bounds the draws per block


def _u_to_theta(u, K):
    u = np.asarray(u, float)
    return u[..., :K], 0.5 + 0.5 / (1.0 + np.exp(-u[..., K]))


def _inside(tf):
    """theta_cf kept off the ends of (0.5, 1), where the logistic map rounds to them (the likelihood's domain)."""
    return np.clip(tf, 0.5 + 1e-12, 1.0 - 1e-12)


def _loglik_u(fast, K):
    def f(u):
        th, tf = _u_to_theta(u, K)
        tf = float(_inside(tf))
        return float(fast(th, tf)[0])
    return f


def identifiability(cm: CoarseModel, x, fast, *, reach: float = 16.0, steps=(0.5, 1, 2, 4, 8, 16)) -> dict:
    """Profile likelihood check at the maximum-likelihood point (see module doc).

    Returns {"identified": bool, "ml": {name: value}, "parameters": {name: {"lower_bounded",
    "upper_bounded"}}, "not_identified": [names], "max_not_attained": bool, "max_rise"}; names are
    theta_c's and "z_theta_cf".  The profile's inner maximization is local (Nelder-Mead / Powell
    from the previous step), so a missed profile maximum can only make a side look bounded."""
    from scipy.optimize import minimize

    from .em import map_exact

    K = cm.K
    names = [*cm.names, "z_theta_cf"]
    est = map_exact(cm, x, fast=fast)
    tf = float(np.clip(est.theta_cf, 0.5 + 1e-9, 1 - 1e-9))
    u_hat = np.append(est.theta_c, np.log(2 * tf - 1) - np.log1p(-(2 * tf - 1)))
    f = _loglik_u(fast, K)
    l_hat = f(u_hat)
    out, bad, rise = {}, [], 0.0
    for k in range(K + 1):
        rest = [j for j in range(K + 1) if j != k]
        res = {"lower_bounded": False, "upper_bounded": False}
        for sign, key in ((-1, "lower_bounded"), (1, "upper_bounded")):
            v = u_hat[rest].copy()
            for t in steps:
                if t > reach:
                    break
                uk = u_hat[k] + sign * t

                def negp(w, uk=uk):
                    u = np.empty(K + 1)
                    u[k], u[rest] = uk, w
                    return -f(u)
                if rest:
                    if len(rest) > 1:
                        r = minimize(negp, v, method="Nelder-Mead",
                                     options={"xatol": 1e-3, "fatol": 1e-4, "maxiter": 400})
                    else:
                        r = minimize(negp, v, method="Powell", options={"xtol": 1e-3, "ftol": 1e-6})
                    v, lp = r.x, -r.fun
                else:
                    lp = -negp(v)
                rise = max(rise, lp - l_hat)
                if l_hat - lp > LR95:
                    res[key] = True
                    break
        out[names[k]] = res
        if not (res["lower_bounded"] and res["upper_bounded"]):
            bad.append(names[k])
    return {"identified": not bad, "not_identified": bad, "max_not_attained": bool(rise > 1e-2),
            "max_rise": float(rise), "ml": dict(zip(names, map(float, u_hat))), "loglik_ml": l_hat,
            "parameters": out, "criterion": f"profile log-likelihood drop > {LR95:.3f} (95 % LR) within "
                                             f"{reach} of the ML point in (theta_c, logit(2 theta_cf - 1))"}


def identifiability_warning(idf: dict) -> str | None:
    if idf["identified"]:
        return None
    what = ("the likelihood's maximum is not attained (the profile keeps rising)" if idf["max_not_attained"]
            else "the likelihood is flat (a ridge)")
    return (f"identifiability: the data do not identify {', '.join(idf['not_identified'])}: {what}; "
            f"maximum-likelihood estimates (exact_em, em, relent) along it are arbitrary and the posterior "
            f"there is the prior's")


#: What the exact grid may cost, in evaluations x (data patterns x coarse blocks) of the likelihood: a cost model, not
#: a clock, so that the grid -- and the check's numbers -- do not depend on the machine or its load.  ~60 s on
#: benchmarks/' 2-core host (0.145 us per pattern-block and evaluation at 940 patterns x 16 blocks; 35 us per call
#: besides).
GRID_COST_BUDGET = 4e8


def grid_posterior(cm: CoarseModel, fast, prior_sd: float, center, half_width, points=None,
                   cost_budget: float = GRID_COST_BUDGET) -> dict | None:
    """Exact posterior moments of theta_c and theta_cf by quadrature on a grid in u = (theta_c, z)
    (density with the Jacobian of z, the density NUTS samples).  center, half_width (K+1,); points per
    axis: 81 (2 dims), 25 (3 dims), fewer (>= 15) when the grid would cost more than ``cost_budget``
    pattern-block evaluations (``fast.counts.size`` per evaluation; large data); None for more dimensions or
    below 15 points.  Returns {"mean": {name: v}, "sd": {...}, "edge_mass": posterior mass on the grid's outer
    layer (should be ~0), "points_per_axis"}."""
    D = cm.K + 1
    if D > 3:
        return None
    n = points or {1: 401, 2: 81, 3: 25}[D]
    n = min(n, int((cost_budget / max(int(np.size(fast.counts)), 1)) ** (1.0 / D)))
    if n < 15:
        return None
    axes = [np.linspace(c - h, c + h, n) for c, h in zip(center, half_width)]
    U = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, D)
    th, tf = _u_to_theta(U, cm.K)
    sig = 2 * tf - 1
    ll = fast.logliks(th, _inside(tf))  # as _loglik_u, in one prepared loop
    lp = ll - 0.5 * (th ** 2).sum(1) / prior_sd ** 2 + np.log(0.5 * sig * (1 - sig))
    w = np.exp(lp - lp.max())
    w /= w.sum()
    vals = np.column_stack([th, tf])
    mean = w @ vals
    sd = np.sqrt(w @ (vals - mean) ** 2)
    idx = np.stack(np.unravel_index(np.arange(len(U)), (n,) * D), -1)
    edge = float(w[np.any((idx == 0) | (idx == n - 1), axis=1)].sum())
    names = [*cm.names, "theta_cf"]
    return {"mean": dict(zip(names, map(float, mean))), "sd": dict(zip(names, map(float, sd))), "edge_mass": edge,
            "points_per_axis": n}


def compare_with_posterior(exact: dict, draws_c, draws_cf, names) -> dict:
    """sd ratio (method / exact) and mean shift (in exact sds) of every parameter."""
    vals = np.column_stack([np.asarray(draws_c, float).reshape(-1, len(names)), np.ravel(draws_cf)])
    out = {}
    for i, nm in enumerate([*names, "theta_cf"]):
        sd_e = exact["sd"][nm]
        sd = 0.0 if np.ptp(vals[:, i]) == 0 else float(vals[:, i].std(ddof=1))  # held fixed: exactly 0
        out[nm] = {"sd_ratio": sd / sd_e,
                   "mean_shift_sd": float((vals[:, i].mean() - exact["mean"][nm]) / sd_e)}
    return out


def prediction_shift(lap_pred: dict, nuts_pred: dict) -> dict:
    """|mean_laplace - mean_nuts| in NUTS posterior sds of the per-draw predictions, for m and
    (max over lags) R_l; and Laplace's fraction of draws with E[m | theta] of the other sign than
    NUTS's mean."""
    ml, Rl = lap_pred["per_draw"]
    mn, Rn = nuts_pred["per_draw"]
    sd_m = max(float(np.std(mn, ddof=1)), 1e-12)
    sd_R = np.maximum(np.std(Rn, axis=0, ddof=1), 1e-12)
    return {"magnetization_shift_sd": float(abs(np.mean(ml) - np.mean(mn)) / sd_m),
            "magnetization_sd_ratio": float(np.std(ml, ddof=1) / sd_m),
            "correlation_shift_sd": float(np.max(np.abs(np.mean(Rl, 0) - np.mean(Rn, 0)) / sd_R)),
            "laplace_wrong_sign_fraction": float(np.mean(np.sign(ml) != np.sign(np.mean(mn)))),
            "threshold_sd": SHIFT_SD_MAX}


def predictive_check(cm: CoarseModel, x, draws_c, draws_cf, lags, rng, *, replicates: int = 200) -> dict:
    """Posterior predictive check of the data's fine statistics T(x) = (m, R_l at ``lags``):
    ``replicates`` draws (thinned), each a replicated data set of len(x) configurations from
    p_c(X | theta_c) and p_cf; p-value per statistic 2 min(P(T_rep >= T_obs), P(T_rep <= T_obs)).
    Returns {"observed": {m, R}, "replicated": {m (J,), R (J, L)}, "p_value": {m, R (L,)},
    "p_min", "misfit": [names of statistics with p < PPC_P_MIN]}."""
    tc = np.asarray(draws_c, float).reshape(-1, cm.K)
    tf = np.ravel(np.asarray(draws_cf, float))
    idx = np.unique(np.linspace(0, len(tf) - 1, min(len(tf), replicates)).round().astype(int))
    m_obs, R_obs = sample_observables(x, cm.periodic, lags)
    # all replicates in one batched FFBS, in blocks of draws that bound the float scratch of the statistics
    step = max(1, PPC_FLOATS // (len(x) * cm.n_f))
    mr, Rr = [], []
    for lo in range(0, len(idx), step):
        j = idx[lo:lo + step]
        X = cm.sample_coarse(tc[j], len(x), rng)  # (J, S_f, n_c)
        m, R = sample_observables(cm.sample_fine(X, tf[j], rng), cm.periodic, lags)
        mr.append(m)
        Rr.append(R)
    mr, Rr = np.concatenate(mr), np.concatenate(Rr)

    def p(rep, obs):
        return np.minimum(1.0, 2 * np.minimum(np.mean(rep >= obs, axis=0), np.mean(rep <= obs, axis=0)))

    pm, pR = float(p(mr, m_obs)), p(Rr, R_obs)
    misfit = (["m"] if pm < PPC_P_MIN else []) + [f"R_{int(l)}" for l, v in zip(lags, pR) if v < PPC_P_MIN]
    return {"observed": {"m": m_obs, "R": R_obs}, "replicated": {"m": mr, "R": Rr},
            "p_value": {"m": pm, "R": pR}, "p_min": float(min(pm, pR.min())), "misfit": misfit,
            "replicates": int(len(idx)), "threshold": PPC_P_MIN}


def stacking(fine_cm_args: dict, x, codes, lags, rng, *, prior_sd: float = 2.0, draws: int = 1000) -> dict:
    """LOO stacking weights over candidate coarse models ``codes`` (Laplace posterior of each,
    pointwise exact log-likelihood with X summed out, PSIS-LOO; arviz.compare(method="stacking")),
    with each candidate's posterior predictive check.  fine_cm_args: CoarseModel keywords except
    ``code``.  Returns {"weights": {code: w}, "elpd_loo": {...}, "ppc_p_min": {...},
    "misfit": {code: [...]}, "none_fits": bool}."""
    import arviz as az
    import xarray as xr

    from .bayes import fit_laplace
    from .kernel import FastLoglik

    idatas, ppc = {}, {}
    for code in codes:
        cm = CoarseModel(code=code, **fine_cm_args)
        lap = fit_laplace(cm, x, prior_sd)
        dc, df = lap.draws(draws, rng)
        fast = FastLoglik(cm, x)
        ll = np.stack([fast.pointwise(dc[j], df[j]) for j in range(draws)])[None]
        idatas[code] = az.InferenceData(
            posterior=xr.Dataset({"theta_cf": (("chain", "draw"), df[None])}),
            log_likelihood=xr.Dataset({"x": (("chain", "draw", "configuration"), ll)}))
        ppc[code] = predictive_check(cm, x, dc, df, lags, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cmp = az.compare(idatas, ic="loo", method="stacking")
    weights = {c: float(cmp.loc[c, "weight"]) for c in codes}
    misfit = {c: ppc[c]["misfit"] for c in codes}
    return {"candidates": list(codes), "weights": weights,
            "elpd_loo": {c: float(cmp.loc[c, "elpd_loo"]) for c in codes},
            "ppc_p_min": {c: ppc[c]["p_min"] for c in codes}, "misfit": misfit,
            "none_fits": all(misfit[c] for c in codes),
            "method": "Laplace posterior per candidate, PSIS-LOO, stacking (arviz.compare)"}
