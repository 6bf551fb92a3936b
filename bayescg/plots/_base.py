"""Shared plumbing of the plot functions: an Agg figure only when no axes are given, PNG data URIs, and
closing the figures a failing plot opened.  The only place (with the other modules of this package) where
matplotlib is imported."""
from __future__ import annotations

import base64
import io
import sys
from contextlib import contextmanager


def pyplot():
    """matplotlib.pyplot on the Agg backend unless the user chose another one (notebooks keep theirs)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def axes_or_new(ax=None, figsize=(6, 4), nrows: int = 1, ncols: int = 1):
    """``ax`` as given, else the axes of a new figure (an array when ``nrows * ncols > 1``)."""
    if ax is not None:
        return ax
    _, ax = pyplot().subplots(nrows, ncols, figsize=figsize, squeeze=nrows * ncols == 1)
    return ax if nrows * ncols == 1 else ax.ravel()


def figure_of(ax):
    """The Figure of an Axes or of the first of an array of Axes."""
    import numpy as np

    return np.ravel(np.asarray(ax, dtype=object))[0].get_figure()


def figure_to_data_uri(fig, dpi: int = 100) -> str:
    """PNG data URI of a matplotlib figure (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


@contextmanager
def arviz_without_numba():
    """ArviZ on its numpy code paths inside the block (the caller's setting is restored after it).

    With numba installed ArviZ jit-compiles its KDE histogram and variance helpers, some without a disk
    cache, so every process paid 5-8 s on its first density, trace or posterior plot (measured: az.plot_density
    of two 4 x 1000 x 5 posteriors 5.3-8.6 s with numba, 0.16-0.28 s without); the numpy paths compute the same
    quantities."""
    import arviz as az

    was = bool(az.Numba.numba_flag)
    if was:
        az.Numba.disable_numba()
    try:
        yield
    finally:
        if was:
            az.Numba.enable_numba()


def with_arviz_numpy(fn):
    """``fn`` run inside :func:`arviz_without_numba` (for report builders called from the API)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with arviz_without_numba():
            return fn(*args, **kwargs)

    return wrapper


@contextmanager
def closing_on_error():
    """Close the figures a failing plot call opened (and re-raise)."""
    plt = pyplot()
    before = set(plt.get_fignums())
    try:
        yield
    except BaseException:
        for n in set(plt.get_fignums()) - before:
            plt.close(n)
        raise


def draw_each(builders, sink: list) -> list:
    """[(title, Figure)] from [(title, builder)]: every builder is called on its own; a failure closes its
    figures, is appended to ``sink`` (and printed on stderr) and the others are still drawn."""
    import sys

    figs = []
    for title, build in builders:
        try:
            with closing_on_error():
                figs.append((title, build()))
        except Exception as exc:  # noqa: BLE001 - one figure must not take the others with it
            msg = f"figure '{title}' could not be drawn: {exc.__class__.__name__}: {exc}"
            if msg not in sink:
                sink.append(msg)
            print(f"warning: {msg}", file=sys.stderr)
    return figs


#: How long the parent waits for the forked child of :func:`render_each` before it kills it and draws the child's share
#: itself (a figure takes ~0.1-1.5 s here; the wait only matters if the child hangs).
RENDER_CHILD_TIMEOUT = 120.0


def _draw_and_encode(indexed, sink: list) -> list:
    """[(index, title, PNG data URI)] of [(index, title, builder)], each drawn as :func:`draw_each` draws it."""
    out = []
    for i, title, build in indexed:
        for t, fig in draw_each([(title, build)], sink):
            out.append((i, t, figure_to_data_uri(fig)))
    return out


def render_each(builders, sink: list) -> list:
    """[(title, PNG data URI)] of [(title, builder)], in order: every builder drawn on its own as :func:`draw_each`
    draws it (a failure is left out and appended to ``sink``) and encoded as :func:`figure_to_data_uri` does.

    A report's figures are drawn one after the other in one thread (matplotlib's Agg holds the GIL: two threads
    took as long as one), ~0.2-1.3 s each; where the process can fork (Linux), every second builder is drawn in a
    forked child on the other core, which inherits the results the builders read (nothing is pickled but the
    PNGs it sends back).  A child that fails, hangs (:data:`RENDER_CHILD_TIMEOUT`) or is killed leaves its share
    to this process, so the report is the same either way (the same PNG bytes).  ``builders`` may hold figures
    already drawn (``lambda: fig``): their PNGs are then encoded on the two processes, and this process closes
    the ones the child encoded."""
    indexed = [(i, t, b) for i, (t, b) in enumerate(builders)]
    mine, theirs = indexed[0::2], indexed[1::2]
    out = None
    if theirs:
        out = _render_forked(mine, theirs, sink)
    if out is None:
        out = _draw_and_encode(indexed, sink)
    return [(t, uri) for _, t, uri in sorted(out, key=lambda r: r[0])]


def _render_forked(mine, theirs, sink):
    """_draw_and_encode of ``mine`` here and of ``theirs`` in a forked child (:class:`bayescg.runtime.Forked`); None
    if no child could start."""
    from ..runtime import Forked

    def child():
        child_sink: list = []
        return _draw_and_encode(theirs, child_sink), child_sink

    with Forked(child) as job:
        if job.pid is None:
            return None
        out = _draw_and_encode(mine, sink)
        ok, got = job.result(RENDER_CHILD_TIMEOUT)
    if not ok:  # failed, hung or killed: the child's share is drawn here
        return out + _draw_and_encode(theirs, sink)
    theirs_out, child_sink = got
    for msg in child_sink:
        if msg not in sink:
            sink.append(msg)
    plt = pyplot()
    for _, _, build in theirs:  # figures drawn before the fork (lambda: fig): this process's copies are open
        fig = getattr(build, "_figure", None)
        if fig is not None:
            plt.close(fig)
    return out + theirs_out


def prebuilt(figs) -> list:
    """[(caption, builder)] of [(caption, Figure)] for :func:`render_each` (the builder returns the figure)."""
    out = []
    for caption, fig in figs:
        def build(fig=fig):
            return fig
        build._figure = fig
        out.append((caption, build))
    return out
