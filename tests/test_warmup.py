"""The background compile of later kernels (bayescg.warmup): it starts only when the cache is cold, never outlives
the run, and compiles exactly the signatures a real run then loads."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bayescg import warmup


def test_stop_kills_a_running_child(tmp_path, monkeypatch):
    monkeypatch.setattr(warmup, "_stamp_path", lambda task: tmp_path / task)  # not the real cache's stamps
    assert not warmup.is_warm("ising")
    child = warmup.Child(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                          stdout=subprocess.PIPE))
    warmup.stop(child, "learn1d")
    assert child.proc.returncode is not None  # killed and reaped, not left running
    warmup.stop(child, "learn1d")  # a finished child: nothing to do
    warmup.stop(None, "learn1d")


def test_the_child_imports_the_runs_bayescg_not_one_in_the_working_directory(tmp_path, monkeypatch):
    """A run started beside another bayescg (e.g. a checkout next to the installed package) must not start that
    one's warm-up: numba keys its cache by source file, so the child would fill a cache the run never reads."""
    fake = tmp_path / "bayescg"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "warmup.py").write_text("import os\nos.write(1, b'wrong\\n')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(warmup, "is_warm", lambda task: False)
    child = warmup.start("ising")
    try:
        assert child is not None
        assert not child.wait("wrong", timeout=3.0)  # the real child reports its steps, never this
    finally:
        warmup.stop(child, "ising")


def test_wait_returns_when_the_step_is_reported_the_child_ends_or_time_is_up():
    import time

    code = "import os, time; time.sleep(0.3); os.write(1, b'shared\\ngib'); time.sleep(0.3); os.write(1, b'bs\\n'); time.sleep(30)"
    child = warmup.Child(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE))
    try:
        t0 = time.monotonic()
        assert child.wait("shared", timeout=20)
        assert child.wait("gibbs", timeout=20)  # a line split across two reads
        assert time.monotonic() - t0 < 10  # returned on the report, not on the timeout
        t0 = time.monotonic()
        assert not child.wait("cfuncs", timeout=1.0)  # never reported: the timeout
        assert 0.9 < time.monotonic() - t0 < 5
        assert child.wait("shared", timeout=0)  # already seen
    finally:
        warmup.stop(child, "learn1d")
    ended = warmup.Child(subprocess.Popen([sys.executable, "-c", "print('shared')"], stdout=subprocess.PIPE))
    t0 = time.monotonic()
    assert not ended.wait("gibbs", timeout=60)  # the child ended without it: no wait for the timeout
    assert time.monotonic() - t0 < 30 and ended.done == {"shared"}
    warmup.stop(ended, "learn1d")


class _Interrupted:
    interrupted = True


def test_wait_gives_up_when_the_run_is_interrupted():
    child = warmup.Child(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                          stdout=subprocess.PIPE))
    try:
        assert not child.wait("shared", control=_Interrupted(), timeout=60)
    finally:
        warmup.stop(child, "learn1d")


class _Stages:
    interrupted = False

    def __init__(self):
        self.labels = []

    def stage(self, label, total=None):
        self.labels.append(label)


def test_await_step_shows_a_stage_and_does_the_meanwhile_work_only_when_it_waits():
    code = "import os, time; os.write(1, b'fit\\n'); time.sleep(0.5); os.write(1, b'done\\n'); time.sleep(30)"
    child = warmup.Child(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE))
    ctl, calls = _Stages(), []
    try:
        warmup.await_step(None, "fit", ctl, "fit", meanwhile=lambda: calls.append(1))  # no child: nothing
        assert child.wait("fit", timeout=20)
        warmup.await_step(child, "fit", ctl, "fit", meanwhile=lambda: calls.append(1))  # reported already
        assert ctl.labels == [] and calls == []
        warmup.await_step(child, "done", ctl, "correction", meanwhile=lambda: calls.append(1))
        assert ctl.labels == ["correction: waiting for the background compile of its kernels"] and calls == [1]
        assert "done" in child.done
    finally:
        warmup.stop(child, "learn1d")


def test_stamp_marks_a_warm_cache_and_a_source_edit_makes_it_cold(tmp_path, monkeypatch):
    assert warmup._stamp_path("learn1d") is not None  # this checkout's numba cache directory
    monkeypatch.setattr(warmup, "_stamp_path", lambda task: tmp_path / task)
    assert not warmup.is_warm("learn1d")
    (tmp_path / "learn1d").write_text(warmup._digest("learn1d"))
    assert warmup.is_warm("learn1d") and not warmup.is_warm("ising")  # one stamp per task
    assert warmup.start("learn1d") is None  # warm: no child
    (tmp_path / "learn1d").write_text("0" * 64)  # other sources, numba or Python
    assert not warmup.is_warm("learn1d")


