"""The noise model's compiled kernel (bayescg.kernels.noise) is the PyMC model's posterior: same log density (up
to a constant) and gradient on PyMC's unconstrained point, d = 1, 2, 3; and NUTS on it gives the same posterior of
Z as NUTS on the PyMC model (means and sds within Monte Carlo error)."""
import numpy as np
import pytest

from bayescg.bayes.noise import noise_density, noise_model
from bayescg.kernels.noise import noise_logp_grad


def _designs(d, K, rng):
    As = []
    for _ in range(K):
        B = rng.standard_normal((d, d))
        As.append(B @ B.T + d * np.eye(d))
    Z = np.eye(d) * 0.05 + 0.01
    moments = np.array([np.sum(Z * A) / (2 * 0.1) for A in As]) * (1 + 0.02 * rng.standard_normal(K))
    return As, moments, 0.03 * np.abs(moments), 0.1


@pytest.mark.parametrize("d", [1, 2, 3])
def test_noise_kernel_equals_pymc_logp_and_gradient(d):
    rng = np.random.default_rng(d)
    As, m, s, gamma = _designs(d, 3 * d, rng)
    model = noise_model(As, m, s, gamma)
    dens = noise_density(As, m, s, gamma)
    (name,) = [v.name for v in model.value_vars]
    fl, fg = model.compile_logp(), model.compile_dlogp()
    pts = [dens.initial_point(t) + 0.3 * rng.standard_normal(dens.n_dim) for t in range(5)]
    ref0 = fl({name: pts[0].reshape(model.initial_point()[name].shape)})
    g = np.empty(dens.n_dim)
    k0 = noise_logp_grad(pts[0], dens.buf, g)
    for x in pts:
        p = {name: x.reshape(model.initial_point()[name].shape)}
        lp = noise_logp_grad(x, dens.buf, g)
        assert abs((lp - k0) - (fl(p) - ref0)) <= 1e-9 * max(1.0, abs(fl(p)))
        np.testing.assert_allclose(g, np.ravel(fg(p)), rtol=1e-9, atol=1e-9 * np.abs(g).max())


def test_noise_kernel_posterior_of_z_equals_pymc_model():
    from bayescg.sampling import sample

    rng = np.random.default_rng(7)
    As, m, s, gamma = _designs(2, 6, rng)
    a = sample(noise_density(As, m, s, gamma), draws=1000, tune=1000, chains=4, seed=3).posterior["Z"].values
    b = sample(noise_model(As, m, s, gamma), draws=1000, tune=1000, chains=4, seed=3).posterior["Z"].values
    a, b = a.reshape(-1, 4), b.reshape(-1, 4)
    sd = b.std(axis=0)
    # ~4000 draws with ESS >= ~1000 each: the difference of means has sd <= ~0.045 posterior sds
    assert np.all(np.abs(a.mean(axis=0) - b.mean(axis=0)) < 0.2 * sd)
    assert np.all(np.abs(a.std(axis=0) / sd - 1) < 0.1)
