"""Holdout metrics: accuracy for classifiers, MSE and R² for regression."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from chainrule.data import Split, evaluate
from chainrule.data.evaluation import regression_metrics
from chainrule.nn import MLP, Params


def f32(values: object) -> NDArray[np.float32]:
    return np.array(values, dtype=np.float32)


def i64(values: object) -> NDArray[np.int64]:
    return np.array(values, dtype=np.int64)


def linear_net(weights: list[float], bias: float) -> tuple[MLP, Params]:
    """A network with no hidden layer computing ŷ = x·w + b exactly."""
    net = MLP([len(weights), 1], "tanh", output="identity", loss="mse")
    params = {
        "dense1.W": f32(weights).reshape(len(weights), 1),
        "dense1.b": f32([bias]),
    }
    assert {k: v.shape for k, v in net.init(np.random.default_rng(0)).items()} == {
        k: v.shape for k, v in params.items()
    }
    return net, params


def regression_split(X_test: object, y_test: object) -> Split:
    X = f32(X_test)
    return Split(X, f32(y_test), X, f32(y_test))


def test_a_perfect_fit_has_r2_one_and_no_error() -> None:
    net, params = linear_net([2.0, -1.0], 0.5)
    X = [[0, 0], [1, 0], [0, 1], [2, 3]]
    y = [0.5, 2.5, -0.5, 1.5]

    metrics = evaluate(net, params, regression_split(X, y))

    assert set(metrics) == {"eval_loss", "eval_mse", "eval_r2"}
    assert metrics["eval_mse"] == pytest.approx(0, abs=1e-12)
    assert metrics["eval_r2"] == pytest.approx(1.0)
    assert metrics["eval_loss"] == pytest.approx(0, abs=1e-12)


def test_mse_is_the_mean_squared_error_and_the_loss_half_of_it() -> None:
    net, params = linear_net([1.0], 0.0)  # predicts x
    split = regression_split([[1], [2], [3], [4]], [2, 2, 2, 6])  # errors -1, 0, 1, -2

    metrics = evaluate(net, params, split)

    assert metrics["eval_mse"] == pytest.approx((1 + 0 + 1 + 4) / 4)
    assert metrics["eval_loss"] == pytest.approx(metrics["eval_mse"] / 2)
    # targets' mean is 3: Σ(y - ȳ)² = 1 + 1 + 1 + 9 = 12
    assert metrics["eval_r2"] == pytest.approx(1 - 6 / 12)


def test_predicting_the_mean_scores_r2_zero_and_worse_is_negative() -> None:
    actual = np.array([1.0, 2.0, 3.0])
    assert regression_metrics(np.full(3, 2.0), actual)["eval_r2"] == pytest.approx(0.0)
    assert regression_metrics(np.array([3.0, 2.0, 1.0]), actual)["eval_r2"] == pytest.approx(-3.0)


def test_constant_targets_give_r2_one_only_for_an_exact_fit() -> None:
    actual = np.full(4, 5.0)
    assert regression_metrics(actual.copy(), actual) == {"eval_mse": 0.0, "eval_r2": 1.0}
    assert regression_metrics(actual + 1, actual) == {"eval_mse": 1.0, "eval_r2": 0.0}


def test_a_diverged_network_reports_non_finite_metrics_instead_of_raising() -> None:
    metrics = regression_metrics(np.array([np.nan, 1.0]), np.array([0.0, 1.0]))
    assert np.isnan(metrics["eval_mse"]) and np.isnan(metrics["eval_r2"])


def test_classification_reports_loss_and_accuracy() -> None:
    net = MLP([2, 3], "tanh", output="softmax", loss="cross_entropy")
    params = {"dense1.W": np.zeros((2, 3), np.float32), "dense1.b": f32([0, 5, 0])}
    X = np.zeros((4, 2), dtype=np.float32)
    split = Split(X, i64([1, 1, 0, 2]), X, i64([1, 1, 0, 2]))

    metrics = evaluate(net, params, split)

    assert set(metrics) == {"eval_loss", "eval_accuracy"}
    assert metrics["eval_accuracy"] == 0.5
    p_right = np.exp(5) / (np.exp(5) + 2)
    p_wrong = 1 / (np.exp(5) + 2)
    expected = -(2 * np.log(p_right) + 2 * np.log(p_wrong)) / 4
    assert metrics["eval_loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("rows", [1, 7, 64])
def test_evaluating_in_chunks_gives_the_metrics_of_one_pass(rows: int) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(101, 4)).astype(np.float32)
    classifier = MLP([4, 8, 3], "tanh", output="softmax", loss="cross_entropy")
    labels = rng.integers(0, 3, size=101)
    params = classifier.init(rng)
    split = Split(X, labels, X, labels)
    whole, chunked = evaluate(classifier, params, split), evaluate(classifier, params, split, rows)
    assert chunked["eval_accuracy"] == whole["eval_accuracy"]
    assert chunked["eval_loss"] == pytest.approx(whole["eval_loss"], rel=1e-6)
    regressor = MLP([4, 8, 1], "tanh", output="identity", loss="mse")
    params = regressor.init(rng)
    split = regression_split(X, rng.normal(size=101))
    whole, chunked = evaluate(regressor, params, split), evaluate(regressor, params, split, rows)
    assert chunked == pytest.approx(whole, rel=1e-6)
