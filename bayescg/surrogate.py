"""Surrogate dynamics with a learned effective potential U_k (the potential paper, Section 4).

The surrogate models replace the multiscale V by the learned U_k and run with a large step:

* Hamiltonian (4.1):        dq = p dt,  dp = -grad U_k(q) dt                       (Verlet, step delta)
* kinetic Langevin (4.2):   dq = p dt,  dp = (-grad U_k(q) - gamma p) dt + sqrt(2 gamma / beta) dW
                                                                                     (BAOAB, step delta)

and are compared with the same equations for the full V at a small reference step h, on the same
initial conditions, M trajectories, time T: phase portraits, equilibrium law (W1), mean path (4.3),
normalized ACF (4.4) (:mod:`bayescg.metrics`), and the wall-clock speedup.

Conventions (all documented in ``settings`` of the result):

* M = I, Gamma = gamma I with the scalar ``surrogate.gamma`` (default ``simulation.gamma``), beta = 1 in both models (the
  paper's (4.2) has sqrt(2 Gamma) dW, i.e. beta = 1).
* U_k enters (4.2) unscaled.  ``result.json``'s U_k is reported so that the damped map's q-marginal
  is exp(-beta_hat U_k): U_k is in the energy units of V, and beta_hat is the *effective temperature
  of the learning run* (the unresolved scales acting as noise), not a property of U_k.  The full model
  (4.2) with V at beta = 1 has the law exp(-V), whose coarse-grained version is exp(-U_k) (the micro
  terms of (4.5)-(4.7) average out to a constant: e.g. <exp(-e sin(q/e))> = I_0(e), independent of q).
  Using beta_hat U_k instead would make the surrogate reproduce the law of the *learning simulation*
  (temperature 1/beta_hat), not the full model at beta = 1 that it is compared with.  Residual
  temperature dependence of the coarse free energy is O(amplitude^2) of the micro terms.
* U_k outside the learned grid [g_lo, g_hi]: quadratic continuation U(b) + U'(b) x + kappa_b x^2 / 2,
  x the distance beyond the boundary b, with kappa_b >= 0 the mean curvature of U_k over the outer
  10 % of the grid at that side (exact for a quadratic U_k, confining whenever kappa_b > 0).  The
  fraction of trajectories that ever leave the grid is reported.
* Posterior bands: the surrogate Langevin model is run for ``posterior_draws`` draws of U_k (from the
  fit's draws on the grid).  All draws run in *one* simulation of the separable potential
  sum_j U_j(q_j) on R^D (M = I and diagonal friction keep the coordinates independent), so numba
  compiles one kernel instead of one per draw.  Bands are the 3 % / 97 % quantiles over draws; with
  10-20 draws they are rough, and they include the Monte Carlo noise of M trajectories.
* Timing: each model is warmed up (compiled) on two trajectories first; the timed calls include the
  per-call setup (seeding, allocation), which makes the surrogate's speedup conservative.

d = 2, 3 (the fit's other dimensions; :func:`surrogate_model` dispatches to them, one code path):

* U_k is the fit's cubic tensor B-spline itself (knots and coefficients from ``posterior.nc`` /
  the LearnResult, as :mod:`bayescg.export` reads them; ``"reference"``: a least-squares spline of
  ``potential.reference`` on ``potential.domain``), not a new interpolant.  Outside the data box (the
  bounding box of the reported grid) each 1D basis is continued linearly and a wall
  kappa_side dist^2 / 2 is added per side, kappa_side the mean normal curvature over the data points in
  the outer 10 % of the box: the d-dimensional analogue of the 1D continuation, exact for a quadratic U
  (:func:`spline_surrogate_potential`).
* Friction: a matrix, by priority ``surrogate.gamma`` I, the learn stage's calibrated Gamma = Z / 2
  (Theorem 3.1; the law it learned is Gibbs at beta = 1, so U_k enters at beta = 1),
  ``simulation.friction``, ``simulation.gamma`` I; the full model runs with the same Gamma.
* Metrics: sliced W1 (:func:`bayescg.metrics.sliced_wasserstein1`) and per-coordinate W1 of the
  equilibrium law, mean path (4.3) and ACF (4.4) errors per coordinate, phase-portrait distance per
  (q_i, p_i) plane and in the joint phase space, speedups; posterior draws run as one separable
  simulation on R^(dD) with friction kron(I_D, Gamma).  ``surrogate.init_centres`` spreads the
  initial conditions over several points (e.g. the three Mueller-Brown wells).
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any, Optional

import numba
import numpy as np

from . import metrics as mt
from .config import Model, SurrogateSection
from .errors import InputError
from .splines import _basis_and_deriv, _find_span

__all__ = [
    "LearnedCurves", "learned_curves", "reference_curves", "interpolated_potential", "stacked_potential",
    "initial_conditions", "timed_run", "SurrogateResult", "surrogate_model", "compare_dynamics",
    "spline_surrogate_potential", "reference_spline", "initial_conditions_nd", "compare_dynamics_nd",
    "SurrogateResultND",
]

#: Band quantiles (94 %, like the fit's bands).
BAND_Q = (0.03, 0.97)
#: Target record spacing of the full model (time units); rounded to whole steps.
FULL_RECORD_SPACING = 0.05
#: Record spacing of phase-portrait trajectories of the full model (time units).
PHASE_RECORD_SPACING = 0.01


# --------------------------------------------------------------------------------------------------
# learned curves -> numba potentials
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class LearnedCurves:
    """U_k on a 1D grid: grid (G,), U_mean (G,), draws (S, G) or None, beta_hat, source (text)."""

    grid: np.ndarray
    U_mean: np.ndarray
    draws: Optional[np.ndarray]
    beta_hat: Optional[float]
    source: str


def _check_curve(grid, U, what: str):
    grid = np.asarray(grid, dtype=float)
    if grid.ndim == 2:
        if grid.shape[1] != 1:
            raise InputError(f"{what}: surrogate dynamics are implemented for d = 1; the grid has d = {grid.shape[1]}")
        grid = grid[:, 0]
    U = np.asarray(U, dtype=float)
    if grid.ndim != 1 or grid.shape != U.shape[-1:] or grid.size < 4:
        raise InputError(f"{what}: need a grid of >= 4 points and U of the same length, got {grid.shape} and {U.shape}")
    if not (np.all(np.isfinite(grid)) and np.all(np.isfinite(U))):
        raise InputError(f"{what}: grid and U must be finite")
    if np.any(np.diff(grid) <= 0):
        raise InputError(f"{what}: grid must be strictly increasing")
    return grid, U


def learned_curves(learned, posterior=None) -> LearnedCurves:
    """U_k curves from a LearnResult / FitResult (``.fit`` with grid, U_mean, U_draws), a result.json
    dict (grid, U_mean, beta_hat; optional ``U_draws``), or a LearnedCurves.

    posterior: optional path of a ``posterior.nc`` (or an InferenceData) whose posterior group holds
    ``U`` (chain, draw, grid_point) on the same grid; used for draws when ``learned`` has none.  A dict
    may name it under ``posterior_path``.
    """
    if isinstance(learned, LearnedCurves):
        return learned
    draws = None
    if isinstance(learned, dict):
        if "grid" not in learned or "U_mean" not in learned:
            raise InputError("learned result needs 'grid' and 'U_mean' (a learn result.json)")
        grid, U = _check_curve(learned["grid"], learned["U_mean"], "learned U_k")
        beta_hat = learned.get("beta_hat")
        if learned.get("U_draws") is not None:
            draws = np.asarray(learned["U_draws"], dtype=float)
        posterior = posterior if posterior is not None else learned.get("posterior_path")
        source = "result.json (posterior-mean U_k)"
    else:
        fit = getattr(learned, "fit", learned)
        if not hasattr(fit, "U_mean") or not hasattr(fit, "grid"):
            raise InputError(f"cannot read a learned U_k from {type(learned).__name__}")
        grid, U = _check_curve(fit.grid, fit.U_mean, "learned U_k")
        eq = getattr(learned, "equilibrium", None)
        beta_hat = getattr(eq, "beta_hat", None)
        if beta_hat is None and isinstance(getattr(fit, "beta", None), dict):
            beta_hat = fit.beta.get("beta_hat")
        if getattr(fit, "U_draws", None) is not None:
            draws = np.asarray(fit.U_draws, dtype=float)
        source = "learn run (posterior-mean U_k)"
    if draws is None and posterior is not None:
        draws = _draws_from_posterior(posterior)
    if draws is not None:
        draws = np.asarray(draws, dtype=float).reshape(-1, draws.shape[-1])
        if draws.shape[1] != grid.size or not np.all(np.isfinite(draws)):
            raise InputError(f"posterior draws of U have {draws.shape[1]} grid points, the grid has {grid.size}")
    return LearnedCurves(grid, U, draws, None if beta_hat is None else float(beta_hat), source)


def _draws_from_posterior(posterior):
    import arviz as az

    if isinstance(posterior, (str, Path)):
        p = Path(posterior)
        if not p.exists():
            return None
        posterior = az.from_netcdf(p)
    post = getattr(posterior, "posterior", None)
    if post is None or "U" not in post:
        return None
    # U_corrected (finite-delta corrected, the headline U_k of result.json) when the learn stage applied it
    u = np.asarray(post["U_corrected" if "U_corrected" in post else "U"].values, dtype=float)
    return u.reshape(-1, u.shape[-1])


def reference_curves(model: Model, n: int = 401, energy_cut: float = 20.0,
                     expression: Optional[str] = None) -> LearnedCurves:
    """The model's exact reference U_k (``potential.reference``, or ``expression``) on a grid, as if
    it had been learned (no draws).

    The grid spans ``potential.domain`` if given, else the region where U - min U <= energy_cut
    (found on [-50, 50] around the minimum), widened to hold the initial conditions' range.
    """
    from .pipeline import reference_from_model
    from .potentials import Potential

    if expression is not None:
        ref = Potential.from_expression(expression, model.require("potential").variables)
    else:
        ref = reference_from_model(model)
        expression = model.potential.reference
    if ref is None:
        raise InputError(f"{model.path or model.name}: potential.reference is needed to use the exact U_k")
    if ref.dim != 1:
        raise InputError("surrogate dynamics are implemented for d = 1")
    if model.potential.domain is not None:
        lo, hi = model.potential.domain[0]
    else:
        x = np.linspace(-50.0, 50.0, 200_001)
        u = ref.V(x)
        ok = np.flatnonzero(u - u.min() <= energy_cut)
        lo, hi = x[ok[0]], x[ok[-1]]
    sec = model.surrogate or SurrogateSection()
    a, b = _ic_range(sec)
    lo, hi = min(lo, a), max(hi, b)
    grid = np.linspace(lo, hi, n)
    U = ref.V(grid)
    return LearnedCurves(grid, U - U.min(), None, None, f"exact U_k = {expression} (given, not learned)")


def _ic_range(sec: SurrogateSection):
    if sec.init == "uniform":
        return float(sec.init_q[0]), float(sec.init_q[1])
    return float(sec.init_q[0] - 4 * sec.init_q[1]), float(sec.init_q[0] + 4 * sec.init_q[1])


@numba.njit(inline="always")
def _pp_eval(x, brk, cf, j0, uniform, inv_dx, wlo, whi):
    """Value and derivative of one piecewise cubic (rows cf[j0 .. j0+3] hold the 4 x (G-1) PPoly
    coefficients, highest power first) with quadratic continuation outside [brk[0], brk[-1]]."""
    n = brk.shape[0] - 1
    lo = brk[0]
    hi = brk[n]
    xc = x
    w = 0.0
    if x < lo:
        xc = lo
        w = wlo
    elif x > hi:
        xc = hi
        w = whi
    if uniform:
        i = int((xc - lo) * inv_dx)
        if i > n - 1:
            i = n - 1
        if i < 0:
            i = 0
        # guard against rounding at interval edges
        if xc < brk[i] and i > 0:
            i -= 1
        elif i < n - 1 and xc >= brk[i + 1]:
            i += 1
    else:
        a = 0
        b = n
        while b - a > 1:
            m = (a + b) // 2
            if xc < brk[m]:
                b = m
            else:
                a = m
        i = a
    s = xc - brk[i]
    c0 = cf[j0, i]
    c1 = cf[j0 + 1, i]
    c2 = cf[j0 + 2, i]
    c3 = cf[j0 + 3, i]
    v = ((c0 * s + c1) * s + c2) * s + c3
    g = (3.0 * c0 * s + 2.0 * c1) * s + c2
    dx = x - xc
    return v + g * dx + 0.5 * w * dx * dx, g + w * dx


def _pp_kernels(brk, coef, wlo, whi):
    """njit (value(q), grad(q, out)) for the separable sum_j U_j(q_j); coef: (D, 4, G-1)."""
    brk = np.ascontiguousarray(brk, dtype=float)
    D = coef.shape[0]
    cf = np.ascontiguousarray(coef.reshape(D * 4, -1), dtype=float)
    wlo = np.ascontiguousarray(wlo, dtype=float)
    whi = np.ascontiguousarray(whi, dtype=float)
    dxs = np.diff(brk)
    uniform = bool(np.allclose(dxs, dxs[0], rtol=1e-9, atol=0.0))
    inv_dx = float(1.0 / dxs[0])

    @numba.njit
    def value(q):
        v = 0.0
        for j in range(D):
            vj, _ = _pp_eval(q[j], brk, cf, 4 * j, uniform, inv_dx, wlo[j], whi[j])
            v += vj
        return v

    @numba.njit
    def grad(q, out):
        for j in range(D):
            _, gj = _pp_eval(q[j], brk, cf, 4 * j, uniform, inv_dx, wlo[j], whi[j])
            out[j] = gj

    return value, grad


def _spline_pieces(grid, U, edge_fraction: float = 0.1):
    """Cubic interpolant (not-a-knot) of U (G,) on grid as PPoly coefficients (4, G-1) and the
    continuation curvatures (kappa_lo, kappa_hi) >= 0 (mean U'' over the outer edge_fraction)."""
    from scipy.interpolate import CubicSpline

    cs = CubicSpline(grid, U, bc_type="not-a-knot")
    k = max(2, int(round(edge_fraction * (grid.size - 1))))
    # mean curvature over the edge band = (U'(end) - U'(start)) / width
    d1 = cs.derivative(1)
    klo = (d1(grid[k]) - d1(grid[0])) / (grid[k] - grid[0])
    khi = (d1(grid[-1]) - d1(grid[-1 - k])) / (grid[-1] - grid[-1 - k])
    return cs.c, max(float(klo), 0.0), max(float(khi), 0.0), cs


def interpolated_potential(grid, U, variables=("q",)):
    """U_k (G,) on a 1D grid (G,) -> (Potential, info) with numba value/gradient kernels.

    The cubic not-a-knot interpolant (scipy CubicSpline) is evaluated as a piecewise polynomial
    (O(1) interval lookup on a uniform grid), continued quadratically outside the grid (module
    docstring).  info: {grid_range, kappa_lo, kappa_hi, slope_lo, slope_hi, warnings}.
    """
    from .potentials import Potential

    grid, U = _check_curve(grid, U, "U_k")
    c, klo, khi, cs = _spline_pieces(grid, U)
    value, grad = _pp_kernels(grid, c[None], np.array([klo]), np.array([khi]))
    info = {"grid_range": [float(grid[0]), float(grid[-1])], "kappa_lo": klo, "kappa_hi": khi,
            "slope_lo": float(cs(grid[0], 1)), "slope_hi": float(cs(grid[-1], 1)), "warnings": []}
    if (info["slope_lo"] > 0 and klo == 0) or (info["slope_hi"] < 0 and khi == 0):
        info["warnings"].append("U_k decreases outwards at a grid edge with zero continuation curvature: "
                                "trajectories that leave the grid may escape")
    pot = Potential.from_numba(grad, 1, value, variables=list(variables))
    return pot, info


def stacked_potential(grid, draws):
    """The separable potential sum_j U_j(q_j) on R^D for D draws (D, G) on one grid -> Potential.

    Used to run all posterior draws in one simulation (one numba compilation).
    """
    from .potentials import Potential

    grid, draws = _check_curve(grid, draws, "U_k draws")
    draws = np.atleast_2d(draws)
    coefs, klo, khi = [], [], []
    for u in draws:
        c, a, b, _ = _spline_pieces(grid, u)
        coefs.append(c)
        klo.append(a)
        khi.append(b)
    value, grad = _pp_kernels(grid, np.stack(coefs), np.array(klo), np.array(khi))
    return Potential.from_numba(grad, draws.shape[0], value)


# --------------------------------------------------------------------------------------------------
# runs
# --------------------------------------------------------------------------------------------------
def initial_conditions(sec: SurrogateSection, M: int, d: int, seed: int):
    """(q0, p0), each (M, d): normal [mean, sd] or uniform [lo, hi] per ``sec.init``; seeded."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 4242]))
    out = []
    for spec, name in ((sec.init_q, "init_q"), (sec.init_p, "init_p")):
        if len(spec) != 2:
            raise InputError(f"surrogate.{name} needs two numbers ([mean, sd] or [lo, hi]), got {spec}")
        a, b = float(spec[0]), float(spec[1])
        if sec.init == "normal":
            if b < 0:
                raise InputError(f"surrogate.{name}: sd must be >= 0, got {b}")
            out.append(a + b * rng.standard_normal((M, d)))
        else:
            if b < a:
                raise InputError(f"surrogate.{name}: uniform range needs lo <= hi, got [{a}, {b}]")
            out.append(rng.uniform(a, b, (M, d)))
    return out[0], out[1]


