"""The training part of a job spec: mode, workers, batches, steps or epochs, the
optimizer and its schedule, evaluation, checkpoints, stopping rules, the seed."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from chainrule.nn import OPTIMIZERS, SCHEDULES, Optimizer, Schedule, make_optimizer
from chainrule.spec.checks import FORBID, between, bounds, error, field_error, one_of

DEFAULT_STEPS = 1000
MODES = ("sync", "async", "ssp")
STALENESS_LR = ("none", "inverse")
PRIORITIES = ("low", "normal", "high")  # in rank order
TARGET_METRICS = {
    "eval_accuracy": "at least",
    "eval_r2": "at least",
    "eval_loss": "at most",
    "eval_mse": "at most",
}
MAX_SEED = 2**63 - 1


def _check_lr(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise error("out_of_range", f"lr must be a finite number > 0; got {value!r}")
    return value


class OptimizerSpec(BaseModel):
    """``{"name": "sgd", "lr": 0.5, "momentum": 0.9}``: the name, the learning rate, and the
    optimizer's own options (sgd: momentum, nesterov, weight_decay; adam: beta1, beta2, eps,
    weight_decay; adagrad: eps, initial_accumulator, weight_decay)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[str, one_of("optimizer", "optimizer", tuple(OPTIMIZERS))]
    lr: Annotated[
        float,
        Field(strict=True, description="learning rate, a finite number > 0"),
        AfterValidator(_check_lr),
    ]

    @property
    def options(self) -> dict[str, float | bool]:
        """The optimizer's hyper-parameters, everything but name and lr."""
        return dict(self.model_extra or {})

    @model_validator(mode="after")
    def _math_core_accepts(self) -> OptimizerSpec:
        optimizer_class: Any = OPTIMIZERS[self.name]  # a dataclass, though not to mypy
        fields = {f.name: f for f in dataclasses.fields(optimizer_class)}
        for key, value in self.options.items():
            if key not in fields:
                message = (
                    f"unknown {self.name} option {key!r}; expected any of: "
                    f"name, lr, {', '.join(fields)}"
                )
                raise field_error("optimizer", (key,), "unknown_option", message, value)
            wants_bool = isinstance(fields[key].default, bool)
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if wants_bool and not isinstance(value, bool):
                message = f"{key} must be true or false; got {value!r}"
                raise field_error("optimizer", (key,), "bool_type", message, value)
            if not wants_bool and not is_number:
                message = f"{key} must be a number; got {value!r}"
                raise field_error("optimizer", (key,), "number_type", message, value)
        try:
            build_optimizer(self)
        except ValueError as exc:
            # name the option when it is wrong on its own, not only in combination
            for key, value in self.options.items():
                try:
                    make_optimizer(self.name, **{key: value})
                except ValueError as alone:
                    if str(alone) == str(exc):
                        raise field_error(
                            "optimizer", (key,), "invalid_option", str(exc), value
                        ) from None
            raise error("invalid_optimizer", str(exc)) from None
        return self


def build_optimizer(optimizer: OptimizerSpec) -> Optimizer:
    """The optimizer with its options; the learning rate goes to each update, not here.
    (Its spec's own check builds one too: accepted only if the math core accepts it.)"""
    return make_optimizer(optimizer.name, **optimizer.options)


