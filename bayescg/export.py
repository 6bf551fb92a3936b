"""Hand a learned U_k to other tools: a table, a PLUMED grid for EXTERNAL, an OpenMM force.

:func:`load_learned` reads a ``learn`` run folder (``result.json`` for the data region and variable names,
``posterior.nc`` for the spline of U: knots and posterior-mean coefficients in ``constant_data``, each posterior
draw's coefficients ``U_coef``) or takes a :class:`bayescg.pipeline.LearnResult` directly.
:func:`export` tabulates U on a regular grid over the box of the reported grid (the region with data; in 2D
its bounding rectangle, with a column saying which points lie near data) and writes:

* ``table``: ``.csv`` (header row) or ``.npz``: grid, U_mean, the 94 % band (3 % / 97 % quantiles of the
  draws on this grid), force = -dU/dq per dimension, ``near_data``; with ``draws`` also U of each draw;
* ``plumed``: a PLUMED grid file (``#! FIELDS v1 [v2] LABEL.bias der_v1 [der_v2]``, ``#! SET min_/max_/
  nbins_/periodic_``; first variable fastest; for non-periodic variables nbins is the number of points, the
  convention of PLUMED's Grid reader) for ``EXTERNAL ARG=v1[,v2] FILE=... LABEL=LABEL`` (the CVs must carry the
  names of ``variables``);
* ``openmm``: an XML-serialized ``CustomCVForce`` whose collective variables are ``CustomExternalForce``s
  giving the coordinates of particle 0 (variables x, y, z by name, else the first d coordinates in order) and
  whose energy is a natural-spline ``Continuous1DFunction`` / ``Continuous2DFunction`` / ``Continuous3DFunction`` of them; outside the table the position is clamped to it and a quadratic
  wall ``0.5 * bayescg_wall * dist^2`` (global parameter, default ``wall``) is added, because a tabulated
  function is zero outside its range.

Energies are in the units of U (those of the model's V); lengths those of q.  With ``draws`` = N, N posterior
draws (evenly spaced over the chains) are written too: ``FILE.drawK.ext`` for plumed and openmm, columns
``U_draw_K`` in a table, so the uncertainty travels with the potential.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import numpy as np

from .errors import InputError

__all__ = ["LearnedPotential", "load_learned", "export", "FORMATS"]

FORMATS = ("table", "plumed", "openmm")
#: default points per dimension of the exported grid
DEFAULT_POINTS = {1: 401, 2: 101, 3: 41}


@dataclasses.dataclass
class LearnedPotential:
    """The spline of a learned U: knots (d clamped vectors), coef_mean (m,), coef_draws (S, m) or None,
    variables (d names), grid (G, d) reported points (the data region), degree 3."""

    knots: list
    coef_mean: np.ndarray
    coef_draws: Optional[np.ndarray]
    variables: list
    grid: np.ndarray
    source: str = ""

    @property
    def dim(self) -> int:
        return len(self.knots)

    def value_grad(self, points, coef=None):
        """U and grad U (posterior mean, or coefficients ``coef``) at points (n, d) -> ((n,), (n, d))."""
        from .splines import SplineRep

        rep = SplineRep(self.knots, self.coef_mean if coef is None else coef, 3, 0.0)
        return rep.value_grad(np.asarray(points, dtype=float).reshape(-1, self.dim))

    def axes(self, points=None) -> list:
        """Regular axes (d arrays) over the box of the reported grid, ``points`` per dimension."""
        n = int(points or DEFAULT_POINTS.get(self.dim, 51))
        if n < 4:
            raise InputError(f"points per dimension must be >= 4, got {n}")
        return [np.linspace(self.grid[:, i].min(), self.grid[:, i].max(), n) for i in range(self.dim)]


def load_learned(source) -> LearnedPotential:
    """A :class:`LearnedPotential` from a learn run folder (result.json + posterior.nc) or a LearnResult."""
    if hasattr(source, "fit") and hasattr(source, "simulation"):
        fit = source.fit
        ex = fit.arviz_extras or {}
        return LearnedPotential(list(fit.knots), np.asarray(fit.coef_mean, float).ravel(), ex.get("coef_draws"),
                                list(source.simulation.variables) or _default_names(fit.dim),
                                np.asarray(fit.grid, float).reshape(len(fit.grid), -1), "learn result")
    run = Path(source)
    if not run.is_dir():
        raise InputError(f"{run}: not a folder (give the output folder of bayescg learn)")
    from .io import read_json

    rj = run / "result.json"
    if not rj.exists():
        raise InputError(f"{run}: no result.json (not a bayescg learn output folder)")
    res = read_json(rj)
    if not isinstance(res, dict) or "U_mean" not in res or "grid" not in res or "dimension" not in res:
        raise InputError(f"{rj}: not a learn result (no grid / U_mean)")
    d = int(res["dimension"])
    pot = ((res.get("meta") or {}).get("model") or {}).get("potential") or {}
    variables = list(pot.get("variables") or _default_names(d))
    pn = run / "posterior.nc"
    if not pn.exists():
        raise InputError(f"{pn}: missing (export needs the spline of U stored by bayescg learn)")
    import arviz as az

    try:
        idata = az.from_netcdf(pn)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input here
        raise InputError(f"{pn}: cannot read ({exc.__class__.__name__}: {exc})") from None
    if "constant_data" not in idata.groups() or "coef_mean" not in idata.constant_data:
        raise InputError(f"{pn}: holds no spline coefficients (written by an older bayescg): rerun bayescg learn")
    cd = idata.constant_data
    try:
        knots = [np.asarray(cd[f"knots_{v}"].values, float) for v in variables]
    except KeyError:
        raise InputError(f"{pn}: knot vectors do not match the variables {variables}") from None
    draws = None
    if "U_coef" in idata.posterior:
        u = idata.posterior["U_coef"].values
        draws = u.reshape(-1, u.shape[-1])
    grid = np.asarray(res["grid"], float).reshape(len(res["grid"]), -1)
    if grid.shape[1] != d or len(knots) != d:
        raise InputError(f"{rj}: grid of dimension {grid.shape[1]} for a {d}-dimensional result")
    return LearnedPotential(knots, np.asarray(cd["coef_mean"].values, float), draws, variables, grid, str(run))


def _default_names(d):
    return ["q"] if d == 1 else ["x", "y", "z"][:d]


def _pick_draws(lp: LearnedPotential, n: int) -> np.ndarray:
    if n <= 0:
        return np.zeros((0, lp.coef_mean.size))
    if lp.coef_draws is None:
        raise InputError(f"{lp.source}: no posterior draws of U stored; cannot export draws")
    S = lp.coef_draws.shape[0]
    if n > S:
        raise InputError(f"--draws {n} exceeds the {S} stored posterior draws")
    return lp.coef_draws[np.linspace(0, S - 1, n).round().astype(int)]


def tabulate(lp: LearnedPotential, points=None, draws: int = 0, band_draws: int = 400) -> dict:
    """U and forces on the export grid: {axes, grid (n, d), U_mean, U_lower, U_upper, force (n, d), near_data,
    U_draws (N, n), force_draws (N, n, d)}; the band from at most ``band_draws`` evenly spaced draws."""
    axes = lp.axes(points)
    mesh = np.meshgrid(*axes, indexing="ij")
    # first variable fastest (PLUMED's and OpenMM's order): flatten the transposed mesh
    pts = np.column_stack([m.T.ravel() for m in mesh])
    U, g = lp.value_grad(pts)
    out = {"axes": axes, "grid": pts, "U_mean": U, "force": -g}
    lo = hi = np.full(len(U), np.nan)
    if lp.coef_draws is not None and len(lp.coef_draws) >= 2:
        sel = lp.coef_draws[np.linspace(0, len(lp.coef_draws) - 1, min(band_draws, len(lp.coef_draws))).round().astype(int)]
        Ud = np.stack([lp.value_grad(pts, c)[0] for c in sel])
        lo, hi = np.quantile(Ud, [0.03, 0.97], axis=0)
    out["U_lower"], out["U_upper"] = lo, hi
    # near data: within 1.5 report-grid spacings of a reported point (the reported grid is the data region)
    sp = np.array([np.min(np.diff(np.unique(lp.grid[:, i]))) if len(np.unique(lp.grid[:, i])) > 1 else 1.0
                   for i in range(lp.dim)])
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(lp.grid / sp).query(pts / sp)
    out["near_data"] = dist <= 1.5
    dr = _pick_draws(lp, draws)
    vg = [lp.value_grad(pts, c) for c in dr]
    out["U_draws"] = np.array([v for v, _ in vg]).reshape(len(dr), len(pts))
    out["force_draws"] = -np.array([gg for _, gg in vg]).reshape(len(dr), len(pts), lp.dim)
    return out


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------
def _write_table(tab, variables, out: Path) -> list:
    from .io import atomic_path, atomic_write_text

    cols = {v: tab["grid"][:, i] for i, v in enumerate(variables)}
    cols.update(U_mean=tab["U_mean"], U_lower=tab["U_lower"], U_upper=tab["U_upper"])
    cols.update({f"force_{v}": tab["force"][:, i] for i, v in enumerate(variables)})
    cols["near_data"] = tab["near_data"].astype(int)
    for k, u in enumerate(tab["U_draws"]):
        cols[f"U_draw_{k}"] = u
    suffix = out.suffix.lower()
    if suffix == ".csv":
        names = list(cols)
        rows = np.column_stack([cols[n] for n in names])
        lines = [",".join(names)] + [",".join(f"{x:.10g}" for x in r) for r in rows]
        atomic_write_text(out, "\n".join(lines) + "\n")
    elif suffix == ".npz":
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, variables=np.array(variables), grid=tab["grid"], U_mean=tab["U_mean"],
                         U_lower=tab["U_lower"], U_upper=tab["U_upper"], force=tab["force"],
                         near_data=tab["near_data"], U_draws=tab["U_draws"], force_draws=tab["force_draws"])
    else:
        raise InputError(f"{out}: a table is written as .csv or .npz, got {out.suffix or 'no suffix'!r}")
    return [out]


def plumed_grid_text(axes, U, dU, variables, label: str = "external") -> str:
    """PLUMED grid file text: U (n,) and dU (n, d) on the regular ``axes`` (first variable fastest)."""
    d = len(axes)
    head = ["#! FIELDS " + " ".join(list(variables) + [f"{label}.bias"] + [f"der_{v}" for v in variables])]
    for v, a in zip(variables, axes):
        # non-periodic: PLUMED's header counts points (its Grid reader subtracts one to get bins)
        head += [f"#! SET min_{v} {a[0]:.12g}", f"#! SET max_{v} {a[-1]:.12g}",
                 f"#! SET nbins_{v} {len(a)}", f"#! SET periodic_{v} false"]
    lines = list(head)
    n0 = len(axes[0])
    pts = np.column_stack([m.T.ravel() for m in np.meshgrid(*axes, indexing="ij")])
    for i in range(len(U)):
        lines.append(" ".join(f"{x:.12g}" for x in (*pts[i], U[i], *dU[i])))
        if d > 1 and (i + 1) % n0 == 0 and i + 1 < len(U):
            lines.append("")  # blank line between blocks of the slow index (gnuplot style, as PLUMED writes)
    return "\n".join(lines) + "\n"


def _openmm_coords(variables) -> list:
    if set(variables) <= {"x", "y", "z"}:
        return list(variables)
    return ["x", "y", "z"][: len(variables)]


def openmm_force_xml(axes, U, variables, wall: float = 0.0) -> str:
    """XML of an OpenMM CustomCVForce (coordinates of particle 0) over a tabulated U on the regular ``axes`` (d = 1, 2,
    3; U flat with the first variable fastest), clamped to the table box plus ``wall`` (dist^2 / 2) outside it."""
    try:
        import openmm
    except ImportError:
        raise InputError("the openmm format needs OpenMM: pip install 'bayescg[openmm]'") from None
    d = len(axes)
    if d > 3:
        raise InputError(f"OpenMM export is for d = 1, 2, 3 (Continuous1D/2D/3DFunction), got d = {d}")
    cs = _openmm_coords(variables)
    # a CustomCVForce (tabulated functions are allowed there) of one collective variable per coordinate,
    # each a CustomExternalForce giving that coordinate of particle 0
    clamp = {c: f"min(max(cv_{c}, {float(a[0])!r}), {float(a[-1])!r})" for c, a in zip(cs, axes)}
    args = ", ".join(f"{c}c" for c in cs)
    wall_terms = " + ".join(f"(cv_{c} - {c}c)^2" for c in cs)
    expr = (f"bayescg_U({args}) + 0.5*bayescg_wall*({wall_terms}); "
            + "; ".join(f"{c}c = {clamp[c]}" for c in cs))
    f = openmm.CustomCVForce(expr)
    for c in cs:
        cv = openmm.CustomExternalForce(c)
        cv.addParticle(0, [])
        f.addCollectiveVariable(f"cv_{c}", cv)
    f.addGlobalParameter("bayescg_wall", float(wall))
    vals = [float(x) for x in U]
    if d == 1:
        fn = openmm.Continuous1DFunction(vals, float(axes[0][0]), float(axes[0][-1]))
    else:
        # Continuous2D/3DFunction(xsize, ysize[, zsize], values, xmin, xmax, ymin, ymax[, zmin, zmax]): values with x
        # fastest (tabulate's order); natural cubic spline inside, zero outside, hence the clamp and the wall above
        cls = openmm.Continuous2DFunction if d == 2 else openmm.Continuous3DFunction
        lims = [float(v) for a in axes for v in (a[0], a[-1])]
        fn = cls(*[len(a) for a in axes], vals, *lims)
    f.addTabulatedFunction("bayescg_U", fn)
    f.setName("bayescg learned U (" + ", ".join(f"{v}->{c} of particle 0" for v, c in zip(variables, cs)) + ")")
    return openmm.XmlSerializer.serialize(f)


def _numbered(out: Path, k: int) -> Path:
    return out.with_name(f"{out.stem}.draw{k:03d}{out.suffix}")


def export(source, fmt: str, out, *, draws: int = 0, points: Optional[int] = None, label: str = "external",
           wall: float = 0.0, force: bool = True) -> list:
    """Write the learned U of ``source`` (run folder or LearnResult) as ``fmt`` to ``out``; returns the paths.

    fmt: "table" (.csv / .npz), "plumed" or "openmm"; draws: posterior draws written too (see module doc);
    points: grid points per dimension (default 401 in 1D, 101 in 2D, 41 in 3D); label: PLUMED EXTERNAL label; wall:
    OpenMM wall stiffness outside the table; force: overwrite existing files.
    """
    from .io import atomic_write_text

    if fmt not in FORMATS:
        raise InputError(f"unknown export format {fmt!r} (known: {', '.join(FORMATS)})")
    if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 0:
        raise InputError(f"draws must be a non-negative integer, got {draws!r}")
    lp = load_learned(source)
    if lp.dim > 3:
        raise InputError(f"export is implemented for d = 1, 2, 3, got d = {lp.dim}")
    out = Path(out)
    targets = [out] + ([] if fmt == "table" else [_numbered(out, k) for k in range(draws)])
    if not force:
        for t in targets:
            if t.exists():
                raise InputError(f"{t} exists; pass --force to overwrite")
    if not out.parent.exists():
        raise InputError(f"{out.parent}: no such folder")
    tab = tabulate(lp, points, draws)
    if fmt == "table":
        return _write_table(tab, lp.variables, out)
    fields = [(tab["U_mean"], -tab["force"])] + [(u, -f) for u, f in zip(tab["U_draws"], tab["force_draws"])]
    for path, (u, du) in zip(targets, fields):
        if fmt == "plumed":
            atomic_write_text(path, plumed_grid_text(tab["axes"], u, du, lp.variables, label))
        else:
            atomic_write_text(path, openmm_force_xml(tab["axes"], u, lp.variables, wall))
    return targets
