"""Integrators against truth computed independently: exact linear maps, Gibbs moments by quadrature,
matrix exponentials by eigen-decomposition, the implicit-bias temperature 2 gamma / (delta E[g^2])."""
import dataclasses
import math

import numba
import numpy as np
import pytest
from scipy.integrate import quad

from bayescg.kernels.rng import fill_normal, next_u64, seed_states
from bayescg.potentials import Potential, catalogue
from bayescg.kernels.registry import INTEGRATORS
from bayescg.simulate import initial_walker_state, walker_seeds, run_trajectories, simulate

HARM1 = "q**2/2"
K2 = np.array([[2.0, 0.5], [0.5, 1.0]])
HARM2 = "x**2 + 0.5*x*y + y**2/2"  # q^T K2 q / 2
A2 = np.array([[1.5, 0.3], [0.3, 0.8]])
G2 = np.array([[0.4, -0.1], [-0.1, 0.6]])


def spd_expm(G, A, t):
    """expm(-G A t) through the symmetric G^1/2 A G^1/2 (independent of scipy.linalg.expm)."""
    w, V = np.linalg.eigh(G)
    Gh = V @ np.diag(np.sqrt(w)) @ V.T
    Gmh = V @ np.diag(1 / np.sqrt(w)) @ V.T
    s, U = np.linalg.eigh(Gh @ A @ Gh)
    return Gh @ U @ np.diag(np.exp(-s * t)) @ U.T @ Gmh


def linear_step(Kmat, A, E, delta):
    """(3.2) on V = q^T K q / 2 as a 2d x 2d matrix: drift . kick . drift."""
    d = Kmat.shape[0]
    I, Z = np.eye(d), np.zeros((d, d))
    D = np.block([[I, delta / 2 * A], [Z, I]])
    Kk = np.block([[I, Z], [-delta * Kmat, E]])
    return D @ Kk @ D


def test_xoshiro_reference_outputs():
    """xoshiro256** from state (1, 2, 3, 4): reference outputs of the C implementation."""
    @numba.njit
    def draw(s, n):
        out = np.empty(n, dtype=np.uint64)
        for i in range(n):
            out[i] = next_u64(s)
        return out

    out = draw(np.array([1, 2, 3, 4], dtype=np.uint64), 4)
    assert out.tolist() == [11520, 0, 1509978240, 1215971899390074240]
    st = seed_states(5, 3)
    assert st.shape == (3, 4) and len({tuple(r) for r in st}) == 3


def test_state_table_rows_draw_the_same_streams():
    """kernels.rng on (table, w) -- what the lane loops and the coupled maps pass -- draws exactly what the same
    functions draw from the row as one state, and leaves the same states (uint64s, normals with the ziggurat's
    rejections and its tail branch among 2e5 draws, pairs)."""
    from bayescg.kernels.rng import normal_pair

    @numba.njit
    def draws(states, n, table):
        u = np.empty((states.shape[0], n), dtype=np.uint64)
        z = np.empty((states.shape[0], n))
        pr = np.empty((states.shape[0], 2))
        buf = np.empty(n)
        for w in range(states.shape[0]):
            s = states[w]
            for i in range(n):
                u[w, i] = next_u64(states, w) if table else next_u64(s)
            if table:
                fill_normal(states, buf, w)
                pr[w, 0], pr[w, 1] = normal_pair(states, w)
            else:
                fill_normal(s, buf)
                pr[w, 0], pr[w, 1] = normal_pair(s)
            z[w] = buf
        return u, z, pr

    a, b = seed_states(21, 5), seed_states(21, 5)
    ra, rb = draws(a, 40_000, False), draws(b, 40_000, True)
    assert np.max(np.abs(ra[1])) > 3.6541528853610088  # the tail branch was taken
    for x, y in zip(ra, rb):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a, b)


