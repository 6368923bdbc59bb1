"""Parsing uploaded CSV and NPZ files: what is accepted, and that every refusal names the
problem and where it is."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from chainrule.data.csv_upload import csv_columns, parse_csv
from chainrule.data.npz_upload import parse_npz
from chainrule.data.uploads import DatasetError, DatasetTooLargeError, ParsedDataset


def f32(values: object) -> NDArray[np.float32]:
    return np.array(values, dtype=np.float32)


def i64(values: object) -> NDArray[np.int64]:
    return np.array(values, dtype=np.int64)


def npz(**arrays: Any) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def refused(data: bytes, label: str = "label", **options: Any) -> DatasetError:
    with pytest.raises(DatasetError) as caught:
        parse_csv(data, label, **options)
    return caught.value


# -- CSV: accepted ------------------------------------------------------------------------


def test_text_labels_become_classes_in_sorted_order() -> None:
    data = b"width,height,label\n1.5,2,dog\n3,-4e-1,cat\n\n5,6,dog\n"

    parsed = parse_csv(data, "label")

    assert parsed.X.dtype == np.float32 and parsed.y.dtype == np.int64
    np.testing.assert_array_equal(parsed.X, f32([[1.5, 2], [3, -0.4], [5, 6]]))
    assert parsed.classes == ["cat", "dog"] and parsed.y.tolist() == [1, 0, 1]
    assert (parsed.feature_names, parsed.label, parsed.task) == (
        ["width", "height"],
        "label",
        "classification",
    )


def test_integer_labels_sort_numerically_and_the_label_may_be_any_column() -> None:
    data = b"label,x\n10,1\n9,2\n1.0,3\n 9 ,4\n"

    parsed = parse_csv(data, "label")

    assert parsed.classes == ["1", "9", "10"] and parsed.y.tolist() == [2, 1, 0, 1]
    assert parsed.X[:, 0].tolist() == [1, 2, 3, 4] and parsed.feature_names == ["x"]


def test_regression_keeps_the_targets_as_floats() -> None:
    parsed = parse_csv(b"x,y\n1,0.25\n2,-3.5\n", "y", task="regression")
    assert parsed.task == "regression" and parsed.classes is None
    assert parsed.y.dtype == np.float32 and parsed.y.tolist() == [0.25, -3.5]


def test_a_byte_order_mark_crlf_lines_and_quoted_cells_are_fine() -> None:
    data = '\ufeffa,"b, quoted",label\r\n1,2,"x, y"\r\n3,4,z\r\n'.encode()
    parsed = parse_csv(data, "label")
    assert parsed.feature_names == ["a", "b, quoted"] and parsed.classes == ["x, y", "z"]


def test_a_parsed_dataset_survives_its_storage_format() -> None:
    for parsed in (
        parse_csv(b"a,label\n1,x\n2,y\n", "label"),
        parse_csv(b"a,label\n1,0.5\n2,7\n", "label", task="regression"),
    ):
        again = ParsedDataset.from_bytes(parsed.to_bytes())
        np.testing.assert_array_equal(again.X, parsed.X)
        np.testing.assert_array_equal(again.y, parsed.y)
        assert again.y.dtype == parsed.y.dtype
        assert (again.classes, again.feature_names, again.label) == (
            parsed.classes, parsed.feature_names, parsed.label,
        )  # fmt: skip


# -- CSV: refused, each naming row and column ----------------------------------------------


@pytest.mark.parametrize(
    ("data", "row", "column", "message"),
    [
        (b"", None, None, "the file is empty; expected a header row"),
        (b" \n\n", None, None, "the file is empty"),
        (b"1,2,3\n4,5,6\n", 1, None,
         "row 1 holds numbers (1, 2, 3), not column names; the first row must be a header"),
        (b"a,b,c\n1,2,3\n4,5,6\n", 1, "label",
         "no column named 'label' to use as the label; the columns are: a, b, c"),
        (b"a,a,label\n1,2,x\n", 1, "a", "column name 'a' appears twice (columns 1 and 2)"),
        (b"a,,label\n1,2,x\n", 1, None, "row 1 (the header): column 2 has no name"),
        (b"label\nx\ny\n", 1, "label", "only the label column 'label'; at least one feature"),
        (b"a,b,label\n", 1, None, "the file has a header (row 1) but no data rows"),
        (b"a,b,label\n1,2,x\n", None, None, "the file has 1 data row; at least 2 are needed"),
        (b"a,b,label\n1,2,x\n3,y\n", 3, "label",
         "row 3 has 2 cells but the header has 3 columns (column 'label' onwards is missing)"),
        (b"a,b,label\n1,2,x\n3,4,y,5,6\n", 3, None,
         "row 3 has 5 cells but the header has 3 columns (2 cells beyond the last column)"),
        (b"a,b,label\n1,2,x\n\n3,abc,y\n", 4, "b",
         "row 4, column 'b': 'abc' is not a number; feature columns must hold numbers only"),
        (b"a,b,label\n1,2,x\n3, ,y\n", 3, "b",
         "row 3, column 'b' is empty; every feature cell needs a number (missing values"),
        (b"a,b,label\n1,2,x\n3,NaN,y\n", 3, "b",
         "row 3, column 'b' is 'NaN': NaN and infinity are not allowed; every feature must be"),
        (b"a,b,label\n1,-inf,x\n3,4,y\n", 2, "b", "row 2, column 'b' is '-inf': NaN and infinity"),
        (b"a,b,label\n1,2,x\n3e39,4,y\n", 3, "a",
         "row 3, column 'a' is '3e39': that is beyond float32's range"),
        (b'a,b,label\n1,2,x\n3,4,"y\n', 3, None, "row 3: the CSV quoting is malformed"),
        ("a,label\n1,caf\xe9\n".encode("latin-1"), 2, None,
         "row 2: byte 13 (0xe9) is not UTF-8 text; save the CSV as UTF-8"),
        (b"a,b,label\n1,2,x\n3,4,\n", 3, "label",
         "row 3, column 'label' is empty; every row needs a class label"),
        (b"a,label\n1,x\n2,x\n", None, "label",
         "label column 'label' holds a single class ('x') in every row; classification needs"),
        (b"a,label\n1,0\n2,0.5\n", 3, "label",
         "row 3, column 'label': '0.5' is not a whole number, so it cannot name a class"),
        (b'a,b,"label"\n1,2,"x"\n"3",4,y\n"5",6,"y"\n"7",8,"x"\n"nine",10,y\n', 6, "a",
         "row 6, column 'a': 'nine' is not a number"),
    ],
)  # fmt: skip
def test_each_malformed_csv_is_refused_saying_where(
    data: bytes, row: int | None, column: str | None, message: str
) -> None:
    error = refused(data)
    assert message in str(error)
    assert (error.row, error.column) == (row, column)
    assert not isinstance(error, DatasetTooLargeError)


def test_a_quoted_cell_spanning_lines_does_not_shift_the_row_numbers_it_reports() -> None:
    error = refused(b'a,label\n1,"two\nlines"\nx,y\n')
    assert (error.row, error.column) == (4, "a") and "row 4, column 'a'" in str(error)


@pytest.mark.parametrize(
    ("data", "row", "message"),
    [
        (b"a,label\n1,0.5\n2,high\n", 3, "row 3, column 'label': 'high' is not a number; task "
         "'regression' needs a number in every label cell"),
        (b"a,label\n1,0.5\n2,inf\n", 3, "row 3, column 'label' is 'inf'; regression targets "
         "must be finite numbers"),
    ],
)  # fmt: skip
def test_regression_labels_must_be_finite_numbers(data: bytes, row: int, message: str) -> None:
    error = refused(data, task="regression")
    assert message in str(error) and (error.row, error.column) == (row, "label")


def test_an_unknown_task_is_refused_with_the_choices() -> None:
    error = refused(b"a,label\n1,x\n2,y\n", task="ranking")
    assert str(error) == "unknown task 'ranking'; expected one of: classification, regression"


@pytest.mark.parametrize(
    ("limits", "row", "message"),
    [
        ({"max_bytes": 20}, None, "the file has 28 bytes; the limit is 20 bytes"),
        ({"max_rows": 2}, 5, "the file has 3 data rows (row 5 is the first one too many); "
         "the limit is 2"),
        ({"max_features": 1}, 1, "the file has 2 feature columns; the limit is 1"),
    ],
)  # fmt: skip
def test_a_csv_over_a_limit_is_too_large(
    limits: dict[str, int], row: int | None, message: str
) -> None:
    error = refused(b"a,b,label\n1,2,x\n\n3,4,y\n5,6,x", "label", **limits)
    assert isinstance(error, DatasetTooLargeError)
    assert str(error) == message and error.row == row


def test_a_header_too_wide_is_refused_before_its_names_are_checked() -> None:
    """The width comes first: 100,000 columns (one name twice, at the end) are refused
    as too many, not scanned pair by pair for duplicates."""
    names = [f"c{i}" for i in range(100_000)] + ["c0", "label"]
    data = (",".join(names) + "\n" + ",".join("1" * len(names)) + "\n").encode()
    error = refused(data, "label")
    assert isinstance(error, DatasetTooLargeError)
    assert str(error) == "the file has 100001 feature columns; the limit is 8192"
    duplicate = refused(b"a,b,a,label\n1,2,3,x\n4,5,6,y\n", "label")
    assert "column name 'a' appears twice (columns 1 and 3)" in str(duplicate)


def test_csv_columns_lists_the_header_for_messages() -> None:
    assert csv_columns(b"\n a , b,label\n1,2,3\n") == ["a", "b", "label"]
    assert csv_columns(b"") == []


# -- NPZ ----------------------------------------------------------------------------------


def test_an_npz_archive_of_x_and_y_is_accepted() -> None:
    parsed = parse_npz(npz(X=np.arange(6).reshape(3, 2), y=np.array([7, 3, 7])))
    assert parsed.X.dtype == np.float32 and parsed.X.shape == (3, 2)
    assert parsed.classes == ["3", "7"] and parsed.y.tolist() == [1, 0, 1]
    assert (parsed.feature_names, parsed.label) == (["x0", "x1"], "y")

    text_labels = parse_npz(npz(X=np.ones((2, 1)), y=np.array(["b", "a"])))
    assert text_labels.classes == ["a", "b"] and text_labels.y.tolist() == [1, 0]

    regression = parse_npz(npz(X=np.ones((2, 1)), y=np.array([0.5, 2.0])), task="regression")
    assert regression.classes is None and regression.y.tolist() == [0.5, 2.0]


@pytest.mark.parametrize(
    ("data", "row", "column", "message"),
    [
        (b"not a zip", None, None, "the file is not an NPZ archive"),
        (npz(A=np.ones((2, 2)), y=np.ones(2)), None, None,
         "the NPZ archive holds A, y; expected exactly two arrays, X and y"),
        (npz(X=np.ones(3), y=np.ones(3)), None, "X",
         "X has shape (3,); expected 2 dimensions (rows, features)"),
        (npz(X=np.ones((3, 2)), y=np.ones(2)), None, "y",
         "y has shape (2,); expected (3,), one target per row of X"),
        (npz(X=np.ones((1, 2)), y=np.ones(1)), None, None, "X has 1 rows; at least 2 are needed"),
        (npz(X=np.array([["a", "b"], ["c", "d"]]), y=np.ones(2)), None, "X",
         "X has dtype <U1; expected numbers"),
        (npz(X=np.array([[1.0, 2.0], [3.0, np.nan]]), y=np.array([0, 1])), 1, "x1",
         "X[1, 1] is nan: NaN and infinity are not allowed"),
        (npz(X=np.array([[1, None], [2, 3]], dtype=object), y=np.array([0, 1])), None, "X",
         "array X cannot be read"),
        (npz(X=np.ones((3, 2)), y=np.array([0, 1, 2.5])), 2, "y",
         "y[2]: '2.5' is not a whole number, so it cannot name a class"),
        (npz(X=np.ones((2, 2)), y=np.array([1, 1])), None, "y",
         "label column 'y' holds a single class ('1') in every row"),
    ],
)  # fmt: skip
def test_each_malformed_npz_is_refused_saying_where(
    data: bytes, row: int | None, column: str | None, message: str
) -> None:
    with pytest.raises(DatasetError) as caught:
        parse_npz(data)
    assert message in str(caught.value)
    assert (caught.value.row, caught.value.column) == (row, column)


def test_an_npz_header_that_lies_about_its_shape_is_refused_before_allocating() -> None:
    """X.npy's header claims 64 GB; the archive holds 192 bytes for it."""
    real = io.BytesIO()
    np.lib.format.write_array(real, np.zeros((4, 2)))
    header = np.lib.format.header_data_from_array_1_0(np.zeros((4, 2)))
    header["shape"] = (1_000_000, 8000)
    lying = io.BytesIO()
    np.lib.format.write_array_header_1_0(lying, header)
    lying.write(real.getvalue()[-64:])  # the 4 × 2 float64 data
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("X.npy", lying.getvalue())
        z.writestr("y.npy", _npy_bytes(np.zeros(4)))
    with pytest.raises(DatasetError) as caught:
        parse_npz(archive.getvalue())
    assert str(caught.value) == (
        "array X's header claims shape (1000000, 8000) of float64 (64000000000 bytes), but "
        "the archive holds 192 bytes for it; save it with np.savez"
    )
    assert caught.value.column == "X"


