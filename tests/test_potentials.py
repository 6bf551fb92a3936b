"""Potentials: parsing, code-generated kernels against finite differences, the paper's catalogue."""
import math

import numba
import numpy as np
import pytest

from bayescg.errors import ExpressionError, InputError
from bayescg.potentials import (CATALOGUE, MB_MIDDLE_WELL, Potential, catalogue, muller_brown_middle_well,
                                reference)


def fd_grad(pot, q, h=1e-6):
    """Central differences of pot.V (truth independent of the symbolic gradient)."""
    q = np.asarray(q, float)
    g = np.empty_like(q)
    for i in range(q.size):
        e = np.zeros_like(q)
        e[i] = h
        g[i] = (pot.V(q + e) - pot.V(q - e)) / (2 * h)
    return g


@pytest.mark.parametrize("expr, variables, point", [
    ("q**2/2 + 0.05*sin(q/0.05)", ["q"], [0.37]),
    ("(q**2 - 1)**2/4 + exp(-q)*cos(3*q)", ["q"], [-0.81]),
    ("(2*x + y - 1)**2/4 + (x - y - 1)**2 + 0.3*sin(x*y)", ["x", "y"], [0.2, -0.7]),
    ("log(1 + x**2) + sqrt(2 + y**2) + tanh(z*x) + Abs(z)", ["x", "y", "z"], [0.4, 1.3, -0.9]),
])
def test_gradient_matches_finite_differences(expr, variables, point):
    pot = Potential.from_expression(expr, variables)
    assert pot.dim == len(variables) and pot.variables == tuple(variables)
    g = pot.gradient(np.array(point))
    assert np.allclose(g, fd_grad(pot, point), rtol=1e-6, atol=1e-7)


def test_value_matches_python_math():
    pot = Potential.from_expression("x**2*y + exp(-y)*sin(3*x) + pi", ["x", "y"])
    pts = np.random.default_rng(0).normal(size=(7, 2))
    truth = [x * x * y + math.exp(-y) * math.sin(3 * x) + math.pi for x, y in pts]
    assert np.allclose(pot.V(pts), truth, rtol=1e-13)
    assert pot.V(pts).shape == (7,) and pot.gradient(pts).shape == (7, 2)


def test_vectorized_shapes_1d():
    pot = Potential.from_expression("q**3", ["q"])
    q = np.linspace(-1, 1, 12).reshape(3, 4)
    assert pot.V(q).shape == (3, 4)
    assert np.allclose(pot.V(q), q ** 3)
    assert pot.gradient(q[..., None]).shape == (3, 4, 1)
    assert np.allclose(pot.gradient(q[..., None])[..., 0], 3 * q ** 2)
    with pytest.raises(InputError):
        Potential.from_expression("x + y", ["x", "y"]).V(np.zeros((4, 3)))


def test_kernels_callable_inside_njit():
    pot = Potential.from_expression("q**2/2 + cos(q)", ["q"])
    grad, value = pot.grad, pot.value

    @numba.njit
    def use(q):
        out = np.empty(1)
        grad(q, out)
        return out[0], value(q)

    g, v = use(np.array([0.5]))
    assert math.isclose(g, 0.5 - math.sin(0.5), rel_tol=1e-14)
    assert math.isclose(v, 0.125 + math.cos(0.5), rel_tol=1e-14)


def test_kernels_are_cached_per_expression():
    a = Potential.from_expression("q**2 + sin(q)", ["q"])
    b = Potential.from_expression("q**2 + sin(q)", ["q"])
    assert a.grad is b.grad and a.value is b.value


