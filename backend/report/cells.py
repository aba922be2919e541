"""The report's table shapes: what the page renders and its JSON twin returns, key for key.

A table is ``{"title", "columns", "rows": [{"label", "cells"}], ...}`` and a cell
``{"value", "kind", ["lo", "hi"], ["why"]}``: a missing or null value keeps a ``why`` the page
shows as the tooltip of its "—". The shapes are TypedDicts so the JSON twin stays plain data
(``frontend/templates/_report.html`` reads them) while mypy checks every builder.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NotRequired, TypedDict

from core.reports import Interval

Kind = Literal["num", "pct", "text", "seconds"]  # seconds: shown as a duration ("30 µs")


class Cell(TypedDict):
    value: int | float | str | None
    kind: Kind
    lo: NotRequired[float]  # a 95% confidence interval, when the value has one
    hi: NotRequired[float]
    why: NotRequired[str]  # only when value is None: the tooltip of the "—"


class Row(TypedDict):
    label: str
    cells: list[Cell]


class CoveredList(TypedDict):
    label: str
    items: list[str]


class Table(TypedDict):
    title: str
    columns: list[str]
    rows: list[Row]
    empty: NotRequired[str]  # what the page says when there are no rows
    note: NotRequired[str | None]
    paper: NotRequired[Table]  # the paper's numbers for the same table
    lists: NotRequired[list[CoveredList]]  # Table 6's covered features
    mode: NotRequired[str | None]  # Table 8's tuning mode


def number(value: Any) -> int | float | None:
    """``value`` when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if math.isfinite(value) else None


def cell(
    value: Any,
    kind: Kind = "num",
    why: str | None = None,
    lo: float | None = None,
    hi: float | None = None,
) -> Cell:
    """A table cell; ``why`` (the tooltip of "—") is kept only when the value is missing."""
    shown = value if kind == "text" else number(value)
    out: Cell = {"value": shown, "kind": kind}
    if lo is not None:
        out["lo"] = lo
    if hi is not None:
        out["hi"] = hi
    if shown is None:
        out["why"] = why or "not in this run's metrics"
    return out


def ci_cell(entry: Interval | None, why: str) -> Cell:
    """A mean with its bootstrap interval (lo/hi left out where the worker gave none)."""
    if entry is None:
        return cell(None, why=why)
    return cell(entry.mean, why=why, lo=number(entry.lo), hi=number(entry.hi))


def ratio_cell(num: Any, den: Any, why: str) -> Cell:
    """``num / den`` as a percentage; "—" with ``why`` when either is missing or den is 0."""
    a, b = number(num), number(den)
    if a is None or not b:
        return cell(None, "pct", why)
    return cell(a / b, "pct")


def table(
    title: str, columns: list[str], rows: list[tuple[str, list[Cell]]], empty: str | None = None
) -> Table:
    """A report table from (label, cells) rows; ``empty`` is what the page says without rows."""
    out: Table = {
        "title": title,
        "columns": columns,
        "rows": [{"label": label, "cells": cells} for label, cells in rows],
    }
    if empty is not None:
        out["empty"] = empty
    return out


def pair(a: object, b: object) -> str | None:
    """``"a / b"`` with "—" for a missing side; None when both are missing."""
    if a is None and b is None:
        return None
    return f"{'—' if a is None else a} / {'—' if b is None else b}"
