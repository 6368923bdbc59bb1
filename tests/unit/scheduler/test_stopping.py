"""The stop rules: divergence, last step, target, runtime, early stopping."""

from __future__ import annotations

import math
from typing import Any

import pytest

from chainrule.scheduler.stopping import StopState, check
from chainrule.spec import JobSpec, TrainingSpec
from tests.support.examples import example_spec


def training(**fields: Any) -> TrainingSpec:
    return JobSpec.model_validate(example_spec(training=fields)).training


def point(step: int, loss: float = 0.5, **extra: float) -> dict[str, Any]:
    return {"step": step, "loss": loss, **extra}


def test_a_job_goes_on_until_its_last_step() -> None:
    state = StopState(started=0.0)
    assert check(training(), 10, state, point(9), now=1.0) is None
    stop = check(training(), 10, state, point(10), now=1.0)
    assert stop is not None and stop.status == "SUCCEEDED" and "trained 10 steps" in stop.message


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_a_non_finite_loss_fails_with_step_and_value(loss: float) -> None:
    stop = check(training(), 100, StopState(0.0), point(7, loss), now=0.0)
    assert stop is not None and stop.status == "FAILED"
    assert stop.message == f"diverged: loss became {loss} at step 7"


def test_an_exploding_loss_fails_relative_to_the_first_step() -> None:
    state = StopState(0.0)
    assert check(training(), 100, state, point(1, 0.7), now=0.0) is None
    assert check(training(), 100, state, point(2, 900.0), now=0.0) is None  # under the floor
    stop = check(training(), 100, state, point(3, 1e5), now=0.0)
    assert stop is not None and stop.status == "FAILED"
    assert "diverged: loss 1e+05 at step 3 exceeds" in stop.message


@pytest.mark.parametrize(
    ("target", "evals", "reached"),
    [
        ({"eval_accuracy": 0.9}, {"eval_loss": 0.3, "eval_accuracy": 0.91}, True),
        ({"eval_accuracy": 0.9}, {"eval_loss": 0.3, "eval_accuracy": 0.89}, False),
        ({"eval_loss": 0.1}, {"eval_loss": 0.1, "eval_accuracy": 0.5}, True),
        ({"eval_loss": 0.1}, {"eval_loss": 0.11, "eval_accuracy": 0.99}, False),
    ],
)
def test_a_target_ends_the_job_early(target: dict, evals: dict, reached: bool) -> None:
    stop = check(training(target=target), 100, StopState(0.0), point(20, **evals), now=0.0)
    if reached:
        assert stop is not None and stop.status == "SUCCEEDED"
        assert stop.message.startswith("target reached at step 20")
    else:
        assert stop is None


def test_max_runtime_ends_the_job() -> None:
    rules = training(max_runtime_s=5.0)
    assert check(rules, 100, StopState(started=10.0), point(3), now=14.9) is None
    stop = check(rules, 100, StopState(started=10.0), point(4), now=15.0)
    assert stop is not None and stop.status == "SUCCEEDED" and "max_runtime_s 5" in stop.message


def test_early_stopping_counts_evaluations_without_improvement() -> None:
    rules = training(early_stopping={"patience": 2, "min_delta": 0.01})
    state = StopState(0.0)
    losses = [0.50, 0.40, 0.395, 0.41]  # 0.395 is not better by more than min_delta
    stops = [
        check(rules, 100, state, point(i + 1, eval_loss=v), now=0.0) for i, v in enumerate(losses)
    ]
    assert stops[:3] == [None, None, None]
    assert stops[3] is not None and stops[3].status == "SUCCEEDED"
    assert "has not improved on 0.4" in stops[3].message


def test_epochs_become_steps_from_the_training_rows() -> None:
    rules = training(steps=None, epochs=3, workers=2, batch_size=32)
    assert rules.total_steps(800) == math.ceil(3 * 800 / 64)


def test_an_lr_schedule_moves_the_rate() -> None:
    rules = training(
        optimizer={"name": "sgd", "lr": 0.4},
        lr_schedule={"name": "step", "step_size": 10, "gamma": 0.5},
    )
    schedule = rules.schedule()
    assert (schedule(0), schedule(10), schedule(25)) == (0.4, 0.2, 0.1)
