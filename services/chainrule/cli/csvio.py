"""CSV in and out of the CLI: feature rows for ``predict``, metric series for ``metrics``.

Input rows for ``predict``: one sample per line, its features as numbers in the order
the model was trained on, comma-separated. A header line is optional: when any cell of
the first non-empty line is not a number, that line is taken for a header and skipped.
(A header whose names are all numbers cannot be told from data; leave it out.) Blank
lines are skipped; every row must have the same number of cells, and every cell must be
a finite number.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence

from chainrule.data.uploads import is_number


class RowsError(ValueError):
    """Input rows that cannot be sent; the message names the line and the cell."""


def parse_feature_rows(text: str) -> list[list[float]]:
    """The rows of numbers in ``text``, without its header line if it has one."""
    lines = [
        (number, cells)
        for number, cells in enumerate(csv.reader(io.StringIO(text)), start=1)
        if any(cell.strip() for cell in cells)
    ]
    if lines and not all(is_number(cell) for cell in lines[0][1]):
        lines = lines[1:]  # a header
    if not lines:
        raise RowsError("no feature rows found: expected lines of comma-separated numbers")
    width = len(lines[0][1])
    rows = []
    for number, cells in lines:
        if len(cells) != width:
            raise RowsError(
                f"line {number} has {len(cells)} values; the first row has {width} "
                "(every row needs one value per feature)"
            )
        rows.append([_finite(cell, number, column) for column, cell in enumerate(cells, 1)])
    return rows


def _finite(cell: str, line: int, column: int) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise RowsError(f"line {line}, column {column}: {cell.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise RowsError(f"line {line}, column {column}: {cell.strip()!r} is not a finite number")
    return value


def series_csv(points: Iterable[Mapping[str, object]]) -> str:
    """One metric's points as ``step,value`` lines under that header; a value that was
    NaN or infinite (sent as null) is an empty cell."""
    return table_csv(["step", "value"], points)


def metrics_csv(names: Sequence[str], points: Sequence[Mapping[str, object]]) -> str:
    """Whole metric points as CSV: ``step``, then ``names`` in the server's order, then any
    other field with a value in some point (``time``); a null value is an empty cell."""
    header = ["step", *(n for n in names if n != "step")]
    for point in points:
        header.extend(k for k, v in point.items() if v is not None and k not in header)
    return table_csv(header, points)


def table_csv(header: Sequence[str], rows: Iterable[Mapping[str, object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(row.get(name)) for name in header])
    return out.getvalue()


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    return str(value)
