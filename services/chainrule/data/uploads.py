"""User datasets: what every upload must be, whatever its format; the readers are
:mod:`chainrule.data.csv_upload` (:func:`~chainrule.data.csv_upload.parse_csv`) and
:mod:`chainrule.data.npz_upload` (:func:`~chainrule.data.npz_upload.parse_npz`).

Pure functions of the uploaded bytes; storing the result is :mod:`chainrule.store.datasets`'
job. Every refusal is a :class:`DatasetError` (a ``ValueError``) whose message names the
problem, where it is and what is allowed, and which carries ``row`` and ``column``.

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

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from chainrule.npz import npz_bytes

TASKS = ("classification", "regression")
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_ROWS = 1_000_000
MAX_FEATURES = 8192  # the widest input layer a job spec allows
MAX_CLASSES = 1000
MIN_ROWS = 2  # one row to train on, one to hold out
FLOAT32_MAX = float(np.finfo(np.float32).max)

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
        arrays = {
            "X": self.X,
            "y": self.y,
            "classes": np.array(self.classes or [], dtype=np.str_),
            "feature_names": np.array(self.feature_names, dtype=np.str_),
            "label": np.array(self.label, dtype=np.str_),
            "task": np.array(self.task, dtype=np.str_),
        }
        return npz_bytes(arrays, compressed=True)

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


# -- cells and targets, as every format checks them ---------------------------------------


@dataclass(frozen=True)
class Place:
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

    def label_error(self, i: int, column: str, says: Callable[[str], str]) -> DatasetError:
        """The error about label cell ``i``: ``says(where the cell is)``."""
        row, where = self.label(i, column)
        return DatasetError(says(where), row=row, column=column)

    def refuse_labels(
        self, bad: NDArray[np.bool_], column: str, says: Callable[[str, int], str]
    ) -> None:
        """Refuse the labels if any is ``bad``: the first one's error, ``says(where, i)``."""
        if bad.any():
            i = int(np.argmax(bad))
            raise self.label_error(i, column, lambda where: says(where, i))


def finite_float32(values: NDArray[np.float64], place: Place) -> NDArray[np.float32]:
    """``values`` as float32, refusing NaN, infinity and what float32 cannot hold."""
    bad = ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX)
    if bad.any():
        i, j = (int(k) for k in np.argwhere(bad)[0])
        row, column, where = place.feature(i, j)
        shown = repr(place.cells[j][i].strip()) if place.csv else str(values[i, j])
        problem = (
            "NaN and infinity are not allowed"
            if not np.isfinite(values[i, j])
            else f"that is beyond float32's range (±{FLOAT32_MAX:.4g})"
        )
        raise DatasetError(
            f"{where} is {shown}: {problem}; every feature must be a finite number",
            row=row,
            column=column,
        )
    return values.astype(np.float32)


def parse_targets(
    raw: NDArray[np.generic], column: str, task: str, place: Place
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
            if not all(is_number(str(v)) for v in names):
                return _checked_classes([str(n) for n in names], y, column)
            del names, y
    values = _numbers(raw if text is None else text, column, task, place)
    shown = text if text is not None else raw
    if task == "regression":
        place.refuse_labels(
            ~np.isfinite(values) | (np.abs(values) > FLOAT32_MAX),
            column,
            lambda where, i: (
                f"{where} is {str(shown[i])!r}; regression targets must be "
                "finite numbers within float32's range"
            ),
        )
        return values.astype(np.float32), None
    place.refuse_labels(
        ~np.isfinite(values) | (values != np.round(values)),
        column,
        lambda where, i: (
            f"{where}: {str(shown[i])!r} is not a whole number, so it cannot "
            "name a class; task 'classification' takes text or integer labels (for a "
            "numeric target, upload with task=regression)"
        ),
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


def _numbers(raw: NDArray[np.generic], column: str, task: str, place: Place) -> NDArray[np.float64]:
    if raw.dtype.kind != "U":
        return raw.astype(np.float64)
    try:
        return np.fromiter(map(float, raw), dtype=np.float64, count=len(raw))
    except ValueError:
        pass
    bad = next((i for i, cell in enumerate(raw) if not is_number(str(cell))), None)
    if bad is None:
        raise AssertionError("unreachable: float() refused a cell that is a number")
    raise place.label_error(
        bad,
        column,
        lambda where: (
            f"{where}: {str(raw[bad])!r} is not a number; task {task!r} needs "
            "a number in every label cell"
        ),
    )


# -- small checks -------------------------------------------------------------------------


def check_task(task: str) -> None:
    if task not in TASKS:
        raise DatasetError(f"unknown task {task!r}; expected one of: {', '.join(TASKS)}")


def check_bytes(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise DatasetTooLargeError(f"the file has {size} bytes; the limit is {max_bytes} bytes")


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