def timed_run(potential, h, T, q0, p0, *, integrator, gamma, seed, record_every, control=None,
              warmup=True, min_seconds: float = 0.0, friction=None):
    """run_trajectories after a compile warm-up (2 trajectories, 2 records); returns
    (times, q, p, seconds).  With ``min_seconds`` a fast run is repeated until that much time has
    passed and the mean wall-clock per run is returned (the first run's output is kept).
    friction: (d, d) matrix used instead of gamma I."""
    from .simulate import run_trajectories

    kw = dict(integrator=integrator, gamma=gamma, beta=1.0, seed=seed, friction=friction)
    if warmup:
        every = max(1, int(round(record_every / h)))
        run_trajectories(potential, h, 2 * every * h, q0[:2], p0[:2], record_every=every * h, **kw)
    t0 = time.perf_counter()
    out = run_trajectories(potential, h, T, q0, p0, record_every=record_every, control=control, **kw)
    n = 1
    while time.perf_counter() - t0 < min_seconds:
        run_trajectories(potential, h, T, q0, p0, record_every=record_every, **kw)
        n += 1
    seconds = (time.perf_counter() - t0) / n
    return out[0], out[1], out[2], seconds


def _record_every(h: float, target: float) -> float:
    return max(1, int(round(target / h))) * h


def compare_dynamics(t_a, q_a, t_b, q_b, *, eq_fraction: float = 0.5, max_lag_time: Optional[float] = None):
    """Metrics of ensemble a (the surrogate: times (n_a,), q (n_a, M, d)) against b (the full model).

    Returns {equilibrium_w1, equilibrium_w1_per_coordinate, mean_path_max_error, acf_l2_error,
    max_lag_time}.  The ACF (4.4) uses all records from t = 0 (the paper's averages); its error is the
    RMS difference over lags [0, max_lag_time] (default T/2) on a's lag grid.
    """
    if max_lag_time is None:
        max_lag_time = 0.5 * min(t_a[-1], t_b[-1])
    ea = mt.late_samples(t_a, q_a, eq_fraction)
    eb = mt.late_samples(t_b, q_b, eq_fraction)
    w = mt.equilibrium_w1(ea, eb)
    err_mp = mt.mean_path_max_error(t_a, mt.mean_path(q_a), t_b, mt.mean_path(q_b))
    la, acf_a = _acf(t_a, q_a, max_lag_time)
    lb, acf_b = _acf(t_b, q_b, max_lag_time)
    err_acf = mt.acf_l2_error(la, acf_a, lb, acf_b, tau_max=min(la[-1], lb[-1]))
    return {"equilibrium_w1": w["w1"], "equilibrium_w1_per_coordinate": w["per_coordinate"],
            "mean_path_max_error": err_mp, "acf_l2_error": err_acf, "max_lag_time": float(min(la[-1], lb[-1]))}


def _acf(t, q, max_lag_time):
    dt = t[1] - t[0]
    L = min(int(math.floor(max_lag_time / dt + 1e-9)), len(t) - 1)
    return dt * np.arange(L + 1), mt.normalized_acf(q, L)


