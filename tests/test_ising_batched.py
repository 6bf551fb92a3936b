"""Exact moments and predictions batched over posterior draws, against brute-force enumeration."""
import itertools

import numpy as np
import pytest

from bayescg.ising import chain
from bayescg.ising.chain import exact_moments
from bayescg.ising.coarse import CoarseModel
from bayescg.ising.predict import posterior_predictive


def enumerate_coarse(cm, coef):
    """All 2^n_c coarse configurations X and p_c(X) for one coefficient vector (term sums are
    direct products, independent of the transfer matrices)."""
    X = np.array(list(itertools.product([-1, 1], repeat=cm.n_c)), float)
    lw = cm.term_sums(X) @ coef
    p = np.exp(lw - lw.max())
    return X, p / p.sum()


def draw_coefs(cm, rng):
    """(7, T) term coefficients of model 121: ordinary draws, a generic draw scaled by 30 and
    antiferromagnetic pairs against a field, scaled by 30.  In the last two the best transition
    cannot repeat, so the normalized P^l decays geometrically and leaves the float range within
    14 sites unless every step is rescaled, per draw (checked: dropping either gives nan)."""
    coef = cm.coef(rng.normal(size=(5, cm.K)) * 0.6)
    coef[-1] *= 30.0
    return np.vstack([coef, np.array([[2.0, -3.0, 0.3, 0.5], [1.5, -3.0, -0.2, 0.4]]) * 30.0])


@pytest.mark.parametrize("periodic", [True, False])
def test_batched_exact_moments_vs_enumeration(periodic, monkeypatch):
    cm = CoarseModel(28, 2, "121", beta=0.9, mu_c=0.2, periodic=periodic)  # n_c = 14, S = 4
    coef = draw_coefs(cm, np.random.default_rng(5))
    m, C = exact_moments(cm.structure, coef)
    assert m.shape == (len(coef), 14) and C.shape == (len(coef), 14, 14)
    for j, c in enumerate(coef):
        X, p = enumerate_coarse(cm, c)
        np.testing.assert_allclose(m[j], p @ X, rtol=0, atol=1e-12)
        np.testing.assert_allclose(C[j], np.einsum("k,ki,kj->ij", p, X, X), rtol=0, atol=1e-12)
        m1, C1 = exact_moments(cm.structure, c)  # one vector: unbatched shapes, same numbers
        assert m1.shape == (14,) and C1.shape == (14, 14)
        np.testing.assert_allclose(m1, m[j], rtol=0, atol=1e-13)
        np.testing.assert_allclose(C1, C[j], rtol=0, atol=1e-13)
    # one draw per chunk (the memory bound for large 2^L) gives the same numbers
    monkeypatch.setattr(chain, "_MOMENTS_FLOATS", 1)
    m2, C2 = exact_moments(cm.structure, coef)
    np.testing.assert_allclose(m2, m, rtol=0, atol=1e-13)
    np.testing.assert_allclose(C2, C, rtol=0, atol=1e-13)


@pytest.mark.parametrize("periodic", [True, False])
def test_exact_predictions_vs_fine_enumeration(periodic):
    """Fine m and R_l of the PCG predictive by enumerating the joint p_c(X) p_cf(x | X) over all
    2^5 coarse and 2^10 fine configurations."""
    cm = CoarseModel(10, 2, "121", beta=1.1, mu_c=0.3, periodic=periodic)
    rng = np.random.default_rng(8)
    theta_c = rng.normal(size=(4, cm.K)) * 0.6
    theta_c[-1] *= 30.0
    theta_cf = np.array([0.9, 0.75, 1.0, 0.6])
    lags = [1, 2, 3, 4, 5] + ([10] if periodic else [])  # lag n on a ring: <x_i x_i> = 1
    m, R = cm.exact_predictions(theta_c, theta_cf, lags)
    assert m.shape == (4,) and R.shape == (4, len(lags))
    x = np.array(list(itertools.product([-1, 1], repeat=10)), float)
    n = 10
    for j in range(4):
        X, pX = enumerate_coarse(cm, cm.coef(theta_c[j]))
        agree = (x[None, :, :] == np.repeat(X, 2, axis=1)[:, None, :]).sum(-1)  # (2^5, 2^10)
        p = pX[:, None] * theta_cf[j] ** agree * (1 - theta_cf[j]) ** (n - agree)
        px = p.sum(0)  # fine marginal
        assert px.sum() == pytest.approx(1.0, abs=1e-12)
        assert m[j] == pytest.approx(np.mean(px @ x), abs=1e-12)
        for k, l in enumerate(lags):
            pairs = [(i, (i + l) % n) for i in range(n)] if periodic else [(i, i + l) for i in range(n - l)]
            want = np.mean([px @ (x[:, a] * x[:, b]) for a, b in pairs])
            assert R[j, k] == pytest.approx(want, abs=1e-12)
        m1, R1 = cm.exact_predictions(theta_c[j][None], [theta_cf[j]], lags)  # one draw alone: the same numbers
        assert m1[0] == pytest.approx(m[j], abs=1e-14)
        np.testing.assert_allclose(R1[0], R[j], rtol=0, atol=1e-14)


@pytest.mark.parametrize("max_thetas", [200, 7])
def test_posterior_predictive_per_draw_equals_single_draw_loop(max_thetas):
    cm = CoarseModel(32, 2, "110", 1.0, 0.6, True)
    rng = np.random.default_rng(2)
    J = 40
    theta_c = np.array([0.05, 0.55]) + 0.1 * rng.normal(size=(J, 2))
    theta_cf = rng.uniform(0.7, 0.99, J)
    lags = np.arange(1, 17)
    out = posterior_predictive(cm, theta_c, theta_cf, 1000, np.random.default_rng(0), lags,
                               max_thetas=max_thetas)
    ms, Rs = out["per_draw"]
    idx = np.unique(np.linspace(0, J - 1, min(J, max_thetas)).round().astype(int))
    assert ms.shape == (len(idx),) and Rs.shape == (len(idx), len(lags))
    for k, j in enumerate(idx):
        m1, R1 = cm.exact_predictions(theta_c[j][None], [float(theta_cf[j])], lags)
        assert ms[k] == pytest.approx(m1[0], rel=1e-12)
        np.testing.assert_allclose(Rs[k], R1[0], rtol=1e-12)
    assert out["interval_kind"] == "posterior"
    assert out["magnetization"]["mean"] == pytest.approx(ms.mean(), rel=1e-14)