@pytest.mark.slow
def test_ising_child_compiles_the_signatures_a_real_run_loads(tmp_path):
    """A fresh cache, the child run to completion, then a run on another model (open chain, other terms and sizes)
    in a new process: neither the Gibbs sweeps nor the NUTS callbacks' likelihood compile there (numba's compile
    events), i.e. the toy chain's signatures are the real ones."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-m", "bayescg.warmup", "ising"], env=env, check=True, timeout=600)
    code = textwrap.dedent("""
        import numpy as np
        from numba.core import event as ev
        from bayescg import warmup
        assert warmup.is_warm("ising")
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
        late = names & {"_sweeps", "_ffbs_sweep", "_log_target_c", "marginal_logp_grad", "loglik_grad", "_forward"}
        print(sorted(late))
        assert not late, late
        from bayescg.ising.kernel import loglik_cfunc, marginal_cfuncs  # C callbacks send no compile events
        assert loglik_cfunc().cache_hits == 1 and marginal_cfuncs()[0].cache_hits == 1
    """)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def _learn_after_child(tmp_path, task: str, model: dict, ran: str, warmed: set, timeouts: tuple,
                       args: tuple = ("nuts", "fixed_point")) -> None:
    """A fresh cache, the ``task`` child (``args``: fit method, correction) run to completion, then learn ``model`` in
    a new process: the assertion ``ran`` (over the result r: the stages whose kernels the child compiled did run)
    holds, and none of the kernels ``warmed`` compiles there (numba's compile events).  timeouts: (child, learn) in s."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run([sys.executable, "-m", "bayescg.warmup", task, *args], env=env, check=True, timeout=timeouts[0])
    code = textwrap.dedent(f"""
        from numba.core import event as ev
        from bayescg import warmup
        assert warmup.is_warm({task!r})
        rec = ev.RecordingListener()
        ev.register("numba:compile", rec)
        from bayescg.config import model_from_dict
        from bayescg.pipeline import learn_model
        r = learn_model(model_from_dict({model!r}))
        {ran}
        names = {{getattr(getattr(e.data["dispatcher"], "py_func", None), "__name__", "") for _, e in rec.buffer}}
        print(sorted(names))
        assert not names & {warmed!r}, names & {warmed!r}
    """)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeouts[1])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.slow
def test_learn1d_child_compiles_the_signatures_a_real_learn_loads(tmp_path):
    """After the learn1d child, a small 1D learn with NUTS and the correction compiles neither the fit's kernel, the
    spline evaluation, the white-kick spline kernels, the white-noise check's recording driver nor the coupled maps."""
    _learn_after_child(
        tmp_path, "learn1d",
        {"name": "dw", "potential": {"expression": "(q**2 - 1)**2/4 + 0.025*sin(q/0.025)",
                                     "reference": "(q**2 - 1)**2/4"},
         "simulation": {"delta": 0.25, "gamma": 0.1, "steps": 400000, "walkers": 16, "seed": 3},
         "fit": {"draws": 100, "tune": 100, "chains": 2, "knots": 20}},
        "assert r.fit.method == 'nuts' and r.correction is not None and r.correction.white_noise_check is not None "
        "and r.correction.kick_shape is not None, r.correction_note",
        {"effective_logp_grad", "_loop_eval_1d", "_coupled_lanes", "_record_chunk_damped", "gl", "gs",
         "node_draws_log_pi"}, (600, 900))


@pytest.mark.slow
def test_learn1d_child_without_the_correction_also_compiles_the_accumulators_flush(tmp_path):
    """Without the correction the learn1d child, idle after the fit's kernels, compiles the V-run's closing pass over
    its cell counts (accumulate._flush, 0.6-0.8 s): a 1D MAP learn then compiles neither it nor the fit's kernel."""
    _learn_after_child(
        tmp_path, "learn1d",
        {"name": "q", "potential": {"expression": "q**2/2 + 0.01*sin(q/0.01)", "reference": "q**2/2"},
         "simulation": {"delta": 0.5, "gamma": 0.1, "steps": 200000, "walkers": 16, "seed": 3},
         "fit": {"method": "map", "knots": 20, "delta_correction": "none"}},
        "assert r.fit.method == 'map' and r.correction is None, r.correction_note",
        {"_flush", "effective_logp_grad"}, (600, 900), args=("map", "none"))


