"""Datasets by name or upload: generated and bundled sets, splits, standardization."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from chainrule.data import (
    DATASETS,
    GENERATED,
    INFO,
    Split,
    make_dataset,
    parse_csv,
    prepare,
    prepare_dataset,
    standardize,
    targets,
)
from chainrule.data.synthetic import BLOB_CENTRES, LINEAR_BIAS, LINEAR_WEIGHTS
from chainrule.spec import DatasetSpec


def f32(values: object) -> NDArray[np.float32]:
    return np.array(values, dtype=np.float32)


def i64(values: object) -> NDArray[np.int64]:
    return np.array(values, dtype=np.int64)


def no_uploads(upload_id: str) -> bytes:
    raise AssertionError(f"a built-in set fetched upload {upload_id!r}")


@pytest.mark.parametrize("name", GENERATED)
def test_generated_sets_are_deterministic_in_their_seed(name: str) -> None:
    X, y = make_dataset(name, 200, np.random.default_rng(7))
    X_again, y_again = make_dataset(name, 200, np.random.default_rng(7))
    X_other, _ = make_dataset(name, 200, np.random.default_rng(8))

    assert X.shape == (200, INFO[name].features) and X.dtype == np.float32 and y.shape == (200,)
    np.testing.assert_array_equal(X, X_again)
    np.testing.assert_array_equal(y, y_again)
    assert not np.array_equal(X, X_other)
    if INFO[name].classes is None:
        assert y.dtype == np.float32
    else:
        assert y.dtype == np.int64 and set(np.unique(y)) == set(range(INFO[name].classes or 0))


def test_circles_put_class_1_inside_class_0() -> None:
    X, y = make_dataset("circles", 2000, np.random.default_rng(0))
    radius = np.linalg.norm(X, axis=1)
    assert radius[y == 1].max() < radius[y == 0].min()  # noise 0.05 around radii 0.5 and 1


def test_blobs_cluster_around_their_three_centres() -> None:
    X, y = make_dataset("blobs", 3000, np.random.default_rng(0))
    for k, centre in enumerate(BLOB_CENTRES):
        np.testing.assert_allclose(X[y == k].mean(axis=0), centre, atol=0.1)


def test_linear_is_its_weights_plus_small_noise() -> None:
    X, y = make_dataset("linear", 5000, np.random.default_rng(0))
    residual = y - (X.astype(np.float64) @ LINEAR_WEIGHTS + LINEAR_BIAS)
    assert abs(residual.mean()) < 0.01 and 0.09 < residual.std() < 0.11
    coefficients, *_ = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)
    np.testing.assert_allclose(coefficients, [*LINEAR_WEIGHTS, LINEAR_BIAS], atol=0.01)


@pytest.mark.parametrize(
    ("name", "rows"), [("digits", 1797), ("iris", 150), ("breast_cancer", 569)]
)
def test_bundled_sets_load_whole_and_split_by_seed(name: str, rows: int) -> None:
    split = prepare(name, n_samples=0, holdout=0.2, seed=3)
    again = prepare(name, n_samples=0, holdout=0.2, seed=3)

    assert len(split.X_train) + len(split.X_test) == rows
    assert len(split.X_test) == round(0.2 * rows)
    assert split.X_train.shape[1] == INFO[name].features and split.task == "classification"
    assert set(np.unique(np.r_[split.y_train, split.y_test])) == set(range(INFO[name].classes or 0))
    np.testing.assert_array_equal(split.X_test, again.X_test)


def test_every_name_loads() -> None:
    for name in DATASETS:
        split = prepare(name, n_samples=40, holdout=0.25, seed=0)
        assert split.X_train.shape[1] == INFO[name].features


def test_standardize_uses_the_training_rows_statistics_only() -> None:
    X_train = f32([[1, 10, 5], [3, 30, 5], [5, 50, 5]])
    X_test = f32([[100, -1000, 7]])
    split = Split(X_train, i64([0, 1, 0]), X_test, i64([1]))

    scaled = standardize(split)

    np.testing.assert_allclose(scaled.X_train.mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(scaled.X_train[:, :2].std(axis=0), 1, atol=1e-6)
    std = np.sqrt(8 / 3)  # of 1, 3, 5 (population)
    expected = [(100 - 3) / std, (-1000 - 30) / (10 * std), 7 - 5]  # constant column: centred
    np.testing.assert_allclose(scaled.X_test[0], expected, rtol=1e-6)
    assert scaled.X_train.dtype == scaled.X_test.dtype == np.float32
    assert scaled.y_train is split.y_train and scaled.y_test is split.y_test


def test_prepare_dataset_by_name_is_prepare_and_can_standardize() -> None:
    spec = DatasetSpec(name="breast_cancer", holdout=0.25)
    plain = prepare_dataset(spec, seed=5, fetch_upload=no_uploads)
    reference = prepare("breast_cancer", 0, 0.25, 5)
    np.testing.assert_array_equal(plain.X_train, reference.X_train)
    np.testing.assert_array_equal(plain.y_test, reference.y_test)
    assert plain.X_train.max() > 1000  # raw units

    scaled = prepare_dataset(spec.model_copy(update={"standardize": True}), 5, no_uploads)
    np.testing.assert_allclose(scaled.X_train.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_array_equal(scaled.y_train, plain.y_train)


def test_prepare_dataset_by_upload_id_splits_the_uploaded_rows() -> None:
    rows = "\n".join(f"{i},{i * i % 7},{'ab'[i % 2]}" for i in range(50))
    stored = parse_csv(f"a,b,label\n{rows}\n".encode(), "label").to_bytes()
    fetched: list[str] = []

    def fetch(upload_id: str) -> bytes:
        fetched.append(upload_id)
        return stored

    spec = DatasetSpec(id="3f9a2c71d04e8b15", holdout=0.2, standardize=True)
    split = prepare_dataset(spec, seed=1, fetch_upload=fetch)

    assert fetched == ["3f9a2c71d04e8b15"]
    assert (len(split.X_train), len(split.X_test)) == (40, 10) == spec.split_sizes(50)
    np.testing.assert_allclose(split.X_train.mean(axis=0), 0, atol=1e-5)
    assert sorted(np.r_[split.y_train, split.y_test].tolist()) == [0] * 25 + [1] * 25
    again = prepare_dataset(spec, seed=1, fetch_upload=fetch)
    np.testing.assert_array_equal(split.X_test, again.X_test)


def test_a_deleted_upload_is_a_bad_dataset() -> None:
    def gone(upload_id: str) -> bytes:
        raise KeyError(upload_id)

    with pytest.raises(ValueError, match="no uploaded dataset 'abc'"):
        prepare_dataset(DatasetSpec(id="abc"), seed=0, fetch_upload=gone)


def test_regression_splits_keep_float_targets_through_bytes() -> None:
    split = prepare("linear", 100, 0.2, seed=0)
    again = Split.from_bytes(split.to_bytes())
    assert split.task == again.task == "regression" and again.y_train.dtype == np.float32
    np.testing.assert_array_equal(again.y_test, split.y_test)


def test_targets_of_a_regression_split_are_the_values_for_one_unit() -> None:
    y = f32([0.5, -2.0])
    np.testing.assert_array_equal(targets(y, 1, "mse"), y)
    with pytest.raises(ValueError, match="regression targets need exactly 1 output unit"):
        targets(y, 2, "mse")
    np.testing.assert_array_equal(targets(i64([1, 0]), 2, "mse"), [[0, 1], [1, 0]])
