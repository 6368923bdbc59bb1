"""User datasets: CSV and NPZ files checked cell by cell and turned into arrays.

Pure functions of the uploaded bytes; storing the result is :mod:`chainrule.store.datasets`'
job. Every refusal is a :class:`DatasetError` (a ``ValueError``) whose message names the
problem, where it is and what is allowed, and which carries ``row`` and ``column``.

**CSV** (:func:`parse_csv`): UTF-8 text (a byte-order mark is ignored), comma-separated,
RFC 4180 quoting. The first row is a header naming every column; ``label`` names the
target column and every other column is a numeric feature. Blank lines are skipped.
Rows are counted as a spreadsheet shows them: the header is row 1, the first sample
row 2 (a line number, unless a quoted cell spans lines).

**NPZ** (:func:`parse_npz`): an ``np.savez`` archive holding exactly ``X`` (2-D numbers,
one row per sample) and ``y`` (1-D, one target per row). Positions are 0-based array
indices: ``X[12, 3]``, row 12.

**Targets** (``task``):

- ``"classification"`` (the default) takes text or whole-number labels. Whole numbers
  are sorted numerically, text lexicographically, and the i-th class in that order
  becomes class index i; :attr:`ParsedDataset.classes` keeps the names. 2 to
  :data:`MAX_CLASSES` classes. A label such as ``0.37`` is refused, because a
  fractional number is a measurement, not a class: ask for ``"regression"``.
- ``"regression"`` takes finite numbers and keeps them as float32 targets.

Features must be finite numbers that fit float32; empty cells (missing values), NaN and
infinity are refused, never imputed.
"""

from __future__ import annotations

import csv
import io
import math
import zipfile
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from _csv import Reader

TASKS = ("classification", "regression")
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_ROWS = 1_000_000
MAX_FEATURES = 8192  # the widest input layer a job spec allows
MAX_CLASSES = 1000
CSV_CHUNK_CELLS = 16_384  # cells (a row counts 4 more) converted to numbers at once
MIN_ROWS = 2  # one row to train on, one to hold out
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_SHOWN_COLUMNS = 20  # how many column names an error lists before "..."

Labels = NDArray[np.int64] | NDArray[np.float32]


class DatasetError(ValueError):
    """An uploaded file that cannot be a dataset. ``row`` and ``column`` say where, when
    the problem has a place: CSV rows count the header as row 1, NPZ rows are 0-based."""

    def __init__(self, message: str, *, row: int | None = None, column: str | None = None):
        super().__init__(message)
        self.message, self.row, self.column = message, row, column


class DatasetTooLargeError(DatasetError):
    """The file is over a size limit: bytes, rows or feature columns."""


@dataclass(frozen=True)
class ParsedDataset:
    """A checked dataset: ``X: (rows, features)`` float32; ``y: (rows,)`` int64 class
    indices into ``classes``, or float32 targets when ``classes`` is None (regression)."""

    X: NDArray[np.float32]
    y: Labels
    classes: list[str] | None
    feature_names: list[str]
    label: str

    @property
    def task(self) -> str:
        return "regression" if self.classes is None else "classification"

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def features(self) -> int:
        return int(self.X.shape[1])

    def to_bytes(self) -> bytes:
        """An ``.npz`` image (no pickles): what the dataset store keeps."""
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            X=self.X,
            y=self.y,
            classes=np.array(self.classes or [], dtype=np.str_),
            feature_names=np.array(self.feature_names, dtype=np.str_),
            label=np.array(self.label, dtype=np.str_),
            task=np.array(self.task, dtype=np.str_),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ParsedDataset:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            regression = str(z["task"]) == "regression"
            return cls(
                X=z["X"],
                y=z["y"],
                classes=None if regression else [str(c) for c in z["classes"]],
                feature_names=[str(c) for c in z["feature_names"]],
                label=str(z["label"]),
            )


# -- CSV ----------------------------------------------------------------------------------


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
    _check_task(task)
    _check_bytes(len(data), max_bytes)
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
    y, classes = _targets(labels, label, task, place)
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

    def finish(self, header_row: int) -> tuple[NDArray[np.float32], NDArray[np.str_], _Place]:
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
        return X, labels, _Place(csv=True, rows=self.rows, columns=self.feature_names)

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
        if not np.isfinite(values).all() or (np.abs(values) > _FLOAT32_MAX).any():
            _finite_float32(values, self._place())  # raises, naming the first such cell
        self.chunks.append(values.astype(np.float32))
        self.label_chunks.append(np.array(self.labels, dtype=np.str_))
        self.pending, self.labels = [], []

    def _place(self) -> _Place:
        """Where the pending rows' cells are, for a message about one of them."""
        start = len(self.rows) - len(self.pending)
        cells = list(zip(*self.pending, strict=True))  # column by column
        rows = self.rows[start:]
        return _Place(csv=True, rows=rows, columns=self.feature_names, cells=cells)

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
    if all(_is_number(name) for name in names):
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