def _outside(q, lo, hi):
    """(fraction of trajectories that ever left the box [lo, hi], fraction of recorded points outside): q (n, M, d),
    lo and hi scalars or (d,)."""
    out = np.any((q < np.asarray(lo)) | (q > np.asarray(hi)), axis=2)
    return float(np.mean(np.any(out, axis=0))), float(np.mean(out))


def _langevin_pair(V, U, h, delta, T, q0, p0, rec_f, rec_s, lo, hi, eq_frac, compare, common):
    """(t_full, q_full, t_surrogate, q_surrogate, metrics): the Langevin runs (4.2) of the full model V at the reference
    step h and of the surrogate U at delta from the same initial conditions (q0, p0) (M, d); the metrics of `compare`
    (compare_dynamics or compare_dynamics_nd), the speed-up, the leavers of the box [lo, hi] and the largest standard
    error of the mean-path difference."""
    tf, qf, _, sec_f = timed_run(V, h, T, q0, p0, record_every=rec_f, **common)
    ts, qs, _, sec_s = timed_run(U, delta, T, q0, p0, record_every=rec_s, min_seconds=0.5, **common)
    lg = compare(ts, qs, tf, qf, eq_fraction=eq_frac)
    lg.update({"speedup": sec_f / sec_s, "seconds_full": sec_f, "seconds_surrogate": sec_s})
    lg["left_grid_fraction"], lg["outside_grid_sample_fraction"] = _outside(qs, lo, hi)
    lg["mean_path_standard_error_max"] = float(np.max(np.hypot(mt.mean_path_se(qs), _interp_se(tf, qf, ts))))
    return tf, qf, ts, qs, lg


def _summary(values: dict, warnings) -> "Summary":
    """The surrogate results' :class:`bayescg.summary.Summary`: speedups in x (wall-clock ratio, full model over
    surrogate), fractions and times of the settings as given."""
    from .summary import Summary

    units = {k: "x" for k in values if "speedup" in k}
    fmts = {k: ".3g" for k in values if not k.startswith(("surrogate step", "reference step", "time T"))}
    return Summary.from_mapping("surrogate: surrogate dynamics against the full model", values, units, fmts, warnings)


# --------------------------------------------------------------------------------------------------
# result
# --------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SurrogateResult:
    """Everything ``bayescg surrogate`` produces; :meth:`to_dict` is ``surrogate.json``.

    settings: dict of the run's choices; langevin / hamiltonian: metric dicts (SPEC fields + extras);
    compare: {expression, langevin, hamiltonian} for ``compare_expression`` (or None); curves: arrays
    for the figures (not serialised except the bands); warnings: list of str.
    """

    model_name: str
    settings: dict
    langevin: dict
    hamiltonian: dict
    compare: Optional[dict]
    timings: dict
    warnings: list
    curves: dict = dataclasses.field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        c = self.curves
        keys = ("t_surrogate", "mean_surrogate", "t_full", "mean_full", "mean_compare", "lags_surrogate",
                "acf_surrogate", "lags_full", "acf_full", "acf_compare", "density_edges", "density_surrogate",
                "density_full", "density_compare")
        curves = {k: np.asarray(c[k], dtype=float).tolist() for k in keys if k in c}
        return {"model": self.model_name, "settings": self.settings, "langevin": self.langevin,
                "hamiltonian": self.hamiltonian, "compare": self.compare, "timings": self.timings,
                "warnings": list(self.warnings), "curves": curves}

    def summary(self):
        lg, hm = self.langevin, self.hamiltonian
        s = {
            "U_k source": self.settings["U_source"],
            "surrogate step delta": self.settings["delta"], "reference step h": self.settings["reference_step"],
            "trajectories M": self.settings["trajectories"], "time T": self.settings["time"],
            "Langevin W1 (equilibrium)": lg["equilibrium_w1"],
            "Langevin mean-path max error": lg["mean_path_max_error"],
            "Langevin ACF RMS error": lg["acf_l2_error"],
            "Langevin speedup": lg["speedup"],
            "noise floor W1 / mean path / ACF": "{:.3g} / {:.3g} / {:.3g}".format(
                lg["noise_floor"]["equilibrium_w1"], lg["noise_floor"]["mean_path_max_error"],
                lg["noise_floor"]["acf_l2_error"]),
            "Hamiltonian phase-portrait error": hm["phase_portrait_error"],
            "Hamiltonian speedup": hm["speedup"],
            "trajectories that left the U_k grid": lg["left_grid_fraction"],
        }
        if lg.get("posterior"):
            p = lg["posterior"]
            s["posterior draws"] = p["draws"]
            s["W1 over draws (3%-97%)"] = f"{p['equilibrium_w1']['lower']:.3g} - {p['equilibrium_w1']['upper']:.3g}"
        if self.compare:
            c = self.compare
            s[f"compare ({c['expression']}) W1 / mean path / ACF"] = "{:.3g} / {:.3g} / {:.3g}".format(
                c["langevin"]["equilibrium_w1"], c["langevin"]["mean_path_max_error"], c["langevin"]["acf_l2_error"])
            s["compare phase-portrait error"] = c["hamiltonian"]["phase_portrait_error"]
        return _summary(s, self.warnings)

    def figures(self) -> list:
        """[(title, Figure)]: phase portraits, equilibrium densities, mean paths, ACFs, U_k
        (:func:`bayescg.plots.surrogate.surrogate_figures`)."""
        from .plots.surrogate import surrogate_figures

        return surrogate_figures(self)


# --------------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------------
def _langevin_1d(V, U, sec, M, T, delta, h, q0, p0, gamma, seed, rec_s, rec_f, eq_frac, lo, hi, common, warnings):
    """(metrics, curves, density edges, (t_full, q_full, t_surrogate)): the Langevin runs (4.2) of the full model at
    the reference step h and of the surrogate U at delta, same M initial conditions (q0, p0) (M, 1); the metrics of
    compare_dynamics, the speed-up, the noise floor (two independent surrogate ensembles) and the grid leavers."""
    tf, qf, ts, qs, lg = _langevin_pair(V, U, h, delta, T, q0, p0, rec_f, rec_s, lo, hi, eq_frac, compare_dynamics,
                                        common)
    # noise floor: the same metrics between two independent surrogate ensembles of size M
    q0b, p0b = initial_conditions(sec, M, 1, seed + 1_000_003)
    from .simulate import run_trajectories

    tsb, qsb, _ = run_trajectories(U, delta, T, q0b, p0b, integrator="langevin", gamma=gamma, beta=1.0,
                                   seed=seed + 1_000_003, record_every=rec_s)
    nf = compare_dynamics(ts, qs, tsb, qsb, eq_fraction=eq_frac)
    lg["noise_floor"] = {k: nf[k] for k in ("equilibrium_w1", "mean_path_max_error", "acf_l2_error")}
    if lg["left_grid_fraction"] > 0:
        warnings.append(f"{100 * lg['left_grid_fraction']:.1f}% of surrogate Langevin trajectories left the "
                        f"learned grid [{lo:.3g}, {hi:.3g}] (U_k continued quadratically there)")

    curves_out: dict = {}
    edges = np.linspace(min(lo, np.nanmin(qf)), max(hi, np.nanmax(qf)), 81)
    ef = mt.late_samples(tf, qf, eq_frac)
    es = mt.late_samples(ts, qs, eq_frac)
    la, acf_s = _acf(ts, qs, lg["max_lag_time"])
    lf, acf_f = _acf(tf, qf, lg["max_lag_time"])
    curves_out.update({
        "density_edges": edges, "density_full": mt.density_on_bins(ef, edges),
        "density_surrogate": mt.density_on_bins(es, edges),
        "t_full": tf, "mean_full": mt.mean_path(qf)[:, 0], "t_surrogate": ts, "mean_surrogate": mt.mean_path(qs)[:, 0],
        "lags_full": lf, "acf_full": acf_f[:, 0], "lags_surrogate": la, "acf_surrogate": acf_s[:, 0],
    })

    return lg, curves_out, edges, (tf, qf, ts)


def _settings_1d(sec, delta, h, M, T, gamma, seed, curves, learn_delta, learned, lo, hi, info, rec_s, rec_f, eq_frac,
                 K) -> dict:
    """The 1D run's settings as recorded in surrogate.json (with how each metric is defined)."""
    return {
        "delta": delta, "reference_step": h, "trajectories": M, "time": T, "gamma": gamma, "beta": 1.0,
        "mass": "identity", "friction": "gamma * I (surrogate.gamma, default simulation.gamma)",
        "init": sec.init, "init_q": list(sec.init_q), "init_p": list(sec.init_p), "seed": seed,
        "U_source": curves.source, "beta_hat": curves.beta_hat, "learn_delta": learn_delta,
        "U_scaling": "none: U_k enters (4.2) at beta = 1 as learned (energy units of V); see bayescg.surrogate",
        "finite_delta_correction": _learned_correction(learned),
        "grid_range": [lo, hi], "continuation_curvature": [info["kappa_lo"], info["kappa_hi"]],
        "record_every_surrogate": rec_s, "record_every_full": rec_f,
        "equilibrium_fraction": eq_frac, "phase_trajectories": K,
        "acf": "(4.4) with time-and-ensemble averages over all records from t = 0; error = RMS over lags "
               "[0, max_lag_time] on the surrogate's lag grid",
        "phase_portrait_error": "symmetric mean point-to-curve distance in the (q, p) plane, mean over "
                                "phase_trajectories orbits from the first initial conditions",
        "speedup": "wall-clock of the full model at h over the surrogate at delta, same M, T and initial "
                   "conditions, after a compile warm-up; Hamiltonian timed on the same M-trajectory ensemble",
        "numba_threads": numba.get_num_threads(),
    }