_SECOND_PROCESS = r"""
import json, sys
import numpy as np
from bayescg.potentials import Potential
from bayescg.kernels.state import GRADL_SIG
p = Potential.from_expression("(x - 1)**2/3 + 0.01*sin(x/0.01)*cos(y) + y**2", ["x", "y"])
p.grad_lanes.compile(GRADL_SIG)
S = np.concatenate([np.linspace(-1, 1, 8), np.linspace(0, 2, 8), np.zeros(16)])
p.grad_lanes(S)
stats = {k: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
         for k, f in (("grad", p.grad), ("value", p.value), ("lanes", p.grad_lanes))}
print(json.dumps({"stats": stats, "sympy": "sympy" in sys.modules, "lanes": S.tolist(),
                  "grad": p.gradient(np.array([[0.3, -0.2]])).tolist(), "V": p.V(np.array([[0.3, -0.2]])).tolist()}))
"""


def test_generated_kernels_are_reused_by_a_second_process(tmp_path):
    """The kernels of an expression are written once (module named by kernel_key, machine code in numba's
    cache): a second process loads them without sympy and without compiling, and computes the same bits."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba"), PYTHONPATH=os.pathsep.join(sys.path))
    runs = []
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", _SECOND_PROCESS], env=env, capture_output=True, text=True,
                             timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert first["sympy"] and all(m >= 1 for _, m in first["stats"].values())  # generated and compiled
    assert not second["sympy"], "the second process parsed the expression again"
    assert all(h >= 1 and m == 0 for h, m in second["stats"].values()), second["stats"]
    for k in ("lanes", "grad", "V"):
        assert first[k] == second[k]  # the same machine code: bit for bit
    assert len(list((tmp_path / "numba" / "bayescg-potentials").glob("*.py"))) == 1


def test_kernel_key_and_unwritable_kernel_directory(tmp_path, monkeypatch):
    import bayescg.potentials as P

    assert P.kernel_key("x**2", ["x"]) != P.kernel_key("x**2", ["x", "y"]) != P.kernel_key("x**2 ", ["x"])
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the directory should be: nothing can be written below it
    monkeypatch.setattr(P, "_kernel_dir", lambda: blocker / "k")
    pot = Potential.from_expression("q**2/7 + cos(3*q)", ["q"])  # falls back to compiling in memory
    assert math.isclose(pot.gradient(np.array([0.4]))[0], 0.8 / 7 - 3 * math.sin(1.2), rel_tol=1e-14)
    with pytest.raises(ExpressionError):
        Potential.from_expression("q +", ["q"])
    monkeypatch.setattr(P, "_kernel_dir", lambda: tmp_path / "k")
    with pytest.raises(ExpressionError):
        Potential.from_expression("foo(q)", ["q"])
    assert not (tmp_path / "k").exists()  # nothing written for a bad expression


@pytest.mark.parametrize("expr, variables, fragment", [
    ("q**", ["q"], "parse"),
    ("sqrt(-1)*q", ["q"], "real"),
    ("I*q", ["q"], "real"),
    ("q + z", ["q"], "undeclared"),
    ("foo(q)", ["q"], "unknown function"),
    ("1/0 + q", ["q"], "finite"),
    ("__import__('os').system('true')", ["q"], "not allowed"),
    ("", ["q"], "non-empty"),
])
def test_bad_expressions(expr, variables, fragment):
    with pytest.raises(ExpressionError, match=fragment):
        Potential.from_expression(expr, variables)


@pytest.mark.parametrize("variables", [[], ["x", "x"], ["1x"], ["sin"], ["_x"], "x y".split() + ["math"]])
def test_bad_variables(variables):
    with pytest.raises(InputError):
        Potential.from_expression("1", variables)


def test_from_numba():
    @numba.njit
    def grad(q, out):
        out[0] = 2.0 * q[0]
        out[1] = 4.0 * q[1] ** 3

    @numba.njit
    def value(q):
        return q[0] ** 2 + q[1] ** 4

    pot = Potential.from_numba(grad, 2, value=value, variables=["a", "b"])
    pts = np.array([[1.0, 2.0], [-0.5, 0.3]])
    assert np.allclose(pot.gradient(pts), [[2.0, 32.0], [-1.0, 4 * 0.027]])
    assert np.allclose(pot.V(pts), [17.0, 0.25 + 0.0081])
    assert np.allclose(pot.gradient(pts), [fd_grad(pot, x) for x in pts], atol=1e-6)
    no_value = Potential.from_numba(grad, 2)
    assert no_value.variables == ("x0", "x1")
    with pytest.raises(InputError):
        no_value.V(pts)
    with pytest.raises(InputError):
        Potential.from_numba(lambda q, out: None, 2)
    with pytest.raises(InputError):
        Potential.from_numba(grad, 0)


def test_catalogue_test1_to_test4_match_the_paper_formulas():
    q = np.linspace(-2, 2, 9)
    assert np.allclose(catalogue("test1").V(q), q ** 2 / 2 + 0.05 * np.sin(q / 0.05) + 0.001 * np.sin(q / 0.001))
    assert np.allclose(catalogue("test2").V(q), (q - 1) ** 2 * (q + 1) ** 2 / 4 + 0.025 * np.sin(q / 0.025)
                       + 0.001 * np.sin(q / 0.001))
    i = np.arange(1, 21)[:, None]
    assert np.allclose(catalogue("test3").V(q), (q - np.pi / 2) ** 2 / 4 + (np.cos(i ** 2 * q) / i ** 2).sum(0))
    x, y = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 2, 5))
    pts = np.stack([x, y], -1)
    e = 1e-5
    v4 = (2 * x + y - 1) ** 2 / 4 + (x - y - 1) ** 2 + e * (np.sin(x / e) + np.sin((x + y) / e))
    assert np.allclose(catalogue("test4").V(pts), v4, atol=1e-12)
    with pytest.raises(InputError):
        catalogue("test9")


def _muller_brown(x, y):
    A = [-200, -100, -170, 15]
    a = [-1, -1, -6.5, 0.7]
    b = [0, 0, 11, 0.6]
    c = [-10, -10, -6.5, 0.7]
    x0 = [1, 0, -0.5, -1]
    y0 = [0, 0.5, 1.5, 1]
    return sum(A[i] * np.exp(a[i] * (x - x0[i]) ** 2 + b[i] * (x - x0[i]) * (y - y0[i]) + c[i] * (y - y0[i]) ** 2)
               for i in range(4))


def test_muller_brown_test5():
    xc, yc = muller_brown_middle_well()
    assert abs(xc - MB_MIDDLE_WELL[0]) < 1e-6 and abs(yc - MB_MIDDLE_WELL[1]) < 1e-6
    assert abs(xc + 0.05) < 1e-3 and abs(yc - 0.4667) < 1e-3  # the textbook middle minimum
    x, y = np.meshgrid(np.linspace(-1.5, 1.0, 6), np.linspace(-0.3, 1.8, 6))
    pts = np.stack([x, y], -1)
    e = 1e-5
    xc, yc = MB_MIDDLE_WELL  # the rounded centre the potential uses
    v0 = 0.1 * (35.0136 * (x - xc) ** 2 + 59.8399 * (y - yc) ** 2 + _muller_brown(x, y))
    truth = v0 + e * (np.sin(x / e) + np.sin((-x + y) / e))
    assert np.allclose(catalogue("test5").V(pts), truth, rtol=1e-9, atol=1e-9)
    assert np.allclose(reference("test5").V(pts), v0, rtol=1e-9, atol=1e-9)
    # V_q levels the wells: the spread of the three minima of V_0 is < 10 % of that of 0.1 V_MB
    from scipy.optimize import minimize
    ref = reference("test5")
    starts = [(-0.05, 0.47), (0.6, 0.03), (-0.56, 1.44)]
    mins = [minimize(lambda z: float(ref.V(z)), s).fun for s in starts]
    raw = [0.1 * minimize(lambda z: _muller_brown(*z), s).fun for s in starts]
    assert max(mins) - min(mins) < 0.1 * (max(raw) - min(raw))


def test_catalogue_entries_have_references():
    for name, entry in CATALOGUE.items():
        ref = Potential.from_expression(entry.reference, list(entry.variables))
        assert ref.dim == len(entry.variables)