# -- NPZ ----------------------------------------------------------------------------------


def parse_npz(
    data: bytes,
    *,
    task: str = "classification",
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_rows: int = MAX_ROWS,
    max_features: int = MAX_FEATURES,
) -> ParsedDataset:
    """Check an ``np.savez`` archive of ``X`` and ``y``; see the module notes. The arrays
    may take at most ``max_bytes`` uncompressed, too."""
    _check_task(task)
    _check_bytes(len(data), max_bytes)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError):
        raise DatasetError(
            "the file is not an NPZ archive (a zip of .npy arrays, as np.savez writes); "
            "upload a CSV file with a .csv name, or an .npz file"
        ) from None
    with archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        if set(members) != {"X", "y"}:
            found = ", ".join(sorted(members)) or "nothing"
            raise DatasetError(
                f"the NPZ archive holds {found}; expected exactly two arrays, X and y"
            )
        unpacked = sum(info.file_size for info in members.values())
        if unpacked > max_bytes:
            raise DatasetTooLargeError(
                f"X and y take {unpacked} bytes uncompressed; the limit is {max_bytes} bytes"
            )
        X_raw, y_raw = (_npy(archive, members[name], name) for name in ("X", "y"))
    if X_raw.ndim != 2:
        raise DatasetError(
            f"X has shape {X_raw.shape}; expected 2 dimensions (rows, features)", column="X"
        )
    rows, width = X_raw.shape
    if rows > max_rows:
        raise DatasetTooLargeError(f"X has {rows} rows; the limit is {max_rows}", column="X")
    if width > max_features:
        raise DatasetTooLargeError(
            f"X has {width} features; the limit is {max_features}", column="X"
        )
    if width < 1:
        raise DatasetError(f"X has shape {X_raw.shape}: no features; expected at least one")
    if rows < MIN_ROWS:
        raise DatasetError(
            f"X has {rows} rows; at least {MIN_ROWS} are needed (one to train on, one to hold out)"
        )
    if y_raw.shape != (rows,):
        raise DatasetError(
            f"y has shape {y_raw.shape}; expected ({rows},), one target per row of X",
            column="y",
        )
    if not (np.issubdtype(X_raw.dtype, np.integer) or X_raw.dtype.kind in "bf"):
        raise DatasetError(
            f"X has dtype {X_raw.dtype}; expected numbers (integers or floats)", column="X"
        )
    names = [f"x{j}" for j in range(width)]
    place = _Place(csv=False, columns=names)
    X = _finite_float32(X_raw.astype(np.float64), place)
    y, classes = _targets(y_raw, "y", task, place)
    return ParsedDataset(X, y, classes, names, "y")


def _npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> NDArray[np.generic]:
    """The array ``info`` holds, its header checked before anything is allocated: the
    data its shape and dtype claim must fit the member (which the archive's size limit
    bounds), so a header that lies about its shape is refused, not a MemoryError."""
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        claimed = math.prod(shape) * dtype.itemsize
        if claimed > info.file_size:
            raise DatasetError(
                f"array {name}'s header claims shape {shape} of {dtype} ({claimed} bytes), "
                f"but the archive holds {info.file_size} bytes for it; save it with np.savez",
                column=name,
            )
        with archive.open(info) as member:
            array: NDArray[np.generic] = np.lib.format.read_array(member, allow_pickle=False)
    except DatasetError:
        raise
    except ValueError as exc:  # object arrays, a broken header
        raise DatasetError(
            f"array {name} cannot be read ({exc}); save plain numeric arrays with np.savez",
            column=name,
        ) from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DatasetError(f"array {name} is damaged in the archive: {exc}", column=name) from None
    return array


# -- cells --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Place:
    """Names a cell the way its file numbers it: ``row 5, column 'x2'`` in a CSV file,
    ``X[4, 2]`` in an NPZ archive; and shows a CSV cell as it was written."""

    csv: bool
    rows: Sequence[int] | None = None  # CSV: the row number of each data row
    columns: Sequence[str] = ()  # the feature names
    cells: Sequence[Sequence[str]] = ()  # CSV: the feature cells, column by column

    def feature(self, i: int, j: int) -> tuple[int, str, str]:
        """(row, column, description) of feature cell ``[i, j]``."""
        if self.csv:
            assert self.rows is not None
            row, column = self.rows[i], self.columns[j]
            return row, column, f"row {row}, column {column!r}"
        return i, self.columns[j], f"X[{i}, {j}]"

    def label(self, i: int, column: str) -> tuple[int, str]:
        """(row, description) of label cell ``i``."""
        if self.csv:
            assert self.rows is not None
            return self.rows[i], f"row {self.rows[i]}, column {column!r}"
        return i, f"{column}[{i}]"