def surrogate_model(model: Model, learned: Any = None, *, control=None, executor=None, workdir=None,
                    posterior=None, seed: Optional[int] = None) -> SurrogateResult:
    """Run and compare the surrogate (4.1)/(4.2) with U_k against the full model with V.

    learned: None (learn U_k first with :func:`bayescg.pipeline.learn_model`), a LearnResult, a
    result.json dict, ``"reference"`` (the model's exact ``potential.reference`` on a grid, no learning)
    or a :class:`LearnedCurves`.  posterior: optional posterior.nc path for draws (see
    :func:`learned_curves`).  executor is accepted for the command layer's interface; the runs are
    parallel over trajectories inside numba.  Settings come from ``[surrogate]`` (delta, reference_step,
    trajectories M, time T, init, init_q, init_p, compare_expression, posterior_draws,
    phase_trajectories, equilibrium_fraction, learn_delta, gamma (default ``simulation.gamma``)) and
    ``simulation.seed``.

    learn_delta (default simulation.delta) is the damped-map step at which U_k is learned when
    ``learned`` is None; an in-process LearnResult made at another step is relearned (warning), a
    result.json dict made at another step is used as given (warning).  d = 2, 3: the fit's tensor spline
    drives the runs (see the module docstring); raises InputError for d > 3, SimulationError if a
    trajectory blows up.
    """
    from .pipeline import potential_from_model
    from .potentials import Potential

    t_start = time.perf_counter()
    sec = model.surrogate or SurrogateSection()
    sim = model.require("simulation")
    pot_sec = model.require("potential")
    # the learning run's friction sets its temperature; the compared dynamics may use another one
    gamma = float(sec.gamma if getattr(sec, "gamma", None) else sim.gamma)
    seed = int(sim.seed if seed is None else seed)
    V = potential_from_model(model)
    if V.dim != 1:
        return _surrogate_nd(model, V, learned, control=control, workdir=workdir, posterior=posterior, seed=seed,
                             executor=executor)
    warnings: list[str] = []
    timings: dict = {}

    # ---- U_k (learned at surrogate.learn_delta when given, else at simulation.delta)
    t0 = time.perf_counter()
    learned, posterior, learn_delta = _resolve_learned(model, learned, posterior, workdir=workdir, control=control,
                                                       executor=executor, warnings=warnings)
    if isinstance(learned, str):
        curves = reference_curves(model)
    else:
        curves = learned_curves(learned, posterior)
        for w in (getattr(learned, "warnings", None) or (learned.get("warnings") if isinstance(learned, dict) else None) or []):
            warnings.append(f"learn: {w}")
    timings["learn_seconds"] = time.perf_counter() - t0
    U, info = interpolated_potential(curves.grid, curves.U_mean, pot_sec.variables)
    warnings += info["warnings"]
    lo, hi = info["grid_range"]
    n_draws = int(getattr(sec, "posterior_draws", 10))
    draws = None
    if curves.draws is not None and n_draws > 0:
        S = curves.draws.shape[0]
        idx = np.unique(np.linspace(0, S - 1, min(n_draws, S)).round().astype(int))
        draws = curves.draws[idx]
    compare = None
    if sec.compare_expression:
        compare = Potential.from_expression(sec.compare_expression, pot_sec.variables)

    M, T, delta, h = _run_lengths(sec, warnings)
    q0, p0 = initial_conditions(sec, M, 1, seed)
    rec_s = delta
    rec_f = _record_every(h, max(FULL_RECORD_SPACING, h))
    eq_frac = float(getattr(sec, "equilibrium_fraction", 0.5))

    # ---- Langevin (4.2), its noise floor and curves
    common = dict(integrator="langevin", gamma=gamma, seed=seed, control=control)
    lg, curves_out, edges, (tf, qf, ts) = _langevin_1d(V, U, sec, M, T, delta, h, q0, p0, gamma, seed, rec_s, rec_f,
                                                       eq_frac, lo, hi, common, warnings)

    # ---- posterior draws of U_k (one separable run, see module docstring)
    if draws is not None:
        t0 = time.perf_counter()
        lg["posterior"] = _posterior_bands(curves.grid, draws, q0, p0, delta, T, gamma, seed, rec_s,
                                           ts, qf, tf, eq_frac, edges, lg["max_lag_time"], curves_out, control)
        timings["posterior_seconds"] = time.perf_counter() - t0
    else:
        lg["posterior"] = None
        warnings.append("no posterior draws of U_k available (a result.json dict needs 'posterior_path' to its "
                        "posterior.nc, or pass posterior=): no predictive bands")

    # ---- Hamiltonian (4.1)
    ham = dict(integrator="hamiltonian", gamma=gamma, seed=seed, control=control)
    K = max(1, min(int(getattr(sec, "phase_trajectories", 3)), M))
    rec_ph = _record_every(h, max(PHASE_RECORD_SPACING, h))
    hm, orb_f, orb_s = _hamiltonian_1d(V, U, h, delta, T, q0, p0, K, rec_ph, ham)
    hm["left_grid_fraction"] = _outside(hm.pop("q_surrogate"), lo, hi)[0]
    curves_out.update({"phase_full": orb_f, "phase_surrogate": orb_s})

    # ---- comparison potential (e.g. the N = 2 truncation), at the reference step like V
    cmp_out = None
    if compare is not None:
        cmp_out = _compare_1d(compare, sec.compare_expression, h, T, q0, p0, K, rec_f, rec_ph, orb_f, tf, qf,
                              eq_frac, edges, lg["max_lag_time"], common, ham, curves_out)

    xs = np.linspace(edges[0], edges[-1], 400)
    curves_out.update({"U_x": xs, "U_used": U.V(xs), "U_grid": curves.grid, "U_grid_values": curves.U_mean})
    if draws is not None:
        curves_out["U_draws"] = [_interp_values(curves.grid, u, xs) for u in draws[:8]]

    settings = _settings_1d(sec, delta, h, M, T, gamma, seed, curves, learn_delta, learned, lo, hi, info, rec_s,
                            rec_f, eq_frac, K)
    timings["total_seconds"] = time.perf_counter() - t_start
    return SurrogateResult(model.name, settings, lg, hm, cmp_out, timings, warnings, curves_out)




def _hamiltonian_1d(V, U, h, delta, T, q0, p0, K, rec_ph, ham):
    """(hm, orbits of V, orbits of U): (4.1) with V at h and U at delta on the whole ensemble (timed) and the first K
    orbits recorded for the phase portraits; ``hm['q_surrogate']`` holds the surrogate's ensemble positions."""
    _, _, _, hsec_f = timed_run(V, h, T, q0, p0, record_every=_record_every(h, T / 10), **ham)
    _, hqs_all, _, hsec_s = timed_run(U, delta, T, q0, p0, record_every=delta, min_seconds=0.5, **ham)
    _, hqf, hpf, _ = timed_run(V, h, T, q0[:K], p0[:K], record_every=rec_ph, warmup=False, **ham)
    _, hqs, hps, _ = timed_run(U, delta, T, q0[:K], p0[:K], record_every=delta, warmup=False, **ham)
    orb_f = [np.c_[hqf[:, i, 0], hpf[:, i, 0]] for i in range(K)]
    orb_s = [np.c_[hqs[:, i, 0], hps[:, i, 0]] for i in range(K)]
    dists = [mt.phase_portrait_distance(a, b) for a, b in zip(orb_s, orb_f)]
    hm = {"phase_portrait_error": float(np.mean([x["mean"] for x in dists])),
          "phase_portrait_hausdorff": float(np.max([x["hausdorff"] for x in dists])),
          "per_trajectory": dists, "initial_conditions": np.c_[q0[:K, 0], p0[:K, 0]].tolist(),
          "speedup": hsec_f / hsec_s, "seconds_full": hsec_f, "seconds_surrogate": hsec_s, "q_surrogate": hqs_all}
    return hm, orb_f, orb_s


def _compare_1d(compare, expression, h, T, q0, p0, K, rec_f, rec_ph, orb_f, tf, qf, eq_frac, edges, max_lag_time,
                common, ham, curves_out) -> dict:
    """The comparison potential (surrogate.compare_expression) run like V at the reference step h: its Langevin
    metrics against V and its phase-portrait error; its curves go into ``curves_out``."""
    tc, qc, _, csec = timed_run(compare, h, T, q0, p0, record_every=rec_f, **common)
    cl = compare_dynamics(tc, qc, tf, qf, eq_fraction=eq_frac)
    _, hqc, hpc, _ = timed_run(compare, h, T, q0[:K], p0[:K], record_every=rec_ph, **ham)
    orb_c = [np.c_[hqc[:, i, 0], hpc[:, i, 0]] for i in range(K)]
    cd = [mt.phase_portrait_distance(a, b) for a, b in zip(orb_c, orb_f)]
    lc, acf_c = _acf(tc, qc, max_lag_time)
    curves_out.update({"density_compare": mt.density_on_bins(mt.late_samples(tc, qc, eq_frac), edges),
                       "mean_compare": mt.mean_path(qc)[:, 0], "acf_compare": acf_c[:, 0],
                       "phase_compare": orb_c})
    return {"expression": expression, "step": h, "langevin": {**cl, "seconds": csec},
            "hamiltonian": {"phase_portrait_error": float(np.mean([x["mean"] for x in cd])),
                            "phase_portrait_hausdorff": float(np.max([x["hausdorff"] for x in cd]))}}

def _resolve_learned(model: Model, learned, posterior, *, workdir, control, executor, warnings: list):
    """(learned, posterior, learn_delta): where the surrogate's U_k comes from, for any d.

    learn_delta = surrogate.learn_delta (default simulation.delta).  ``learned`` None, or an in-process learn
    result made at another step, is (re)learned at learn_delta (then ``posterior`` defaults to the workdir's
    posterior.nc); a result.json dict made at another step is used as given.  Both cases are warned about.
    A string other than ``"reference"`` is an InputError."""
    sec = model.surrogate or SurrogateSection()
    sim = model.require("simulation")
    learn_delta = float(sec.learn_delta) if getattr(sec, "learn_delta", None) else float(sim.delta)
    given_delta = None if isinstance(learned, str) else _learned_setting(learned, "delta")
    if given_delta is not None and not math.isclose(given_delta, learn_delta, rel_tol=1e-9):
        if isinstance(learned, dict):
            warnings.append(f"U_k was learned at delta = {given_delta:g}, but [surrogate] asks for "
                            f"learn_delta = {learn_delta:g}; using the given U_k")
        else:  # an in-process learn run of the pipeline at the wrong scale: learn again
            warnings.append(f"the learn run used delta = {given_delta:g}; U_k relearned at "
                            f"surrogate.learn_delta = {learn_delta:g}")
            learned = None
    if learned is None:
        from .pipeline import learn_model

        lmodel = dataclasses.replace(model, simulation=dataclasses.replace(sim, delta=learn_delta))
        learned = learn_model(lmodel, workdir=workdir, control=control, executor=executor)
        if posterior is None and workdir is not None:
            posterior = Path(workdir) / "posterior.nc"
    if isinstance(learned, str) and learned != "reference":
        raise InputError(f"learned must be a learn result, a result.json dict or 'reference', got {learned!r}")
    return learned, posterior, learn_delta


