"""Plain-text tables: the one renderer behind every printable report of the package.

``audit()``, ``lsuv()`` and ``keras-initlab inspect`` print rows of mixed values the same way:
a header, left-aligned columns two spaces apart, floats to 4 significant digits, and ``-`` for
a missing or NaN value.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from typing import Any, Generic, TypeVar

R = TypeVar("R")

MISSING = "-"  # how a None or NaN cell is printed
_COLUMN_GAP = "  "


def format_cell(value: Any) -> str:
    """One cell: ``-`` for None/NaN, 4 significant digits for floats, ``str`` otherwise.

    Example:
    >>> [format_cell(v) for v in (None, float("nan"), 0.123456, 3, "dense")]
    ['-', '-', '0.1235', '3', 'dense']
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The lines of a table with a header row; every cell goes through ``format_cell``.

    Example:
    >>> print("\\n".join(format_table(["layer", "std"], [["dense", 0.5], ["conv", None]])))
    layer  std
    dense  0.5
    conv   -
    """
    table = [list(columns)] + [[format_cell(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    return [
        _COLUMN_GAP.join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """The lines of the same table in Markdown (cells through ``format_cell``).

    Example:
    >>> print("\\n".join(markdown_table(["layer", "std"], [["dense", 0.5]])))
    | layer | std |
    |---|---|
    | dense | 0.5 |
    """
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    return lines + ["| " + " | ".join(format_cell(v) for v in row) + " |" for row in rows]


class RowReport(Generic[R]):
    """The list behaviour every printable report shares: ``rows`` of dataclass rows,
    ``len``, iteration, indexing and ``to_dicts``; subclasses add their table and views.

    Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Row:
    ...     layer: str
    >>> report = RowReport([Row("dense")])
    >>> len(report), report[0].layer, report.to_dicts()
    (1, 'dense', [{'layer': 'dense'}])
    """

    def __init__(self, rows: list[R]) -> None:
        self.rows = rows

    def to_dicts(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows]  # type: ignore[call-overload]

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[R]:
        return iter(self.rows)

    def __getitem__(self, index: int) -> R:
        return self.rows[index]
