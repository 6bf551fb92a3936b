"""The background compile of the Ising kernels (bayescg.ising.warmup): it starts only when a method needs it and
the cache is cold, never outlives the run, and compiles exactly the signatures a real run then loads."""
import os
import subprocess
import sys
import textwrap

import pytest

from bayescg.ising import warmup


def test_no_child_without_gibbs_or_nuts_and_stop_kills_a_running_child(tmp_path, monkeypatch):
    monkeypatch.setattr(warmup, "_stamp_path", lambda: tmp_path / "stamp")  # not the real cache's stamp
    assert warmup.start(["exact_em", "em", "laplace", "relent"]) is None
    assert not warmup.is_warm()
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    warmup.stop(proc)
    assert proc.returncode is not None  # killed and reaped, not left running
    warmup.stop(proc)  # a finished child: nothing to do
    warmup.stop(None)


def test_stamp_marks_a_warm_cache_and_a_kernel_edit_makes_it_cold(tmp_path, monkeypatch):
    assert warmup._stamp_path() is not None  # this checkout's numba cache directory
    p = tmp_path / "stamp"
    monkeypatch.setattr(warmup, "_stamp_path", lambda: p)
    assert not warmup.is_warm()
    p.write_text(warmup._digest())
    assert warmup.is_warm()
    assert warmup.start(["gibbs"]) is None  # warm: no child
    p.write_text("0" * 64)  # another kernel source, numba or Python
    assert not warmup.is_warm()


@pytest.mark.slow
def test_child_compiles_the_signatures_a_real_run_loads(tmp_path):
    """A fresh cache, the child run to completion, then a run on another model (open chain, other terms and sizes)
    in a new process: neither the Gibbs sweeps nor the NUTS callbacks' likelihood compile there (numba's compile
    events), i.e. the toy chain's signatures are the real ones."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-m", "bayescg.ising.warmup"], env=env, check=True, timeout=600)
    code = textwrap.dedent("""
        import numpy as np
        from numba.core import event as ev
        from bayescg.ising import warmup
        assert warmup.is_warm()
        rec = ev.RecordingListener()
        ev.register("numba:compile", rec)
        from bayescg.ising.bayes import sample_gibbs
        from bayescg.ising.coarse import CoarseModel
        from bayescg.ising.fine import FineModel
        from bayescg.ising.kernel import MarginalDensity
        fm = FineModel(12, 0.7, 0.1, (1.0,), periodic=False)
        x = fm.sample(30, np.random.default_rng(1))
        cm = CoarseModel(12, 3, "111", beta=0.7, mu_c=0.1, periodic=False)
        sample_gibbs(cm, x, draws=3, tune=3, chains=1, seed=2, cores=1)
        d = MarginalDensity(cm, x)
        d.callbacks()
        d.logp_grad(np.zeros(d.n_dim))
        names = {getattr(getattr(e.data["dispatcher"], "py_func", None), "__name__", "") for _, e in rec.buffer}
        late = names & {"gibbs_sweeps", "_ffbs_sweep", "_log_target_c", "marginal_logp_grad", "loglik_grad", "_forward"}
        print(sorted(late))
        assert not late, late
    """)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
