"""The lab's configuration and runs: what it refuses, that it trains exactly as
``chainrule.nn.train`` does, and what a run reports."""

import numpy as np
import pytest

from chainrule.lab.config import LabConfig, make_split
from chainrule.lab.experiments import Curve, Run, fit, linear_map, run_one
from chainrule.nn import MLP, Schedule
from chainrule.nn.train import train


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("datasets", ("xor", "circles"), "unknown dataset 'circles'"),
        ("hidden", (16, 0), "hidden must list one or more positive sizes"),
        ("targets", (1.5,), "targets must be accuracies in (0, 1]"),
        ("steps", 0, "steps must be >= 1"),
    ],
)
def test_lab_config_names_the_bad_value(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("]", r"\]")):
        LabConfig(**{field: value})  # type: ignore[arg-type]


def test_fit_trains_exactly_like_nn_train() -> None:
    cfg = LabConfig(steps=60)
    data = make_split(cfg, "moons")
    net = MLP(cfg.layers, "tanh", "sigmoid", "bce")
    params = net.init(np.random.default_rng(0))
    ours, curve = fit(net, params, data, cfg, np.random.default_rng(1))
    X, y, rng = data.X_train, data.y_train, np.random.default_rng(1)
    reference, _ = train(
        net, params, X, y, cfg.optimizer, cfg.schedule, cfg.steps, cfg.batch_size, rng
    )
    for key in reference:
        np.testing.assert_array_equal(ours[key], reference[key])
    assert curve.steps == [0, 10, 20, 30, 40, 50, 60]


def test_steps_to_is_the_first_measurement_at_or_above_the_target() -> None:
    curve = Curve(steps=[0, 10, 20, 30], holdout_accuracy=[0.5, 0.96, 0.9, 1.0])
    curve.train_loss, curve.train_accuracy = [0.7] * 4, [0.5] * 4
    run = Run("xor", "tanh", True, curve, params={})
    assert run.steps_to(0.95) == 10
    assert run.steps_to(1.0) == 30
    assert run.steps_to(0.99) == 30
    never = Curve(steps=[0], holdout_accuracy=[0.5])
    assert Run("xor", "tanh", True, never, params={}).steps_to(0.9) is None


@pytest.mark.parametrize("eval_every", [1, 10])
def test_a_diverged_run_reports_no_final_numbers(eval_every: int) -> None:
    """lr 1e30 blows up after one update: the whole-training loss at the next measurement
    (every step) or the next minibatch's loss (every 10) is the first to say so."""
    cfg = LabConfig(datasets=("xor",), steps=30, eval_every=eval_every, schedule=Schedule(lr=1e30))
    run = run_one(cfg, make_split(cfg, "xor"), "xor", "relu", derivative=True)
    assert run.diverged and run.curve.diverged_after == 1
    assert run.curve.steps == [0]
    assert np.isnan(run.final_loss) and np.isnan(run.holdout_accuracy)


def test_identity_layers_multiply_out_to_one_linear_map() -> None:
    net = MLP([2, 5, 7, 3, 1], "identity", "sigmoid", "bce")
    params = net.init(np.random.default_rng(0), np.float64)
    params = {k: v + 0.1 for k, v in params.items()}  # non-zero biases too
    X = np.random.default_rng(1).normal(size=(20, 2))
    W, b = linear_map(params)
    assert W.shape == (2, 1) and b.shape == (1,)
    np.testing.assert_allclose(net.predict(params, X), 1 / (1 + np.exp(-(X @ W + b))), rtol=1e-12)
