"""The 1D spline force in the finite-delta correction's white-kick runs: lead's lane kernel (span search + Cox-de
Boor on every span, "old") against the closed-form uniform cubic on the interior spans ("new",
splines._eval_1d_ws), timed in one process:

    PYTHONPATH=<checkout> nice -n 5 python benchmarks/bench_spline_force.py [REPS] [STEPS_PER_WALKER]

The run is the one bias.damped_white_learner makes: simulate() with integrator "damped_white" on a spline U (a
least-squares fit of q^2/2, 40 knots on [-7, 7], wall 0), delta 0.5, gamma 0.1, kick variance Z = 0.2 (about
unit temperature, so the walkers stay mostly on the interior spans, as on a learned U), 16 walkers, 200 bins
on [-7, 7], one numba thread, CPU time.  Variants, each a spline potential on its own slot with the same data:
"old": lead's lane kernel, copied here (with_lead_kernel; the same bits as a lead checkout, checked with --bits);
"new": the library's kernels; "closed form off": the library's kernels with the slot's closed-form spans zeroed
(without_closed_form), i.e. the new kernel's fallback (lead's arithmetic) on every lane: the cost of a spline
without closed-form spans.  q^2/2 as an expression potential: the cost without a spline.  Per variant: best of
REPS of a short (2e3 steps per walker) and a long run, the variants alternating; marginal ns per walker-step =
(long - short) / (16 x difference in steps), so set-up and the result stage drop out.

    --bits [--dw]: the same white run (seed 1) old vs new: max |difference| of the final positions, of the
    histogram counts, of the force and of the U fitted to the run (MAP, 40 knots, as damped_white_learner fits),
    with the new code on seed 2 as a yardstick; with --dw on a spline of the double well (q^2 - 1)^2/4 instead;
    prints hashes of the final positions and the histogram of every variant, to compare with a lead checkout's
    run ("lead")
"""
import dataclasses
import hashlib
import math
import os
import sys
import time

import numba

numba.set_num_threads(1)

import numpy as np  # noqa: E402

from bayescg import splines as sp  # noqa: E402
from bayescg.kernels.state import LANES as L  # noqa: E402
from bayescg.kernels.state import LANES_TAG  # noqa: E402
from bayescg.potentials import Potential  # noqa: E402
from bayescg.simulate import simulate  # noqa: E402

DELTA, GAMMA, Z, WALKERS = 0.5, 0.1, 0.2, 16
KW = dict(walkers=WALKERS, integrator="damped_white", kick_noise=Z, bins=200)


#: the least-squares splines (40 knots) of: the timed U, and a double well for --bits (barrier 0.25 at unit temperature)
SHAPES = {"q2": ((-7.0, 7.0), lambda x: x ** 2 / 2), "dw": ((-2.5, 2.5), lambda x: (x ** 2 - 1) ** 2 / 4)}


def learned_like(shape="q2"):
    """(knots, coefficients) of the least-squares spline of SHAPES[shape], 40 knots on its interval."""
    (lo, hi), f = SHAPES[shape]
    t = sp.clamped_knots(lo, hi, 40)
    x = np.linspace(lo, hi, 2001)
    coef, *_ = np.linalg.lstsq(sp.design_matrix_1d(x, t), f(x), rcond=None)
    return t, coef


@numba.njit(cache=True, inline='always')
def _lead_eval_1d_ws(q, t, c, k, wall, ws):
    # lead's splines._eval_1d_ws, verbatim: clip, span search + Cox-de Boor, Taylor continuation and wall
    lo = t[k]
    hi = t[len(t) - k - 1]
    x = min(max(q, lo), hi)
    v, g = sp._value_grad_1d_ws(x, t, c, k, ws)
    dx = q - x
    return v + g * dx + 0.5 * wall * dx * dx, g + wall * dx


def with_lead_kernel(pot):
    """Benchmark only: ``pot`` with lead's 1D lane kernel (splines._make_kernels' gl before the closed form,
    verbatim but for the slot's extra entry) on its slot: span search + Cox-de Boor inline for every lane, its
    scratch allocated per call."""
    slot = pot.data.__dict__["_slot"].index

    @numba.njit(cache=True)
    def gl(S):
        t, c, k, wall, _ = sp._slot_1d(slot)
        ws = np.empty((5, k + 1))
        for lane in range(L):
            x = S[lane]
            if not abs(x) < math.inf:
                S[L + lane] = math.nan
            elif k == 3:  # the constant degree lets LLVM unroll Cox-de Boor (the same operations)
                S[L + lane] = _lead_eval_1d_ws(x, t, c, 3, wall, ws)[1]
            else:
                raise ValueError("degree 3 only")
    setattr(gl, LANES_TAG, True)
    return dataclasses.replace(pot, grad_lanes=gl)


def without_closed_form(pot):
    """Benchmark only: zero the uniform-span entries of ``pot``'s slot data (splines._Slot's 1D layout: knots,
    coefficients, wall, _uniform_spans), so its kernels take Cox-de Boor on every span."""
    buf = sp._slot_data[pot.data.__dict__["_slot"].index]
    buf[-3:] = 0.0
    return pot


def potentials(shape="q2"):
    """{"old", "new", "closed form off", "q^2/2"} (see the module's docstring); on a checkout without the closed
    form (lead) {"lead", "q^2/2"}."""
    t, coef = learned_like(shape)
    q2 = Potential.from_expression("q**2/2")
    if not hasattr(sp, "_uniform_spans"):
        return {"lead": sp.spline_potential([t], coef), "q^2/2": q2}
    new = sp.spline_potential([t], coef)
    assert sp._uniform_spans(t, 3)[2] > 0
    return {"old": with_lead_kernel(sp.spline_potential([t], coef)), "new": new,
            "closed form off": without_closed_form(sp.spline_potential([t], coef)), "q^2/2": q2}