def _positive_seconds(name: str) -> Callable[[float | None], float | None]:
    def check(value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise error(
                "out_of_range", f"{name} must be a finite number of seconds > 0; got {value!r}"
            )
        return value

    return check


class ScheduleSpec(BaseModel):
    """``training.lr_schedule``: a :class:`chainrule.nn.Schedule` around ``optimizer.lr``."""

    model_config = FORBID

    name: Annotated[str, one_of("schedule", "lr schedule", SCHEDULES)] = "constant"
    warmup_steps: Annotated[int, Field(strict=True, ge=0)] = 0
    gamma: Annotated[float, Field(description="decay factor in (0, 1]")] = 0.1
    step_size: Annotated[int, Field(strict=True, ge=1)] = 1000
    decay_steps: Annotated[int, Field(strict=True, ge=1)] = 1000
    min_lr: Annotated[float, Field(ge=0)] = 0.0

    def build(self, lr: float) -> Schedule:
        return Schedule(lr=lr, **self.model_dump())


class EarlyStoppingSpec(BaseModel):
    """Stop (SUCCEEDED) when the holdout loss has not improved by ``min_delta`` for
    ``patience`` evaluations in a row."""

    model_config = FORBID

    patience: Annotated[int, Field(strict=True, ge=1, le=10_000)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0


MAX_STEPS = 1_000_000
"""The most optimizer steps a job may run, given as ``steps`` or implied by ``epochs``."""
COUNTS = {"steps": (1, MAX_STEPS), "epochs": (1, 100_000)}  # the ranges of steps, epochs


def _count(description: str, name: str) -> Any:
    """The field of ``steps`` or ``epochs``: its range in the schema, checked by the model."""
    return Field(strict=True, description=description, json_schema_extra=bounds(*COUNTS[name]))


class TrainingSpec(BaseModel):
    """How to train: consistency mode, workers, minibatches, steps, optimizer, evaluation.

    ``batch_size`` is the minibatch of one task, that is of one worker in one step; a sync
    step averages ``workers`` such gradients. ``steps`` counts θ versions in every mode:
    in sync one per step, in async and ssp one per applied gradient.
    """

    model_config = FORBID

    mode: Annotated[str, one_of("mode", "mode", MODES)] = "sync"
    workers: Annotated[int, between("workers", 1, 256)] = 1
    batch_size: Annotated[int, between("batch_size", 1, 65536)] = 32
    # steps and epochs are checked together (_consistent): "not both" comes first
    steps: Annotated[
        int | None,
        _count("optimizer steps (θ versions); default 1000 unless epochs is given", "steps"),
    ] = None
    epochs: Annotated[
        int | None, _count("passes over the training rows, instead of steps", "epochs")
    ] = None
    optimizer: OptimizerSpec
    eval_every: Annotated[int, between("eval_every", 1, MAX_STEPS)] = 50
    seed: Annotated[int, between("seed", 0, MAX_SEED)] = 0
    max_staleness: Annotated[
        int | None,
        Field(strict=True, description="ssp only: reject gradients more versions old than this"),
    ] = None
    staleness_lr: Annotated[str, one_of("staleness_lr", "staleness_lr", STALENESS_LR)] = "none"
    step_timeout_s: Annotated[
        float | None,
        Field(description="sync: reassign a task not completed within this many seconds"),
        AfterValidator(_positive_seconds("step_timeout_s")),
    ] = None
    quorum: Annotated[
        int | None,
        Field(strict=True, description="sync: close a step once this many gradients are in"),
    ] = None
    checkpoint_every: Annotated[int, between("checkpoint_every", 1, MAX_STEPS)] = 100
    lr_schedule: ScheduleSpec | None = None
    target: Annotated[
        dict[str, float] | None,
        Field(description='end early as SUCCEEDED, e.g. {"eval_accuracy": 0.98}'),
    ] = None
    max_runtime_s: Annotated[
        float | None,
        Field(description="end as SUCCEEDED after this long RUNNING"),
        AfterValidator(_positive_seconds("max_runtime_s")),
    ] = None
    early_stopping: EarlyStoppingSpec | None = None
    pending_timeout_s: Annotated[
        float | None,
        Field(description="end FAILED if too few workers are live for the job this long"),
        AfterValidator(_positive_seconds("pending_timeout_s")),
    ] = 600.0
    # sharing the workers with other jobs (scheduler/sharing.py)
    priority: Annotated[str, one_of("priority", "priority", PRIORITIES)] = "normal"
    weight: Annotated[int, between("weight", 1, 100)] = 1

    @model_validator(mode="after")
    def _consistent(self) -> TrainingSpec:
        def fail(field_name: str, kind: str, message: str) -> ValidationError:
            value = getattr(self, field_name)
            return field_error("training", (field_name,), kind, message, value)

        if self.steps is not None and self.epochs is not None:
            raise fail("epochs", "steps_and_epochs", "give steps or epochs, not both")
        for name, (low, high) in COUNTS.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise fail(
                    name, "out_of_range", f"{name} must be between {low} and {high}; got {value}"
                )
        if self.mode == "ssp" and self.max_staleness is None:
            raise fail(
                "max_staleness", "missing", "mode 'ssp' needs max_staleness (an integer >= 0)"
            )
        if self.mode != "ssp" and self.max_staleness is not None:
            message = f"max_staleness applies to mode 'ssp' only; mode is {self.mode!r}"
            raise fail("max_staleness", "ssp_only", message)
        if self.max_staleness is not None and not 0 <= self.max_staleness <= 10_000:
            message = f"max_staleness must be between 0 and 10000; got {self.max_staleness}"
            raise fail("max_staleness", "out_of_range", message)
        if self.staleness_lr != "none" and self.mode == "sync":
            message = (
                "staleness_lr applies to modes 'async' and 'ssp'; sync gradients are never stale"
            )
            raise fail("staleness_lr", "async_only", message)
        for name in ("quorum", "step_timeout_s"):
            if self.mode != "sync" and getattr(self, name) is not None:
                raise fail(
                    name, "sync_only", f"{name} applies to mode 'sync' only; mode is {self.mode!r}"
                )
        if self.quorum is not None and not 1 <= self.quorum <= self.workers:
            message = f"quorum must be between 1 and workers={self.workers}; got {self.quorum}"
            raise fail("quorum", "out_of_range", message)
        for name, value in (self.target or {}).items():
            if name not in TARGET_METRICS:
                message = (
                    f"unknown target metric {name!r}; expected one of: {', '.join(TARGET_METRICS)}"
                )
                raise fail("target", "unknown_target", message)
            if not math.isfinite(value):
                raise fail(
                    "target",
                    "out_of_range",
                    f"target {name} must be a finite number; got {value!r}",
                )
        if self.lr_schedule is not None:
            try:
                self.lr_schedule.build(self.optimizer.lr)
            except ValueError as exc:
                raise field_error(
                    "training", ("lr_schedule",), "invalid_schedule", str(exc), None
                ) from None
        return self

    def total_steps(self, train_rows: int) -> int:
        """Optimizer steps the job runs: ``steps``, or ``epochs`` passes over ``train_rows``
        rows at ``workers × batch_size`` rows per step (rounded up), or 1000."""
        if self.epochs is not None:
            per_step = self.workers * self.batch_size
            return max(1, math.ceil(self.epochs * train_rows / per_step))
        return self.steps if self.steps is not None else DEFAULT_STEPS

    def schedule(self) -> Schedule:
        spec = self.lr_schedule or ScheduleSpec()
        return spec.build(self.optimizer.lr)
