"""Spline bases and numba evaluation, checked against scipy.interpolate.BSpline."""
import numpy as np
import pytest
from scipy.interpolate import BSpline

from bayescg import splines as sp
from bayescg.errors import InputError


@pytest.mark.parametrize("k", [1, 2, 3])
def test_numba_1d_matches_scipy(k):
    rng = np.random.default_rng(k)
    t = sp.clamped_knots(-2.0, 3.0, 9, k)
    c = rng.normal(size=sp.n_basis(t, k))
    s = BSpline(t, c, k)
    xs = np.concatenate([np.linspace(-2, 3, 257), rng.uniform(-2, 3, 50), t[k:-k]])
    got = np.array([sp.bspline_value_grad_1d(x, t, c, k) for x in xs])
    np.testing.assert_allclose(got[:, 0], s(xs), atol=1e-12)
    np.testing.assert_allclose(got[:, 1], s.derivative()(xs), atol=1e-11)


def test_numba_2d_matches_scipy_tensor():
    rng = np.random.default_rng(0)
    k = 3
    tx, ty = sp.clamped_knots(-1, 2, 7, k), sp.clamped_knots(0, 1, 5, k)
    mx, my = sp.n_basis(tx, k), sp.n_basis(ty, k)
    c = rng.normal(size=(mx, my))
    pts = rng.uniform([-1, 0], [2, 1], size=(200, 2))
    # scipy: U(x, y) = sum_a B_a(x) [sum_b C_ab B_b(y)]
    bx = BSpline(tx, np.eye(mx), k)(pts[:, 0])
    dbx = BSpline(tx, np.eye(mx), k).derivative()(pts[:, 0])
    by = BSpline(ty, np.eye(my), k)(pts[:, 1])
    dby = BSpline(ty, np.eye(my), k).derivative()(pts[:, 1])
    v = np.einsum("na,ab,nb->n", bx, c, by)
    gx = np.einsum("na,ab,nb->n", dbx, c, by)
    gy = np.einsum("na,ab,nb->n", bx, c, dby)
    got = np.array([sp.bspline_value_grad_2d(x, y, tx, ty, c, k) for x, y in pts])
    np.testing.assert_allclose(got, np.column_stack([v, gx, gy]), atol=1e-11)
    # design matrix agrees with the same tensor product
    np.testing.assert_allclose(sp.design_matrix_2d(pts, tx, ty, k) @ c.ravel(), v, atol=1e-12)


def test_design_matrix_partition_of_unity_and_reproduction():
    t = sp.clamped_knots(-3, 3, 12)
    x = np.linspace(-3, 3, 101)
    b = sp.design_matrix_1d(x, t)
    np.testing.assert_allclose(b.sum(axis=1), 1.0, atol=1e-12)
    # cubic splines reproduce q^2/2 exactly: least squares residual is zero
    coef, *_ = np.linalg.lstsq(b, x ** 2 / 2, rcond=None)
    np.testing.assert_allclose(b @ coef, x ** 2 / 2, atol=1e-10)


def test_penalties():
    p = sp.difference_penalty(6, 2)
    # null space of the second-difference penalty: constants and linear sequences
    np.testing.assert_allclose(p @ np.ones(6), 0, atol=1e-12)
    np.testing.assert_allclose(p @ np.arange(6.0), 0, atol=1e-12)
    assert np.linalg.matrix_rank(p) == 4
    p2 = sp.tensor_penalty(5, 4)
    assert p2.shape == (20, 20)
    a, b = np.meshgrid(np.arange(5.0), np.arange(4.0), indexing="ij")
    np.testing.assert_allclose(p2 @ (2 * a + 3 * b + 1).ravel(), 0, atol=1e-10)
    with pytest.raises(InputError):
        sp.difference_penalty(2, 2)


def test_spline_rep_vectorised_and_extrapolation():
    t = sp.clamped_knots(-2, 2, 10)
    x = np.linspace(-2, 2, 60)
    coef, *_ = np.linalg.lstsq(sp.design_matrix_1d(x, t), x ** 2 / 2, rcond=None)
    rep = sp.SplineRep([t], coef, wall=3.0)
    v, g = rep.value_grad(np.array([[-1.0], [0.5], [3.0]]))
    np.testing.assert_allclose(v[:2], [0.5, 0.125], atol=1e-10)
    np.testing.assert_allclose(g[:2, 0], [-1.0, 0.5], atol=1e-9)
    # outside: Taylor continuation at q = 2 plus the wall: 2 + 2*1 + 3/2*1
    assert v[2] == pytest.approx(2 + 2 + 1.5, abs=1e-9)
    assert g[2, 0] == pytest.approx(2 + 3.0, abs=1e-9)
    value, grad = rep.kernels()
    assert value(np.array([0.5])) == pytest.approx(0.125, abs=1e-10)
    out = np.empty(1)
    grad(np.array([3.0]), out)
    assert out[0] == pytest.approx(5.0, abs=1e-9)
    with pytest.raises(InputError):
        sp.SplineRep([t], coef[:-1])


