"""The 1D fixed point's continuation of U_c past the data (bayescg.bias.stable_continuation_1d) must confine the white-kick
walkers: on (4.7) at delta 0.1309 the corrected U fell outwards at the data's right edge, the old continuation kept
that slope, and the kick-shape step's walkers ran off to +inf (empty histogram, the correction worse than raw)."""
import numpy as np

from bayescg.bias import stable_continuation_1d
from bayescg.splines import SplineRep, clamped_knots


def _setup(f, lo=-4.0, hi=4.0, data_hi=2.0, n=40):
    t = clamped_knots(lo, hi, n)
    grev = np.array([t[j + 1:j + 4].mean() for j in range(len(t) - 4)])
    coef = f(grev)  # a cubic spline's coefficients at its Greville abscissae reproduce a quadratic exactly
    inside = (grev >= lo) & (grev <= data_hi)
    return t, grev, coef, inside


def test_an_outward_falling_end_is_continued_uphill():
    # a well whose data end on a downhill slope to the right (U' < 0 at the edge): the continuation must turn up
    f = lambda x: 0.25 * (x + 1.0) ** 2 - 1.0 * np.clip(x - 0.5, 0, None) ** 2  # noqa: E731
    t, grev, coef, inside = _setup(f)
    assert coef[inside][-1] < coef[inside][-2]  # falls outwards at the right end of the data
    out = stable_continuation_1d(coef, inside, grev, kappa_max=50.0)
    rep = SplineRep([t], out)
    xs = np.linspace(3.0, 4.0, 11)
    assert np.all(rep.gradient(xs).ravel() > 0), "the continuation must rise past the data"
    np.testing.assert_array_equal(out[inside], coef[inside])


def test_a_rising_end_is_continued_as_before():
    # the floor acts only where U_c falls outwards: a convex quadratic is continued with its own curvature (exact)
    f = lambda x: 0.5 * x ** 2  # noqa: E731
    t, grev, coef, inside = _setup(f)
    out = stable_continuation_1d(coef, inside, grev, kappa_max=50.0)
    np.testing.assert_allclose(out, f(grev), rtol=0, atol=1e-9)


def test_white_noise_check_uses_only_walkers_that_still_move():
    """Walkers the V-run flagged as trapped (at a fixed point of the map, p = 0) kick by a constant: the check
    starts only from the others (n counts their kicks alone), and refuses with fewer than two."""
    from types import SimpleNamespace

    import pytest

    from bayescg.bias import white_noise_check
    from bayescg.errors import SimulationError
    from bayescg.potentials import Potential

    V = Potential.from_expression("q**2/2 + 0.05*cos(q/0.05)", ["q"])
    W, steps = 8, 400
    rng = np.random.default_rng(3)
    trapped = np.array([True, False, True, False, False, True, False, False])
    fq = np.where(trapped, 0.0, rng.normal(size=W))[:, None]
    fp = np.where(trapped, 0.0, rng.normal(size=W))[:, None]
    sim = SimpleNamespace(final_q=fq, final_p=fp, trapped=trapped, mass=np.eye(1), friction=0.5 * np.eye(1),
                          delta=0.3)
    t = clamped_knots(-4.0, 4.0, 12)
    coef = 0.5 * np.array([t[j + 1:j + 4].mean() for j in range(len(t) - 4)]) ** 2
    out, kicks = white_noise_check(V, sim, [t], coef, coef, steps_per_walker=steps, walkers=W)
    assert kicks.shape[1] == (~trapped).sum()
    assert out["raw"]["n"] == kicks.shape[0] * (~trapped).sum()
    sim.trapped = np.ones(W, bool)
    sim.trapped[0] = False
    with pytest.raises(SimulationError, match="not trapped"):
        white_noise_check(V, sim, [t], coef, coef, steps_per_walker=steps, walkers=W)
