"""What each CLI command does: load the model, call the Python API, write outputs.

Kept separate from :mod:`bayescg.cli` so that argument parsing stays import-light (``bayescg
--help`` does not load PyMC).
"""
from __future__ import annotations

import contextlib
import sys
from contextlib import contextmanager
from pathlib import Path

from .config import load_model
from .errors import InputError, Interrupted
from .io import (OutputSet, complete_output, output_lock, prepare_output, read_json, recover_outputs, run_metadata,
                 write_json, write_netcdf)
from .runtime import RunControl

OUTPUTS = {
    "simulate": ["simulation.json"],
    "learn": ["result.json", "posterior.nc", "report.html"],
    "scales": ["scales.json", "report-scales.html"],
    "noise": ["noise.json", "report-noise.html"],
    "surrogate": ["surrogate.json"],
    "ising": ["ising.json", "posterior.nc", "report.html"],
}
#: Checkpoints each command leaves while it runs; removed once its outputs are committed.
CHECKPOINTS = {
    "simulate": ["checkpoint-simulate.npz"],
    "learn": ["checkpoint-learn.npz", "checkpoint-noise-*.npz"],
    "scales": ["checkpoint-scales-*.npz"],
    "noise": ["checkpoint-noise-*.npz"],
    "surrogate": ["checkpoint-learn.npz", "checkpoint-noise-*.npz"],  # when it learns U_k itself
    "ising": [],
}


def _model(args):
    return load_model(args.model, args.overrides)


def _out(args, model, command) -> Path:
    """Create and lock the output folder (the lock is held until :func:`dispatch` returns), complete a killed
    run's committed outputs, and refuse to overwrite outputs without --force/--resume."""
    out = Path(args.out) if args.out else Path("out") / model.name
    stack = getattr(args, "stack", None)
    if stack is not None:
        stack.enter_context(output_lock(prepare_output(out, []), command))
        recover_outputs(out)
    outputs = sum(OUTPUTS.values(), []) if command == "run" else OUTPUTS[command]
    return prepare_output(out, outputs, force=args.force, resume=getattr(args, "resume", False))


def _finished(args, out: Path, model, command: str):
    """With --resume: the payload of a complete earlier result of this command and model in ``out`` (its
    leftover checkpoints removed, nothing else changed), else None."""
    if not getattr(args, "resume", False):
        return None
    primary = OUTPUTS[command][0]
    payload = complete_output(out, primary, model, command)
    if payload is not None:
        _remove_checkpoints(out, command)
        _say(f"{command}: {out / primary} is complete for these settings; nothing to do "
             "(pass --force instead of --resume to recompute)")
    return payload


def _remove_checkpoints(out: Path, command: str):
    for pattern in CHECKPOINTS[command]:
        for path in Path(out).glob(pattern):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextmanager
def _outputs(out: Path, command: str, ctl=None, report: str | None = None):
    """One committed set of the command's outputs: write each file to ``stage.path(name)``; on success the
    set replaces the old outputs together and the command's checkpoints are removed.  With a RunControl
    ``ctl`` the writing is a stage of its own (figures of a report take seconds)."""
    if ctl is not None:
        names = OUTPUTS[command] + ([report] if report and report not in OUTPUTS[command] else [])
        ctl.stage("write " + ", ".join(names), interruptible=False)  # the work is done: a Ctrl-C must not lose it
    stage = OutputSet(out, OUTPUTS[command][0])
    try:
        yield stage
    except BaseException:
        stage.discard()
        raise
    stage.commit()
    _remove_checkpoints(out, command)


@contextmanager
def _control(args, label):
    with RunControl(label, progress=False if args.quiet else None) as ctl:
        yield ctl


def _executor(args):
    from .executor import get_executor

    return get_executor(args.scheduler)


def _seed(model):
    if model.simulation is not None:
        return model.simulation.seed
    if model.data is not None:
        return model.data.seed
    return None


def _write(stage: OutputSet, name: str, result, model, command: str, partial: bool = False) -> dict:
    payload = dict(result.to_dict())
    if partial:  # an interrupted run's outputs say so at the top
        payload = {"partial": True, **payload}
    payload["meta"] = run_metadata(model, command, _seed(model), run_id=stage.run_id)
    write_json(stage.path(name), payload)
    return payload


