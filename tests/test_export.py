"""bayescg export (table / PLUMED grid / OpenMM force) and the ArviZ-native posterior.nc of a learn run.

Each format is read back by an independent reader: numpy for tables, a reader written here from PLUMED's
documented grid format (Grid::create: for a non-periodic variable the header's nbins counts the points, the
first variable runs fastest), and OpenMM itself (XmlSerializer.deserialize, energies and forces from a Context).
PLUMED's own parser could not be used here: the PyPI package ``plumed`` (2.10.0) builds only the Python wrapper,
whose ``plumed.Plumed()`` raises "PLUMED not available, check your PLUMED_KERNEL environment variable", and the
Debian archive has no plumed package.
"""
import subprocess
import sys

import numpy as np
import pytest

from bayescg.cli import main
from bayescg.export import export, load_learned

RNG = np.random.default_rng(11)


def _samples_1d(n=40_000, U=lambda x: 2 * (x ** 2 - 1) ** 2, lo=-2.2, hi=2.2):
    x = np.linspace(lo, hi, 20001)
    cdf = np.cumsum(np.exp(-U(x)))
    return np.interp(RNG.random(n), cdf / cdf[-1], x)


def _learn_dir(tmp, name, variables, q, p, knots, bins):
    np.savez(tmp / f"{name}.npz", q=q, p=p)
    (tmp / f"{name}.toml").write_text(
        f'name = "{name}"\n[potential]\nvariables = {variables!r}\n'.replace("'", '"')
        + f'[trajectory]\npath = "{name}.npz"\nbins = {bins}\n[fit]\nmethod = "map"\nknots = {knots}\ndraws = 400\n')
    out = tmp / f"out-{name}"
    assert main(["learn", str(tmp / f"{name}.toml"), "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    q1 = _samples_1d()
    r1 = _learn_dir(tmp, "dw", ["q"], q1, RNG.standard_normal(q1.size), 16, 100)
    # 2D: correlated Gaussian U = (x^2 + y^2)/2 + 0.4 x y, exact samples
    C = np.linalg.inv(np.array([[1.0, 0.4], [0.4, 1.0]]))
    q2 = RNG.multivariate_normal([0, 0], C, size=40_000)
    r2 = _learn_dir(tmp, "g2", ["x", "y"], q2, RNG.standard_normal(q2.shape), 8, 40)
    return {"tmp": tmp, "1d": r1, "2d": r2}


# --------------------------------------------------------------------------------------------------
# table
# --------------------------------------------------------------------------------------------------
def test_table_csv_matches_result_json_and_forces_are_minus_the_slope(runs, tmp_path):
    import json

    out = tmp_path / "u.csv"
    assert main(["export", str(runs["1d"]), "--format", "table", "--out", str(out), "--draws", "3"]) == 0
    tab = np.genfromtxt(out, delimiter=",", names=True)
    assert tab.dtype.names[:6] == ("q", "U_mean", "U_lower", "U_upper", "force_q", "near_data")
    assert {"U_draw_0", "U_draw_2"} <= set(tab.dtype.names)
    res = json.loads((runs["1d"] / "result.json").read_text())
    g = np.asarray(res["grid"]).ravel()
    # the exported spline at the reported grid points is the reported posterior mean (max error << band)
    assert np.max(np.abs(np.interp(g, tab["q"], tab["U_mean"]) - np.asarray(res["U_mean"]))) < 0.02
    # force = -dU/dq: against central differences of the exported U
    fd = -np.gradient(tab["U_mean"], tab["q"])
    assert np.max(np.abs(fd[2:-2] - tab["force_q"][2:-2])) < 0.02 * np.max(np.abs(tab["force_q"]))
    assert np.all(tab["U_lower"] <= tab["U_mean"] + 1e-9) and np.all(tab["U_mean"] <= tab["U_upper"] + 1e-9)
    # the true U = 2 (q^2 - 1)^2 (shifted) inside the data region
    m = (np.abs(tab["q"]) < 1.6)
    ref = 2 * (tab["q"] ** 2 - 1) ** 2
    assert np.sqrt(np.mean((tab["U_mean"][m] - ref[m] - np.mean(tab["U_mean"][m] - ref[m])) ** 2)) < 0.1


def test_table_npz_2d(runs, tmp_path):
    out = tmp_path / "u.npz"
    export(runs["2d"], "table", out, draws=2, points=31)
    z = np.load(out)
    assert list(z["variables"]) == ["x", "y"]
    assert z["grid"].shape == (31 * 31, 2) and z["force"].shape == (31 * 31, 2)
    assert z["U_draws"].shape == (2, 31 * 31) and z["force_draws"].shape == (2, 31 * 31, 2)
    x, y = z["grid"].T
    ref = (x ** 2 + y ** 2) / 2 + 0.4 * x * y
    near = z["near_data"].astype(bool) & (ref < 3.0)   # well sampled: exp(-3) of the peak density and above
    c = np.mean(z["U_mean"][near] - ref[near])
    assert np.sqrt(np.mean((z["U_mean"][near] - ref[near] - c) ** 2)) < 0.25
    # force = -grad of the exact U near the centre of the data
    centre = near & (x ** 2 + y ** 2 < 1.0)
    assert np.allclose(z["force"][centre], -np.column_stack([x + 0.4 * y, y + 0.4 * x])[centre], atol=0.35)


# --------------------------------------------------------------------------------------------------
# PLUMED
# --------------------------------------------------------------------------------------------------
def read_plumed_grid(path):
    """Reader of PLUMED's grid format (Grid::create): '#! FIELDS args... LABEL.bias der_args...' and per arg
    '#! SET min_/max_/nbins_/periodic_'; non-periodic: nbins in the header counts the points, spacing
    (max - min) / (nbins - 1); rows run with the first argument fastest; blank lines are ignored."""
    fields, sets, rows = None, {}, []
    for line in open(path):
        s = line.strip()
        if s.startswith("#! FIELDS"):
            fields = s.split()[2:]
        elif s.startswith("#! SET"):
            _, _, key, val = s.split(maxsplit=3)
            sets[key] = val
        elif s and not s.startswith("#"):
            rows.append([float(v) for v in s.split()])
    bias = [f for f in fields if f.endswith(".bias")]
    assert len(bias) == 1
    nargs = fields.index(bias[0])
    args = fields[:nargs]
    assert fields[nargs + 1:] == [f"der_{a}" for a in args]
    axes = []
    for a in args:
        assert sets[f"periodic_{a}"] == "false"
        n = int(sets[f"nbins_{a}"])
        axes.append(np.linspace(float(sets[f"min_{a}"]), float(sets[f"max_{a}"]), n))
    data = np.array(rows)
    assert data.shape == (int(np.prod([len(a) for a in axes])), 2 * nargs + 1)
    expect = np.column_stack([m.T.ravel() for m in np.meshgrid(*axes, indexing="ij")])
    assert np.allclose(data[:, :nargs], expect, rtol=0, atol=1e-9 * max(1.0, np.abs(expect).max()))
    return args, bias[0], axes, data[:, nargs], data[:, nargs + 1:]


@pytest.mark.parametrize("which, points", [("1d", 301), ("2d", 41)])
def test_plumed_grid_reads_back(runs, tmp_path, which, points):
    out = tmp_path / "bias.dat"
    paths = export(runs[which], "plumed", out, draws=2, points=points)
    assert [p.name for p in paths] == ["bias.dat", "bias.draw000.dat", "bias.draw001.dat"]
    args, label, axes, U, dU = read_plumed_grid(out)
    lp = load_learned(runs[which])
    assert args == lp.variables and label == "external.bias"
    pts = np.column_stack([m.T.ravel() for m in np.meshgrid(*axes, indexing="ij")])
    v, g = lp.value_grad(pts)
    assert np.allclose(U, v, atol=1e-9) and np.allclose(dU, g, atol=1e-9)
    # derivative columns are the slope of the value column (finite differences along the first axis)
    n0 = len(axes[0])
    Ux = U.reshape(-1, n0)
    fdx = np.gradient(Ux, axes[0], axis=1)[:, 2:-2]
    assert np.max(np.abs(fdx - dU[:, 0].reshape(-1, n0)[:, 2:-2])) < 0.03 * np.max(np.abs(dU[:, 0])) + 1e-6
    d0 = read_plumed_grid(paths[1])[3]
    d1 = read_plumed_grid(paths[2])[3]
    assert not np.allclose(d0, d1)  # two different posterior draws


# --------------------------------------------------------------------------------------------------
# OpenMM
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["1d", "2d"])
def test_openmm_force_deserializes_and_reproduces_U(runs, tmp_path, which):
    openmm = pytest.importorskip("openmm")
    out = tmp_path / "force.xml"
    paths = export(runs[which], "openmm", out, draws=1, points=201 if which == "1d" else 81)
    assert len(paths) == 2
    lp = load_learned(runs[which])
    force = openmm.XmlSerializer.deserialize(out.read_text())
    system = openmm.System()
    system.addParticle(1.0)
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    lo, hi = lp.grid.min(axis=0), lp.grid.max(axis=0)
    rng = np.random.default_rng(1)
    pts = lo + (hi - lo) * (0.1 + 0.8 * rng.random((25, lp.dim)))   # off the table nodes
    E, F = [], []
    for x in pts:
        xyz = list(x) + [0.3] * (3 - lp.dim)   # the unused coordinates do not matter
        ctx.setPositions([openmm.Vec3(*xyz)])
        st = ctx.getState(getEnergy=True, getForces=True)
        E.append(st.getPotentialEnergy()._value)
        F.append(np.asarray(st.getForces(asNumpy=True)._value)[0, : lp.dim])
    v, g = lp.value_grad(pts)
    E = np.asarray(E)
    assert np.max(np.abs(E - v)) < 1e-3 * max(1.0, np.ptp(v))       # energies in the units of U
    assert np.max(np.abs(np.asarray(F) + g)) < 2e-2 * max(1.0, np.abs(g).max())
    openmm.XmlSerializer.deserialize(paths[1].read_text())           # a posterior draw loads too


# --------------------------------------------------------------------------------------------------
# bad run folders
# --------------------------------------------------------------------------------------------------
def test_bad_run_dirs_exit_2_with_one_line(runs, tmp_path, capsys):
    def one_line(*args):
        assert main(list(args)) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bayescg: error:"), lines
        return lines[0]

    assert "not a folder" in one_line("export", str(tmp_path / "nope"), "--format", "table", "--out", str(tmp_path / "a.csv"))
    (tmp_path / "empty").mkdir()
    assert "no result.json" in one_line("export", str(tmp_path / "empty"), "--format", "plumed", "--out", str(tmp_path / "a"))
    half = tmp_path / "half"
    half.mkdir()
    (half / "result.json").write_text((runs["1d"] / "result.json").read_text())
    assert "posterior.nc" in one_line("export", str(half), "--format", "plumed", "--out", str(tmp_path / "a"))
    (half / "posterior.nc").write_text("garbage")
    assert "cannot read" in one_line("export", str(half), "--format", "plumed", "--out", str(tmp_path / "a"))
    (half / "result.json").write_text("{}")
    assert "not a learn result" in one_line("export", str(half), "--format", "plumed", "--out", str(tmp_path / "a"))
    assert ".csv or .npz" in one_line("export", str(runs["1d"]), "--format", "table", "--out", str(tmp_path / "a.txt"))
    assert "exceeds" in one_line("export", str(runs["1d"]), "--format", "plumed", "--out", str(tmp_path / "b"),
                                 "--draws", "100000")
    assert "invalid choice" in one_line("export", str(runs["1d"]), "--format", "gromacs", "--out", str(tmp_path / "c"))
    # the installed entry point: same single line, no traceback
    proc = subprocess.run([sys.executable, "-m", "bayescg.cli", "export", str(tmp_path / "empty"), "--format", "table",
                           "--out", str(tmp_path / "a.csv")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


# --------------------------------------------------------------------------------------------------
# posterior.nc: ArviZ-native
# --------------------------------------------------------------------------------------------------
def test_posterior_nc_is_arviz_native(runs):
    import json

    import arviz as az

    idata = az.from_netcdf(runs["1d"] / "posterior.nc")
    assert {"posterior", "log_likelihood", "observed_data", "posterior_predictive", "constant_data"} <= set(idata.groups())
    res = json.loads((runs["1d"] / "result.json").read_text())
    post = idata.posterior
    assert np.allclose(post["grid_point"].values, np.asarray(res["grid"]).ravel())
    assert post["U"].dims == ("chain", "draw", "grid_point")
    assert post["U_coef"].dims[-1] == "spline_coefficient" and str(post["spline_coefficient"].values[0]) == "B[0]"
    assert "reduced_coefficient" in post["b"].dims
    obs = idata.observed_data
    assert "cell_q" in obs.coords and obs["counts"].sum() > 0
    assert np.all(np.diff(obs["cell_q"].values) > 0)
    for g in idata.groups():
        attrs = idata[g].attrs
        assert {"created_at", "arviz_version", "inference_library"} <= set(attrs), g
    # 2D: a coordinate per variable along grid_point, cell centres per variable in observed_data
    i2 = az.from_netcdf(runs["2d"] / "posterior.nc")
    g2 = np.asarray(json.loads((runs["2d"] / "result.json").read_text())["grid"])
    assert np.allclose(i2.posterior["x"].values, g2[:, 0]) and np.allclose(i2.posterior["y"].values, g2[:, 1])
    assert {"cell_x", "cell_y"} <= set(i2.observed_data.coords)
    assert str(i2.posterior["spline_coefficient"].values[1]) == "B[0,1]"
    loo = az.loo(idata)
    assert np.isfinite(loo.elpd_loo) and loo.p_loo < 5
    assert (loo.pareto_k.values < 0.7).all()


def test_az_compare_ranks_knot_counts(tmp_path):
    """Data with three wells, U = 3 cos(3q) + q^2/4: 4 knots cannot follow it, 20 can; az.compare says so."""
    import arviz as az

    U = lambda x: 3 * np.cos(3 * x) + x ** 2 / 4  # noqa: E731
    q = _samples_1d(30_000, U, -3.5, 3.5)
    p = RNG.standard_normal(q.size)
    runs = {k: _learn_dir(tmp_path, f"k{k}", ["q"], q, p, k, 120) for k in (4, 20)}
    idatas = {f"knots={k}": az.from_netcdf(r / "posterior.nc") for k, r in runs.items()}
    cmp = az.compare(idatas)
    assert cmp.index[0] == "knots=20"
    assert cmp.loc["knots=4", "elpd_diff"] > 4 * cmp.loc["knots=4", "dse"]


def test_openmm_force_3d_deserializes_and_reproduces_U_in_a_context():
    """d = 3 (Continuous3DFunction, values x fastest): energies and forces of the deserialized force in a real
    OpenMM Context against the spline U at points off the table nodes; outside the box the clamp + wall."""
    openmm = pytest.importorskip("openmm")
    from bayescg.export import LearnedPotential, openmm_force_xml, tabulate
    from bayescg.splines import clamped_knots, design_matrix

    H = np.array([[1.0, 0.2, 0.0], [0.2, 2.0, -0.3], [0.0, -0.3, 0.5]])
    box = [(-2.0, 2.0), (-1.5, 1.0), (-3.0, 3.0)]
    t = [clamped_knots(a, b, 6) for a, b in box]
    pts = np.column_stack([m.ravel() for m in np.meshgrid(*[np.linspace(a, b, 14) for a, b in box], indexing="ij")])
    coef = np.linalg.lstsq(design_matrix(pts, t), 0.5 * np.einsum("ni,ij,nj->n", pts, H, pts), rcond=None)[0]
    lp = LearnedPotential(t, coef, None, ["x", "y", "z"], pts, "3D quadratic")
    tab = tabulate(lp, 41, 0)
    wall = 7.0
    force = openmm.XmlSerializer.deserialize(openmm_force_xml(tab["axes"], tab["U_mean"], lp.variables, wall))
    system = openmm.System()
    system.addParticle(1.0)
    system.addForce(force)
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    lo, hi = np.array(box).T
    x_in = lo + (hi - lo) * (0.05 + 0.9 * RNG.random((20, 3)))
    x_out = np.array([[2.5, 0.0, 0.0], [0.0, -2.0, 3.5], [-2.4, 1.3, 0.1]])
    E, F = [], []
    for x in np.vstack([x_in, x_out]):
        ctx.setPositions([openmm.Vec3(*x)])
        st = ctx.getState(getEnergy=True, getForces=True)
        E.append(st.getPotentialEnergy()._value)
        F.append(np.asarray(st.getForces(asNumpy=True)._value)[0])
    E, F = np.asarray(E), np.asarray(F)
    v, g = lp.value_grad(x_in)
    assert np.max(np.abs(E[:20] - v)) < 1e-3 * np.ptp(v)
    assert np.max(np.abs(F[:20] + g)) < 2e-2 * np.abs(g).max()
    xc = np.clip(x_out, lo, hi)
    vc = lp.value_grad(xc)[0] + 0.5 * wall * np.sum((x_out - xc) ** 2, axis=1)
    np.testing.assert_allclose(E[20:], vc, atol=1e-3 * np.ptp(v))