def test_spline_rep_2d_kernels_finite_difference():
    rng = np.random.default_rng(1)
    tx, ty = sp.clamped_knots(-1, 1, 6), sp.clamped_knots(-1, 1, 6)
    rep = sp.SplineRep([tx, ty], rng.normal(size=(8, 8)), wall=1.0)
    value, grad = rep.kernels()
    for q in (np.array([0.3, -0.2]), np.array([1.4, 0.1]), np.array([-1.5, 1.7])):
        h = 1e-6
        fd = [(value(q + h * e) - value(q - h * e)) / (2 * h) for e in np.eye(2)]
        g = np.empty(2)
        grad(q, g)
        np.testing.assert_allclose(g, fd, atol=1e-6)
        vv, gg = rep.value_grad(q[None, :])
        assert vv[0] == pytest.approx(value(q)) and np.allclose(gg[0], g)


def test_spline_potential_is_a_potential():
    t = sp.clamped_knots(-3, 3, 15)
    x = np.linspace(-3, 3, 80)
    coef, *_ = np.linalg.lstsq(sp.design_matrix_1d(x, t), (x ** 2 - 1) ** 2 / 4, rcond=None)
    pot = sp.spline_potential([t], coef)
    q = np.array([-1.3, 0.2, 0.9])
    assert pot.dim == 1
    np.testing.assert_allclose(pot.V(q), (q ** 2 - 1) ** 2 / 4, atol=2e-3)
    np.testing.assert_allclose(pot.gradient(q).ravel(), q ** 3 - q, atol=2e-2)


def test_spline_kernels_read_runtime_slots_without_compiling():
    """The kernels of spline_potential read the spline from a runtime slot: the same bits as SplineRep.value_grad
    (value, grad, the scalar and lane kernels in 1D and 2D, value and grad in 3D); a freed slot is reused by the
    next spline with the same (already compiled) dispatchers and that spline's own data."""
    import gc

    from bayescg.kernels.state import LANES as L

    rng = np.random.default_rng(3)
    t = sp.clamped_knots(-2, 2, 9)
    x = np.concatenate([rng.uniform(-3, 3, 4 * L), [-3.0, 2.0, 2.5, np.inf]])
    for d, shape in ((1, (11,)), (2, (11, 8)), (3, (11, 8, 6))):
        knots = [t, sp.clamped_knots(-1, 1.5, 6), sp.clamped_knots(0, 1, 4)][:d]
        c = rng.normal(size=shape)
        pot = sp.spline_potential(knots, c, wall=1.5)
        rep = sp.SplineRep(knots, c, wall=1.5)
        q = rng.uniform(-3, 3, (4 * L, d))
        v, g = rep.value_grad(q)
        assert np.array_equal(pot.V(q), v) and np.array_equal(pot.gradient(q), g)
        if d <= 2:
            for i in range(0, q.shape[0], L):
                S = np.zeros(2 * d * L)
                for j in range(d):
                    S[j * L:(j + 1) * L] = q[i:i + L, j]
                pot.grad_lanes(S)
                for j in range(d):
                    assert np.array_equal(S[(d + j) * L:(d + j + 1) * L], g[i:i + L, j])
            assert np.array_equal(np.atleast_1d(pot.grad_scalar(*q[0])), g[0])
    # 1D: a non-finite lane gives NaN (a walker that blew up), finite lanes are unaffected
    pot = sp.spline_potential([t], rng.normal(size=11))
    S = np.zeros(2 * L)
    S[:L] = x[-L:]
    pot.grad_lanes(S)
    assert np.isnan(S[2 * L - 1]) and np.all(np.isfinite(S[L:2 * L - 1]))
    # slot reuse: free the first spline, the next takes its slot and dispatchers, with its own coefficients
    a = sp.spline_potential([t], np.arange(11.0))
    slot, grad = a.data.__dict__["_slot"].index, a.grad
    del a
    gc.collect()
    b = sp.spline_potential([t], -np.arange(11.0))
    assert b.data.__dict__["_slot"].index == slot and b.grad is grad
    np.testing.assert_array_equal(b.gradient(x[:8]), sp.SplineRep([t], -np.arange(11.0)).gradient(x[:8]))


def test_spline_potential_pickled_to_another_process_rebuilds_its_slot():
    """A spline potential sent to a worker process (executor, dask) must not read the worker's unrelated slot:
    it is rebuilt there from its knots and coefficients, so V and grad V agree with this process's."""
    import multiprocessing as mp
    import pickle

    from bayescg.splines import clamped_knots, spline_potential

    t = [clamped_knots(-2.0, 2.0, 8), clamped_knots(-1.0, 1.0, 6)]
    coefs = np.random.default_rng(3).normal(size=(t[0].size - 4, t[1].size - 4))
    pot = spline_potential(t, coefs, wall=2.0, variables=["x", "y"])
    pts = np.random.default_rng(4).uniform(-2.5, 2.5, size=(50, 2))
    want_v, want_g = pot.V(pts), pot.gradient(pts)
    back = pickle.loads(pickle.dumps(pot))
    assert back.variables == ("x", "y") and back.data is not pot.data
    np.testing.assert_array_equal(back.V(pts), want_v)
    np.testing.assert_array_equal(back.gradient(pts), want_g)
    with mp.get_context("spawn").Pool(1) as pool:  # a fresh process: its slot table starts empty
        # (without the rebuild the worker reads an empty slot: it crashes or hangs, hence the timeout)
        v, g = pool.apply_async(_values_and_gradients, (pot, pts)).get(timeout=300)
    np.testing.assert_array_equal(v, want_v)
    np.testing.assert_array_equal(g, want_g)


def _values_and_gradients(pot, pts):
    return pot.V(pts), pot.gradient(pts)