def test_lanes_normal_draws_each_lane_as_one_walker():
    """rng.lanes_normal (the 1D lane loop's white kicks, 8 lanes together) against normal() lane by lane: the same
    normals for the live lanes, step after step (rejected fast tests and the tail branch among 2.4e5 draws), and the
    lanes not live draw nothing (their states stay)."""
    from bayescg.kernels.rng import lanes_normal, normal

    @numba.njit
    def together(states, live, n):
        L = states.shape[0]
        t = np.empty((4, L), dtype=np.uint64)
        for l in range(L):
            for k in range(4):
                t[k, l] = states[l, k]
        out, r, one = np.empty(L), np.empty(L, dtype=np.uint64), np.empty(4, dtype=np.uint64)
        z = np.full((n, L), np.nan)
        for i in range(n):
            lanes_normal(t, live, out, r, one)
            for l in range(L):
                if live[l]:
                    z[i, l] = out[l]
        for l in range(L):
            for k in range(4):
                states[l, k] = t[k, l]
        return z

    @numba.njit
    def one_by_one(states, live, n):
        L = states.shape[0]
        z = np.full((n, L), np.nan)
        for i in range(n):
            for l in range(L):
                if live[l]:
                    z[i, l] = normal(states, l)
        return z

    live = np.array([True, True, False, True, True, True, False, True])
    a, b = seed_states(31, 8), seed_states(31, 8)
    za, zb = together(a, live, 40_000), one_by_one(b, live, 40_000)
    np.testing.assert_array_equal(za, zb)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[~live], seed_states(31, 8)[~live])
    assert np.nanmax(np.abs(za)) > 3.6541528853610088  # the tail branch was taken


