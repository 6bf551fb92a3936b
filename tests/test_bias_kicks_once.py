"""white_noise_check's single pass: residual_kick_correlation(return_kicks="both") gives the same statistics and kicks
as the two separate calls it replaced (bit for bit)."""
import numpy as np

from bayescg.bias import residual_kick_correlation


def test_both_equals_separate_calls():
    rng = np.random.default_rng(3)
    q, p = rng.normal(size=(400, 4, 1)), rng.normal(size=(400, 4, 1))
    kw = dict(delta=0.3, A=np.eye(1), E=np.array([[0.7]]))
    grad = lambda x: 2.0 * x + 0.1 * x ** 3  # noqa: E731
    stats, kicks = residual_kick_correlation(q, p, grad, return_kicks="both", **kw)
    assert stats == residual_kick_correlation(q, p, grad, **kw)
    assert np.array_equal(kicks, residual_kick_correlation(q, p, grad, return_kicks=True, **kw))
    assert kicks.shape == (399, 4, 1)
