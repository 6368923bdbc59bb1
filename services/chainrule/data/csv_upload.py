"""CSV uploads (:func:`parse_csv`): UTF-8 text (a byte-order mark is ignored),
comma-separated, RFC 4180 quoting. The first row is a header naming every column;
``label`` names the target column and every other column is a numeric feature. Blank lines
are skipped. Rows are counted as a spreadsheet shows them: the header is row 1, the first
sample row 2 (a line number, unless a quoted cell spans lines).

What the targets and features may hold is :mod:`chainrule.data.uploads`'.
"""

from __future__ import annotations

import csv
import io
from array import array
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from chainrule.data.uploads import (
    DEFAULT_MAX_BYTES,
    FLOAT32_MAX,
    MAX_FEATURES,
    MAX_ROWS,
    MIN_ROWS,
    DatasetError,
    DatasetTooLargeError,
    ParsedDataset,
    Place,
    check_bytes,
    check_task,
    finite_float32,
    is_number,
    parse_targets,
)

if TYPE_CHECKING:
    from _csv import Reader

CSV_CHUNK_CELLS = 16_384  # cells (a row counts 4 more) converted to numbers at once
_SHOWN_COLUMNS = 20  # how many column names an error lists before "..."


def parse_csv(
    data: bytes,
    label: str,
    *,
    task: str = "classification",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_rows: int = MAX_ROWS,
    max_features: int = MAX_FEATURES,
) -> ParsedDataset:
    """Check a CSV file with a header row and a ``label`` column; see the module notes.

    Read as a stream: the bytes are decoded as the reader goes, and the feature cells are
    converted to float32 a chunk of rows at a time, so the memory it takes is a small
    multiple of the file (the arrays, the label cells and one chunk), never a Python
    object per cell of the whole file. The first problem in the file is reported."""
    check_task(task)
    check_bytes(len(data), max_bytes)
    if not data.removeprefix(b"\xef\xbb\xbf").strip():
        raise DatasetError(
            "the file is empty; expected a header row naming the columns, then one row per sample"
        )
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    reader = csv.reader(stream, strict=True)
    try:
        header, header_row = _header(reader)
        names = [cell.strip() for cell in header]
        label_at = _check_header(names, label, header_row, max_features)
        table = _Table(names, label_at, max_rows)
        for row in reader:
            if row:  # blank lines are skipped
                table.add(row, reader.line_num)
    except csv.Error as exc:
        raise DatasetError(
            f"row {reader.line_num}: the CSV quoting is malformed ({exc}); "
            'quote a cell as "like, this" and double a quote inside one as ""',
            row=reader.line_num,
        ) from None
    except UnicodeDecodeError:
        _decode(data)  # raises the DatasetError naming the row and the byte
        raise
    X, labels, place = table.finish(header_row)
    y, classes = parse_targets(labels, label, task, place)
    return ParsedDataset(X, y, classes, table.feature_names, label)


