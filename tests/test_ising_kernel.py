"""The fast marginal-likelihood kernel (bayescg.ising.kernel) against brute-force enumeration and
the independent numpy transfer-matrix code: symmetry reduction, extreme parameters, rescaling,
and the nopython route PyTensor/nutpie use."""
import itertools
import warnings

import numpy as np
import pytest

from bayescg.ising.coarse import CoarseModel
from bayescg.ising.em import marginal_loglik
from bayescg.ising.kernel import FastLoglik, canonical_patterns


def brute(cm, x, theta_c, theta_cf):
    """log p(x_i | theta) by enumerating all 2^n_c coarse configurations (no transfer matrices)."""
    Xs = np.array(list(itertools.product([-1, 1], repeat=cm.n_c)), float)
    lw = cm.term_sums(Xs) @ cm.coef(theta_c)
    logpc = lw - (np.log(np.exp(lw - lw.max()).sum()) + lw.max())
    out = []
    for xi in x:
        agree = (np.repeat(Xs, cm.level, axis=1) * xi[None, :] > 0).sum(1)
        lp = logpc + agree * np.log(theta_cf) + (cm.n_f - agree) * np.log1p(-theta_cf)
        out.append(np.log(np.exp(lp - lp.max()).sum()) + lp.max())
    return np.array(out)


def with_images(x, level, periodic):
    """x plus rotated (by whole blocks) and block-reversed copies: same likelihood by symmetry."""
    n_c = x.shape[1] // level
    blocks = x.reshape(len(x), n_c, level)
    out = [x, blocks[:, ::-1].reshape(len(x), -1)]  # reversal of the block order
    if periodic:
        out += [np.roll(blocks, k, axis=1).reshape(len(x), -1) for k in (1, 3)]
    return np.vstack(out)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("code,level", [("110", 2), ("111", 3), ("021", 2), ("101", 1)])
def test_kernel_vs_enumeration_with_symmetric_copies(periodic, code, level):
    n_f = 7 * level
    cm = CoarseModel(n_f, level, code, beta=0.9, mu_c=0.3, periodic=periodic)
    rng = np.random.default_rng(3)
    x = with_images(np.where(rng.random((4, n_f)) < 0.6, 1, -1), level, periodic)
    fast = FastLoglik(cm, x)
    assert len(fast.counts) <= 4  # every image falls into its original's orbit
    assert fast.mult.sum() == len(x)
    th = rng.normal(size=cm.K) * 0.5
    ref = brute(cm, x, th, 0.81)
    np.testing.assert_allclose(fast.pointwise(th, 0.81), ref, atol=1e-10)
    ll, g = fast(th, 0.81)
    assert ll == pytest.approx(ref.sum(), abs=1e-9)
    eps = 1e-6
    for k in range(cm.K + 1):
        e = np.zeros(cm.K + 1)
        e[k] = eps
        fd = (brute(cm, x, th + e[:-1], 0.81 + e[-1]).sum() - brute(cm, x, th - e[:-1], 0.81 - e[-1]).sum()) / (2 * eps)
        assert g[k] == pytest.approx(fd, rel=1e-6, abs=1e-6)


def test_canonical_patterns_orbits():
    cm = CoarseModel(8, 2, "110", periodic=True)
    x = np.array([[1, 1, 1, -1, -1, -1, 1, -1],    # a = (2, 1, 0, 1)
                  [1, -1, 1, 1, 1, -1, -1, -1],    # rotation by one block: (1, 2, 1, 0)
                  [1, -1, -1, -1, -1, 1, 1, 1]])   # reversal: (1, 0, 1, 2)
    counts, mult, inv = canonical_patterns(cm, x)
    assert len(counts) == 1 and mult[0] == 3 and np.all(inv == 0)
    # open chain: rotations are not symmetries, reversal is
    cm_open = CoarseModel(8, 2, "110", periodic=False)
    counts, mult, inv = canonical_patterns(cm_open, x)
    assert len(counts) == 2 and inv[0] == inv[2] != inv[1]


