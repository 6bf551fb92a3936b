"""Self-contained HTML reports: tables and matplotlib figures embedded as PNG data URIs."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Iterable

from .io import atomic_write_text

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:2px solid #346;padding-bottom:.2em}h2{color:#346;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}th{background:#eef2f7}
td:first-child,th:first-child{text-align:left}
figure{margin:1em 0;display:inline-block;vertical-align:top}figcaption{font-size:.9em;color:#555}
img{max-width:100%;border:1px solid #ddd}.warn{background:#fff4e0;border-left:4px solid #e90;padding:.4em .8em}
.meta{font-size:.8em;color:#666}
"""


def figure_to_data_uri(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if v is None:
        return "–"
    return html.escape(str(v))


def table_html(rows: list[dict] | dict, title: str | None = None) -> str:
    """A table from a list of dicts (columns = keys) or a dict (two columns)."""
    if isinstance(rows, dict):
        rows = [{"quantity": k, "value": v} for k, v in rows.items()]
    if not rows:
        return ""
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in rows)
    cap = f"<h3>{html.escape(title)}</h3>" if title else ""
    return f"{cap}<table><tr>{head}</tr>{body}</table>"


class Report:
    """Collects sections; :meth:`write` produces one self-contained HTML file."""

    def __init__(self, title: str, meta: dict | None = None):
        self.title = title
        self.meta = meta or {}
        self.parts: list[str] = []

    def heading(self, text: str):
        self.parts.append(f"<h2>{html.escape(text)}</h2>")

    def text(self, text: str):
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def warning(self, text: str):
        self.parts.append(f'<p class="warn">{html.escape(text)}</p>')

    def table(self, rows, title: str | None = None):
        self.parts.append(table_html(rows, title))

    def figures(self, figs: Iterable[tuple[str, Any]]):
        for caption, fig in figs:
            self.parts.append(f'<figure><img alt="{html.escape(caption)}" src="{figure_to_data_uri(fig)}">'
                              f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def add_result(self, heading: str, result, summary: dict | list | None = None):
        """A result section: optional summary table, its warnings, and its ``figures()``."""
        self.heading(heading)
        for w in getattr(result, "warnings", None) or []:
            self.warning(w)
        if summary:
            self.table(summary)
        if hasattr(result, "figures"):
            self.figures(result.figures())

    def html(self) -> str:
        versions = self.meta.get("versions", {})
        meta = ", ".join(f"{k} {v}" for k, v in versions.items())
        stamp = html.escape(f"{self.meta.get('created', '')} · seed {self.meta.get('seed')} · {meta}")
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"
                f"<p class='meta'>{stamp}</p>{''.join(self.parts)}</body></html>")

    def write(self, path: str | Path) -> Path:
        return atomic_write_text(path, self.html())
