"""bayescg's public API: every name in __all__ resolves, and ``import bayescg`` stays cheap (PEP 562)."""
import subprocess
import sys

import bayescg


def test_every_public_name_resolves_to_its_home():
    for name in bayescg.__all__:
        obj = getattr(bayescg, name)
        assert obj is not None, name
    assert bayescg.learn_model is __import__("bayescg.pipeline", fromlist=["x"]).learn_model
    assert bayescg.run_ising is __import__("bayescg.ising.pipeline", fromlist=["x"]).run_model
    assert set(bayescg.__all__) <= set(dir(bayescg))


def test_unknown_name_is_an_attribute_error():
    try:
        bayescg.no_such_thing
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_bayescg_loads_no_heavy_library():
    code = ("import sys, bayescg; heavy = [m for m in ('numpy', 'numba', 'pymc', 'arviz', 'scipy') if m in sys.modules];"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "", out.stdout + out.stderr