class _Table:
    """The data rows of a CSV file as they are read: each row's width checked at once,
    its feature cells converted a chunk at a time (float32), its label cell kept."""

    def __init__(self, names: list[str], label_at: int, max_rows: int) -> None:
        self.names, self.label_at, self.max_rows = names, label_at, max_rows
        self.feature_at = [j for j in range(len(names)) if j != label_at]
        self.feature_names = [names[j] for j in self.feature_at]
        self.rows = array("q")  # the row number of each data row
        self.chunk_rows = max(1, CSV_CHUNK_CELLS // (len(self.feature_at) + 4))
        self.chunks: list[NDArray[np.float32]] = []
        self.label_chunks: list[NDArray[np.str_]] = []
        self.pending: list[list[str]] = []  # feature cells of the rows not yet converted
        self.labels: list[str] = []  # label cells of the rows not yet converted
        self.first_too_many: int | None = None  # the row number past max_rows, if any

    def add(self, row: list[str], at: int) -> None:
        if self.first_too_many is not None:  # only counted, for the message
            self.rows.append(at)
            return
        width = len(self.names)
        if len(row) != width:
            self._wrong_width(row, at)
        if len(self.rows) == self.max_rows:
            self.first_too_many = at
            self.rows.append(at)
            return
        self.rows.append(at)
        self.labels.append(row[self.label_at])
        self.pending.append([row[j] for j in self.feature_at])
        if len(self.pending) == self.chunk_rows:
            self._convert()

    def finish(self, header_row: int) -> tuple[NDArray[np.float32], NDArray[np.str_], Place]:
        if not self.rows:
            raise DatasetError(
                f"the file has a header (row {header_row}) but no data rows; "
                "expected one row per sample below it",
                row=header_row,
            )
        if self.first_too_many is not None:
            raise DatasetTooLargeError(
                f"the file has {len(self.rows)} data rows (row {self.first_too_many} is the "
                f"first one too many); the limit is {self.max_rows}",
                row=self.first_too_many,
            )
        if len(self.rows) < MIN_ROWS:
            raise DatasetError(
                f"the file has {len(self.rows)} data row; at least {MIN_ROWS} are needed "
                "(one to train on, one to hold out)"
            )
        self._convert()
        X = self.chunks[0] if len(self.chunks) == 1 else np.concatenate(self.chunks)
        labels = np.concatenate(self.label_chunks)
        self.chunks, self.label_chunks = [], []
        return X, labels, Place(csv=True, rows=self.rows, columns=self.feature_names)

    def _convert(self) -> None:
        """The pending rows' feature cells as float32, refusing empty, non-numeric and
        non-finite ones (named by row and column)."""
        if not self.pending:
            return
        try:
            values = np.array(self.pending, dtype=np.float64)
        except ValueError:
            _locate_non_number(self._place())
            raise
        if not np.isfinite(values).all() or (np.abs(values) > FLOAT32_MAX).any():
            finite_float32(values, self._place())  # raises, naming the first such cell
        self.chunks.append(values.astype(np.float32))
        self.label_chunks.append(np.array(self.labels, dtype=np.str_))
        self.pending, self.labels = [], []

    def _place(self) -> Place:
        """Where the pending rows' cells are, for a message about one of them."""
        start = len(self.rows) - len(self.pending)
        cells = list(zip(*self.pending, strict=True))  # column by column
        rows = self.rows[start:]
        return Place(csv=True, rows=rows, columns=self.feature_names, cells=cells)

    def _wrong_width(self, row: list[str], at: int) -> None:
        width = len(self.names)
        if len(row) < width:
            column: str | None = self.names[len(row)]
            detail = f"column {column!r} onwards is missing"
        else:
            column, extra = None, len(row) - width
            detail = f"{extra} cell{'s' if extra > 1 else ''} beyond the last column"
        raise DatasetError(
            f"row {at} has {len(row)} cells but the header has {width} columns "
            f"({detail}); every row needs exactly one cell per column",
            row=at,
            column=column,
        )


def csv_columns(data: bytes) -> list[str]:
    """The column names in the header of a CSV file (for a message that lists them)."""
    text = _decode(data)
    if not text.strip():
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header, _ = _header(reader)
    except csv.Error:
        return []
    return [cell.strip() for cell in header]


def _header(reader: Reader) -> tuple[list[str], int]:
    for row in reader:
        if row:  # skip blank lines
            return row, reader.line_num
    raise AssertionError("unreachable: the text is not blank")  # pragma: no cover


def _check_header(names: list[str], label: str, row: int, max_features: int) -> int:
    """The index of the label column, after checking every name: the width first (so a
    header of millions of columns is refused before anything else reads it), then each
    name once (linear in the header's length)."""
    if len(names) - 1 > max_features:
        raise DatasetTooLargeError(
            f"the file has {len(names) - 1} feature columns; the limit is {max_features}",
            row=row,
        )
    if all(is_number(name) for name in names):
        raise DatasetError(
            f"row {row} holds numbers ({_shown(names)}), not column names; the first row "
            "must be a header naming every column, e.g. x1,x2,label",
            row=row,
        )
    first: dict[str, int] = {}  # name -> its column index
    for i, name in enumerate(names):
        if not name:
            raise DatasetError(
                f"row {row} (the header): column {i + 1} has no name; every column needs a name",
                row=row,
            )
        if name in first:
            raise DatasetError(
                f"row {row} (the header): column name {name!r} appears twice "
                f"(columns {first[name] + 1} and {i + 1}); names must be unique",
                row=row,
                column=name,
            )
        first[name] = i
    if label not in first:
        raise DatasetError(
            f"no column named {label!r} to use as the label; the columns are: {_shown(names)}",
            row=row,
            column=label,
        )
    if len(names) < 2:
        raise DatasetError(
            f"the file has only the label column {label!r}; at least one feature column is needed",
            row=row,
            column=label,
        )
    return first[label]


def _locate_non_number(place: Place) -> None:
    """Raise the DatasetError for the first feature cell that is not a number."""
    for i in range(len(place.cells[0])):
        for j, column_cells in enumerate(place.cells):
            cell = column_cells[i]
            if is_number(cell):
                continue
            row, column, where = place.feature(i, j)
            if not cell.strip():
                message = (
                    f"{where} is empty; every feature cell needs a number "
                    "(missing values are not supported)"
                )
            else:
                message = (
                    f"{where}: {cell.strip()!r} is not a number; feature columns must "
                    "hold numbers only (text belongs in the label column)"
                )
            raise DatasetError(message, row=row, column=column)


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        row = data[: exc.start].count(b"\n") + 1
        raise DatasetError(
            f"row {row}: byte {exc.start} (0x{data[exc.start]:02x}) is not UTF-8 text; "
            "save the CSV as UTF-8",
            row=row,
        ) from None


def _shown(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN_COLUMNS])
    more = len(names) - _SHOWN_COLUMNS
    return shown + (f", ... ({more} more)" if more > 0 else "")
