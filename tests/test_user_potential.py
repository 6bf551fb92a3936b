"""Potentials written in Python: [potential] module = "file.py" with V(q) and optionally grad(q)."""
import math
import textwrap

import numpy as np
import pytest

from bayescg.cli import main
from bayescg.config import load_model
from bayescg.errors import InputError
from bayescg.potentials import Potential
from bayescg.simulate import simulate, simulate_model

TEST1 = "q**2/2 + 0.05*sin(q/0.05) + 0.001*sin(q/0.001)"


def write(tmp_path, name, src):
    p = tmp_path / name
    p.write_text(textwrap.dedent(src))
    return p


def test_symbolic_V_without_grad_is_traced_and_runs_on_the_lane_fast_path(tmp_path):
    p = write(tmp_path, "t1.py", """
        import math

        def V(q):
            x = q[0]
            return x**2 / 2 + 0.05 * math.sin(x / 0.05) + 0.001 * math.sin(x / 0.001)
        """)
    pot = Potential.from_module(p, ["q"])
    assert pot.expression is not None and pot.grad_lanes is not None and pot.module == str(p)
    x = np.linspace(-2, 2, 17)
    # hand derivative of (4.5)
    assert np.allclose(pot.gradient(x[:, None])[:, 0], x + np.cos(x / 0.05) + np.cos(x / 0.001), rtol=1e-12, atol=1e-12)
    assert np.allclose(pot.V(x), x ** 2 / 2 + 0.05 * np.sin(x / 0.05) + 0.001 * np.sin(x / 0.001), atol=1e-14)


def test_numpy_names_are_traced_in_2d(tmp_path):
    p = write(tmp_path, "mb.py", """
        import numpy as np
        from numpy import exp

        def V(q):
            x, y = q[0], q[1]
            return -np.exp(-(x - 1)**2 - 10*y**2) + 0.5 * exp(x * y) + np.sqrt(1 + x**2)
        """)
    pot = Potential.from_module(p, ["x", "y"])
    q = np.array([[0.3, -0.2], [1.1, 0.4]])
    x, y = q.T
    g = np.column_stack([2 * (x - 1) * np.exp(-(x - 1) ** 2 - 10 * y ** 2) + 0.5 * y * np.exp(x * y) + x / np.sqrt(1 + x ** 2),
                         20 * y * np.exp(-(x - 1) ** 2 - 10 * y ** 2) + 0.5 * x * np.exp(x * y)])
    assert np.allclose(pot.gradient(q), g, rtol=1e-12)


def test_vectorised_numpy_V_is_traced(tmp_path):
    p = write(tmp_path, "vec.py", """
        import numpy as np

        def V(q):
            return np.sum(q**2) / 2 + 0.1 * np.sum(np.cos(3 * q)) + np.dot(q, q) ** 2 / 8
        """)
    pot = Potential.from_module(p, ["x", "y"])
    q = np.array([[0.3, -0.7]])
    r2 = np.sum(q ** 2)
    assert np.allclose(pot.gradient(q), q - 0.3 * np.sin(3 * q) + r2 * q / 2, rtol=1e-12)


@pytest.mark.parametrize("grad_src", [
    "def grad(q):\n    return np.array([dv0(q[0]), q[1]])\n",           # returns an array
    "def grad(q):\n    return (dv0(q[0]), q[1])\n",                     # returns a tuple
    "def grad(q, out):\n    out[0] = dv0(q[0])\n    out[1] = q[1]\n",  # kernel form
])
def test_user_grad_non_symbolic_V(tmp_path, grad_src):
    p = write(tmp_path, "cos.py", textwrap.dedent("""
        import numpy as np

        def V(q):
            s = 0.0
            for k in range(1, 6):          # a loop: not symbolic, grad is given
                s += np.cos(k * q[0]) / k
            return s + 0.5 * q[1] ** 2

        def dv0(x):
            s = 0.0
            for k in range(1, 6):
                s -= np.sin(k * x)
            return s

        """) + grad_src)
    pot = Potential.from_module(p, ["x", "y"])
    assert pot.expression is None and pot.value is not None
    q = np.array([[0.3, 1.0], [-2.0, 0.5]])
    ks = np.arange(1, 6)
    v = np.array([np.sum(np.cos(ks * a) / ks) + 0.5 * b ** 2 for a, b in q])
    g = np.array([[-np.sum(np.sin(ks * a)), b] for a, b in q])
    assert np.allclose(pot.V(q), v) and np.allclose(pot.gradient(q), g)


