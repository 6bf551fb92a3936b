"""bayescg.pipeline: what result.json says about the noise covariance with and without calibration."""
import numpy as np
import pytest

from bayescg.config import load_model
from bayescg.pipeline import learn_model

MODEL_48 = "models/test4-2d-quadratic.toml"
Z_48 = 0.05 * np.array([[1.0, 0.5], [0.5, 0.5]])  # delta E[g g^T] of (4.8), by hand


def test_uncalibrated_2d_reports_only_the_identified_trace():
    # fit.delta_correction = none: this test is about the noise report; the 2D correction is tested in test_bias_*
    m = load_model(MODEL_48, ["noise.calibrate=false", "simulation.steps=2e6", "simulation.bins=40",
                              "fit.delta_correction=none", "fit.method=map", "fit.knots=8"])
    d = learn_model(m).to_dict()
    assert d["dimension"] == 2 and d["noise_covariance"] is None  # key kept (SPEC), value not identified
    n = d["noise"]
    assert n["calibrated"] is False and "Tr(Z A)" in n["identified"]
    # A = I, Gamma = gamma I: Tr Z = 2 gamma E|p|^2; analytic Tr Z = 0.075
    assert n["trace_ZA"] == pytest.approx(np.trace(Z_48), rel=0.05)
    assert n["trace_ZA_se"] > 0
    assert d["friction"] == pytest.approx(0.1 * np.eye(2))


def test_1d_reports_z_from_beta_hat():
    m = load_model("models/test1-quadratic.toml", ["simulation.steps=1e6", "fit.method=map", "fit.knots=8"])
    d = learn_model(m).to_dict()
    gamma = m.simulation.gamma
    # 1D: Z = 2 gamma var(p) = 2 gamma / beta_hat (3.5); momentum mean ~ 0
    assert d["noise_covariance"][0][0] == pytest.approx(2 * gamma / d["beta_hat"], rel=1e-2)
    assert d["noise"]["calibrated"] is False