@pytest.mark.slow
def test_learn2d_child_compiles_the_signatures_a_real_learn_loads(tmp_path):
    """After the learn2d child, a small two-stage 2D learn with NUTS and the correction compiles neither the noise
    model's and the fit's density kernels, the summary's per-draw log pi, the 2D spline evaluation, the white-kick
    spline kernels nor the recording driver."""
    _learn_after_child(
        tmp_path, "learn2d",
        {"name": "q2", "potential": {"variables": ["x", "y"], "expression": "x**2/2 + y**2 + 1e-3*sin(x/1e-3)",
                                     "reference": "x**2/2 + y**2"},
         "simulation": {"delta": 0.1, "gamma": 0.5, "steps": 200000, "walkers": 8, "seed": 3, "bins": 30},
         "fit": {"draws": 100, "tune": 100, "chains": 2, "knots": 8}},
        # the first white-kick run of this small two-stage run sits near the correction's 2x temperature guard
        # (1.3-2.2x the run's, moving with float-level changes of the raw U, stop 40): refused there, the white-kick
        # spline kernels have run and the white-noise check's recording driver has not
        "assert r.noise is not None and r.fit.method == 'nuts', r.correction_note; "
        "assert r.correction is not None or 'temperature' in (r.correction_note or ''), r.correction_note; "
        "not_run = () if r.correction is not None and r.correction.white_noise_check is not None "
        "else ('_record_chunk_damped',)",
        {"noise_logp_grad", "sparse_logp_grad", "_loop_eval", "_record_chunk_damped", "gl", "gs",
         "tensor_draws_log_pi"}, (900, 1200))


def test_ising_shared_kernels_have_the_signatures_the_likelihood_and_the_sweeps_use():
    """compile_shared (the background compile's first step) must compile _coef, chain_weights and _forward with the
    argument types loglik_grad and the Gibbs sweeps pass them, or the run compiles them again (no new signature after
    either)."""
    from bayescg.ising.bayes import sample_gibbs
    from bayescg.ising.coarse import CoarseModel
    from bayescg.ising.kernel import FastLoglik, _coef, _forward, chain_weights, compile_shared

    for periodic in (True, False):
        cm = CoarseModel(8, 2, "110", beta=1.0, mu_c=0.4, periodic=periodic)
        x = np.where(np.random.default_rng(0).random((6, 8)) < 0.5, -1, 1).astype(np.int64)
        fast = FastLoglik(cm, x)
        compile_shared(fast)
        sigs = {f: list(f.signatures) for f in (_coef, chain_weights, _forward)}
        fast(np.zeros(cm.K), 0.8)
        sample_gibbs(cm, x, draws=2, tune=2, chains=1, seed=0, cores=1)
        assert {f: list(f.signatures) for f in sigs} == sigs


def test_the_kick_shape_step_waits_for_the_childs_coupled_maps():
    """A cold run reaches the kick-shape step while the child, whose last step it is, still compiles the coupled maps
    (measured: the run compiled them beside it in 4 of 6 cold runs, 1.9-2.4 s): the step waits for the child's
    "kick_shape" step, under a stage that says so, and then runs."""
    from bayescg.fit import fit_effective_potential
    from bayescg.pipeline import correct_finite_delta
    from bayescg.potentials import Potential
    from bayescg.runtime import RunControl
    from bayescg.simulate import simulate

    class Child:  # not reported at the first look (timeout 0), reported when waited for
        def __init__(self):
            self.asked = []

        def wait(self, step, control=None, timeout=60.0):
            self.asked.append((step, timeout))
            return timeout > 0

    labels = []

    class Control(RunControl):
        def stage(self, label, total=None):
            labels.append(label)
            super().stage(label, total)

    pot = Potential.from_expression("q**2/2 + 0.01*sin(q/0.01)", ["q"])
    kw = dict(walkers=16, hist_range=[(-7.0, 7.0)], bins=100, gamma=0.1)
    sim = simulate(pot, 0.5, steps=400_000, seed=3, **kw)
    fit = fit_effective_potential(sim, knots=12, method="map", draws=100, seed=3)
    child = Child()
    out, raw, corr, note = correct_finite_delta(
        sim, fit, kw, mode="fixed_point", knots=12, mass_fraction=0.98, steps=400_000, max_iter=2, min_iter=1,
        reference=None, seed=3, warnings=[], control=Control(progress=False), potential=pot, child=child)
    assert corr is not None and corr.kick_shape is not None, note
    assert [s for s, _ in child.asked] == ["kick_shape", "kick_shape"], child.asked
    i = labels.index("finite-delta correction: kick-shape step: waiting for the background compile of its kernels")
    assert labels[i + 1] == "finite-delta correction: kick-shape step (coupled maps)", labels
