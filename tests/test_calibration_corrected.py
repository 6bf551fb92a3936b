"""The band of the finite-delta CORRECTED U (what `bayescg learn` reports) against the seed spread and the truth.

Small replicate study in the default run (benchmarks/calibration/replicates.py --corrected is the full one):
Test 1 (delta 0.5, 1e6 steps, 16 walkers, 100 bins, 20 knots), MAP + Laplace, corrected by
bayescg.pipeline.correct_finite_delta exactly as learn calls it (white-kick runs of the main run's length, the
white-noise check and the 1D kick-shape step).  U_0 = q^2/2 is used only for scoring.
"""
from __future__ import annotations

import numpy as np

from bayescg.config import FitSection
from bayescg.fit import fit_effective_potential, replicate_band_summary
from bayescg.pipeline import correct_finite_delta
from bayescg.potentials import catalogue, reference
from bayescg.simulate import simulate


def _corrected_test1(seeds, steps=1_000_000):
    pot, ref, fs = catalogue("test1"), reference("test1"), FitSection()
    kw = dict(gamma=0.1, steps=steps, walkers=16, hist_range=[(-7.0, 7.0)], bins=100)
    out = []
    for s in seeds:
        sim = simulate(pot, 0.5, seed=s, **kw)
        raw = fit_effective_potential(sim, knots=20, method="map", draws=400, seed=s, reference=ref)
        fc, raw2, corr, note = correct_finite_delta(
            sim, raw, kw, mode=fs.delta_correction, knots=20, mass_fraction=fs.mass_fraction, steps=steps,
            max_iter=fs.correction_iterations,
            min_iter=fs.correction_min_iterations, reference=ref, seed=s, warnings=[], potential=pot)
        assert corr is not None, note
        out.append((raw, fc))
    return out


def test_corrected_band_covers_the_truth_and_matches_the_seed_spread():
    """10 seeds (~12 s).  Measured here (seeds 1-10, 1e6 steps): coverage of q^2/2 0.93, width ratio 1.18, raw
    coverage 0.05; the full study (replicates.py --corrected, 4e6 steps, 50 seeds) gives 0.86 and 0.91.

    Coverage of U_0 (mean over seeds of each fit's reference_coverage on its mass region): each seed's coverage
    is a [0, 1] variable with measured per-seed sd ~0.15 (min 0.48 over 50 seeds), so the mean of 10 has sd
    ~0.05; the bounds [0.6, 0.995] are > 4 sd from the measured values and fail when the correction is not
    applied (0.05) or the band is 3x too wide (1.000, width ratio 3.5: both asserts fail; mutation run
    2026-12-03).  Raw coverage < 0.3 checks that the truth is far from the raw U (else the test would not test
    the correction).  Width ratio against the seed spread: the profile counted as one chi-square draw with 9 dof
    lies within [0.48, 1.87] x its true sd with probability 1 - 1e-3, so a band of true ratio ~1 passes
    [0.4, 2.2] (false failure < 1e-3).  Not resolved at this size: dropping the correction's Monte Carlo error
    from the band (mutation: coverage 0.84, ratio 0.80 -- passes); that is the full study's to catch."""
    runs = _corrected_test1(range(1, 11))
    raw_cov = float(np.mean([r.reference_coverage for r, _ in runs]))
    cov = float(np.mean([c.reference_coverage for _, c in runs]))
    s = replicate_band_summary([c for _, c in runs])
    assert raw_cov < 0.3, raw_cov
    assert 0.6 < cov < 0.995, (cov, raw_cov)
    assert 0.4 < s["width_ratio"] < 2.2, s
