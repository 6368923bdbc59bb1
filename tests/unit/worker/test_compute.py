"""The worker's arithmetic (one task's gradient from cached data and θ) and its retry
rule for transient RPC failures."""

from __future__ import annotations

import numpy as np
import pytest

from chainrule.data import Split, prepare
from chainrule.spec import JobSpec, ModelSpec
from chainrule.worker.compute import JobCache, build_cache, task_gradient
from tests.support.examples import example_spec

# (output, loss, output units) and the target a user means for each, built by hand from
# the spec's rule: the 0/1 label for one unit, the class index for cross_entropy, the
# one-hot row for bce and mse
HEADS = [
    pytest.param("sigmoid", "bce", 1, id="sigmoid-bce-1-unit"),
    pytest.param("softmax", "cross_entropy", 2, id="softmax-cross_entropy"),
    pytest.param("sigmoid", "bce", 2, id="sigmoid-bce-one-hot"),
    pytest.param("identity", "mse", 2, id="identity-mse-one-hot"),
]


def hand_targets(labels: np.ndarray, loss: str, units: int) -> np.ndarray:
    if loss == "cross_entropy":
        return labels
    if units == 1:
        return labels.astype(np.float32).reshape(-1, 1)
    one_hot = np.zeros((len(labels), units), dtype=np.float32)
    one_hot[np.arange(len(labels)), labels] = 1.0
    return one_hot


def make_cache(output: str = "sigmoid", loss: str = "bce", units: int = 1) -> JobCache:
    spec = JobSpec.model_validate(
        example_spec(
            model={"layers": [2, 8, units], "output": output, "loss": loss},
            dataset={"n_samples": 120},
        )
    )
    split = prepare("xor", spec.dataset.samples, spec.dataset.holdout, spec.training.seed)
    cache = build_cache(spec.model.model_dump_json(), split.to_bytes())
    cache.params = cache.net.init(np.random.default_rng(5))
    return cache


# -- task_gradient ----------------------------------------------------------------------


@pytest.mark.parametrize(("output", "loss", "units"), HEADS)
def test_task_gradient_is_the_networks_gradient_on_those_rows(
    output: str, loss: str, units: int
) -> None:
    cache = make_cache(output, loss, units)
    assert cache.params is not None
    rows = np.array([3, 0, 17, 17, 42, 95], dtype=np.int64)
    X = cache.split.X_train[rows]
    y = hand_targets(cache.split.y_train[rows], loss, units)
    want_loss, want_grads, want_layers = cache.net.loss_and_grad(
        cache.params, X, y, diagnostics=True
    )

    got = task_gradient(cache, rows)

    assert got.loss == want_loss
    assert got.samples == len(rows)
    assert list(got.grads) == list(want_grads)
    for name, g in want_grads.items():
        np.testing.assert_array_equal(got.grads[name], g)
        assert got.grads[name].dtype == np.float32
    assert got.layers == want_layers
    assert [d.layer for d in got.layers] == ["dense1", "dense2"]


def test_task_gradient_leaves_theta_and_the_data_unchanged() -> None:
    cache = make_cache()
    assert cache.params is not None
    theta = {k: v.copy() for k, v in cache.params.items()}
    X_train = cache.split.X_train.copy()
    task_gradient(cache, np.arange(10, dtype=np.int64))
    for name, p in theta.items():
        np.testing.assert_array_equal(cache.params[name], p)
    np.testing.assert_array_equal(cache.split.X_train, X_train)


@pytest.mark.parametrize(
    "rows",
    [
        pytest.param([0, 96], id="one-past-the-end"),
        pytest.param([-1, 3], id="negative"),
        pytest.param([], id="empty"),
    ],
)
def test_rows_outside_the_training_set_are_refused(rows: list[int]) -> None:
    cache = make_cache()  # 120 samples, 24 held out: 96 training rows
    assert len(cache.split.X_train) == 96
    with pytest.raises(ValueError, match=r"task rows must lie in \[0, 96\)"):
        task_gradient(cache, np.array(rows, dtype=np.int64))


def test_a_gradient_needs_theta_first() -> None:
    cache = make_cache()
    cache.params = None
    with pytest.raises(RuntimeError, match="θ has not been pulled"):
        task_gradient(cache, np.arange(4, dtype=np.int64))


def test_the_training_rows_are_checked_once_with_the_first_theta() -> None:
    cache = make_cache()
    task_gradient(cache, np.arange(4, dtype=np.int64))
    checked = cache.rows
    assert checked is not None and checked[0].dtype == np.float32
    task_gradient(cache, np.arange(4, 8, dtype=np.int64))
    assert cache.rows is checked  # not checked (or copied) again for the next task


def test_training_rows_that_are_not_finite_are_refused_at_the_first_task() -> None:
    cache = make_cache()
    cache.split.X_train[50, 1] = np.nan  # a row no task names yet
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(first in row 50\)"):
        task_gradient(cache, np.arange(4, dtype=np.int64))


def test_theta_of_the_wrong_shape_is_refused_before_any_arithmetic() -> None:
    cache = make_cache()
    assert cache.params is not None
    cache.params = {**cache.params, "dense1.W": np.zeros((3, 8), np.float32)}
    with pytest.raises(ValueError, match=r"param 'dense1.W' has shape \(3, 8\); expected \(2, 8\)"):
        task_gradient(cache, np.arange(4, dtype=np.int64))


# -- build_cache ------------------------------------------------------------------------


def test_build_cache_rebuilds_the_model_and_the_data_it_was_sent() -> None:
    model = ModelSpec.model_validate(
        {
            "layers": [2, 5, 3, 2],
            "activation": ["relu", "sigmoid"],
            "output": "softmax",
            "loss": "cross_entropy",
            "activation_derivative": False,
            "init": "he",
        }
    )
    split = prepare("moons", 50, 0.2, 3)

    cache = build_cache(model.model_dump_json(), split.to_bytes())

    net = cache.net
    assert net.layers == [2, 5, 3, 2]
    assert [f.name for f in net.hidden] == ["relu", "sigmoid"]
    assert (net.head.output, net.head.loss) == ("softmax", "cross_entropy")
    assert net.activation_derivative is False
    assert net.init_scheme == "he"
    for name in ("X_train", "y_train", "X_test", "y_test"):
        sent, got = getattr(split, name), getattr(cache.split, name)
        np.testing.assert_array_equal(got, sent)
        assert got.dtype == sent.dtype
    assert isinstance(cache.split, Split)
    assert cache.params is None and cache.version == -1  # θ is pulled separately
