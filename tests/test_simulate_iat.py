"""SimulationResult.q_iat_steps: the streaming batch-means autocorrelation time of q.

Truth: (i) the closed-form integrated autocorrelation time of BAOAB on a harmonic potential (a
linear AR(1) process in (q, p), computed here from the BAOAB definition, not from the kernels);
(ii) the same batch-means formula applied in numpy to the full stored trajectory (stride 1), which
checks the kernels' streaming q batch sums on every code path (1D/2D damped blocks, generic).
"""
import dataclasses
import json

import numpy as np
import pytest

from bayescg.potentials import Potential
from bayescg.simulate import simulate


def baoab_iat(omega2, gamma, h, beta=1.0):
    """IAT in steps of q under BAOAB for V = omega2 q^2 / 2, unit mass, scalar friction gamma.

    One step x -> M x + n with x = (q, p): B = [[1, 0], [-h omega2 / 2, 1]], A = [[1, h/2], [0, 1]],
    O = diag(1, F), F = exp(-gamma h), M = B A O A B; the noise L z (L^2 = (1 - F^2) / beta) enters
    p after the first A, so Q = (B A) diag(0, L^2) (B A)^T.  Stationary Sigma = M Sigma M^T + Q;
    autocovariance C_k = e1^T M^k Sigma e1; tau = 1 + 2 sum_{k>=1} C_k / C_0
    = e1^T (2 (I - M)^-1 - I) Sigma e1 / Sigma_11.
    """
    from scipy.linalg import solve_discrete_lyapunov

    Bm = np.array([[1.0, 0.0], [-0.5 * h * omega2, 1.0]])
    Am = np.array([[1.0, 0.5 * h], [0.0, 1.0]])
    F = np.exp(-gamma * h)
    M = Bm @ Am @ np.diag([1.0, F]) @ Am @ Bm
    BA = Bm @ Am
    Q = BA @ np.diag([0.0, (1 - F * F) / beta]) @ BA.T
    Sig = solve_discrete_lyapunov(M, Q)
    assert np.isclose(Sig[0, 0], 1 / (beta * omega2))  # BAOAB's q-marginal is exact for quadratic U
    T = 2 * np.linalg.inv(np.eye(2) - M) - np.eye(2)
    return float((T @ Sig)[0, 0] / Sig[0, 0])


def test_baoab_iat_closed_form_limit():
    # the truth itself: for small h it tends to the continuous-time 2 gamma / (omega2 h) steps
    assert baoab_iat(1.0, 1.0, 1e-3) == pytest.approx(2 / 1e-3, rel=1e-3)


def test_q_iat_matches_baoab_harmonic_2d():
    """Anisotropic harmonic V = x^2/2 + 2 y^2: tau_x ~ 20, tau_y ~ 5 steps (closed form above)."""
    pot = Potential.from_expression("x**2/2 + 2*y**2", ["x", "y"])
    h, gamma = 0.1, 1.0
    W, B, blen = 64, 32, 4000
    n_per = int(np.ceil(B * blen / 0.9)) + 1
    r = simulate(pot, h, gamma, steps=W * n_per, walkers=W, seed=3, integrator="langevin",
                 max_samples=0, bins=10)
    truth = np.array([baoab_iat(1.0, gamma, h), baoab_iat(4.0, gamma, h)])
    nb = W * B
    se = truth * np.sqrt(2.0 / nb)  # batch-means variance estimate: relative sd ~ sqrt(2 / batches)
    assert r.q_iat_steps_per_dim.shape == (2,)
    assert np.all(np.abs(r.q_iat_steps_per_dim - truth) < 4 * se), (r.q_iat_steps_per_dim, truth)
    assert r.q_iat_steps == pytest.approx(r.q_iat_steps_per_dim.max())
    d = json.loads(r.to_json())
    assert d["q_iat_steps"] == pytest.approx(r.q_iat_steps)
    assert d["q_iat_steps_per_dim"] == pytest.approx(r.q_iat_steps_per_dim.tolist())


def _iat_from_samples(r, B):
    """Batch-means IAT recomputed in numpy from the full trajectory (samples at stride 1)."""
    assert r.sample_stride == 1
    n_acc = r.steps_per_walker - r.burn_in_steps
    blen = n_acc // B
    lens = np.full(B, blen)
    lens[-1] = n_acc - blen * (B - 1)
    walkers = np.unique(r.sample_walker)
    qs = np.stack([r.samples_q[r.sample_walker == w] for w in walkers])  # (n, n_acc, d)
    assert qs.shape[1] == n_acc
    edges = np.concatenate([[0], np.cumsum(lens)])
    means = np.stack([qs[:, a:b].mean(axis=1) for a, b in zip(edges[:-1], edges[1:])], axis=1)  # (n, B, d)
    mu = qs.mean(axis=(0, 1))
    var = qs.var(axis=(0, 1))
    sigma2 = (lens[None, :, None] * (means - mu) ** 2).sum(axis=(0, 1)) / (means.shape[0] * B - 1)
    return sigma2 / var


@pytest.mark.parametrize("case", ["damped1d", "damped2d_diag", "damped2d_full", "langevin1d",
                                  "damped1d_libm", "damped2d_full_libm"])
def test_streaming_q_batches_equal_full_trajectory(case):
    """Every kernel path's q batch sums give the numpy batch-means IAT of the stored trajectory;
    a chunk size that does not divide the batch length exercises the accumulator reloads.
    ("_libm": without the SIMD lane kernel, i.e. the lane loop with the array gradient.)"""
    kw = dict(walkers=5, seed=2, bins=20, chunk_steps=777)
    if case.startswith("damped1d"):
        pot = Potential.from_expression("q**2/2 + 0.05*sin(q/0.05)", ["q"])
        args = (0.5, 0.1)
    elif case == "langevin1d":
        pot = Potential.from_expression("(q**2 - 1)**2/4", ["q"])
        args = (0.1, 1.0)
        kw["integrator"] = "langevin"
    else:
        pot = Potential.from_expression("(2*x + y - 1)**2/4 + (x - y - 1)**2 + 1e-4*sin(x/1e-4)", ["x", "y"])
        args = (0.05, 0.1)
        if case.startswith("damped2d_full"):
            kw["mass"] = [[1.0, 0.3], [0.3, 0.8]]
    if case.endswith("_libm"):
        pot = dataclasses.replace(pot, grad_lanes=None)
    n_per = 6000
    r = simulate(pot, *args, steps=5 * n_per, max_samples=5 * n_per, **kw)
    assert (~r.trapped).sum() >= 3  # trapped walkers are left out of both sides
    want = _iat_from_samples(r, 32)
    np.testing.assert_allclose(r.q_iat_steps_per_dim, want, rtol=1e-8)
    assert np.all(want > 0)


def test_q_iat_nan_when_all_trapped():
    # a pure quadratic with strong friction: every walker falls into the fixed point q = 0
    pot = Potential.from_expression("q**2/2", ["q"])
    r = simulate(pot, 0.5, 5.0, steps=40_000, walkers=2, seed=1)
    assert r.trapped.all()
    assert np.isnan(r.q_iat_steps) and np.all(np.isnan(r.q_iat_steps_per_dim))
    assert json.loads(r.to_json())["q_iat_steps"] is None
