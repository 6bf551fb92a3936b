"""Is the shape of the raw band right, point by point?  The walker-clustered sandwich scales the fit's draws by ONE
factor, matched to the variance summed over the mass region (bayescg.fit._calibrate_band), which the far tails
dominate.  For replicate seeds of a case this stores, per grid point, the sandwich variance var_sand (16 walkers),
the unscaled draws' variance var_draws and the fitted U; it prints per |q| bin the seed sd of U against the band's
sd (scalar scaling, as the library does) and against sqrt(mean var_sand) (what a pointwise sandwich would give).

    python band_shape.py --case test1-d0.5 --seeds 30 [--steps 2e7] [--out band_shape-test1.npz]
"""
import argparse

import numpy as np

import bayescg.fit as fitmod
from bayescg.errors import SimulationError
from bayescg.potentials import catalogue
from bayescg.simulate import simulate
from replicates import CASES

ap = argparse.ArgumentParser()
ap.add_argument("--case", default="test1-d0.5")
ap.add_argument("--seeds", type=int, default=30)
ap.add_argument("--first-seed", type=int, default=1)
ap.add_argument("--steps", type=float)
ap.add_argument("--out")
a = ap.parse_args()
spec = dict(CASES[a.case])
if a.steps:
    spec["steps"] = int(a.steps)
pot = catalogue(spec["pot"])
kw = dict(steps=spec["steps"], walkers=16, hist_range=spec["rng"], bins=spec["bins"], gamma=spec["gamma"])
stash = {}
# diagnosis only: a copy of the library's _calibrate_band that also hands back its pointwise var_sand
import inspect  # noqa: E402

_src = inspect.getsource(fitmod._calibrate_band).replace(
    '"sandwich_var_mean": float(var_sand[reg].mean())}', '"sandwich_var_mean": float(var_sand[reg].mean()), "_var_sand": var_sand}')
_ns = dict(vars(fitmod))
exec(compile(_src, fitmod.__file__, "exec"), _ns)
_orig = _ns["_calibrate_band"]


def _spy(basis, factor, a_map, solve_a, X, w, Ua, beta, walkers, region, Ud, beta_from_momenta=True, points=None):
    profile, info = _orig(basis, factor, a_map, solve_a, X, w, Ua, beta, walkers, region, Ud, beta_from_momenta, points)
    stash["var_draws"] = Ud.var(axis=0, ddof=1)
    stash["var_sand"] = info.pop("_var_sand", None)
    return profile, info


fitmod._calibrate_band = _spy
rows = []
for s in range(a.first_seed, a.first_seed + a.seeds):
    try:
        sim = simulate(pot, spec["delta"], seed=s, **kw)
    except SimulationError as exc:  # the double well at delta 0.3: a walker may start past the walls' limit
        print(f"seed {s}: {exc}")
        continue
    f = fitmod.fit_effective_potential(sim, knots=spec["knots"], method="map", draws=1000, seed=s)
    rows.append(dict(grid=np.round(f.grid[:, 0], 9), U=f.U_mean, lo=f.U_lower, hi=f.U_upper,
                     w=fitmod.grid_weights(f), vs=stash["var_sand"], vd=stash["var_draws"],
                     scale=f.band_calibration["scale"], tfac=f.band_calibration["t_factor"],
                     lo_model=f.band_calibration.get("scale_min"), hi_model=f.band_calibration.get("scale_max")))
common = rows[0]["grid"]
for r in rows[1:]:
    common = np.intersect1d(common, r["grid"])
get = lambda k: np.array([r[k][np.isin(r["grid"], common)] for r in rows])  # noqa: E731
w = get("w").mean(0)
w /= w.sum()
reg = w > 1e-4
U = get("U")
U = U - (U @ w)[:, None]
sd = U.std(0, ddof=1)
band = np.sqrt((((get("hi") - get("lo")) / 2) ** 2).mean(0)) / 1.88
tf = np.mean([r["tfac"] for r in rows])
sand = np.sqrt(get("vs").mean(0)) * tf
bins = [(0, .5), (.5, 1), (1, 1.5), (1.5, 2), (2, 2.5), (2.5, 3), (3, 9)] if "test1" in a.case else \
    [(0, .5), (.5, 1), (1, 1.25), (1.25, 1.5), (1.5, 1.75), (1.75, 9)]
rms = lambda v, m: float(np.sqrt(np.mean(v[m] ** 2)))  # noqa: E731
print(f"{a.case} at {spec['steps']:.3g} steps, {len(rows)} seeds: seed sd / band sd (the library's scaling) | seed sd / pointwise sandwich sd")
for lo, hi in bins:
    m = reg & (np.abs(common) >= lo) & (np.abs(common) < hi)
    print(f"  |q| [{lo}, {hi}): {rms(sd, m) / rms(band, m):.2f} | {rms(sd, m) / rms(sand, m):.2f}")
print(f"  region: {rms(sd, reg) / rms(band, reg):.2f} | {rms(sd, reg) / rms(sand, reg):.2f}")
if a.out:
    np.savez_compressed(a.out, grid=common, w=w, U=U, sd=sd, band=band, sand=sand,
                        vs=get("vs"), vd=get("vd"))
