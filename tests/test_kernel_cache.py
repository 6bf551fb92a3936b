"""numba's cache checks only the cached function's own file; bayescg.kernels drops the cached drivers of
kernels/loops.py when any kernel source changes (an edit of accumulate.py once served doubled histograms)."""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bayescg

PKG = Path(bayescg.__file__).resolve().parent


def _run(root: Path, cache: Path) -> str:
    code = textwrap.dedent("""
        import numpy as np
        from bayescg.kernels import accumulate
        from bayescg.potentials import catalogue
        from bayescg.simulate import simulate
        r = simulate(catalogue("test1"), 0.5, 0.1, steps=40_000, walkers=8, seed=2, bins=50, hist_range=[(-6, 6)])
        print(int(r.hist_counts.sum()), getattr(accumulate, "MARK", 0))
    """)
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=900,
                         cwd=root)  # not the checkout: '' on sys.path would import it instead of the copy
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


@pytest.mark.slow  # two cold compilations of the lane drivers (~1-2 min)
def test_edit_of_a_sibling_kernel_invalidates_the_cached_drivers(tmp_path):
    root = tmp_path / "src"
    shutil.copytree(PKG, root / "bayescg", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "numba-cache"
    first = _run(root, cache)
    nbi = {p: p.stat().st_mtime_ns for p in cache.rglob("loops.*.nbi")}
    assert nbi, "the drivers were not cached: the test would prove nothing"
    # an edit of a sibling module only (loops.py untouched): its stamp changes, so the cached drivers must go
    acc = root / "bayescg" / "kernels" / "accumulate.py"
    acc.write_text(acc.read_text() + "\nMARK = 1\n")
    second = _run(root, cache)
    assert first.split()[0] == second.split()[0] and second.split()[1] == "1"
    # the drivers were compiled again (numba rewrites an index only when it compiles), not loaded stale
    assert all(not p.exists() or p.stat().st_mtime_ns > t for p, t in nbi.items())
    assert list(cache.rglob("loops.*.nbi"))
    stamps = list(cache.rglob("bayescg-kernels.sha256"))
    assert stamps, "no stamp written beside the cache"
    from bayescg.kernels import sources_digest

    assert all(s.read_text() != sources_digest() for s in stamps)  # the copy's edited sources, not ours


def test_drop_stale_driver_cache_removes_only_kernel_cache_files(tmp_path, monkeypatch):
    """In the kernels' cache directory the kernel modules' files go; in the package's, only the dependents' (bias's
    coupled maps inline kernels.rng), not those of a package module that shares a kernel module's name (noise)."""
    import bayescg.kernels as K

    d, p = tmp_path / "c", tmp_path / "p"
    d.mkdir()
    p.mkdir()
    for name in ("loops.lanes_chunk1-283.py311.nbi", "loops.lanes_chunk1-283.py311.1.nbc", "splines._x-1.py311.nbi"):
        (d / name).write_bytes(b"x")
    for name in ("bias._coupled_lanes-1242.py311.nbi", "bias._coupled_lanes-1242.py311.1.nbc", "noise._x-1.py311.nbi",
                 "splines._slot_1d-568.py311.nbi"):
        (p / name).write_bytes(b"x")
    assert {"noise", "loops", "rng"} <= {f.stem for f in (PKG / "kernels").glob("*.py")}
    real = K.cache_targets()  # the dependents' files are looked for where numba caches the package's modules
    assert {m == set(K.DEPENDENTS) for _, m in real} == {True, False}
    assert all(x.parent.name != "kernels" and x.name != "kernels" for x, m in real if m == set(K.DEPENDENTS))
    monkeypatch.setattr(K, "cache_targets", lambda: [(d, {f.stem for f in (PKG / "kernels").glob("*.py")}),
                                                     (p, set(K.DEPENDENTS))])
    removed = {f.name for f in K.drop_stale_driver_cache()}
    assert removed == {"loops.lanes_chunk1-283.py311.nbi", "loops.lanes_chunk1-283.py311.1.nbc",
                       "bias._coupled_lanes-1242.py311.nbi", "bias._coupled_lanes-1242.py311.1.nbc",
                       "splines._slot_1d-568.py311.nbi"}
    assert (d / "splines._x-1.py311.nbi").exists() and (p / "noise._x-1.py311.nbi").exists()
    assert (d / "bayescg-kernels.sha256").read_text() == K.sources_digest()
    assert (p / "bayescg-kernels.sha256").read_text() == K.sources_digest()
    assert K.drop_stale_driver_cache() == []  # stamps match: nothing removed