def _write_posterior(stage: OutputSet, result) -> list[str]:
    write_netcdf(stage.path("posterior.nc"), result.to_inference_data(), run_id=stage.run_id)
    return ["posterior.nc"]


#: How long a run waits for the forked child writing its netCDF files (:func:`_netcdf_beside`) after the report is
#: done before it kills it and writes them itself (they take ~0.5-1.5 s; the wait only matters if the child hangs).
NETCDF_CHILD_TIMEOUT = 300.0


@contextmanager
def _netcdf_beside(stage: OutputSet, write):
    """``write(stage) -> [names]`` (the set's netCDF files) run in a forked child (:class:`bayescg.runtime.Forked`)
    while the body runs -- the report: its figures on this core, the files on the other -- and here afterwards when
    the child did not finish, so the files are the same either way.  The names the child wrote join the set."""
    from .runtime import Forked

    with Forked(lambda: write(stage)) as job:
        yield
        ok, names = job.result(NETCDF_CHILD_TIMEOUT)
    if ok:
        for name in names:
            stage.path(name)
    else:
        write(stage)


def _require_potential(model, trajectory: bool = False):
    """The model has [potential] and [simulation] (or, with ``trajectory``, a [trajectory] section instead),
    and V is finite where the walkers start and over the domain (exit 2 if not)."""
    from .checks import check_model_potential

    model.require("potential")
    if not (trajectory and getattr(model, "trajectory", None)):
        model.require("simulation")
    check_model_potential(model)


def _say(text: str):
    print(text, file=sys.stdout, flush=True)


def _report_to_terminal(res, out: Path, command: str):
    """The result's summary (bayescg.summary.Summary: sensible precision, n/a where a number does not apply,
    matrices as rows, warnings last) and where its files are."""
    _say(str(res.summary()))
    _say(f"{command}: wrote {', '.join(str(out / name) for name in OUTPUTS[command])}")


# --- commands --------------------------------------------------------------------------
def cmd_simulate(args, model=None, out=None):
    model = model or _model(args)
    _require_potential(model)
    out = out or _out(args, model, "simulate")
    if (done := _finished(args, out, model, "simulate")) is not None:
        return done
    from .simulate import simulate_model

    with _control(args, "simulate") as ctl:
        res = simulate_model(model, checkpoint=out / "checkpoint-simulate.npz", resume=args.resume, control=ctl)
        with _outputs(out, "simulate", ctl) as stage:
            _write(stage, "simulation.json", res, model, "simulate")
    _report_to_terminal(res, out, "simulate")
    return res


def cmd_scales(args, model=None, out=None):
    model = model or _model(args)
    _require_potential(model)
    deltas = _parse_deltas_arg(args, model)
    if getattr(args, "deltas", None) and getattr(args, "model", None):
        # the deltas run become the model's [scales] deltas, so the report's settings, scales.json's meta and
        # the --resume fingerprint say what was scanned (not the file's list)
        model = load_model(args.model, list(args.overrides or []) + [f"scales.deltas={deltas!r}"])
    out = out or _out(args, model, "scales")
    if (done := _finished(args, out, model, "scales")) is not None:
        return done
    from .scales import scan_scales

    with _control(args, "scales") as ctl, _executor(args) as ex:
        res = scan_scales(model, deltas, executor=ex, control=ctl, workdir=out, resume=args.resume)
        with _outputs(out, "scales", ctl) as stage:
            payload = _write(stage, "scales.json", res, model, "scales")
            _report(stage, model, "scales", [("Scale scan", res)], payload["meta"], name="report-scales.html")
    _report_to_terminal(res, out, "scales")
    return res


def _parse_deltas(text: str) -> list[float]:
    try:
        deltas = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"--deltas: expected comma-separated numbers, got {text!r}") from None
    if not deltas:
        raise InputError("--deltas: no step sizes given")
    bad = [d for d in deltas if not d > 0]
    if bad:
        raise InputError(f"--deltas: step sizes must be > 0, got {bad[0]}")
    return deltas


def _parse_deltas_arg(args, model):
    if getattr(args, "deltas", None):
        return _parse_deltas(args.deltas)
    if model.scales is not None and model.scales.deltas:
        return list(model.scales.deltas)
    raise InputError("scales: give --deltas D1,D2,... or a [scales] deltas list in the model file")