def _run_lengths(sec, warnings: list):
    """(M, T, delta, h) of [surrogate]: trajectories, time, surrogate step, reference step (warned about when h is
    not below delta; InputError when T is shorter than 4 surrogate steps)."""
    M, T = int(sec.trajectories), float(sec.time)
    delta, h = float(sec.delta), float(sec.reference_step)
    if h >= delta:
        warnings.append(f"reference_step {h} is not smaller than the surrogate step {delta}")
    if T < 4 * delta:
        raise InputError(f"surrogate.time ({T}) must cover at least 4 surrogate steps (delta = {delta})")
    return M, T, delta, h

def _learned_correction(learned):
    """Whether the learned U_k carries the finite-delta correction of the learn stage (bayescg.bias, B4):
    the learn result's ``finite_delta_correction`` block (None for a given, not learned, U_k)."""
    if isinstance(learned, dict):
        return learned.get("finite_delta_correction")
    if isinstance(learned, str) or not hasattr(learned, "correction"):
        return None
    c = learned.correction
    return {"applied": False, "reason": learned.correction_note} if c is None else dict(c.to_dict(), applied=True)


def _learned_setting(learned, key):
    """A simulation setting (``delta``, ``gamma``) of a learn result or result.json (None if unknown)."""
    if isinstance(learned, dict):
        v = learned.get(key)
    else:
        v = getattr(getattr(learned, "simulation", None), key, None)
    return None if v is None else float(v)


def _interp_values(grid, u, xs):
    c, klo, khi, cs = _spline_pieces(grid, u)
    out = cs(np.clip(xs, grid[0], grid[-1]))
    for side, b, k in (("lo", grid[0], klo), ("hi", grid[-1], khi)):
        m = xs < b if side == "lo" else xs > b
        dx = xs[m] - b
        out[m] = cs(b) + cs(b, 1) * dx + 0.5 * k * dx * dx
    return out


def _interp_se(t_src, q_src, t_dst):
    return mt.interpolate_path(t_src, mt.mean_path_se(q_src), np.clip(t_dst, t_src[0], t_src[-1]))


def _posterior_bands(grid, draws, q0, p0, delta, T, gamma, seed, rec_s, ts, qf, tf, eq_frac, edges,
                     max_lag_time, curves_out, control):
    """Run the surrogate Langevin model for every draw (one separable D-dimensional run) and return
    the metrics' spread over draws plus 94 % bands of mean path, ACF and density."""
    from .simulate import run_trajectories

    D = draws.shape[0]
    P = stacked_potential(grid, draws)
    qd0 = np.repeat(q0, D, axis=1)
    pd0 = np.repeat(p0, D, axis=1)
    td, qd, _ = run_trajectories(P, delta, T, qd0, pd0, integrator="langevin", gamma=gamma, beta=1.0,
                                 seed=seed, record_every=rec_s, control=control)
    mets, means, acfs, dens = [], [], [], []
    for j in range(D):
        qj = qd[:, :, j:j + 1]
        mets.append(compare_dynamics(td, qj, tf, qf, eq_fraction=eq_frac, max_lag_time=max_lag_time))
        means.append(mt.mean_path(qj)[:, 0])
        acfs.append(_acf(td, qj, max_lag_time)[1][:, 0])
        dens.append(mt.density_on_bins(mt.late_samples(td, qj, eq_frac), edges))
    lo_q, hi_q = BAND_Q

    def spread(key):
        v = np.array([m[key] for m in mets])
        return {"mean": float(v.mean()), "lower": float(np.quantile(v, lo_q)), "upper": float(np.quantile(v, hi_q)),
                "values": v.tolist()}

    means, acfs, dens = np.array(means), np.array(acfs), np.array(dens)
    band = lambda a: (np.quantile(a, lo_q, axis=0), np.quantile(a, hi_q, axis=0))  # noqa: E731
    curves_out["mean_band"] = band(means)
    curves_out["acf_band"] = band(acfs)
    curves_out["density_band"] = band(dens)
    lags = np.asarray(curves_out["lags_surrogate"])
    return {
        "draws": int(D),
        "equilibrium_w1": spread("equilibrium_w1"),
        "mean_path_max_error": spread("mean_path_max_error"),
        "acf_l2_error": spread("acf_l2_error"),
        "left_grid_fraction": _outside(qd, grid[0], grid[-1])[0],
        "bands": {
            "quantiles": list(BAND_Q),
            "times": td.tolist(),
            "mean_path_lower": curves_out["mean_band"][0].tolist(),
            "mean_path_upper": curves_out["mean_band"][1].tolist(),
            "lags": lags[: acfs.shape[1]].tolist(),
            "acf_lower": curves_out["acf_band"][0].tolist(),
            "acf_upper": curves_out["acf_band"][1].tolist(),
            "density_edges": np.asarray(edges).tolist(),
            "density_lower": curves_out["density_band"][0].tolist(),
            "density_upper": curves_out["density_band"][1].tolist(),
        },
    }


# --------------------------------------------------------------------------------------------------
# d >= 2: the fit's tensor B-spline drives the surrogate
# --------------------------------------------------------------------------------------------------
#: Outer fraction of the data box whose mean normal curvature sets each side's continuation (as in 1D).
EDGE_FRACTION = 0.1
#: Knots per dimension of the least-squares spline of an exactly known reference U_k, by dimension.
REFERENCE_KNOTS = {2: 16, 3: 8}
#: Dimensions the spline surrogate supports (those of the fit).
SPLINE_DIMS = (2, 3)


@numba.njit(inline="always")
def _box_eval(q, j0, T, nt, c, lo, hi, klo, khi, cross, g):
    """Cubic tensor spline of d = len(lo) variables at q[j0:j0+d] inside the data box [lo, hi]; outside, each 1D
    basis continued linearly (as bayescg.splines does beyond the knot box) with the terms of order >= 3 in the
    distances dropped (d = 3: U_xyz dx dy dz; the continuation stays quadratic), plus kappa_side dist^2 / 2 per
    side and, for each pair (i, j) outside at sides (s_i, s_j), the change cross[i, j, s_i, s_j] of U_ij dq_i dq_j
    (the clip that keeps the corner form positive definite).  T (d, L): knot vectors padded to one length, nt
    (d,) their lengths; c: flat C-order coefficients.  Writes grad into g[j0:j0+d], returns the value."""
    d = lo.shape[0]
    k = 3
    b = np.empty((d, k + 1))
    db = np.empty((d, k + 1))
    e = np.empty((d, k + 1))
    dq = np.empty(d)
    s = np.empty(d, dtype=np.int64)
    stride = np.empty(d, dtype=np.int64)
    side = np.empty(d, dtype=np.int64)
    st = 1
    for i in range(d - 1, -1, -1):
        stride[i] = st
        st *= nt[i] - k - 1
    n_out = 0
    for i in range(d):
        x = min(max(q[j0 + i], lo[i]), hi[i])
        dq[i] = q[j0 + i] - x
        side[i] = 0 if dq[i] < 0.0 else 1
        if dq[i] != 0.0:
            n_out += 1
        t = T[i, :nt[i]]
        s[i] = _find_span(x, t, k)
        _basis_and_deriv(x, t, k, s[i], b[i], db[i])
        for a in range(k + 1):
            e[i, a] = b[i, a] + db[i, a] * dq[i]
    drop = d >= 3 and n_out == d  # only then is the product of all d linear parts non-zero
    v = 0.0
    for i in range(d):
        g[j0 + i] = 0.0
    ai = np.empty(d, dtype=np.int64)
    for idx in range((k + 1) ** d):
        r = idx
        off = 0
        for i in range(d - 1, -1, -1):  # local basis index per dimension, flat offset in C order
            ai[i] = r % (k + 1)
            r //= k + 1
            off += (s[i] - k + ai[i]) * stride[i]
        w = c[off]
        pe = 1.0
        pl = 1.0
        for i in range(d):
            pe *= e[i, ai[i]]
            pl *= db[i, ai[i]] * dq[i]
        v += w * (pe - pl) if drop else w * pe
        for i in range(d):
            ge = 1.0
            gl = 1.0
            for m in range(d):
                if m == i:
                    ge *= db[m, ai[m]]
                    gl *= db[m, ai[m]]
                else:
                    ge *= e[m, ai[m]]
                    gl *= db[m, ai[m]] * dq[m]
            g[j0 + i] += w * (ge - gl) if drop else w * ge
    for i in range(d):
        wk = klo[i] if side[i] == 0 else khi[i]
        v += 0.5 * wk * dq[i] * dq[i]
        g[j0 + i] += wk * dq[i]
        for m in range(i + 1, d):
            cx = cross[i, m, side[i], side[m]]
            v += cx * dq[i] * dq[m]
            g[j0 + i] += cx * dq[m]
            g[j0 + m] += cx * dq[i]
    return v


def _box_kernels(knots, coefs, lo, hi, klo, khi, cross):
    """njit (value, grad) of the separable sum_j U_j(q[d j : d (j + 1)]) for D spline draws coefs (D, m) (D = 1:
    U_k); lo, hi, klo, khi (D, d); cross (D, d, d, 2, 2)."""
    d = len(knots)
    L = max(len(t) for t in knots)
    T = np.empty((d, L))
    for i, t in enumerate(knots):
        T[i, :len(t)] = t
        T[i, len(t):] = t[-1]
    nt = np.array([len(t) for t in knots], dtype=np.int64)
    cf = np.ascontiguousarray(coefs, dtype=float)
    lo, hi = np.ascontiguousarray(lo, dtype=float), np.ascontiguousarray(hi, dtype=float)
    klo, khi = np.ascontiguousarray(klo, dtype=float), np.ascontiguousarray(khi, dtype=float)
    cross = np.ascontiguousarray(cross, dtype=float)
    D = cf.shape[0]
    n = D * d

    @numba.njit
    def value(q):
        g = np.empty(n)
        v = 0.0
        for j in range(D):
            v += _box_eval(q, d * j, T, nt, cf[j], lo[j], hi[j], klo[j], khi[j], cross[j], g)
        return v

    @numba.njit
    def grad(q, out):
        for j in range(D):
            _box_eval(q, d * j, T, nt, cf[j], lo[j], hi[j], klo[j], khi[j], cross[j], out)

    return value, grad


