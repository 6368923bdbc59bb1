"""When a running job ends before (or at) its last step: pure rules over its metrics.

- **divergence** (FAILED): the training loss is NaN or infinite, or it exceeds
  ``EXPLODE_FACTOR`` times the first step's loss (and at least ``EXPLODE_FLOOR``);
- **done** (SUCCEEDED): θ reached ``total_steps`` versions;
- **target** (SUCCEEDED): an evaluation met ``training.target``, e.g. eval_accuracy ≥ 0.98;
- **max_runtime_s** (SUCCEEDED): the job has been RUNNING that long;
- **early stopping** (SUCCEEDED): the holdout loss has not improved by ``min_delta`` for
  ``patience`` evaluations in a row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from chainrule.spec import TARGET_METRICS, TrainingSpec

EXPLODE_FACTOR = 1e4
EXPLODE_FLOOR = 1e3


@dataclass
class StopState:
    """What the rules remember between metric points of one job."""

    started: float  # monotonic seconds when the job started running
    first_loss: float | None = None
    best_eval_loss: float = math.inf
    evals_since_best: int = 0


@dataclass(frozen=True)
class Stop:
    status: str  # "SUCCEEDED" or "FAILED"
    message: str


def check(
    training: TrainingSpec, total_steps: int, state: StopState, point: dict[str, Any], now: float
) -> Stop | None:
    """The reason to end the job after ``point`` (a metric point with ``step`` and ``loss``,
    and eval fields on evaluation steps), or None to go on. Updates ``state``."""
    step, loss = point["step"], point["loss"]
    if not math.isfinite(loss):
        return Stop("FAILED", f"diverged: loss became {loss} at step {step}")
    if state.first_loss is None:
        state.first_loss = loss
    limit = max(EXPLODE_FACTOR * state.first_loss, EXPLODE_FLOOR)
    if loss > limit:
        return Stop(
            "FAILED",
            f"diverged: loss {loss:.4g} at step {step} exceeds {limit:.4g} "
            f"({EXPLODE_FACTOR:g} × the first step's {state.first_loss:.4g})",
        )
    if step >= total_steps:
        return Stop("SUCCEEDED", f"trained {step} steps")
    if "eval_loss" in point:
        reached = _target_reached(training, point)
        if reached:
            return Stop("SUCCEEDED", f"target reached at step {step}: {reached}")
        stopped = _early_stop(training, state, point["eval_loss"])
        if stopped:
            return Stop("SUCCEEDED", f"early stopping at step {step}: {stopped}")
    if training.max_runtime_s is not None and now - state.started >= training.max_runtime_s:
        return Stop("SUCCEEDED", f"max_runtime_s {training.max_runtime_s:g} reached at step {step}")
    return None


def _target_reached(training: TrainingSpec, point: dict[str, Any]) -> str:
    for name, goal in (training.target or {}).items():
        value = point.get(name)
        if value is None:
            continue
        lower_is_better = TARGET_METRICS[name] == "at most"
        if (value <= goal) if lower_is_better else (value >= goal):
            relation = "<=" if lower_is_better else ">="
            return f"{name} {value:.4g} {relation} {goal:g}"
    return ""


def _early_stop(training: TrainingSpec, state: StopState, eval_loss: float) -> str:
    rule = training.early_stopping
    if rule is None:
        return ""
    if eval_loss < state.best_eval_loss - rule.min_delta:
        state.best_eval_loss, state.evals_since_best = eval_loss, 0
        return ""
    state.evals_since_best += 1
    if state.evals_since_best >= rule.patience:
        return (
            f"eval_loss has not improved on {state.best_eval_loss:.4g} by more than "
            f"{rule.min_delta:g} for {rule.patience} evaluations"
        )
    return ""
