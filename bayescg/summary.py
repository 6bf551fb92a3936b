"""The one summary type every result returns from ``summary()``.

A :class:`Summary` is an ordered list of labelled values (each with a number format, an optional unit and
the text shown when the value does not apply, e.g. ``n/a (MAP)`` for R-hat of a MAP fit), optional tables
(rows of dicts: the scale scan's deltas, the Ising methods) and warnings.  It reads like a mapping
``label -> value`` (``summary["beta_hat"]``, ``dict(summary)``), prints for the terminal (``str(summary)``,
:meth:`Summary.format`: sensible precision, small matrices as aligned rows), gives JSON-able data
(:meth:`Summary.to_dict`) and is what :mod:`bayescg.report` renders as key numbers and tables.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterator

__all__ = ["Row", "Summary", "format_value"]


@dataclass(frozen=True)
class Row:
    """One labelled value: ``fmt`` is a format spec for floats, ``unit`` is printed after the value (``s``,
    ``x``, ``%``), ``missing`` is shown for None / NaN."""

    label: str
    value: Any
    fmt: str = ".4g"
    unit: str = ""
    missing: str = "n/a"


def _plain(v: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists."""
    tolist = getattr(v, "tolist", None)
    if tolist is not None and type(v).__module__ == "numpy":
        return tolist()
    return v


def _is_num(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_matrix(v) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) > 0 and all(isinstance(r, (list, tuple)) and r for r in v)
            and all(_is_num(x) or x is None for r in v for x in r))


def format_value(v: Any, fmt: str = ".4g", missing: str = "n/a", unit: str = "") -> str:
    """One value as terminal text: floats by ``fmt`` (never 17 digits), None/NaN as ``missing``, bools as
    yes/no, numeric vectors in brackets, small matrices one row per line (``[[a, b], [c, d]]`` aligned)."""
    v = _plain(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return missing
    sep = "" if unit in ("", "x", "%") else " "
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):  # fmt "," groups thousands (steps); float formats do not apply to counts
        return f"{v:,}{sep}{unit}" if fmt == "," else f"{v}{sep}{unit}"
    if isinstance(v, float):
        return f"{v:{fmt}}{sep}{unit}"
    if _is_matrix(v):
        cells = [[format_value(x, fmt, missing) for x in r] for r in v]
        w = max(len(c) for r in cells for c in r)
        lines = ["[" + ", ".join(c.rjust(w) for c in r) + "]" for r in cells]
        return "[" + (",\n ".join(lines)) + "]" + (f"{sep}{unit}" if unit else "")
    if isinstance(v, (list, tuple)):
        if all(_is_num(x) or x is None for x in v):
            if len(v) > 8:
                return f"[{len(v)} values]"
            return "[" + ", ".join(format_value(x, fmt, missing) for x in v) + "]" + (f"{sep}{unit}" if unit else "")
        return ", ".join(format_value(x, fmt, missing) for x in v)
    if isinstance(v, Mapping):
        return ", ".join(f"{k}: {format_value(x, fmt, missing)}" for k, x in v.items())
    return f"{v}{sep}{unit}" if unit else str(v)


def _cell(v: Any) -> str:
    """A table cell: as :func:`format_value`, on one line."""
    return " ".join(format_value(v).split("\n"))


