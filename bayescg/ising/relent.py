"""Relative-entropy coarse-graining (Shell 2008), the slides' baseline ``relEntr``.

Deterministic map xi = majority of each block with random tie-breaking (slides, "Mapping Fine to
Coarse").  With p_f(X) the law of xi(x), minimizing KL(p_f(X) || p_c(X | theta_c)) over theta_c
is maximum likelihood of p_c on the mapped data X_i = xi(x_i) (the mapping entropy S_map does not
depend on theta_c).  The optimum matches the statistics:

    <T(X)>_p_c(theta) = (1/S_f) sum_i T(X_i)                                                   (R1)

solved by Newton's method with exact coarse means and covariances (transfer matrices).

Predictions on the fine scale use the majority map's natural back-map
(:meth:`CoarseModel.backmap_majority`): given X_r, a fine block is uniform over the blocks whose
majority is X_r (ties weighted 1/2).  theta_cf does not exist for relent.
"""
from __future__ import annotations

import time

import numpy as np

from .coarse import CoarseModel
from .em import PointEstimate, _newton_coarse


def relent_fit(cm: CoarseModel, x=None, *, rng=None, target=None, prior_sd=np.inf, theta_c0=None) -> PointEstimate:
    """Fit theta_c by (R1).  Either fine data x (S_f, n_f) (mapped with ``rng`` for ties) or
    ``target`` = the mean coarse term sums (T,) directly (e.g. exact, for tests)."""
    t0 = time.perf_counter()
    if target is None:
        X = cm.majority(x, rng if rng is not None else np.random.default_rng(0))
        target = cm.term_sums(X).mean(0)
        n_data = len(X)
    else:
        n_data = 1
    th0 = np.zeros(cm.K) if theta_c0 is None else theta_c0
    th = _newton_coarse(cm, np.asarray(target, float), th0, n_data, prior_sd, max_iter=100)
    return PointEstimate(th, float("nan"), 0, time.perf_counter() - t0, float("nan"), [])