def test_scalar_grad_in_1d_runs_simulate_like_the_expression(tmp_path):
    """The same (4.5) as a numba module with its own grad and as an expression: kinetic temperatures of two
    independent runs agree within their standard errors (the map is chaotic: statistics, not bits)."""
    p = write(tmp_path, "t1g.py", """
        import math

        def V(q):
            x = q[0]
            return x**2 / 2 + 0.05 * math.sin(x / 0.05) + 0.001 * math.sin(x / 0.001)

        def grad(q):
            x = q[0]
            return x + math.cos(x / 0.05) + math.cos(x / 0.001)
        """)
    user = Potential.from_module(p, ["q"])
    assert user.expression is None
    kw = dict(steps=400_000, walkers=4, seed=5, bins=50)
    a = simulate(user, 0.5, 0.1, **kw)
    b = simulate(Potential.from_expression(TEST1, ["q"]), 0.5, 0.1, **dict(kw, seed=6))
    assert abs(a.beta_hat - b.beta_hat) < 4 * math.hypot(a.beta_hat_se, b.beta_hat_se)


@pytest.mark.parametrize("src, where, what", [
    ("def V(q):\n    s = 0.0\n    for i in range(3):\n        if q[0] > i:\n            s += q[0]\n    return s\n",
     None, "define grad"),
    ("def V(q):\n    return q[0]**2\n\ndef grad(q):\n    x = q[0]\n    return 'a' + x\n", ":6:", "numba cannot compile grad"),
    ("def V(q):\n    return q[0]**2\n\ndef grad(q):\n    return undefined_name * q[0]\n", ":4", "undefined_name"),
    ("def V(q)\n    return 1\n", ":1:", "cannot import"),
    ("import math\nx = 1 / 0\n", ":2:", "cannot import"),
    ("W = 1\n", None, "defines no function V"),
    ("def V(q):\n    return q[0]**2\n\ndef grad(q):\n    return 2 * q[0]\n", None, "returned a number"),
])
def test_errors_name_the_users_file_and_line(tmp_path, src, where, what):
    p = write(tmp_path, "bad.py", src)
    variables = ["x", "y"] if "returned a number" in what else ["q"]
    with pytest.raises(InputError) as exc:
        Potential.from_module(p, variables)
    msg = str(exc.value)
    assert msg.startswith(str(p)) and what in msg and "\n" not in msg
    if where:
        assert where in msg


def test_model_file_module_path_is_relative_to_the_model(tmp_path):
    (tmp_path / "pots").mkdir()
    write(tmp_path / "pots", "t1.py", """
        import math

        def V(q):
            return q[0]**2 / 2 + 0.05 * math.sin(q[0] / 0.05) + 0.001 * math.sin(q[0] / 0.001)
        """)
    (tmp_path / "m.toml").write_text('name = "mod"\n[potential]\nvariables = ["q"]\nmodule = "pots/t1.py"\n'
                                     '[simulation]\ndelta = 0.5\nsteps = 100000\nwalkers = 2\n')
    sim = simulate_model(load_model(tmp_path / "m.toml"))
    assert sim.steps == 100_000 and np.isfinite(sim.beta_hat)
    (tmp_path / "m2.toml").write_text('name = "mod"\n[potential]\nvariables = ["q"]\nmodule = "nope.py"\n'
                                      '[simulation]\ndelta = 0.5\nsteps = 1000\nwalkers = 2\n')
    assert main(["simulate", str(tmp_path / "m2.toml"), "--out", str(tmp_path / "o")]) == 2