@dataclass
class Summary(Mapping):
    """Key numbers of a result (ordered :class:`Row` s), tables ``[(title, [row dict, ...])]`` and warnings."""

    title: str = ""
    rows: list = field(default_factory=list)
    tables: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    def add(self, label: str, value: Any, fmt: str = ".4g", unit: str = "", missing: str = "n/a") -> "Summary":
        self.rows.append(Row(label, _plain(value), fmt, unit, missing))
        return self

    @classmethod
    def from_mapping(cls, title: str, values: Mapping, units: Mapping | None = None, fmts: Mapping | None = None,
                     warnings=()) -> "Summary":
        """A Summary of ``label -> value`` in order; ``units`` / ``fmts``: per label (default: no unit, .4g)."""
        s = cls(title, warnings=list(warnings))
        for k, v in values.items():
            s.add(k, v, (fmts or {}).get(k, ".4g"), (units or {}).get(k, ""))
        return s

    def add_diagnostics(self, diag: dict | None, method: str = "nuts") -> "Summary":
        """The sampler's r_hat_max, ess_bulk_min and divergences (bayescg.fit.sampler_diagnostics); for a MAP fit
        (``method == "map"``) they do not apply and read ``n/a (MAP)``."""
        diag = diag or {}
        na = "n/a (MAP)" if method == "map" else "n/a"
        self.add("diagnostics.r_hat_max", diag.get("r_hat_max"), missing=na if method == "map" else "n/a (one chain)")
        self.add("diagnostics.ess_bulk_min", diag.get("ess_bulk_min"), ".0f", missing=na)
        return self.add("diagnostics.divergences", diag.get("divergences"), missing=na)

    def table(self, title: str, rows: list) -> "Summary":
        self.tables.append((title, [dict(r) for r in rows]))
        return self

    # -- mapping label -> value ----------------------------------------------------------------
    def __getitem__(self, label: str) -> Any:
        for r in self.rows:
            if r.label == label:
                return r.value
        raise KeyError(label)

    def __iter__(self) -> Iterator[str]:
        return iter([r.label for r in self.rows])

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, label: str) -> Row:
        return next(r for r in self.rows if r.label == label)

    def text(self, label: str) -> str:
        """The value of ``label`` as printed (format, unit, ``missing``)."""
        r = self.row(label)
        return format_value(r.value, r.fmt, r.missing, r.unit)

    # -- output ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """JSON-able: {title, rows: [{label, value, unit}], tables: [{title, rows}], warnings}."""
        from .io import to_jsonable

        return to_jsonable({"title": self.title,
                            "rows": [{"label": r.label, "value": r.value, "unit": r.unit or None} for r in self.rows],
                            "tables": [{"title": t, "rows": rows} for t, rows in self.tables],
                            "warnings": list(self.warnings)})

    def for_report(self) -> dict:
        """``label -> value`` for the HTML report: numbers stay numbers so that thresholds can flag them, a unit
        goes into the label, a value that does not apply is its ``missing`` text (``n/a (MAP)``)."""
        def value(r):
            absent = r.value is None or (isinstance(r.value, float) and math.isnan(r.value))
            return r.missing if absent and r.missing != "n/a" else r.value

        return {(f"{r.label} ({r.unit})" if r.unit and r.unit not in ("s",) else r.label): value(r) for r in self.rows}

    def format(self, indent: str = "  ") -> str:
        """Terminal text: the title, one aligned ``label  value`` line per row (matrices over several lines),
        each table with aligned columns, then ``warning: ...`` lines."""
        out = [self.title] if self.title else []
        w = max((len(r.label) for r in self.rows), default=0)
        for r in self.rows:
            lines = format_value(r.value, r.fmt, r.missing, r.unit).split("\n")
            out.append(f"{indent}{r.label.ljust(w)}  {lines[0]}")
            out += [f"{indent}{' ' * w}  {ln}" for ln in lines[1:]]
        for title, rows in self.tables:
            if not rows:
                continue
            cols = list(dict.fromkeys(k for r in rows for k in r))
            cells = [[_cell(r.get(c)) if c in r else "" for c in cols] for r in rows]
            widths = [max([len(str(c))] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
            if title:
                out.append(f"{indent}{title}")
            out.append(indent + "  ".join(str(c).ljust(widths[i]) for i, c in enumerate(cols)).rstrip())
            out += [indent + "  ".join(x.ljust(widths[i]) for i, x in enumerate(row)).rstrip() for row in cells]
        out += [f"warning: {x}" for x in self.warnings]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.format()

    def __repr__(self) -> str:
        return f"Summary({self.title!r}, {len(self.rows)} rows, {len(self.tables)} tables)"

    def __eq__(self, other) -> bool:  # Mapping's __eq__ compares as dicts; a Summary is equal to its own kind
        return isinstance(other, Summary) and (self.title, self.rows, self.tables, self.warnings) == (
            other.title, other.rows, other.tables, other.warnings)

    __hash__ = None
