"""The seed-bootstrap intervals of replicate_band_summary on synthetic replicates with a known answer."""
import numpy as np

from bayescg.fit import replicate_band_summary


def _fits(n, scale, seed):
    """n replicate 'fits' of U = x^2/2 whose point estimates scatter with sd 0.01 (independent per point) and
    whose bands are scale x 1.88 x that sd: the width ratio is `scale` by construction, the coverage of the
    replicate mean P(|N(0, 1 - 1/n)| <= 1.88 scale)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-2, 2, 81)
    u = x ** 2 / 2
    out = []
    for _ in range(n):
        U = u + 0.01 * rng.standard_normal(x.size)
        hw = scale * 1.88 * 0.01
        out.append({"grid": x[:, None], "U_mean": U, "U_lower": U - hw, "U_upper": U + hw,
                    "weight": np.exp(-x ** 2)})
    return out


def _hits(scale, studies=30, n=20):
    from scipy.stats import norm

    cov_true = 2 * norm.cdf(1.88 * scale / np.sqrt(1 - 1 / n)) - 1
    wr, cov = [], []
    for seed in range(studies):
        s = replicate_band_summary(_fits(n, scale, seed), n_boot=300)
        wr.append(s["width_ratio_ci"][0] < scale < s["width_ratio_ci"][1])
        cov.append(s["coverage_ci"][0] < cov_true < s["coverage_ci"][1])
    return np.mean(wr), np.mean(cov)


def test_90_percent_intervals_hold_the_true_numbers_about_90_percent_of_the_time():
    wr, cov = _hits(1.0)
    assert 0.7 <= wr <= 1.0 and 0.75 <= cov <= 1.0


def test_intervals_shrink_like_one_over_root_seeds_and_are_reproducible():
    s20 = replicate_band_summary(_fits(20, 1.0, 1))
    s80 = replicate_band_summary(_fits(80, 1.0, 1))
    ratio = np.diff(s80["width_ratio_ci"])[0] / np.diff(s20["width_ratio_ci"])[0]
    assert 0.35 < ratio < 0.7  # ~1/2 for 4x the seeds
    assert replicate_band_summary(_fits(20, 1.0, 1))["width_ratio_ci"] == s20["width_ratio_ci"]


def test_interval_excludes_one_when_bands_are_too_narrow():
    s = replicate_band_summary(_fits(20, 0.7, 2))
    assert s["width_ratio_ci"][1] < 0.9
    assert s["coverage_ci"][1] < 0.90