def test_kernel_normals_have_the_normal_law():
    """The kernels' ziggurat normals against the exact normal law (scipy): 4e6 draws from 4 walker streams in
    400 equal-probability cells (chi-square), the tail beyond the ziggurat's r = 3.654 (its separate branch: expected
    0.026 % of draws; their count and their law) and beyond 4.5, the even moments to 6, and no correlation between
    consecutive draws."""
    from scipy import stats

    @numba.njit
    def draw(states, n):
        out = np.empty((states.shape[0], n))
        z = np.empty(n)
        for w in range(states.shape[0]):
            fill_normal(states[w], z)
            out[w] = z
        return out

    z = draw(seed_states(11, 4), 1_000_000)
    n = z.size
    cells = np.searchsorted(stats.norm.ppf(np.arange(1, 400) / 400), z.ravel())
    chi2 = float(np.sum((np.bincount(cells, minlength=400) - n / 400) ** 2 / (n / 400)))
    assert stats.chi2.sf(chi2, 399) > 1e-4, chi2
    r = 3.6541528853610088
    for t in (r, 4.5):  # two-sided tail counts: binomial, 5 sd
        m = 2 * stats.norm.sf(t) * n
        assert abs(np.sum(np.abs(z) > t) - m) < 5 * np.sqrt(m), t

    @numba.njit
    def tail_draws(s, n, r):  # the draws beyond r of n normals (the tail branch: ~2.6e-4 n of them)
        out = np.empty(n // 1000)
        k = 0
        z = np.empty(1)
        for _ in range(n):
            fill_normal(s, z)
            if abs(z[0]) > r and k < out.size:
                out[k] = abs(z[0])
                k += 1
        return out[:k]

    # the tail branch's law: the normal truncated to (r, inf), ~26000 draws (its rejection step moves the law by ~1 %)
    tail = tail_draws(seed_states(12, 1)[0], 100_000_000, r)
    assert abs(tail.size - 2 * stats.norm.sf(r) * 1e8) < 5 * np.sqrt(2 * stats.norm.sf(r) * 1e8)
    assert stats.kstest(tail, stats.truncnorm(r, np.inf).cdf).pvalue > 1e-3
    for k, exact in ((2, 1.0), (4, 3.0), (6, 15.0)):
        se = np.sqrt((stats.norm.moment(2 * k) - exact ** 2) / n)
        assert abs(np.mean(z ** k) - exact) < 5 * se, k
    assert abs(np.mean(z) - 0.0) < 5 / np.sqrt(n)
    r1 = np.mean(z[:, 1:] * z[:, :-1])
    assert abs(r1) < 5 / np.sqrt(n), r1


def test_friction_expm_and_ou_covariance_against_independent_formulas():
    delta, beta = 0.3, 2.5
    E, L = INTEGRATORS["damped"].constants(2, delta, A2, G2, 1.0, None)
    assert np.allclose(E, spd_expm(G2, A2, delta), rtol=1e-12, atol=1e-14) and not L.any()
    F, L = INTEGRATORS["langevin"].constants(2, delta, A2, G2, beta, None)
    assert np.allclose(F, spd_expm(G2, A2, delta), rtol=1e-12, atol=1e-14)
    C = np.linalg.inv(A2) / beta  # stationary OU covariance M / beta
    assert np.allclose(L @ L.T, C - F @ C @ F.T, rtol=1e-10, atol=1e-13)
    assert np.allclose(L, np.tril(L))
    E, L = INTEGRATORS["damped"].constants(2, delta, np.eye(2), 0.7 * np.eye(2), 1.0, None)
    assert np.allclose(E, math.exp(-0.7 * delta) * np.eye(2))
    E, L = INTEGRATORS["damped_white"].constants(2, delta, A2, G2, 1.0, K2)
    assert np.allclose(L @ L.T, delta * K2) and np.allclose(L, np.tril(L))


def test_damped_map_1d_is_the_exact_linear_map():
    """simulate's d = 1 fast path after n steps equals M^n (q0, p0) for V = q^2/2."""
    pot = Potential.from_expression(HARM1, ["q"])
    delta, gamma, W, n = 0.1, 0.1, 4, 1500
    r = simulate(pot, delta, gamma, steps=W * n, walkers=W, seed=7, burn_in=0.5, hist_range=[(-5, 5)])
    q0, p0, _ = initial_walker_state(walker_seeds(7, W), 1, np.zeros(1), 1.0)
    M = linear_step(np.eye(1), np.eye(1), np.exp(-gamma * delta) * np.eye(1), delta)
    Mn = np.linalg.matrix_power(M, n)
    for w in range(W):
        expect = Mn @ np.array([q0[w, 0], p0[w, 0]])
        assert np.allclose([r.final_q[w, 0], r.final_p[w, 0]], expect, rtol=1e-9, atol=1e-12)
    # still moving: no walker reached a fixed point (walkers that decay faster than the others may
    # be flagged "frozen" by the kinetic-energy test, which is fine here: there is no noise at all)
    assert np.all(np.abs(r.final_p) > 1e-9)


@pytest.mark.parametrize("integrator", ["damped", "hamiltonian"])
def test_matrix_maps_2d_are_the_exact_linear_maps(integrator):
    """Full-matrix A and Gamma (generic path): recorded states equal powers of the 4x4 map."""
    pot = Potential.from_expression(HARM2, ["x", "y"])
    assert np.allclose(pot.gradient(np.array([0.3, -0.7])), K2 @ [0.3, -0.7])
    delta, n_rec, every = 0.05, 20, 7
    rng = np.random.default_rng(1)
    q0, p0 = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    t, q, p = run_trajectories(pot, delta, n_rec * every * delta, q0, p0, integrator=integrator, friction=G2,
                               mass=A2, record_every=every * delta)
    E = spd_expm(G2, A2, delta) if integrator == "damped" else np.eye(2)
    M = linear_step(K2, A2, E, delta)
    assert t.shape == (n_rec + 1,) and np.allclose(np.diff(t), every * delta)
    for m in range(3):
        z = np.concatenate([q0[m], p0[m]])
        for r in range(n_rec + 1):
            expect = np.linalg.matrix_power(M, r * every) @ z
            assert np.allclose(np.concatenate([q[r, m], p[r, m]]), expect, rtol=1e-9, atol=1e-12)


def test_hamiltonian_energy_is_conserved_to_order_h2():
    pot = Potential.from_expression("(q**2 - 1)**2/4", ["q"])
    errs = []
    for h in (0.02, 0.01):
        t, q, p = run_trajectories(pot, h, 20.0, [[0.2]], [[0.9]], integrator="hamiltonian", record_every=0.5)
        H = p[:, 0, 0] ** 2 / 2 + pot.V(q[:, 0, :])
        errs.append(np.abs(H - H[0]).max())
    assert errs[0] < 1e-3 and 3.0 < errs[0] / errs[1] < 5.0


def _walker_moments(r, fn):
    """Mean of fn(samples) per walker -> (mean over walkers, standard error)."""
    vals = np.array([fn(r.samples_q[r.sample_walker == w]).mean(axis=0) for w in np.unique(r.sample_walker)])
    return vals.mean(axis=0), vals.std(axis=0, ddof=1) / math.sqrt(len(vals))


def test_langevin_harmonic_gibbs_moments():
    """BAOAB with matrix mass and friction: cov q = K^-1 / beta (exact for BAOAB), cov p = M / beta."""
    pot = Potential.from_expression(HARM2, ["x", "y"])
    beta = 2.0
    r = simulate(pot, 0.05, integrator="langevin", beta=beta, mass=A2, friction=G2, steps=1_600_000,
                 walkers=16, seed=11, max_samples=160_000)
    cov_q = np.linalg.inv(K2) / beta
    mean, se = _walker_moments(r, lambda s: np.einsum("ni,nj->nij", s, s).reshape(len(s), 4))
    assert np.all(np.abs(mean - cov_q.ravel()) < 5 * se + 1e-3)
    cov_p = np.linalg.inv(A2) / beta
    assert np.all(np.abs(r.momentum_covariance - cov_p) < 5 * r.momentum_covariance_se + 2e-3)
    assert np.all(r.momentum_covariance_se < 0.02)
    # the kinetic temperature uses the mass: d / tr(A cov p) = beta (d / tr(cov p) would not be)
    assert abs(r.beta_hat - beta) < 5 * r.beta_hat_se + 0.01


def test_langevin_double_well_gibbs_moments_by_quadrature():
    U = lambda x: (x * x - 1) ** 2 / 4 + 0.2 * x  # noqa: E731
    pot = Potential.from_expression("(q**2 - 1)**2/4 + 0.2*q", ["q"])
    beta = 3.0
    Z = quad(lambda x: math.exp(-beta * U(x)), -6, 6)[0]
    m1 = quad(lambda x: x * math.exp(-beta * U(x)), -6, 6)[0] / Z
    m2 = quad(lambda x: x * x * math.exp(-beta * U(x)), -6, 6)[0] / Z
    r = simulate(pot, 0.05, 1.0, integrator="langevin", beta=beta, steps=3_200_000, walkers=16, seed=5,
                 max_samples=160_000)
    mean, se = _walker_moments(r, lambda s: np.stack([s[:, 0], s[:, 0] ** 2], 1))
    assert abs(mean[0] - m1) < 5 * se[0] + 5e-3
    assert abs(mean[1] - m2) < 5 * se[1] + 5e-3
    assert abs(r.momentum_covariance[0, 0] - 1 / beta) < 5 * r.momentum_covariance_se[0, 0] + 2e-3
    # the histogram is the same law: its mean agrees with quadrature too
    c = 0.5 * (r.hist_edges[0][1:] + r.hist_edges[0][:-1])
    assert abs((r.hist_counts * c).sum() / r.hist_counts.sum() - m1) < 0.03


def test_langevin_mean_path_solves_the_linear_ode():
    """For quadratic U the mean of (q, p) solves d/dt (q, p) = [[0, A], [-K, -Gamma A]] (q, p)."""
    from scipy.linalg import expm
    pot = Potential.from_expression(HARM2, ["x", "y"])
    Mtraj = 2000
    q0 = np.tile([1.0, -0.5], (Mtraj, 1))
    p0 = np.tile([0.3, 0.2], (Mtraj, 1))
    t, q, p = run_trajectories(pot, 0.01, 4.0, q0, p0, integrator="langevin", friction=G2, mass=A2,
                               beta=1.0, seed=3, record_every=1.0)
    gen = np.block([[np.zeros((2, 2)), A2], [-K2, -G2 @ A2]])
    for i, ti in enumerate(t):
        expect = expm(gen * ti) @ np.array([1.0, -0.5, 0.3, 0.2])
        got = np.concatenate([q[i].mean(0), p[i].mean(0)])
        se = np.concatenate([q[i].std(0), p[i].std(0)]) / math.sqrt(Mtraj) + 1e-12
        assert np.all(np.abs(got - expect) < 5 * se + 2e-3), (ti, got, expect)


def test_implicit_bias_temperature():
    """V = q^2/2 + e sin(q/e), e = 1e-4 << delta = 0.1: the unresolved gradient cos(q/e) acts as
    noise with E[g^2] = 1/2, so beta_hat = 2 gamma / (delta E[g^2]) = 4 gamma / delta = 4."""
    pot = Potential.from_expression("q**2/2 + 1e-4*sin(q/1e-4)", ["q"])
    r = simulate(pot, 0.1, 0.1, steps=4_000_000, walkers=16, seed=3)
    assert abs(r.beta_hat / 4.0 - 1) < 0.05
    assert 0 < r.beta_hat_se < 0.1
    assert r.trapped_fraction == 0.0
    # the q-law is Gibbs at beta_hat for U_0 = q^2/2: var q = 1 / beta_hat
    c = 0.5 * (r.hist_edges[0][1:] + r.hist_edges[0][:-1])
    w = r.hist_counts / r.hist_counts.sum()
    var_q = (w * c * c).sum() - (w * c).sum() ** 2
    assert abs(var_q * r.beta_hat - 1) < 0.1


def test_thread_count_does_not_change_results():
    pot = catalogue("test1")
    out = []
    old = numba.get_num_threads()
    try:
        for nt in (1, 2) if numba.config.NUMBA_NUM_THREADS >= 2 else (1, 1):
            numba.set_num_threads(nt)
            a = simulate(pot, 0.5, 0.1, steps=200_000, walkers=6, seed=4, max_samples=600)
            b = simulate(pot, 0.3, integrator="langevin", steps=60_000, walkers=6, seed=4, max_samples=600)
            out.append((a, b))
    finally:
        numba.set_num_threads(old)
    for x, y in zip(out[0], out[1]):
        assert np.array_equal(x.final_q, y.final_q) and np.array_equal(x.final_p, y.final_p)
        assert np.array_equal(x.hist_counts, y.hist_counts)
        assert np.array_equal(x.samples_q, y.samples_q)
        assert x.beta_hat == y.beta_hat and x.beta_hat_se == y.beta_hat_se


@pytest.mark.parametrize("name, delta, mats", [
    ("test1", 0.5, {}),
    ("test4", 0.05, {}),
    ("test4", 0.05, {"mass": A2, "friction": G2}),
])
def test_interleaved_loops_equal_the_generic_step_bit_for_bit(name, delta, mats):
    """simulate()'s d = 1 and d = 2 damped loops (blocks of walkers, matrices in scalars) on the
    exact (libm) gradient kernel against run_trajectories' generic damped step, from the same
    initial states.  (Expression potentials normally run these loops on the SIMD lane kernel,
    whose exp/sin/cos differ in the last bit; tests/test_kernels_fastmath.py covers that path.)"""
    pot = catalogue(name)
    W, n = 6, 3000
    r = simulate(dataclasses.replace(pot, grad_lanes=None), delta, 0.1, steps=W * n, walkers=W, seed=12, **mats)
    q0, p0, _ = initial_walker_state(walker_seeds(12, W), pot.dim, np.zeros(pot.dim), 1.0)
    t, q, p = run_trajectories(pot, delta, n * delta, q0, p0, integrator="damped", gamma=0.1,
                               record_every=n * delta, **mats)
    assert t.shape == (2,)
    assert np.array_equal(q[-1], r.final_q) and np.array_equal(p[-1], r.final_p)


# --- "damped_white": (3.2) with a white kick xi ~ N(0, delta Z) ----------------------------------
def white_map_covariance(Kmat, A, E, Z, delta):
    """Exact stationary covariance (2d, 2d) of (q, p) under the damped_white map on V = q^T K q / 2:
    z' = M z + N xi with M = D Kk D and N = D [0; I] (the kick enters p, and then the last half-drift),
    so S = M S M^T + N (delta Z) N^T (discrete Lyapunov equation, solved by scipy)."""
    from scipy.linalg import solve_discrete_lyapunov

    d = Kmat.shape[0]
    M = linear_step(Kmat, A, E, delta)
    D = np.block([[np.eye(d), delta / 2 * A], [np.zeros((d, d)), np.eye(d)]])
    N = D[:, d:]
    return solve_discrete_lyapunov(M, N @ (delta * Z) @ N.T)


@pytest.mark.parametrize("case", ["1d", "2d"])
def test_damped_white_stationary_covariance_is_the_discrete_lyapunov_solution(case):
    """var q, var p, cov(q, p) of simulate()'s damped_white walkers against the Lyapunov solution, within
    Monte Carlo error (spread of per-walker moments); 2D with non-diagonal mass, friction and Z.  The
    temperature uses the mass: beta_hat = d / tr(A cov p) of the exact covariance."""
    if case == "1d":
        Kmat, A, G, Z = np.array([[1.5]]), np.array([[2.0]]), np.array([[0.5]]), np.array([[0.2]])
        pot = Potential.from_expression("0.75*q**2", ["q"])
        delta, kick = 0.3, 0.2  # kick_noise as a plain number for d = 1
    else:
        Kmat, A, G, Z = K2, A2, G2, np.array([[0.3, 0.1], [0.1, 0.2]])
        pot = Potential.from_expression(HARM2, ["x", "y"])
        delta, kick = 0.2, Z
    d = Kmat.shape[0]
    S = white_map_covariance(Kmat, A, spd_expm(G, A, delta), Z, delta)
    r = simulate(pot, delta, integrator="damped_white", kick_noise=kick, mass=A, friction=G,
                 steps=1_600_000, walkers=16, seed=21, max_samples=160_000, bins=40)
    assert r.trapped_fraction == 0.0 and r.integrator == "damped_white"
    assert np.allclose(r.kick_noise, Z)

    def moments(s):  # second moments of (q, p), flattened (the stationary mean is 0)
        z = np.concatenate([s[:, :d], s[:, d:]], axis=1)
        return np.einsum("ni,nj->nij", z, z).reshape(len(z), -1)
    both = np.concatenate([r.samples_q, r.samples_p], axis=1)
    vals = np.array([moments(both[r.sample_walker == w]).mean(0) for w in range(16)])
    mean, se = vals.mean(0), vals.std(0, ddof=1) / 4.0
    z = np.abs(mean - S.ravel()) / se
    assert np.all(z < 5), (mean.reshape(2 * d, 2 * d), S)
    # the momentum covariance of the streaming accumulators (all steps) agrees too, and so does beta_hat
    Spp = S[d:, d:]
    assert np.all(np.abs(r.momentum_covariance - Spp) < 5 * r.momentum_covariance_se + 1e-12)
    beta_true = d / np.trace(A @ Spp)
    assert abs(r.beta_hat - beta_true) < 5 * r.beta_hat_se
    assert r.beta_hat_se < 0.03 * beta_true
    # a sharp check that the mass is used: the A = I formula would be off by many standard errors
    assert abs(d / np.trace(r.momentum_covariance) - beta_true) > 10 * r.beta_hat_se


def test_damped_white_same_seed_same_bits_and_threads():
    pot = catalogue("test1")
    kw = dict(steps=60_000, walkers=5, seed=3, integrator="damped_white", kick_noise=0.05, max_samples=500)
    old = numba.get_num_threads()
    out = []
    try:
        for nt in (1, 2) if numba.config.NUMBA_NUM_THREADS >= 2 else (1, 1):
            numba.set_num_threads(nt)
            out.append(simulate(pot, 0.2, 0.1, **kw))
    finally:
        numba.set_num_threads(old)
    a, b = out
    for name in ("final_q", "final_p", "hist_counts", "samples_q", "samples_p", "momentum_covariance"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    c = simulate(pot, 0.2, 0.1, **{**kw, "seed": 4})
    assert not np.array_equal(a.final_q, c.final_q)
    # run_trajectories draws the same kind of kicks (seeded per trajectory)
    t1 = run_trajectories(pot, 0.2, 2.0, [[0.0]] * 3, [[0.0]] * 3, integrator="damped_white", kick_noise=0.05,
                          record_every=0.2, seed=2)
    t2 = run_trajectories(pot, 0.2, 2.0, [[0.0]] * 3, [[0.0]] * 3, integrator="damped_white", kick_noise=0.05,
                          record_every=0.2, seed=2)
    assert np.array_equal(t1[1], t2[1]) and not np.array_equal(t1[1][-1, 0], t1[1][-1, 1])


def test_damped_white_one_step_kick_law():
    """From q = p = 0 on V = 0 one step gives p = xi ~ N(0, delta Z) and q = (delta/2) A xi: the
    empirical covariance of 20000 one-step trajectories matches (independent of the map's algebra)."""
    pot = Potential.from_expression("0*x + 0*y", ["x", "y"])
    Z = np.array([[0.3, 0.1], [0.1, 0.2]])
    delta, M = 0.4, 20_000
    t, q, p = run_trajectories(pot, delta, delta, np.zeros((M, 2)), np.zeros((M, 2)), integrator="damped_white",
                               kick_noise=Z, mass=A2, record_every=delta, seed=5)
    cp = np.cov(p[1].T)
    cq = np.cov(q[1].T)
    assert np.allclose(cp, delta * Z, rtol=0.05, atol=0.005)
    assert np.allclose(cq, (delta / 2) ** 2 * A2 @ (delta * Z) @ A2, rtol=0.05, atol=0.005)
    assert np.allclose(q[1], (delta / 2) * p[1] @ A2.T, rtol=1e-12, atol=1e-15)


def test_kick_noise_validation():
    pot = catalogue("test1")
    from bayescg.errors import InputError
    with pytest.raises(InputError, match="kick_noise"):
        simulate(pot, 0.2, steps=1000, walkers=2, integrator="damped_white")
    with pytest.raises(InputError, match="kick_noise"):
        simulate(pot, 0.2, steps=1000, walkers=2, kick_noise=0.1)
    with pytest.raises(InputError, match="kick_noise"):
        simulate(pot, 0.2, steps=1000, walkers=2, integrator="damped_white", kick_noise=-0.1)
    with pytest.raises(InputError, match="kick_noise"):
        simulate(pot, 0.2, steps=1000, walkers=2, integrator="damped_white", kick_noise=np.eye(2))


def test_beta_hat_uses_the_mass_harmonic_langevin():
    """Langevin at beta = 2 with M^-1 = 2: cov p = M / beta = 1/4, so 1/var(p) = 4 but the kinetic
    temperature d / tr(A cov p) = beta = 2.  The standard error is checked against the spread of
    beta_hat over 8 seeds (batch means must neither under- nor over-state it)."""
    pot = Potential.from_expression("q**2", ["q"])
    runs = [simulate(pot, 0.05, 1.0, integrator="langevin", beta=2.0, mass=[[2.0]], steps=200_000, walkers=4,
                     seed=s, max_samples=0) for s in range(8)]
    r = runs[0]
    assert r.beta_hat == pytest.approx(1.0 / (2.0 * r.momentum_covariance[0, 0]), rel=1e-12)
    bh = np.array([x.beta_hat for x in runs])
    se = np.array([x.beta_hat_se for x in runs])
    assert abs(bh.mean() - 2.0) < 4 * bh.std(ddof=1) / math.sqrt(8) + 0.01
    assert 0.5 < bh.std(ddof=1) / se.mean() < 2.0, (bh.std(ddof=1), se.mean())


def test_model_file_selects_damped_white(tmp_path):
    from bayescg.config import load_model
    from bayescg.errors import ModelFileError
    from bayescg.simulate import simulate_model
    f = tmp_path / "m.toml"
    f.write_text('[potential]\nexpression = "q**2/2"\nvariables = ["q"]\n\n[simulation]\ndelta = 0.3\n'
                 'steps = 40000\nwalkers = 4\nintegrator = "damped_white"\nkick_noise = 0.2\n')
    r = simulate_model(load_model(f))
    assert r.integrator == "damped_white" and np.allclose(r.kick_noise, [[0.2]]) and r.trapped_fraction == 0
    m2 = load_model(f, ["simulation.kick_noise=[[0.1]]"])
    assert m2.simulation.kick_noise == [[0.1]]
    with pytest.raises(ModelFileError, match="kick_noise"):
        load_model(f, ["simulation.kick_noise=-1"])
    with pytest.raises(ModelFileError, match="integrator"):
        load_model(f, ["simulation.integrator=\"euler\""])
