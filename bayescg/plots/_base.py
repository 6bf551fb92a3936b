"""Shared plumbing of the plot functions: an Agg figure only when no axes are given, PNG data URIs, and
closing the figures a failing plot opened.  The only place (with the other modules of this package) where
matplotlib is imported."""
from __future__ import annotations

import base64
import io
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
