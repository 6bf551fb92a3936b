"""The calibrated 2D fit of (4.8) (models/test4-2d-quadratic.toml) at a small budget with MAP + Laplace, in
the default run; the NUTS version at the paper's budget is the slow test in tests/test_fit.py."""
import numpy as np

from bayescg.config import load_model
from bayescg.fit import fit_effective_potential
from bayescg.pipeline import potential_from_model, reference_from_model
from bayescg.simulate import simulate


def test_example_48_calibrated_map_fit_recovers_v0_and_scalar_friction_does_not():
    # measured (8e6 steps, 8 walkers, knots 10): calibrated RMSE 0.039 (seed 5), 0.057 (seed 6); with the
    # scalar friction 0.102 / 0.099 -- the uncalibrated run's bias does not shrink with the budget, the
    # calibrated run's error does (0.02 at 2e7 steps with NUTS, the slow test)
    model = load_model("models/test4-2d-quadratic.toml")
    pot, v0 = potential_from_model(model), reference_from_model(model)
    Z = 0.05 * np.array([[1.0, 0.5], [0.5, 0.5]])  # analytic delta E[g g^T] of the eps-scale force
    kw = dict(steps=8_000_000, walkers=8, seed=5, mass=np.eye(2), bins=60)
    good = simulate(pot, 0.05, 0.1, friction=Z / 2, **kw)  # Gamma = Z / 2: Gibbs law at beta = 1
    r = fit_effective_potential(good, knots=10, method="map", reference=v0)
    assert r.reference_rmse < 0.08 and r.reference_coverage > 0.8 and not r.warnings
    bad = simulate(pot, 0.05, 0.1, **kw)  # scalar gamma: the momenta are not Gibbs, U is biased
    rb = fit_effective_potential(bad, knots=10, method="map", reference=v0)
    assert rb.reference_rmse > 1.5 * r.reference_rmse