def _edge_curvatures(rep, grid, lo, hi, edge_fraction: float = EDGE_FRACTION):
    """(kappa_lo (d,), kappa_hi (d,)) >= 0: mean d^2U/dq_i^2 over the data points (grid (G, d)) in the
    outer ``edge_fraction`` of the box along q_i at each side (central differences of the spline's
    gradient), or, where that is <= 0, the mean over all data points (0 if that is <= 0 too).  The d-dimensional
    analogue of the 1D mean edge curvature; exact for a quadratic U."""
    d = grid.shape[1]
    klo, khi = np.zeros(d), np.zeros(d)
    for i in range(d):
        w = edge_fraction * (hi[i] - lo[i])
        e = np.zeros(d)
        e[i] = 1e-4 * (hi[i] - lo[i])

        def curvature(pts):
            # differences inside the box only (the spline's own linear continuation has no curvature)
            a, b = np.clip(pts - e, lo, hi), np.clip(pts + e, lo, hi)
            return (rep.value_grad(b)[1][:, i] - rep.value_grad(a)[1][:, i]) / (b[:, i] - a[:, i])

        # a side whose edge band is not convex on average (sparse data at a well's rim) takes the mean
        # curvature over all data points instead, so the continuation still confines
        floor = max(float(np.mean(curvature(grid))), 0.0)
        for side, sel in ((0, grid[:, i] <= lo[i] + w), (1, grid[:, i] >= hi[i] - w)):
            k = float(np.mean(curvature(grid[sel]))) if np.any(sel) else 0.0
            (klo if side == 0 else khi)[i] = k if k > 0 else floor
    return klo, khi


def _corner_cross_clip(rep, lo, hi, klo, khi):
    """(d, d, 2, 2) changes of U_ij at the box's edges [i, j, side_i, side_j] (i < j; the other coordinates at the
    box centre) that clip it to |U_ij| <= 0.9 sqrt(k_i k_j) / (d - 1): the scaled quadratic form of the
    continuation beyond a corner then has unit diagonal and off-diagonal row sums <= 0.9, so it is positive
    definite (Gershgorin) and confines; 0 where U_ij already satisfies it (e.g. a quadratic U whose Hessian is
    diagonally dominant so).  d = 2: |U_xy| <= 0.9 sqrt(kx ky) at the four corners."""
    d = lo.size
    out = np.zeros((d, d, 2, 2))
    e = 1e-4 * (hi - lo)
    for i in range(d):
        for j in range(i + 1, d):
            for a in range(2):
                for b in range(2):
                    x = 0.5 * (lo + hi)
                    x[i] = lo[i] if a == 0 else hi[i]
                    x[j] = lo[j] if b == 0 else hi[j]
                    # one-sided (into the box) difference of dU/dq_i along q_j
                    sj = e[j] if b == 0 else -e[j]
                    step = np.zeros(d)
                    step[j] = sj
                    uij = (rep.value_grad(x + step)[1][i] - rep.value_grad(x)[1][i]) / sj
                    lim = 0.9 * np.sqrt((klo if a == 0 else khi)[i] * (klo if b == 0 else khi)[j]) / (d - 1)
                    out[i, j, a, b] = float(np.clip(uij, -lim, lim) - uij)
    return out


def spline_surrogate_potential(learned, coefs=None, variables=None):
    """The surrogate potential of a learned U_k in d = 2 or 3 (a :class:`bayescg.export.LearnedPotential`).

    Inside the data box (the bounding box of the reported grid, i.e. of the region with data) U is the
    fit's tensor B-spline; outside it each 1D basis is continued linearly (first-order Taylor, as
    :mod:`bayescg.splines` does beyond the knot box; d = 3: the cubic term U_xyz dx dy dz dropped) plus a
    quadratic wall kappa_side dist^2 / 2 per side, kappa_side >= 0 the mean normal curvature of U over the data
    points in the outer 10 % of the box (:func:`_edge_curvatures`; a non-convex edge band takes the mean
    curvature over the data); beyond a corner each cross term U_ij dq_i dq_j is clipped to
    |U_ij| <= 0.9 sqrt(kappa_i kappa_j) / (d - 1) (:func:`_corner_cross_clip`; without it a steep spline at a
    data-free corner made the continuation indefinite and trajectories ran away).  Exact for a quadratic U with
    a convex (d = 3: diagonally dominant in that sense) Hessian, confining where the kappas are > 0.  Inside the
    box but away from data the fit holds U at its largest coefficient (a high plateau, bayescg.fit).

    coefs: (D, m) spline coefficients of D draws -> the separable sum_j U_j(q[d j : d (j + 1)]) on R^(dD) (one
    compiled kernel for all draws); default the posterior mean (D = 1).  Returns (Potential, info) with
    info {box, kappa_lo, kappa_hi, corner_cross_change, warnings} (lists over draws when coefs is given).
    """
    from .potentials import Potential
    from .splines import SplineRep

    d = learned.dim
    if d not in SPLINE_DIMS:
        raise InputError(f"spline surrogates are implemented for d = 1, 2, 3 (the fit's dimensions), got d = {d}")
    knots = [np.asarray(t, dtype=float) for t in learned.knots]
    grid = np.asarray(learned.grid, dtype=float)
    lo = np.maximum(grid.min(axis=0), [t[3] for t in knots])
    hi = np.minimum(grid.max(axis=0), [t[-4] for t in knots])
    if np.any(hi <= lo):
        raise InputError(f"{learned.source}: the data region is empty or degenerate: box {lo} .. {hi}")
    draws = np.atleast_2d(learned.coef_mean if coefs is None else coefs)
    shape = tuple(len(t) - 4 for t in knots)
    if draws.shape[1] != int(np.prod(shape)):
        raise InputError(f"{draws.shape[1]} spline coefficients for a {' x '.join(map(str, shape))} tensor basis")
    kl, kh, cross, warns = [], [], [], []
    for c in draws:
        rep = SplineRep(knots, c, 3, 0.0)
        a, b = _edge_curvatures(rep, grid, lo, hi)
        kl.append(a)
        kh.append(b)
        cross.append(_corner_cross_clip(rep, lo, hi, a, b))
        if np.any(a == 0) or np.any(b == 0):
            warns.append("U_k has no positive curvature at a side of the data box: its continuation there is "
                         "linear and trajectories that leave may escape")
    D = draws.shape[0]
    value, grad = _box_kernels(knots, draws, np.tile(lo, (D, 1)), np.tile(hi, (D, 1)), np.array(kl), np.array(kh),
                               np.array(cross))
    names = list(variables) if (variables is not None and D == 1) else None
    pot = Potential.from_numba(grad, d * D, value, variables=names)
    info = {"box": [lo.tolist(), hi.tolist()], "kappa_lo": kl[0].tolist() if D == 1 else [k.tolist() for k in kl],
            "kappa_hi": kh[0].tolist() if D == 1 else [k.tolist() for k in kh],
            "corner_cross_change": cross[0].tolist() if D == 1 else [x.tolist() for x in cross],
            "warnings": sorted(set(warns))}
    return pot, info


def reference_spline(model: Model, energy_cut: float = 20.0, knots: Optional[int] = None):
    """The model's exact reference U_k (d = 2, 3) as if learned: a least-squares cubic tensor spline on
    ``potential.domain`` (``knots`` per dimension, default :data:`REFERENCE_KNOTS`; exact for a polynomial of
    degree <= 3 per variable, e.g. V_0 of (4.8)), with the data region the domain points where
    U - min U <= ``energy_cut``.

    Returns a :class:`bayescg.export.LearnedPotential` without draws."""
    from .export import LearnedPotential
    from .pipeline import reference_from_model
    from .splines import clamped_knots, design_matrix

    ref = reference_from_model(model)
    if ref is None:
        raise InputError(f"{model.path or model.name}: potential.reference is needed to use the exact U_k")
    d = ref.dim
    if d not in SPLINE_DIMS:
        raise InputError(f"{model.path or model.name}: spline surrogates are implemented for d = 1, 2, 3, got d = {d}")
    if model.potential.domain is None:
        raise InputError(f"{model.path or model.name}: a {d}D exact U_k needs potential.domain (its spline box)")
    knots = int(knots or REFERENCE_KNOTS[d])
    t = [clamped_knots(a, b, knots) for a, b in model.potential.domain]
    n = 4 * knots if d == 2 else 2 * knots  # >= 2 points per basis function per dimension
    mesh = np.meshgrid(*[np.linspace(a, b, n) for a, b in model.potential.domain], indexing="ij")
    pts = np.column_stack([m.ravel() for m in mesh])
    U = np.asarray(ref.V(pts), dtype=float).ravel()
    U -= U.min()
    coef = np.linalg.lstsq(design_matrix(pts, t), U, rcond=None)[0]
    keep = U <= energy_cut
    return LearnedPotential(t, coef, None, list(model.potential.variables), pts[keep],
                            f"exact U_k = {model.potential.reference} (given, not learned; tensor spline "
                            f"{' x '.join([str(knots)] * d)} knots, least squares)")


def _learned_nd(learned, posterior=None):
    """(LearnedPotential, calibrated friction (d, d) or None, beta_hat, learn warnings) from a LearnResult or a
    result.json dict (its spline is read from ``posterior.nc`` next to it: ``posterior`` or ``posterior_path``)."""
    from .export import LearnedPotential, load_learned

    if isinstance(learned, LearnedPotential):
        return learned, None, None, []
    if isinstance(learned, dict):
        path = posterior if posterior is not None else learned.get("posterior_path")
        if path is None:
            raise InputError("a 2D/3D surrogate needs the spline of U_k: give the learn folder's posterior.nc "
                             "(bayescg surrogate --from DIR, or posterior_path in the dict)")
        lp = load_learned(Path(path).parent)
        noise = learned.get("noise") or {}
        fr = learned.get("friction") if noise.get("calibrated") else None
        return lp, (None if fr is None else np.asarray(fr, dtype=float)), learned.get("beta_hat"), \
            list(learned.get("warnings") or [])
    if hasattr(learned, "fit") and hasattr(learned, "simulation"):
        noise = getattr(learned, "noise", None)
        fr = None if noise is None else np.asarray(noise.friction, dtype=float)
        return load_learned(learned), fr, getattr(learned.equilibrium, "beta_hat", None), list(learned.warnings)
    raise InputError(f"cannot read a learned 2D/3D U_k from {type(learned).__name__}")