def test_extreme_theta_cf_and_rescaling():
    # theta_cf -> 1: (1 - theta_cf)^l_c = 1e-480 is below the smallest double, still finite and exact
    cm = CoarseModel(64, 32, "100", beta=1.0, mu_c=0.2, periodic=True)
    x = np.ones((3, 64), int)
    x[0, :3] = -1
    tf = 1 - 1e-15
    fast = FastLoglik(cm, x)
    np.testing.assert_allclose(fast.pointwise([0.3], tf), marginal_loglik(cm, x, [0.3], tf), rtol=1e-12)
    assert np.isfinite(fast([0.3], tf)[0])
    # at theta_cf = 1 a disagreeing spin has probability 0
    ll, g = fast([0.3], 1.0)
    assert ll == -np.inf and np.all(g == 0)
    pw = fast.pointwise([0.3], 1.0)
    assert pw[0] == -np.inf and np.all(np.isfinite(pw[1:]))
    # a long chain whose messages fall below 1e-200 (data against a strong field): rescaled
    cm = CoarseModel(800, 2, "110", beta=1.0, mu_c=0.0, periodic=True)
    x = -np.ones((2, 800), int)
    x[1, ::7] = 1
    th = np.array([4.0, 0.2])
    fast = FastLoglik(cm, x)
    ref = marginal_loglik(cm, x, th, 0.97)
    assert ref.min() < -460  # exp(-460) ~ 1e-200: the kernel had to rescale
    np.testing.assert_allclose(fast.pointwise(th, 0.97), ref, rtol=1e-12)


def test_numba_function_matches_python_call():
    cm = CoarseModel(12, 2, "111", beta=1.1, mu_c=-0.2, periodic=False)
    x = np.where(np.random.default_rng(5).random((9, 12)) < 0.4, 1, -1)
    fast = FastLoglik(cm, x)
    f = fast.numba_function()
    th = np.array([0.1, -0.3, 0.4])
    ll, g = f(th, np.array(0.77))
    ll2, g2 = fast(th, 0.77)
    assert ll.shape == () and float(ll) == pytest.approx(ll2, abs=1e-12)
    np.testing.assert_allclose(g, g2, atol=1e-12)
    assert float(ll) == pytest.approx(brute(cm, x, th, 0.77).sum(), abs=1e-9)


def test_marginal_model_logp_in_numba_mode_has_no_object_mode_fallback():
    """The Op has a numba implementation: the NUMBA-mode logp/dlogp (what nutpie compiles) call the
    kernel in nopython mode and agree with enumeration + prior + Jacobian."""
    pytest.importorskip("pymc")
    from bayescg.ising.bayes import marginal_model

    cm = CoarseModel(8, 2, "110", beta=1.0, mu_c=0.3, periodic=True)
    x = np.where(np.random.default_rng(2).random((6, 8)) < 0.6, 1, -1)
    m = marginal_model(cm, x, prior_sd=2.0, likelihood="op")
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*object mode.*")
        f = m.compile_logp(mode="NUMBA")
        g = m.compile_dlogp(mode="NUMBA")
    th, z = np.array([0.2, 0.6]), 0.4
    ip = {"theta_c": th, m.rvs_to_values[m["theta_cf"]].name: np.array(z)}
    tf = 0.5 + 0.5 / (1 + np.exp(-z))
    # the likelihood part: total minus PyMC's priors (with the interval transform's Jacobian)
    prior = m.compile_fn(m.logp(vars=[m["theta_c"], m["theta_cf"]]), mode="NUMBA")
    assert float(f(ip)) - float(prior(ip)) == pytest.approx(brute(cm, x, th, tf).sum(), abs=1e-9)
    eps = 1e-6
    fd = []
    for k in range(2):
        e = np.zeros(2)
        e[k] = eps
        fd.append((brute(cm, x, th + e, tf).sum() - brute(cm, x, th - e, tf).sum()) / (2 * eps) - th[k] / 4)
    np.testing.assert_allclose(g(ip)[:2], fd, atol=1e-5)


