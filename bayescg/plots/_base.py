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