def initial_conditions_nd(sec: SurrogateSection, M: int, d: int, seed: int):
    """(q0, p0) (M, d) as :func:`initial_conditions`; with ``init_centres`` (K, d) trajectory m starts at
    centre m mod K plus its draw's offset from the init_q mean (normal) or mid-range (uniform)."""
    q0, p0 = initial_conditions(sec, M, d, seed)
    cen = getattr(sec, "init_centres", None)
    if cen:
        c = np.asarray(cen, dtype=float)
        if c.ndim != 2 or c.shape[1] != d or not np.all(np.isfinite(c)):
            raise InputError(f"surrogate.init_centres must be a list of points with {d} coordinates, got {cen}")
        mid = float(sec.init_q[0]) if sec.init == "normal" else 0.5 * (sec.init_q[0] + sec.init_q[1])
        q0 = c[np.arange(M) % len(c)] + (q0 - mid)
    return q0, p0


def _friction_nd(sec, sim, calibrated, d):
    """(Gamma (d, d), what it is): surrogate.gamma I > the learn stage's calibrated Gamma = Z / 2 >
    simulation.friction > simulation.gamma I."""
    if getattr(sec, "gamma", None):
        return float(sec.gamma) * np.eye(d), "surrogate.gamma * I"
    if calibrated is not None:
        return calibrated, "calibrated Gamma = Z / 2 of the learn stage's noise calibration (Theorem 3.1)"
    if sim.friction is not None:
        return np.asarray(sim.friction, dtype=float), "simulation.friction"
    return float(sim.gamma) * np.eye(d), "simulation.gamma * I (no calibrated Gamma given)"


def compare_dynamics_nd(t_a, q_a, t_b, q_b, *, eq_fraction: float = 0.5, max_lag_time: Optional[float] = None):
    """:func:`compare_dynamics` (sliced W1 for d >= 2) plus per-coordinate mean-path and ACF errors:
    ``mean_path_max_error_per_coordinate``, ``acf_l2_error_per_coordinate`` (d lists)."""
    out = compare_dynamics(t_a, q_a, t_b, q_b, eq_fraction=eq_fraction, max_lag_time=max_lag_time)
    la, acf_a = _acf(t_a, q_a, out["max_lag_time"])
    lb, acf_b = _acf(t_b, q_b, out["max_lag_time"])
    ma, mb = mt.mean_path(q_a), mt.mean_path(q_b)
    d = q_a.shape[2]
    out["mean_path_max_error_per_coordinate"] = [mt.mean_path_max_error(t_a, ma[:, i], t_b, mb[:, i]) for i in range(d)]
    out["acf_l2_error_per_coordinate"] = [mt.acf_l2_error(la, acf_a[:, i], lb, acf_b[:, i], tau_max=out["max_lag_time"])
                                          for i in range(d)]
    return out


def _subsample(x, n: int, seed: int):
    """At most n rows of x, drawn at random (seeded): a stride over pooled (time, trajectory) rows could keep
    only some trajectories, e.g. one of three wells."""
    if len(x) <= n:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]


def _late_variance(t, q, eq_fraction):
    """Per-coordinate variance of the pooled late-time samples of q (n, M, d) with its Monte Carlo standard error
    from the spread of the M trajectories' own late-time second moments (independent trajectories; valid for any
    time correlation): {"value": (d,), "standard_error": (d,)}."""
    late = q[np.asarray(t) >= (1.0 - eq_fraction) * t[-1]]  # the window of mt.late_samples
    c = late - late.reshape(-1, q.shape[2]).mean(axis=0)
    per_traj = np.mean(c * c, axis=0)  # (M, d)
    return {"value": per_traj.mean(axis=0).tolist(),
            "standard_error": (per_traj.std(axis=0, ddof=1) / math.sqrt(per_traj.shape[0])).tolist()}


def _surrogate_nd(model: Model, V, learned, *, control, workdir, posterior, seed, executor=None) -> "SurrogateResultND":
    """:func:`surrogate_model` for d = 2, 3 (V: the model's potential; see the module docstring)."""
    t_start = time.perf_counter()
    sec = model.surrogate or SurrogateSection()
    sim = model.require("simulation")
    pot_sec = model.require("potential")
    d = V.dim
    if d not in SPLINE_DIMS:
        raise InputError(f"{model.path or model.name}: surrogate dynamics are implemented for d = 1, 2, 3 (the "
                         f"dimensions the fit supports), the potential has d = {d}")
    seed = int(sim.seed if seed is None else seed)
    warnings: list[str] = []
    timings: dict = {}
    t0 = time.perf_counter()
    learned, posterior, _ = _resolve_learned(model, learned, posterior, workdir=workdir, control=control,
                                             executor=executor, warnings=warnings)
    if isinstance(learned, str):
        lp, calibrated, beta_hat, lw = reference_spline(model), None, None, []
    else:
        lp, calibrated, beta_hat, lw = _learned_nd(learned, posterior)
    warnings += [f"learn: {w}" for w in lw]
    if lp.dim != d:
        raise InputError(f"the learned U_k has d = {lp.dim}, the model's V has d = {d}")
    timings["learn_seconds"] = time.perf_counter() - t0
    U, info = spline_surrogate_potential(lp, variables=pot_sec.variables)
    warnings += info["warnings"]
    lo, hi = np.array(info["box"][0]), np.array(info["box"][1])
    G, friction_source = _friction_nd(sec, sim, calibrated, d)

    M, T, delta, h = _run_lengths(sec, warnings)
    q0, p0 = initial_conditions_nd(sec, M, d, seed)
    rec_s = delta
    rec_f = _record_every(h, max(FULL_RECORD_SPACING, h))
    eq_frac = float(getattr(sec, "equilibrium_fraction", 0.5))

    # ---- Langevin (4.2) with the friction matrix
    lang = dict(integrator="langevin", gamma=1.0, friction=G, seed=seed, control=control)  # gamma unused: friction given
    tf, qf, ts, qs, lg = _langevin_pair(V, U, h, delta, T, q0, p0, rec_f, rec_s, lo, hi, eq_frac,
                                        compare_dynamics_nd, lang)
    lg["late_variance_per_coordinate"] = {"surrogate": _late_variance(ts, qs, eq_frac),
                                          "full": _late_variance(tf, qf, eq_frac)}
    seed_b = seed + 1_000_003
    q0b, p0b = initial_conditions_nd(sec, M, d, seed_b)
    tsb, qsb, _, _ = timed_run(U, delta, T, q0b, p0b, record_every=rec_s, warmup=False,
                               **dict(lang, seed=seed_b, control=None))
    nf = compare_dynamics_nd(ts, qs, tsb, qsb, eq_fraction=eq_frac)
    lg["noise_floor"] = {k: nf[k] for k in ("equilibrium_w1", "equilibrium_w1_per_coordinate", "mean_path_max_error",
                                            "mean_path_max_error_per_coordinate", "acf_l2_error",
                                            "acf_l2_error_per_coordinate")}
    if lg["left_grid_fraction"] > 0:
        warnings.append(f"{100 * lg['left_grid_fraction']:.1f}% of surrogate Langevin trajectories left the data "
                        f"box {lo.round(3).tolist()} .. {hi.round(3).tolist()} (U_k continued there, see "
                        "bayescg.surrogate.spline_surrogate_potential)")

    ef, es = mt.late_samples(tf, qf, eq_frac), mt.late_samples(ts, qs, eq_frac)
    edges = [np.linspace(min(lo[i], ef[:, i].min()), max(hi[i], ef[:, i].max()), 61) for i in range(d)]
    la, acf_s = _acf(ts, qs, lg["max_lag_time"])
    lf, acf_f = _acf(tf, qf, lg["max_lag_time"])
    curves = {"density_edges": edges,
              "density_full": [mt.density_on_bins(ef[:, i], edges[i]) for i in range(d)],
              "density_surrogate": [mt.density_on_bins(es[:, i], edges[i]) for i in range(d)],
              "t_full": tf, "mean_full": mt.mean_path(qf), "t_surrogate": ts, "mean_surrogate": mt.mean_path(qs),
              "lags_full": lf, "acf_full": acf_f, "lags_surrogate": la, "acf_surrogate": acf_s,
              "eq_full": _subsample(ef, 3000, seed), "eq_surrogate": _subsample(es, 3000, seed)}

    # ---- posterior draws of U_k: one run of the separable sum over draws, block-diagonal friction
    n_draws = int(getattr(sec, "posterior_draws", 10))
    if lp.coef_draws is not None and n_draws > 0:
        t1 = time.perf_counter()
        S = lp.coef_draws.shape[0]
        idx = np.unique(np.linspace(0, S - 1, min(n_draws, S)).round().astype(int))
        lg["posterior"] = _posterior_bands_nd(lp, lp.coef_draws[idx], q0, p0, delta, T, G, seed, rec_s, tf, qf,
                                              eq_frac, edges, lg["max_lag_time"], curves, control)
        timings["posterior_seconds"] = time.perf_counter() - t1
    else:
        lg["posterior"] = None
        warnings.append("no posterior draws of U_k available: no predictive bands")

    K = max(1, min(int(getattr(sec, "phase_trajectories", 3)), M))
    hm = _hamiltonian_nd(V, U, h, delta, T, q0, p0, K, seed, control, lo, hi, curves)
    curves.update(_u_plane(lp, U, edges, d), box=(lo, hi))

    settings = {
        "dimension": d, "variables": list(pot_sec.variables), "delta": delta, "reference_step": h, "trajectories": M, "time": T, "beta": 1.0,
        "mass": "identity", "friction": np.asarray(G).tolist(), "friction_source": friction_source,
        "init": sec.init, "init_q": list(sec.init_q), "init_p": list(sec.init_p),
        "init_centres": None if not getattr(sec, "init_centres", None) else [list(c) for c in sec.init_centres],
        "seed": seed, "U_source": lp.source, "beta_hat": beta_hat,
        "U_representation": "the fit's cubic tensor B-spline (knots and coefficients from posterior.nc / the fit)",
        "data_box": info["box"], "continuation_curvature": {"lo": info["kappa_lo"], "hi": info["kappa_hi"]},
        "continuation": "outside the data box: linear continuation of each 1D basis (terms of order >= 3 in the "
                        "distances dropped) + kappa_side dist^2 / 2, kappa_side = mean normal curvature over the outer "
                        "10 % of the box (if <= 0: over all data); beyond corners U_ij clipped to "
                        "0.9 sqrt(kappa_i kappa_j) / (d - 1) (exact for a convex quadratic U)",
        "corner_cross_change": info["corner_cross_change"],
        "record_every_surrogate": rec_s, "record_every_full": rec_f,
        "equilibrium_fraction": eq_frac, "phase_trajectories": K,
        "equilibrium_w1": "sliced W1 (64 seeded directions) of the pooled late-time q samples; "
                          "per-coordinate exact W1 of the marginals",
        "acf": "(4.4) per coordinate, time-and-ensemble averages from t = 0; error = RMS over lags [0, max_lag_time]",
        "phase_portrait_error": "symmetric mean point-to-curve distance of the orbits in the 2d-dimensional (q, p) "
                                "space; per coordinate: in the (q_i, p_i) plane; mean over phase_trajectories orbits",
        "speedup": "wall-clock (x) of the full model at h over the surrogate at delta, same M, T and initial "
                   "conditions, after a compile warm-up",
        "numba_threads": numba.get_num_threads(),
    }
    timings["total_seconds"] = time.perf_counter() - t_start
    return SurrogateResultND(model.name, settings, lg, hm, None, timings, warnings, curves)