def _locate_non_number(place: _Place) -> None:
    """Raise the DatasetError for the first feature cell that is not a number."""
    for i in range(len(place.cells[0])):
        for j, column_cells in enumerate(place.cells):
            cell = column_cells[i]
            if _is_number(cell):
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


def _finite_float32(values: NDArray[np.float64], place: _Place) -> NDArray[np.float32]:
    """``values`` as float32, refusing NaN, infinity and what float32 cannot hold."""
    bad = ~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        row, column, where = place.feature(i, j)
        shown = repr(place.cells[j][i].strip()) if place.csv else str(values[i, j])
        problem = (
            "NaN and infinity are not allowed"
            if not np.isfinite(values[i, j])
            else f"that is beyond float32's range (±{_FLOAT32_MAX:.4g})"
        )
        raise DatasetError(
            f"{where} is {shown}: {problem}; every feature must be a finite number",
            row=row,
            column=column,
        )
    return values.astype(np.float32)


def _targets(
    raw: NDArray[np.generic], column: str, task: str, place: _Place
) -> tuple[Labels, list[str] | None]:
    """Regression targets, or class indices and class names; see the module notes."""
    if raw.dtype.kind not in "biufU":
        raise DatasetError(
            f"{column} has dtype {raw.dtype}; expected numbers, or text class labels",
            column=column,
        )
    text = np.char.strip(raw.astype(np.str_, copy=False)) if raw.dtype.kind == "U" else None
    if text is not None:
        empty = text == ""
        if empty.any():
            row, where = place.label(int(np.argmax(empty)), column)
            what = "a number" if task == "regression" else "a class label"
            raise DatasetError(f"{where} is empty; every row needs {what}", row=row, column=column)
        if task == "classification":
            names, y = np.unique(text, return_inverse=True)
            if not all(_is_number(str(v)) for v in names):
                return _checked_classes([str(n) for n in names], y, column)
            del names, y
    values = _numbers(raw if text is None else text, column, task, place)
    shown = text if text is not None else raw
    if task == "regression":
        bad = ~np.isfinite(values) | (np.abs(values) > _FLOAT32_MAX)
        if bad.any():
            i = int(np.argmax(bad))
            row, where = place.label(i, column)
            raise DatasetError(
                f"{where} is {str(shown[i])!r}; regression targets must be finite numbers "
                "within float32's range",
                row=row,
                column=column,
            )
        return values.astype(np.float32), None
    fractional = ~np.isfinite(values) | (values != np.round(values))
    if fractional.any():
        i = int(np.argmax(fractional))
        row, where = place.label(i, column)
        raise DatasetError(
            f"{where}: {str(shown[i])!r} is not a whole number, so it cannot name a class; "
            "task 'classification' takes text or integer labels (for a numeric target, "
            "upload with task=regression)",
            row=row,
            column=column,
        )
    unique, y = np.unique(values, return_inverse=True)
    return _checked_classes([str(int(v)) for v in unique], y, column)


def _checked_classes(
    names: list[str], y: NDArray[np.intp], column: str
) -> tuple[Labels, list[str] | None]:
    if len(names) < 2:
        raise DatasetError(
            f"label column {column!r} holds a single class ({names[0]!r}) in every row; "
            "classification needs at least 2 classes",
            column=column,
        )
    if len(names) > MAX_CLASSES:
        raise DatasetError(
            f"label column {column!r} has {len(names)} distinct values; classification "
            f"allows at most {MAX_CLASSES} classes (for a numeric target, upload with "
            "task=regression)",
            column=column,
        )
    return y.reshape(-1).astype(np.int64), names


def _numbers(
    raw: NDArray[np.generic], column: str, task: str, place: _Place
) -> NDArray[np.float64]:
    if raw.dtype.kind != "U":
        return raw.astype(np.float64)
    try:
        return np.fromiter(map(float, raw), dtype=np.float64, count=len(raw))
    except ValueError:
        pass
    for i, cell in enumerate(raw):
        if not _is_number(str(cell)):
            row, where = place.label(i, column)
            raise DatasetError(
                f"{where}: {str(cell)!r} is not a number; task {task!r} needs a number in "
                "every label cell",
                row=row,
                column=column,
            )
    raise AssertionError("unreachable: float() refused a cell and then accepted it")


# -- small checks -------------------------------------------------------------------------


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise DatasetError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")


def _check_bytes(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DatasetTooLargeError(f"the file has {size} bytes; the limit is {max_bytes} bytes")


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


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _shown(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN_COLUMNS])
    more = len(names) - _SHOWN_COLUMNS
    return shown + (f", ... ({more} more)" if more > 0 else "")
