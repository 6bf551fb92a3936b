"""The position-wise finite-delta correction (bayescg.bias, B3-B4) against independent truth.

The white-kick map (3.2) + xi, xi ~ N(0, delta Z), is re-implemented here (numba, gradient tabulated on a fine
grid: no bayescg spline or simulate code); it generates the 'V' data from a known U_0, so the fixed point
must give back U_0.  (B3) is checked against a numerical discrete Lyapunov solution.
"""
import math

import numba
import numpy as np
import pytest
from scipy.interpolate import BSpline
from scipy.linalg import solve_discrete_lyapunov

from bayescg.bias import Z94, fixed_point_correction, kick_noise_for, learned_curvature_of
from bayescg.fit import fit_effective_potential

LO, HI, BINS, KNOTS = -5.0, 5.0, 200, 30
TAB = np.linspace(LO - 3, HI + 3, 40001)


@numba.njit(cache=True)
def _white_map(tab_x, tab_g, delta, E, Z, n, burn, walkers, seed, lo, hi, bins, hist, mom):
    """walkers x n steps of q' = q + delta/2 p; p = E p - delta U'(q') + xi; q = q' + delta/2 p (M = 1).
    hist (bins,) counts q after burn-in; mom (walkers, 20, 2): per batch sums of p and p^2."""
    np.random.seed(seed)
    h0, inv = tab_x[0], 1.0 / (tab_x[1] - tab_x[0])
    sd = math.sqrt(delta * Z)
    per = (n - burn) // 20
    for w in range(walkers):
        q, p = np.random.normal(), np.random.normal()
        for i in range(n):
            qh = q + 0.5 * delta * p
            u = (qh - h0) * inv
            j = min(max(int(u), 0), tab_x.size - 2)
            f = u - j
            g = (1 - f) * tab_g[j] + f * tab_g[j + 1]
            p = E * p - delta * g + sd * np.random.normal()
            q = qh + 0.5 * delta * p
            if i >= burn:
                c = int((q - lo) / (hi - lo) * bins)
                if 0 <= c < bins:
                    hist[c] += 1
                b = min((i - burn) // per, 19)
                mom[w, b, 0] += p
                mom[w, b, 1] += p * p


def _run(grad, delta, gamma, Z, steps, seed, walkers=8):
    n = steps // walkers
    hist = np.zeros(BINS)
    mom = np.zeros((walkers, 20, 2))
    _white_map(TAB, grad(TAB), delta, math.exp(-gamma * delta), Z, n, n // 10, walkers, seed, LO, HI, BINS, hist, mom)
    m2 = mom[:, :, 1].sum() / mom[:, :, 1].size / ((n - n // 10) // 20)
    v = m2 - (mom[:, :, 0].sum() / mom[:, :, 0].size / ((n - n // 10) // 20)) ** 2
    bm = (mom[:, :, 1] / ((n - n // 10) // 20)).ravel()  # batch means of p^2
    se_v = bm.std(ddof=1) / math.sqrt(bm.size)
    return hist, v, se_v


def _fit(hist, v, se_v, factor):
    data = {"counts": hist, "edges": [np.linspace(LO, HI, BINS + 1)], "beta_hat": 1 / v,
            "beta_hat_se": se_v / v ** 2, "n_eff_factor": factor}
    return fit_effective_potential(data, knots=KNOTS, method="map", seed=3, draws=300)


def _learner(delta, gamma, steps, factor):
    def learn(coef, Z):
        t = fit_knots()
        spl = BSpline(t, np.asarray(coef, float), 3, extrapolate=True)
        d1 = spl.derivative()
        grad = lambda x: np.where((x >= LO) & (x <= HI), d1(np.clip(x, LO, HI)),  # noqa: E731
                                  d1(np.clip(x, LO, HI)) + 5.0 * (x - np.clip(x, LO, HI)))
        return _fit(*_run(grad, delta, gamma, Z, steps, seed=11), factor)
    return learn


def fit_knots():
    return np.concatenate([np.full(3, LO), np.linspace(LO, HI, KNOTS), np.full(3, HI)])


def _correct(U0_grad, U0, delta, gamma, Z, steps, factor):
    hist, v, se_v = _run(U0_grad, delta, gamma, Z, steps, seed=5)
    raw = _fit(hist, v, se_v, factor)
    x = raw.grid.ravel()
    w = hist[np.searchsorted(np.linspace(LO, HI, BINS + 1), x) - 1]
    fp = fixed_point_correction([fit_knots()], raw.coef_mean, _learner(delta, gamma, steps, factor),
                                grid=x, weights=w, region=raw.mass_region, var_p=v, delta=delta, gamma=gamma)
    ref = U0(x)
    reg = raw.mass_region

    def rmse(u):
        d = (u - ref)[reg]
        return float(np.sqrt(np.mean((d - d.mean()) ** 2)))
    return raw, fp, rmse(raw.U_mean), rmse(raw.U_mean + fp.correction)


def _lyapunov_var_p(kappa, delta, gamma, Z):
    h, E = delta / 2, math.exp(-gamma * delta)
    M = np.array([[1 - kappa * delta * h, h + h * (E - kappa * delta * h)], [-kappa * delta, E - kappa * delta * h]])
    b = np.array([[h], [1.0]])
    return solve_discrete_lyapunov(M, delta * Z * (b @ b.T))[1, 1]


@pytest.mark.parametrize("kappa,delta,gamma,Z", [(1.0, 0.5, 0.1, 0.3), (2.0, 0.3, 1.0, 1.7), (0.05, 0.4, 0.2, 0.5)])
def test_B3_gives_the_stationary_var_p_of_the_linear_map(kappa, delta, gamma, Z):
    vp = _lyapunov_var_p(kappa, delta, gamma, Z)
    assert kick_noise_for(vp, kappa, delta, gamma) == pytest.approx(Z, rel=1e-10)


def test_fixed_point_on_the_exact_quadratic_gives_back_kappa():
    """White-kick data on q^2/2 at delta 0.5: raw curvature is (B1)'s 1.095; the corrected U is q^2/2 within
    its Monte Carlo band, and the correction matches the closed form -(1 - 1/s) U_raw within 3 se."""
    delta, gamma = 0.5, 0.1
    raw, fp, r_raw, r_corr = _correct(lambda x: x, lambda x: x ** 2 / 2, delta, gamma, 0.3, 4_000_000, 0.05)
    assert r_raw > 0.05  # the bias is there
    assert r_corr < 0.25 * r_raw
    k_raw = learned_curvature_of(1.0, delta, gamma)
    x = raw.grid.ravel()
    # the closed form: U_k = U_raw / k_raw * 1 (a parabola), so the correction is x^2/2 (1 - k_raw), aligned
    w = raw.counts[np.searchsorted(np.linspace(LO, HI, BINS + 1), x) - 1]
    w = w / w.sum()
    closed = x ** 2 / 2 * (1 - k_raw)
    closed -= w @ closed
    reg = raw.mass_region
    err = (fp.correction - closed)[reg]
    tot_se = np.sqrt(fp.correction_se ** 2 + ((raw.U_upper - raw.U_lower) / (2 * Z94)) ** 2)[reg]
    assert np.mean(np.abs(err) < 3 * tot_se) > 0.9
    assert fp.iterations <= 4 and fp.converged
    # the white runs reproduce the target kinetic temperature after the (B3) start
    assert fp.history[-1]["var_p"] == pytest.approx(1 / raw.beta["beta_hat"], rel=0.02)


def test_fixed_point_on_a_double_well():
    """Quartic double well at delta 0.3: the correction is not a global factor; the fixed point reduces the
    RMSE against the truth at least threefold and leaves it at the Monte Carlo level."""
    U0 = lambda x: (x ** 2 - 1) ** 2 / 4  # noqa: E731
    raw, fp, r_raw, r_corr = _correct(lambda x: x ** 3 - x, U0, 0.3, 0.1, 0.3, 6_000_000, 0.05)
    assert r_corr < r_raw / 3
    mc = float(np.sqrt(np.mean(fp.correction_se[raw.mass_region] ** 2)))
    assert r_corr < 4 * mc + 0.01


def test_package_white_kick_learner_matches_the_reference_map():
    """bayescg.bias.damped_white_learner (simulate's "damped_white" on a spline U_c) against this file's
    independent map on the same U_c = 0.9 q^2/2 and Z: same var(p) (B3) and the same learned curvature."""
    from types import SimpleNamespace

    from bayescg.bias import damped_white_learner

    delta, gamma, Z, k = 0.5, 0.1, 0.4, 0.9
    t = fit_knots()
    xs = np.linspace(LO, HI, 400)
    coef = np.linalg.lstsq(BSpline.design_matrix(xs, t, 3).toarray(), k * xs ** 2 / 2, rcond=None)[0]
    sim = SimpleNamespace(hist_edges=[np.linspace(LO, HI, BINS + 1)], delta=delta)
    learn = damped_white_learner(sim, {"gamma": gamma, "walkers": 8, "burn_in": 0.1}, knots=KNOTS,
                                 steps=2_000_000, seed=4)
    mine = learn(coef, Z)
    ref = _learner(delta, gamma, 2_000_000, 0.05)(coef, Z)
    vp_exact = _lyapunov_var_p(k, delta, gamma, Z)
    for f in (mine, ref):
        assert 1 / f.beta["beta_hat"] == pytest.approx(vp_exact, rel=0.03)
        x, m = f.grid.ravel(), f.mass_region
        assert 2 * np.polyfit(x[m], f.U_mean[m], 2)[0] == pytest.approx(learned_curvature_of(k, delta, gamma), rel=0.03)