def cmd_noise(args, model=None, out=None):
    model = model or _model(args)
    _require_potential(model)
    out = out or _out(args, model, "noise")
    if (done := _finished(args, out, model, "noise")) is not None:
        return done
    from .pipeline import estimate_noise_model

    with _control(args, "noise") as ctl, _executor(args) as ex:
        res = estimate_noise_model(model, executor=ex, control=ctl, workdir=out, resume=args.resume)
        with _outputs(out, "noise", ctl) as stage:
            payload = _write(stage, "noise.json", res, model, "noise")
            _report(stage, model, "noise", [("Noise covariance and calibration", res)], payload["meta"],
                    name="report-noise.html")
    _report_to_terminal(res, out, "noise")
    return res


def cmd_learn(args, model=None, out=None):
    model = model or _model(args)
    _require_potential(model, trajectory=True)
    out = out or _out(args, model, "learn")
    if (done := _finished(args, out, model, "learn")) is not None:
        if (out / "posterior.nc").exists():  # what the surrogate stage of `run` reads, as with --from
            done["posterior_path"] = str(out / "posterior.nc")
        return done
    from .pipeline import learn_model

    with _control(args, "learn") as ctl, _executor(args) as ex:
        res = learn_model(model, workdir=out, resume=args.resume, control=ctl, executor=ex)
        with _outputs(out, "learn", ctl) as stage:
            payload = _write(stage, "result.json", res, model, "learn")
            with _netcdf_beside(stage, lambda st: _write_posterior(st, res)):
                _report(stage, model, "learn", [("Effective potential", res)], payload["meta"])
    _report_to_terminal(res, out, "learn")
    return res


def cmd_surrogate(args, model=None, out=None, learned=None):
    model = model or _model(args)
    _require_potential(model)
    out = out or _out(args, model, "surrogate")
    if (done := _finished(args, out, model, "surrogate")) is not None:
        return done
    from .surrogate import surrogate_model

    if learned is None and getattr(args, "from_dir", None):
        src = Path(args.from_dir)
        learned = read_json(src / "result.json")
        if (src / "posterior.nc").exists():  # posterior draws of U_k give the surrogate's predictive bands
            learned["posterior_path"] = str(src / "posterior.nc")
    with _control(args, "surrogate") as ctl, _executor(args) as ex:
        res = surrogate_model(model, learned=learned, control=ctl, executor=ex, workdir=out)
        with _outputs(out, "surrogate", ctl, report="report-surrogate.html") as stage:
            payload = _write(stage, "surrogate.json", res, model, "surrogate")
            _report(stage, model, "surrogate", [("Surrogate dynamics", res)], payload["meta"],
                    name="report-surrogate.html")
    _report_to_terminal(res, out, "surrogate")
    return res


def _write_ising_netcdf(stage: OutputSet, res) -> list[str]:
    """posterior.nc (standard ArviZ groups, primary method) and posterior-<method>.nc for the others."""
    names = _write_posterior(stage, res)
    for name, idata in res.method_inference_data().items():
        names.append(f"posterior-{name}.nc")
        write_netcdf(stage.path(names[-1]), idata, run_id=stage.run_id)
    return names


def cmd_ising(args, model=None, out=None):
    model = model or _model(args)
    model.require("fine")
    out = out or _out(args, model, "ising")
    if (done := _finished(args, out, model, "ising")) is not None:
        return done
    from .ising.pipeline import run_model

    with _control(args, "ising") as ctl, _executor(args) as ex:
        try:
            res = run_model(model, control=ctl, executor=ex)
        except Interrupted as exc:  # Ctrl-C: write what is complete, marked "partial": true, exit 130
            if getattr(exc, "partial", None) is None:
                raise
            with _outputs(out, "ising", ctl) as stage:
                _write(stage, "ising.json", exc.partial, model, "ising", partial=True)
                _write_ising_netcdf(stage, exc.partial)
            raise Interrupted(f"{exc} -> {out / 'ising.json'}") from None
        with _outputs(out, "ising", ctl) as stage:
            payload = _write(stage, "ising.json", res, model, "ising")
            with _netcdf_beside(stage, lambda st: _write_ising_netcdf(st, res)):
                _report(stage, model, "ising", [("Predictive coarse-graining", res)], payload["meta"])
    _report_to_terminal(res, out, "ising")
    return res