@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("code,n_f,level", [("110", 16, 2), ("021", 14, 2), ("111", 15, 3)])
def test_pytensor_graph_likelihood_and_autodiff_gradient_vs_enumeration(periodic, code, n_f, level):
    """likelihood="graph": tree-ordered transfer-matrix product with autodiff, incl. odd step
    counts (identity padding), L = 2 (S = 4 states) and open chains."""
    pytensor = pytest.importorskip("pytensor")
    import pytensor.tensor as pt

    from bayescg.ising.bayes import pointwise_loglik_graph, total_loglik_graph

    cm = CoarseModel(n_f, level, code, beta=0.8, mu_c=-0.2, periodic=periodic)
    rng = np.random.default_rng(8)
    x = with_images(np.where(rng.random((3, n_f)) < 0.6, 1, -1), level, periodic)
    tc, tf = pt.dvector("tc"), pt.dscalar("tf")
    tot = total_loglik_graph(cm, x, tc, tf)
    f = pytensor.function([tc, tf], [pointwise_loglik_graph(cm, cm.agree_counts(x), tc, tf), tot,
                                     *pytensor.grad(tot, [tc, tf])], mode="FAST_COMPILE")
    th = rng.normal(size=cm.K) * 0.5
    pw, ll, g_c, g_f = f(th, 0.79)
    ref = brute(cm, x, th, 0.79)
    np.testing.assert_allclose(pw, ref, atol=1e-10)
    assert ll == pytest.approx(ref.sum(), abs=1e-9)
    ll2, g2 = FastLoglik(cm, x)(th, 0.79)  # gradient checked against enumeration above
    np.testing.assert_allclose(np.append(g_c, g_f), g2, atol=1e-8)


def test_python_calls_and_the_nuts_callback_run_the_one_compiled_likelihood():
    """FastLoglik and the NUTS callback evaluate (E1)/(E2) through the likelihood's C entry point (loglik_cfunc, the
    callback calls it by the address in its buffer): bit for bit what the likelihood kernel returns when called on
    its own, and the callback's density is that likelihood + Normal(0, prior_sd) prior + log-Jacobian of
    theta_cf = 0.5 + 0.5 sigmoid(z), with the chain-ruled gradient.  A buffer carrying another process's address
    (here: garbage) is re-addressed before use."""
    from bayescg.ising.kernel import MARGINAL_HEADER, MarginalDensity, loglik_grad

    cm = CoarseModel(14, 2, "110", beta=0.9, mu_c=0.3, periodic=True)
    rng = np.random.default_rng(5)
    x = np.where(rng.random((9, 14)) < 0.6, 1, -1)
    fast = FastLoglik(cm, x)
    th, z = np.array([0.4, -0.3]), 0.7
    tf = 0.5 + 0.5 / (1 + np.exp(-z))
    pw = np.empty(len(fast.counts))
    ll0, g0 = loglik_grad(th, tf, *fast.args, pw)
    ll, g = fast(th, tf)
    assert ll == ll0 and np.array_equal(g, g0)
    assert np.array_equal(fast.pointwise(th, tf), pw[fast.inverse])
    # many points in one prepared loop (the exact grid's path): the same numbers to the bit, in order
    ths, tfs = rng.normal(0, 0.8, (40, 2)), rng.uniform(0.5 + 1e-12, 1.0, 40)
    tfs[7] = 1.0  # theta_cf = 1 with disagreeing spins: an impossible point, -inf either way
    many = fast.logliks(ths, tfs)
    assert np.array_equal(many, [fast(a, b)[0] for a, b in zip(ths, tfs)]) and many[7] == -np.inf
    terms = fast.logliks(ths, tfs, pointwise=True)
    assert terms.shape == (40, len(x))
    assert np.array_equal(terms, [fast.pointwise(a, b) for a, b in zip(ths, tfs)])
    assert np.isneginf(terms[7]).any()  # the impossible point: every pattern finished as pointwise() does
    with pytest.raises(ValueError, match="rows"):
        fast.logliks(ths, tfs[:-1])
    prior_sd = 1.5
    dens = MarginalDensity(cm, x, prior_sd, fast)
    dens.buf[MARGINAL_HEADER.index("loglik_address")] = 8.0  # a stale address
    lp, gu = dens.logp_grad(np.r_[th, z])
    sig = 1 / (1 + np.exp(-z))
    h1 = 0.5 * sig * (1 - sig)
    assert lp == pytest.approx(ll0 - 0.5 * np.sum(th ** 2) / prior_sd ** 2 + np.log(h1), rel=1e-13)
    np.testing.assert_allclose(gu, np.r_[g0[:-1] - th / prior_sd ** 2, g0[-1] * h1 + 1 - 2 * sig], rtol=1e-12)