def _hamiltonian_nd(V, U, h, delta, T, q0, p0, K, seed, control, lo, hi, curves) -> dict:
    """Hamiltonian (4.1) runs of V at h and U_k at delta from the same states: speed-up, and the phase
    portrait distance of K orbits (whole (q, p) space and per (q_i, p_i) plane); the orbits go into
    ``curves``."""
    d = q0.shape[1]
    ham = dict(integrator="hamiltonian", gamma=1.0, seed=seed, control=control)  # no friction in (4.1)
    _, _, _, hsec_f = timed_run(V, h, T, q0, p0, record_every=_record_every(h, T / 10), **ham)
    _, hq_all, _, hsec_s = timed_run(U, delta, T, q0, p0, record_every=delta, min_seconds=0.5, **ham)
    rec_ph = _record_every(h, max(PHASE_RECORD_SPACING, h))
    _, hqf, hpf, _ = timed_run(V, h, T, q0[:K], p0[:K], record_every=rec_ph, warmup=False, **ham)
    _, hqs, hps, _ = timed_run(U, delta, T, q0[:K], p0[:K], record_every=delta, warmup=False, **ham)
    per = [[mt.phase_portrait_distance(np.c_[hqs[:, k, i], hps[:, k, i]], np.c_[hqf[:, k, i], hpf[:, k, i]])
            for k in range(K)] for i in range(d)]
    full = [mt.phase_portrait_distance(np.c_[hqs[:, k], hps[:, k]], np.c_[hqf[:, k], hpf[:, k]]) for k in range(K)]
    curves.update({"phase_q_full": hqf, "phase_p_full": hpf, "phase_q_surrogate": hqs, "phase_p_surrogate": hps})
    return {"phase_portrait_error": float(np.mean([x["mean"] for x in full])),
            "phase_portrait_hausdorff": float(np.max([x["hausdorff"] for x in full])),
            "phase_portrait_error_per_coordinate": [float(np.mean([x["mean"] for x in p])) for p in per],
            "phase_portrait_hausdorff_per_coordinate": [float(np.max([x["hausdorff"] for x in p])) for p in per],
            "initial_conditions": np.c_[q0[:K], p0[:K]].tolist(),
            "speedup": hsec_f / hsec_s, "seconds_full": hsec_f, "seconds_surrogate": hsec_s,
            "left_grid_fraction": _outside(hq_all, lo, hi)[0]}


def _u_plane(lp, U, edges, d) -> dict:
    """U_k as run, on an 81 x 81 mesh of the (q_1, q_2) plane over the density edges; d = 3: the slice
    through the data point of lowest U_k."""
    axes = [np.linspace(edges[i][0], edges[i][-1], 81) for i in range(2)]
    at = np.asarray(lp.grid)[np.argmin(lp.value_grad(lp.grid)[0])][2:]
    mesh = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    pts = np.concatenate([mesh.reshape(-1, 2), np.broadcast_to(at, (mesh.shape[0] * mesh.shape[1], d - 2))], axis=1)
    return {"U_axes": axes, "U_used": U.V(pts).reshape(mesh.shape[:-1]), "U_slice_at": at,
            "U_grid": np.asarray(lp.grid)}


def _posterior_bands_nd(lp, coefs, q0, p0, delta, T, G, seed, rec_s, tf, qf, eq_frac, edges, max_lag_time,
                        curves, control):
    """Surrogate Langevin runs for D draws in one simulation of the separable sum on R^(dD) (friction
    kron(I_D, Gamma) keeps the pairs independent); spread of the metrics and 94 % bands per coordinate."""
    from .simulate import run_trajectories

    D, d = coefs.shape[0], q0.shape[1]
    P, _ = spline_surrogate_potential(lp, coefs)
    td, qd, _ = run_trajectories(P, delta, T, np.tile(q0, D), np.tile(p0, D), integrator="langevin",
                                 friction=np.kron(np.eye(D), G), beta=1.0, seed=seed, record_every=rec_s,
                                 control=control)
    mets, means, acfs, dens = [], [], [], []
    for j in range(D):
        qj = qd[:, :, d * j:d * (j + 1)]
        mets.append(compare_dynamics_nd(td, qj, tf, qf, eq_fraction=eq_frac, max_lag_time=max_lag_time))
        means.append(mt.mean_path(qj))
        acfs.append(_acf(td, qj, max_lag_time)[1])
        late = mt.late_samples(td, qj, eq_frac)
        dens.append([mt.density_on_bins(late[:, i], edges[i]) for i in range(d)])
    lo_q, hi_q = BAND_Q

    def spread(v):
        v = np.asarray(v, dtype=float)
        return {"mean": float(v.mean()), "lower": float(np.quantile(v, lo_q)), "upper": float(np.quantile(v, hi_q)),
                "values": v.tolist()}

    band = lambda a: (np.quantile(a, lo_q, axis=0), np.quantile(a, hi_q, axis=0))  # noqa: E731
    curves["mean_band"] = band(np.array(means))
    curves["acf_band"] = band(np.array(acfs))
    curves["density_band"] = band(np.array(dens))
    out = {"draws": int(D), "equilibrium_w1": spread([m["equilibrium_w1"] for m in mets]),
           "mean_path_max_error": spread([m["mean_path_max_error"] for m in mets]),
           "acf_l2_error": spread([m["acf_l2_error"] for m in mets])}
    for key in ("equilibrium_w1", "mean_path_max_error", "acf_l2_error"):
        out[f"{key}_per_coordinate"] = [spread([m[f"{key}_per_coordinate"][i] for m in mets]) for i in range(d)]
    return out


class SurrogateResultND(SurrogateResult):
    """:class:`SurrogateResult` of a d = 2 or 3 surrogate: metrics per coordinate and jointly (sliced W1, orbit
    distance in the 2d-dimensional phase space); curves hold (n, d) arrays; figures per coordinate."""

    def to_dict(self) -> dict:
        c = self.curves
        curves = {}
        for k in ("t_surrogate", "mean_surrogate", "t_full", "mean_full", "lags_surrogate", "acf_surrogate",
                  "lags_full", "acf_full"):
            curves[k] = np.asarray(c[k], dtype=float).tolist()
        for k in ("density_edges", "density_full", "density_surrogate"):
            curves[k] = [np.asarray(x, dtype=float).tolist() for x in c[k]]
        for k in ("mean_band", "acf_band", "density_band"):
            if k in c:
                curves[k] = [np.asarray(x, dtype=float).tolist() for x in c[k]]
        return {"model": self.model_name, "settings": self.settings, "langevin": self.langevin,
                "hamiltonian": self.hamiltonian, "compare": None, "timings": self.timings,
                "warnings": list(self.warnings), "curves": curves}

    def summary(self):
        lg, hm = self.langevin, self.hamiltonian
        names = self.settings.get("variables") or [f"q{i + 1}" for i in range(self.settings["dimension"])]
        fmt = lambda v: " / ".join(f"{x:.3g}" for x in v)  # noqa: E731
        nf = lg["noise_floor"]
        s = {
            "U_k source": self.settings["U_source"],
            "friction Gamma (rows)": "; ".join(", ".join(f"{x:.3g}" for x in r) for r in self.settings["friction"]),
            "friction from": self.settings["friction_source"].split(" (")[0],
            "surrogate step delta": self.settings["delta"], "reference step h": self.settings["reference_step"],
            "trajectories M": self.settings["trajectories"], "time T": self.settings["time"],
            "Langevin sliced W1 (equilibrium)": lg["equilibrium_w1"],
            f"Langevin W1 per coordinate ({' / '.join(names)})": fmt(lg["equilibrium_w1_per_coordinate"]),
            "Langevin mean-path max error per coordinate": fmt(lg["mean_path_max_error_per_coordinate"]),
            "Langevin ACF RMS error per coordinate": fmt(lg["acf_l2_error_per_coordinate"]),
            "Langevin speedup": lg["speedup"],
            "noise floor sliced W1 / mean path / ACF": "{:.3g} / {:.3g} / {:.3g}".format(
                nf["equilibrium_w1"], nf["mean_path_max_error"], nf["acf_l2_error"]),
            "Hamiltonian phase-portrait error (joint)": hm["phase_portrait_error"],
            "Hamiltonian phase-portrait error per coordinate": fmt(hm["phase_portrait_error_per_coordinate"]),
            "Hamiltonian speedup": hm["speedup"],
            "trajectories that left the data box": lg["left_grid_fraction"],
        }
        if lg.get("posterior"):
            p = lg["posterior"]
            s["posterior draws"] = p["draws"]
            s["sliced W1 over draws (3%-97%)"] = f"{p['equilibrium_w1']['lower']:.3g} - {p['equilibrium_w1']['upper']:.3g}"
        return _summary(s, self.warnings)

    def figures(self) -> list:
        """[(title, Figure)]: equilibrium (joint + marginals), mean paths, ACFs, phase portraits per coordinate, U_k
        (:func:`bayescg.plots.surrogate.surrogate_figures_2d`)."""
        from .plots.surrogate import surrogate_figures_2d

        return surrogate_figures_2d(self)