def run(pot, n, shape="q2", seed=1):
    """The white run on ``pot`` (its histogram on the spline's box, as damped_white_learner's on the fit's)."""
    return simulate(pot, DELTA, GAMMA, steps=WALKERS * n, seed=seed, hist_range=[SHAPES[shape][0]], **KW)


def cpu(pot, n):
    t = time.process_time()
    run(pot, n)
    return time.process_time() - t


def timing(reps, n_long, n_short=2_000):
    pots = potentials()
    for p in pots.values():
        run(p, 20_000)  # compile, warm caches
    best = {k: [np.inf, np.inf] for k in pots}
    for _ in range(reps):  # alternate the variants, so that a change of load hits them alike
        for k, p in pots.items():
            best[k][0] = min(best[k][0], cpu(p, n_short))
            best[k][1] = min(best[k][1], cpu(p, n_long))
    ns = {k: 1e9 * (b[1] - b[0]) / (WALKERS * (n_long - n_short)) for k, b in best.items()}
    tot = {k: 1e9 * b[1] / (WALKERS * n_long) for k, b in best.items()}
    print(f"white-kick run: delta {DELTA}, gamma {GAMMA}, Z {Z}, {WALKERS} walkers x {n_long:.0e} steps, "
          f"best of {reps}, one thread, CPU time")
    print("| U | marginal ns / walker-step | whole long run ns / walker-step |")
    print("|---|---|---|")
    for k in pots:
        print(f"| {k} | {ns[k]:.1f} | {tot[k]:.1f} |")
    if "new" in ns:
        print(f"old / new (marginal): {ns['old'] / ns['new']:.2f}x; spline's extra over q^2/2: "
              f"old {ns['old'] - ns['q^2/2']:.1f} ns, new {ns['new'] - ns['q^2/2']:.1f} ns")
    print("load average", tuple(round(x, 2) for x in os.getloadavg()))


def bits(n, shape):
    """old vs new on the same seed; the hashes of each run's final positions and histogram (compare "old" with a
    lead checkout's "lead" line)."""
    print(f"--bits, U = spline of {shape}, {WALKERS} walkers x {n:.0e} steps, seed 1")
    pots = potentials(shape)
    res = {k: run(p, n, shape) for k, p in pots.items() if k != "q^2/2"}
    for k, r in res.items():
        print(f"{k}: final q sha1 {hashlib.sha1(np.ascontiguousarray(r.final_q).tobytes()).hexdigest()[:16]}, "
              f"histogram sha1 {hashlib.sha1(np.ascontiguousarray(r.hist_counts).tobytes()).hexdigest()[:16]}")
    if "new" not in res:
        return
    a, b = res["old"], res["new"]
    dq = np.abs(a.final_q - b.final_q)
    print(f"final positions: max |old - new| {dq.max():.3e} (walkers differing: {int((dq > 0).sum())} of {WALKERS}), "
          f"median {np.median(dq):.3e}")
    ha, hb = np.asarray(a.hist_counts, float), np.asarray(b.hist_counts, float)
    print(f"histogram: max |old - new| {np.abs(ha - hb).max():.0f} counts of {ha.max():.0f} (bins differing: "
          f"{int((ha != hb).sum())} of {ha.size}), total variation "
          f"{0.5 * np.abs(ha / ha.sum() - hb / hb.sum()).sum():.3e}")
    # the spline force itself: the source of the difference
    (lo, hi), _ = SHAPES[shape]
    x = np.linspace(lo - 0.5, hi + 0.5, 200_001)
    g_new = pots["new"].gradient(x)
    g_old = pots["closed form off"].gradient(x)  # the array kernel: lead's arithmetic with the closed form off
    print(f"force on [{lo - 0.5}, {hi + 0.5}] (200001 points): max |old - new| {np.abs(g_new - g_old).max():.3e}, "
          f"points differing {int((g_new != g_old).sum())}")
    try:
        from bayescg.fit import fit_effective_potential
    except ImportError:
        return
    fit = lambda r: fit_effective_potential(r, knots=40, method="map", seed=1, draws=400)  # noqa: E731
    fa, fb = fit(a), fit(b)
    # yardstick: the new code on another seed
    fc = fit(run(pots["new"], n, shape, seed=2))
    w = np.asarray(a.hist_counts, float).ravel()
    w = w / w.sum() if w.size == fa.U_mean.size else np.ones(fa.U_mean.size) / fa.U_mean.size

    def diff(f, g):
        d = f.U_mean - g.U_mean
        return f"max {np.abs(d).max():.3e}, rms over the run's visits {np.sqrt(np.sum(w * d * d)):.3e}"
    print(f"fitted U (MAP, 40 knots, max |U| {np.abs(fa.U_mean).max():.3g}, band half-width median "
          f"{np.median(fa.U_upper - fa.U_lower) / 2:.3g}): old vs new {diff(fa, fb)}; seed 1 vs seed 2 (new) "
          f"{diff(fb, fc)}")


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    reps = int(args[0]) if args else 3
    n_long = int(float(args[1])) if len(args) > 1 else 2_000_000
    if "--bits" in sys.argv:
        bits(n_long, "dw" if "--dw" in sys.argv else "q2")
    else:
        timing(reps, n_long)


if __name__ == "__main__":
    main()
