"""CSV for the CLI: the feature rows `predict` reads and the series `metrics --csv` writes."""

from __future__ import annotations

import csv
import io

import pytest

from chainrule.cli.csvio import RowsError, metrics_csv, parse_feature_rows, series_csv


def test_rows_without_a_header() -> None:
    assert parse_feature_rows("0,1\n1,0\n") == [[0.0, 1.0], [1.0, 0.0]]


def test_a_first_line_with_a_non_number_is_a_header() -> None:
    text = "x1, x2\n0.5, -1e-3\n\n2,3\n"
    assert parse_feature_rows(text) == [[0.5, -0.001], [2.0, 3.0]]


def test_a_single_feature_per_row() -> None:
    assert parse_feature_rows("x\n1\n2\n") == [[1.0], [2.0]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no feature rows found"),
        ("a,b\n", "no feature rows found"),
        ("1,2\n3\n", "line 2 has 1 values; the first row has 2"),
        ("a,b\n1,2\n3,oops\n", "line 3, column 2: 'oops' is not a number"),
        ("1,nan\n", "line 1, column 2: 'nan' is not a finite number"),
        ("1,2\n3,inf\n", "line 2, column 2: 'inf' is not a finite number"),
    ],
)
def test_bad_rows_are_refused_naming_the_line(text: str, message: str) -> None:
    with pytest.raises(RowsError, match=message):
        parse_feature_rows(text)


def test_a_series_is_step_value_csv_with_diverged_values_left_empty() -> None:
    points: list[dict[str, object]] = [
        {"step": 1, "value": 0.5},
        {"step": 2, "value": None},
        {"step": 3, "value": 0.125},
    ]
    assert series_csv(points) == "step,value\n1,0.5\n2,\n3,0.125\n"


def test_float_values_survive_the_round_trip() -> None:
    value = 0.1 + 0.2
    rows = list(csv.reader(io.StringIO(series_csv([{"step": 1, "value": value}]))))
    assert float(rows[1][1]) == value


def test_the_whole_series_has_a_column_per_metric_with_a_value() -> None:
    points: list[dict[str, object]] = [
        {"step": 1, "time": 10.0, "loss": 0.9, "lr": 0.5},
        {"step": 2, "time": 11.0, "loss": None, "lr": 0.5, "eval_accuracy": 0.75},
        {"step": 3, "time": 12.0, "loss": 0.5, "lr": 0.5, "eval_r2": None},
    ]
    text = metrics_csv(["loss", "lr", "time"], points)
    assert text.splitlines() == [
        "step,loss,lr,time,eval_accuracy",
        "1,0.9,0.5,10.0,",
        "2,,0.5,11.0,0.75",
        "3,0.5,0.5,12.0,",
    ]  # eval_r2 has no value anywhere: no column