def cmd_run(args):
    model = _model(args)
    out = _out(args, model, "run")
    if model.kind == "ising":
        return cmd_ising(args, model, out)
    learned = cmd_learn(args, model, out)
    if model.scales is not None and model.scales.deltas:
        args.deltas = None
        cmd_scales(args, model, out)
    if model.surrogate is not None:
        cmd_surrogate(args, model, out, learned=learned)
    return learned


#: Report parts already rendered in this process, per output folder and command, so that ``bayescg run``
#: (learn, scales, surrogate into one folder) ends with one ``report.html`` holding every stage.
_RENDERED: dict = {}
_STAGE_ORDER = ["learn", "scales", "surrogate", "ising", "noise", "simulate"]


def _command_line() -> str | None:
    argv = list(sys.argv)
    if argv and (argv[0].endswith("bayescg") or argv[0].endswith("cli.py")) and len(argv) > 1:
        import shlex

        return "bayescg " + " ".join(shlex.quote(a) for a in argv[1:])
    return None


def _report(stage: OutputSet, model, command: str, sections, meta, name: str = "report.html"):
    """Write ``name`` into the output set ``stage``: one self-contained HTML report of ``sections``
    [(heading, result)].

    Each result contributes warnings, key numbers, its summary table, its ``figures()`` and the
    generic ArviZ diagnostics of ``to_inference_data()`` (:mod:`bayescg.report`); a learn result with a
    noise calibration (d >= 2) also gets the diagnostics of the noise posterior.  When several stages
    write into the same folder in one process (``bayescg run``), ``out/report.html`` is rewritten to
    hold all of them, in pipeline order.
    """
    from .report import Report

    desc = getattr(model, "description", None)
    cmdline = _command_line()
    sub = " · ".join(x for x in (desc, cmdline and f"command: {cmdline}") if x) or None

    def new(cmd_title):
        return Report(f"bayescg {cmd_title}: {model.name}", meta, subtitle=sub)

    rep = new(command)
    for heading, res in sections:
        summary = res.summary() if hasattr(res, "summary") else None
        # the noise posterior's Z is what a reader wants, not the LKJ factors it is built from
        rep.add_result(heading, res, summary, var_names=["Z"] if command == "noise" else None)
        noise = getattr(res, "noise", None)
        if noise is not None and hasattr(noise, "to_inference_data"):
            idata = noise.to_inference_data()
            names = ["Z"] if idata is not None and "Z" in getattr(idata, "posterior", {}) else None
            rep.add_inference_data(idata, heading="Noise covariance posterior", var_names=names)
    rep.write(stage.path(name))
    key = str(Path(stage.out).resolve())
    stages = _RENDERED.setdefault(key, {})
    stages[command] = rep
    # several stages in one folder whose report.html this process wrote (learn/ising): rewrite it with all
    if len(stages) > 1 and ("learn" in stages or "ising" in stages):
        combined = new("run")
        combined.meta = dict(meta, command="run")
        for cmd in sorted(stages, key=lambda c: _STAGE_ORDER.index(c) if c in _STAGE_ORDER else 99):
            r = stages[cmd]
            combined.parts += r.parts
            combined.toc += r.toc
            combined.top_warnings += r.top_warnings
        combined.write(stage.path("report.html"))


def cmd_export(args):
    from .export import export

    paths = export(args.run_dir, args.fmt, args.out, draws=args.draws, points=args.points, force=args.force)
    _say(f"export: {args.fmt} -> {', '.join(map(str, paths[:3]))}{' ...' if len(paths) > 3 else ''}")
    return paths


COMMANDS = {"export": cmd_export, "simulate": cmd_simulate, "learn": cmd_learn, "scales": cmd_scales, "noise": cmd_noise,
            "surrogate": cmd_surrogate, "ising": cmd_ising, "run": cmd_run}


def dispatch(args):
    """Run the command; the output folder's lock (taken by :func:`_out`) is released on return."""
    with contextlib.ExitStack() as stack:
        args.stack = stack
        return COMMANDS[args.command](args)