def _npy_bytes(array: NDArray[Any]) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, array)
    return out.getvalue()


def test_an_npz_that_unpacks_beyond_the_limit_is_too_large() -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, X=np.zeros((1000, 100)), y=np.zeros(1000))
    data = buffer.getvalue()
    assert len(data) < 10_000  # zeros compress well: the limit must hold unpacked

    with pytest.raises(
        DatasetTooLargeError, match=r"X and y take \d+ bytes uncompressed; the limit is 10000 bytes"
    ):
        parse_npz(data, max_bytes=10_000)


@pytest.mark.parametrize("features", [2, 64, 2000])
def test_a_csv_is_parsed_in_memory_a_small_multiple_of_the_file(features: int) -> None:
    """Read as a stream, converted a chunk of rows at a time: the Python allocations at
    their peak (tracemalloc) stay under 5x the file, however it is shaped (it was 18x)."""
    rng = np.random.default_rng(0)
    rows = max(20, 2_000_000 // (features * 8))
    X = rng.standard_normal((rows, features))
    header = ",".join([f"x{j}" for j in range(features)] + ["label"])
    lines = [",".join(f"{v:.4f}" for v in r) + f",c{i % 3}" for i, r in enumerate(X)]
    data = ("\n".join([header, *lines]) + "\n").encode()
    tracemalloc.start()
    try:
        parsed = parse_csv(data, "label", max_bytes=len(data))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parsed.X.shape == (rows, features)
    np.testing.assert_allclose(parsed.X, X, atol=5e-5)
    assert parsed.classes == ["c0", "c1", "c2"]
    assert peak < 5 * len(data), peak / len(data)
