"""Command line: a thin layer over the Python API.

Every command reads a TOML model file (``--set section.key=value`` overrides), writes its
outputs atomically into ``--out DIR`` (default ``out/<model name>``) and maps errors to
exit codes: 0 success, 2 bad input (one line on stderr, no traceback), 130 interrupted
(checkpoint kept; rerun with ``--resume``), 1 any other failure.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from .errors import BayescgError, InputError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage + message by default)
        # main() prints "bayescg: error: "; a subcommand adds only its name ("learn: ...")
        sub = self.prog.split(" ", 1)[1] if " " in self.prog else ""
        raise InputError(f"{sub}: {message}" if sub else message)


def _add_common(p, resume=True):
    p.add_argument("model", help="TOML model file")
    p.add_argument("--out", default=None, help="output folder (default: out/<model name>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a model-file key, e.g. --set simulation.steps=1e7 (repeatable)")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs in --out")
    if resume:
        p.add_argument("--resume", action="store_true", help="continue an interrupted run from its checkpoint")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="dask.distributed scheduler address for independent runs (default: local processes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bayescg", description="Bayesian coarse-graining toolkit")
    parser.add_argument("--version", action="version", version=f"bayescg {__import__('bayescg').__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    _add_common(sub.add_parser("simulate", help="run the damped integrator (3.2); writes simulation.json"))
    _add_common(sub.add_parser("learn", help="learn U_k with its posterior; writes result.json, posterior.nc, report.html"))
    p = sub.add_parser("scales", help="scan step sizes for scales (Remark 3.2); writes scales.json")
    _add_common(p)
    p.add_argument("--deltas", default=None, help="comma-separated step sizes (default: [scales] deltas)")
    _add_common(sub.add_parser("noise", help="noise covariance and friction calibration (Theorem 3.1); writes noise.json"))
    p = sub.add_parser("surrogate", help="surrogate Hamiltonian/Langevin runs against the full model; writes surrogate.json")
    _add_common(p)
    p.add_argument("--from", dest="from_dir", default=None, help="folder of an earlier `learn` output")
    _add_common(sub.add_parser("ising", help="predictive coarse-graining of an Ising chain; writes ising.json"))
    _add_common(sub.add_parser("run", help="run every stage the model file describes"))
    p = sub.add_parser("export", help="write a learned U as a table, a PLUMED grid or an OpenMM force")
    p.add_argument("run_dir", help="output folder of bayescg learn (result.json, posterior.nc)")
    p.add_argument("--format", dest="fmt", required=True, choices=["table", "plumed", "openmm"])
    p.add_argument("--out", required=True, help="file to write (table: .csv or .npz)")
    p.add_argument("--draws", type=int, default=0, help="also write N posterior draws (default 0)")
    p.add_argument("--points", type=int, default=None, help="grid points per dimension (default 401 1D, 101 2D)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    return parser


def _say_warnings(caught) -> None:
    """Python warnings raised during a successful command, one line each on stderr (duplicates once).

    Deprecation and future warnings of the libraries bayescg uses are for their developers, not for a
    user reading the output of a command: they are shown only with ``BAYESCG_DEBUG=1`` (as all warnings
    are, in full).  On failure only the error line is printed.
    """
    seen = set()
    for w in caught:
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
            continue
        text = " ".join(str(w.message).split())
        if (w.category, text) in seen:
            continue
        seen.add((w.category, text))
        print(f"bayescg: warning: {text} ({w.category.__name__})", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    debug = bool(os.environ.get("BAYESCG_DEBUG"))
    if not debug:
        import warnings

        # PyTensor from pip warns at import that it found no optimised BLAS; our models are small and
        # the message is noise to a user reading the output of a command.
        warnings.filterwarnings("ignore", message=".*BLAS.*")
    try:
        args = build_parser().parse_args(argv)
        if not args.command:
            raise InputError("no command given (try: bayescg --help)")
        from . import commands

        if debug:
            commands.dispatch(args)
        else:
            import warnings

            with warnings.catch_warnings(record=True) as caught:
                commands.dispatch(args)
            _say_warnings(caught)
        return 0
    except BayescgError as exc:
        if debug:
            traceback.print_exc()
        print(f"bayescg: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bayescg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line unless debugging
        if debug:
            traceback.print_exc()
        print(f"bayescg: internal error: {exc.__class__.__name__}: {exc} (set BAYESCG_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return 1


def entry() -> None:
    """The ``bayescg`` console script (and ``python -m bayescg.cli``): :func:`main`, then exit.

    A run leaves a large heap of objects behind (numba dispatchers, PyTensor graphs, ArviZ, matplotlib), and the
    interpreter's last garbage collection walked it for ~1 s after the outputs were written (an Ising run: 1.12 s
    from ``main``'s return to the shell, 0.10 s with the heap frozen).  Every output file is closed by then, and
    atexit handlers still run; only that final walk is skipped.  Not done in :func:`main`, which tests and
    notebooks call in their own processes."""
    code = main()
    import gc

    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
