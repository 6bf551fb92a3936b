"""The band of the finite-delta CORRECTED U in 2D (what `bayescg learn` reports on (4.8)) against the seed spread
and the truth V_0, two-sided (issue 11, item 7).

Small replicate study (benchmarks/calibration/replicates.py --learn-2d is the full one, with stage 1 per seed):
(4.8) at delta 0.05, M = I, Gamma = Z / 2 with the analytic Z = delta E[g g^T] = 0.05 [[1, 1/2], [1/2, 1/2]] (stage 1
estimates it to a few per cent; the corrected U barely depends on it, benchmarks/calibration/z_part_corrected.json,
and learn adds Z's part only to the raw band), 5e5 steps, 16 walkers, 30 x 30 bins, 8 knots, MAP + Laplace,
corrected by bayescg.pipeline.correct_finite_delta exactly as learn calls it (white-kick runs of the main run's
length with the V-run's measured kick covariance, the white-noise check).  V_0 is used only for scoring.
"""
from __future__ import annotations

import numpy as np
import pytest

from bayescg.config import FitSection
from bayescg.fit import fit_effective_potential, replicate_band_summary
from bayescg.pipeline import correct_finite_delta
from bayescg.potentials import catalogue, reference
from bayescg.simulate import simulate

Z_TEST4 = 0.05 * np.array([[1.0, 0.5], [0.5, 0.5]])


def corrected_test4(seeds, steps=500_000, bins=30, knots=8):
    """[(raw fit, corrected fit)] per seed, as learn runs them after stage 1 (with the analytic Z)."""
    pot, ref, fs = catalogue("test4"), reference("test4"), FitSection()
    kw = dict(steps=steps, walkers=16, hist_range=[(-1.5, 3.0), (-2.5, 2.0)], bins=bins, mass=np.eye(2),
              friction=Z_TEST4 / 2)
    out = []
    for s in seeds:
        sim = simulate(pot, 0.05, seed=s, **kw)
        raw = fit_effective_potential(sim, knots=knots, method="map", draws=400, seed=s, reference=ref)
        fc, raw2, corr, note = correct_finite_delta(
            sim, raw, kw, mode=fs.delta_correction, knots=knots, mass_fraction=fs.mass_fraction, steps=steps,
            max_iter=fs.correction_iterations,
            min_iter=fs.correction_min_iterations, reference=ref, seed=s, warnings=[], potential=pot)
        assert corr is not None, note
        out.append((raw, fc))
    return out


def scaled(fit, k):
    """The fit's band scaled by k about U_mean (the mutation check: k = 3 and 1/3 must fail the asserts)."""
    import copy

    f = copy.copy(fit)
    f.idata = None  # scale_band writes the posterior's U in place: keep the original's
    f.scale_band(k)
    return f


def band_figures(fits):
    """(mean coverage of V_0 over the fits' mass regions, replicate_band_summary of the fits)."""
    return float(np.mean([f.reference_coverage for f in fits])), replicate_band_summary(fits)


def check_band(fits):
    """The two-sided asserts (kept apart so that the mutation check can run them on scaled bands).

    Coverage of V_0: each seed's coverage is a [0, 1] variable (per-seed sd ~0.1-0.15 on the 1D studies), so the
    mean of 6 has sd ~0.06; [0.6, 0.995] is > 4 sd from a calibrated band's ~0.9 (the corrected U's bias is part of
    that number).  A band 3x too wide covers at ~1.000 (fails the upper bound); 3x too narrow at ~0.5 (fails the
    lower one).  Coverage of the replicate mean: the same bounds.  Width ratio against the seed spread: with 6
    seeds the profile's seed sd is a chi-square draw with 5 dof at worst (the whole profile one draw), so its ratio
    to the truth lies in [0.2, 2.0] with probability 1 - 1e-3: bounds [0.45, 2.6] only catch gross errors and the
    coverages do the rest."""
    cov, s = band_figures(fits)
    assert 0.6 < cov < 0.995, (cov, s["width_ratio"], s["coverage"])
    assert 0.6 < s["coverage"] < 0.995, (cov, s["width_ratio"], s["coverage"])
    assert 0.45 < s["width_ratio"] < 2.6, (cov, s["width_ratio"], s["coverage"])


@pytest.mark.slow
def test_corrected_2d_band_covers_v0_and_matches_the_seed_spread():
    """6 seeds of (4.8) at 5e5 steps (304 s at load average ~11 on the shared 2-core machine, 2026-12-03).

    Measured (seeds 1-6, 2026-12-05, sandwich-shaped 2D band and the correction's gate): the correction is within
    its Monte Carlo error on all six, so the headline U is the raw one (RMSE 0.127) with the correction's se in its
    band: coverage of V_0 0.961, coverage of the replicate mean 0.986, width ratio 1.043 (the raw band: 0.882, 0.890,
    0.745).  Mutation check on the same fits (bands scaled about U_mean, check_band): x 3 gives 1.000 / 1.000 / 3.13
    and fails; x 1/3 gives 0.577 / 0.535 / 0.348 and fails.  (Before the gate the corrected U was further from V_0
    than the raw one, 0.155 vs 0.126: with the exact Z and delta's bias below the noise at 5e5 steps, the correction
    only added its Monte Carlo error.)"""
    runs = corrected_test4(range(1, 7))
    check_band([c for _, c in runs])
