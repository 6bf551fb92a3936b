"""Same model, same seed, same posterior, whatever the state of the compilation caches.

The cause of the difference this guards against (issue 16, item 1): PyTensor compiles each Op to numba
with fast-math flags and caches the machine code in ``<base_compiledir>/numba``; a cold cache inlines the
Ops into nutpie's logp and LLVM reassociates across them, a warm cache links the cached Ops uninlined, and
the last bits of logp and its gradient differ, which NUTS amplifies.  bayescg.runtime.compile_nutpie
compiles without fast-math flags.  The slow test does the same for a simulation whose generated potential
kernels are compiled in the cold run and loaded from the on-disk kernel cache in the warm one.  The effective-potential fit now samples a numba kernel of the same density
(bayescg.kernels.effective, cached by numba itself), so this test checks the caches that path uses; the
PyTensor fix covers the PyMC-model path (no nutpie kernel) and the Ising NUTS.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

FIT = r"""
import sys
import numpy as np
from bayescg.fit import fit_effective_potential

# exact Gibbs histogram of U(q) = q^2/2 + 0.3 cos(3q) at beta = 1, multinomial counts (seeded)
edges = np.linspace(-4.0, 4.0, 81)
c = 0.5 * (edges[1:] + edges[:-1])
p = np.exp(-(c ** 2 / 2 + 0.3 * np.cos(3 * c)))
counts = np.random.default_rng(7).multinomial(20_000, p / p.sum()).astype(float)
data = {"counts": counts, "edges": [edges], "beta_hat": 1.0, "beta_hat_se": 0.02}
r = fit_effective_potential(data, knots=12, method="nuts", draws=150, tune=150, chains=1, seed=3)
post = r.to_inference_data().posterior
np.savez(sys.argv[1], **{k: np.asarray(post[k].values) for k in post.data_vars})
"""


SIMULATE = r"""
import json, sys
import numpy as np
from bayescg.potentials import catalogue
from bayescg.simulate import simulate

pot = catalogue("test1")  # generated kernels: value, gradient and the SIMD lane kernel the driver calls
r = simulate(pot, 0.5, 0.1, steps=200_000, walkers=16, seed=5, bins=60, hist_range=[(-5.0, 5.0)])
np.savez(sys.argv[1], hist=r.hist_counts, beta=np.array([r.beta_hat, r.beta_hat_se]))
stats = {k: [sum(f.stats.cache_hits.values()), sum(f.stats.cache_misses.values())]
         for k, f in (("grad", pot.grad), ("value", pot.value), ("lanes", pot.grad_lanes))}
print(json.dumps(stats))
"""


def _cold_then_warm(tmp_path, script):
    """Run ``script`` (writes an .npz to argv[1]) twice with the same fresh numba, PyTensor and matplotlib caches:
    -> (caches dir, [cold arrays, warm arrays], [cold stdout, warm stdout])."""
    caches = tmp_path / "caches"
    env = dict(os.environ, NUMBA_CACHE_DIR=str(caches / "numba"), MPLCONFIGDIR=str(caches / "mpl"),
               PYTENSOR_FLAGS=f"base_compiledir={caches / 'pytensor'}",
               PYTHONPATH=os.pathsep.join(sys.path))
    runs, outs = [], []
    for name in ("cold", "warm"):
        path = tmp_path / f"{name}.npz"
        proc = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True,
                              timeout=1500)
        assert proc.returncode == 0, proc.stderr[-2000:]
        runs.append(dict(np.load(path)))
        outs.append(proc.stdout)
    return caches, runs, outs


def test_posterior_bit_identical_with_cold_and_warm_caches(tmp_path):
    caches, (cold, warm), _ = _cold_then_warm(tmp_path, FIT)
    # the warm run must really have read a cache (numba's for the kernel path, PyTensor's for the PyMC path)
    assert any(caches.rglob("*.nbi")), "no compilation cache was used: the test would prove nothing"
    assert cold.keys() == warm.keys() and "U" in cold
    for k in cold:
        assert np.array_equal(cold[k], warm[k]), f"{k}: max |cold - warm| = {np.abs(cold[k] - warm[k]).max():.3g}"


@pytest.mark.slow  # a cold compilation of the lane driver (~1 min)
def test_simulation_bit_identical_with_generated_kernels_compiled_or_loaded(tmp_path):
    """The cold run generates and compiles the potential's kernels; the warm run loads them (module by
    expression, machine code from numba's cache) and must give the same histogram and beta_hat bits."""
    import json

    _, (cold, warm), outs = _cold_then_warm(tmp_path, SIMULATE)
    first, second = (json.loads(o.strip().splitlines()[-1]) for o in outs)
    assert all(m >= 1 for _, m in first.values()), first      # compiled in the cold run
    assert all(h >= 1 and m == 0 for h, m in second.values()), second  # loaded, not compiled, in the warm run
    assert cold["hist"].sum() > 0
    for k in cold:
        assert np.array_equal(cold[k], warm[k]), k
