"""The job spec: one model, one dataset, one way to train it.

A spec is what ``POST /api/v1/jobs`` takes and what a job record keeps::

    {"name": "xor-tanh", "dataset": {"name": "xor", "holdout": 0.2},
     "model": {"layers": [2, 8, 1], "activation": "tanh", "output": "sigmoid", "loss": "bce"},
     "training": {"mode": "sync", "workers": 2, "batch_size": 32, "steps": 2000,
                  "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
                  "eval_every": 50, "seed": 0}}

``JobSpec.model_validate(obj)`` (or ``model_validate_json(text)``) checks it and raises
``pydantic.ValidationError`` whose errors carry the path of the offending field, e.g.
``("training", "steps")``. Names, output/loss pairs and optimizer options are checked with
the math core's own tables and constructors, so a spec accepted here is one every worker
and parameter server can build, and the messages read the same everywhere.
:func:`build_training` turns an accepted spec into the :class:`~chainrule.nn.MLP` and the
optimizer.

Targets, for whoever feeds the network: with one output unit (two-class datasets only)
the target is the 0/1 class label; with one unit per class it is the class index for
``cross_entropy`` and the one-hot row for ``bce`` and ``mse``. A regression set
(``linear``, or an upload with task ``regression``) has one real-valued target per row,
fitted by one ``identity`` output unit under ``mse``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from chainrule.data.registry import INFO, DatasetInfo
from chainrule.nn import (
    ACTIVATIONS,
    LOSSES,
    MLP,
    OPTIMIZERS,
    OUTPUTS,
    SCHEDULES,
    Optimizer,
    Schedule,
    make_optimizer,
    param_count,
)
from chainrule.nn.losses import Head

DATASETS = INFO  # built-in datasets by name (chainrule.data.registry)
DEFAULT_SAMPLES = 1000
DEFAULT_STEPS = 1000
MODES = ("sync", "async", "ssp")
STALENESS_LR = ("none", "inverse")
TARGET_METRICS = {
    "eval_accuracy": "at least",
    "eval_r2": "at least",
    "eval_loss": "at most",
    "eval_mse": "at most",
}
INITS = ("auto", "glorot", "he")

MAX_LAYERS = 34  # inputs, up to 32 hidden layers, outputs
MAX_WIDTH = 8192
MAX_PARAMS = 10_000_000
MAX_SEED = 2**63 - 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_UPLOAD_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as the dataset store makes them

_FORBID = ConfigDict(extra="forbid", frozen=True)


# -- error helpers ------------------------------------------------------------------------


def _error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _field_error(
    title: str, loc: tuple[str | int, ...], kind: str, message: str, value: Any
) -> ValidationError:
    """An error on a field below the one being validated (``loc`` is relative to it)."""
    detail: InitErrorDetails = {"type": _error(kind, message), "loc": loc, "input": value}
    return ValidationError.from_exception_data(title, [detail])


def _int_between(name: str, low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise _error("out_of_range", f"{name} must be between {low} and {high}; got {value}")
        return value

    return check


def _choice(kind: str, what: str, allowed: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise _error(
                f"unknown_{kind}",
                f"unknown {what} {value!r}; expected one of: {', '.join(allowed)}",
            )
        return value

    return check


def _bounds(low: float, high: float) -> dict[str, Any]:
    return {"minimum": low, "maximum": high}


def _enum(allowed: tuple[str, ...]) -> dict[str, Any]:
    return {"enum": list(allowed)}


# -- dataset ------------------------------------------------------------------------------


def _check_holdout(value: float) -> float:
    if not (math.isfinite(value) and 0 < value <= 0.9):
        raise _error("out_of_range", f"holdout must lie in (0, 0.9]; got {value!r}")
    return value


def _check_dataset_name(value: str | None) -> str | None:
    return None if value is None else _choice("dataset", "dataset", tuple(DATASETS))(value)


def _check_upload_id(value: str | None) -> str | None:
    if value is not None and not _UPLOAD_ID.fullmatch(value):
        raise _error(
            "invalid_id",
            f"dataset id {value!r} must be 1 to 64 letters, digits, '_' or '-', "
            "as POST /api/v1/datasets returns it",
        )
    return value


UPLOADS = "uploads"  # the validation-context key of uploaded datasets' shapes


class DatasetSpec(BaseModel):
    """Which data, how much of it, the share held out for evaluation, and whether to
    standardize the features.

    ``{"name": "moons"}`` names a built-in set (:data:`DATASETS`), ``{"id": "3f9a..."}``
    an uploaded one (``POST /api/v1/datasets``); exactly one of the two. The spec alone
    cannot know an upload's shape, so whoever holds its metadata validates with
    ``JobSpec.model_validate(obj, context={"uploads": {id: DatasetInfo(...)}})``: the
    model and the workers are then checked against the upload as against a built-in set,
    an id missing from that mapping is refused, and the shape stays bound to the object
    (:attr:`info`, :meth:`split_sizes`). Validated without that context (a spec read back
    from a job record), an upload's shape is unknown and those checks are skipped.

    ``standardize`` rescales every feature to mean 0 and standard deviation 1 using the
    training rows' statistics only (:func:`chainrule.data.standardize`).
    """

    model_config = _FORBID

    name: Annotated[
        str | None,
        Field(
            strict=True,
            description="a built-in dataset; give name or id",
            json_schema_extra={"enum": [*DATASETS, None]},
        ),
        AfterValidator(_check_dataset_name),
    ] = None
    id: Annotated[
        str | None,
        Field(strict=True, description="an uploaded dataset's id; give name or id"),
        AfterValidator(_check_upload_id),
    ] = None
    holdout: Annotated[
        float,
        Field(strict=True, description="share of rows held out for evaluation, in (0, 0.9]"),
        AfterValidator(_check_holdout),
    ] = 0.2
    n_samples: Annotated[
        int | None,
        Field(
            strict=True,
            description=f"rows to generate (generated sets only; default {DEFAULT_SAMPLES})",
            json_schema_extra=_bounds(10, 1_000_000),
        ),
    ] = None
    standardize: Annotated[
        bool,
        Field(
            strict=True,
            description="rescale each feature to mean 0, std 1 by the training rows' statistics",
        ),
    ] = False

    _upload: DatasetInfo | None = PrivateAttr(default=None)

    @field_validator("n_samples")
    @classmethod
    def _samples_fit_dataset(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("id") is not None:
            raise _error(
                "fixed_dataset",
                "n_samples applies to generated datasets only; an uploaded dataset has the "
                f"rows it was uploaded with, so leave n_samples out (got {value})",
            )
        dataset = DATASETS.get(info.data.get("name") or "")
        if value is None or dataset is None:
            return value
        if dataset.samples is not None:
            raise _error(
                "fixed_dataset",
                f"n_samples applies to generated datasets only; {info.data['name']} has a fixed "
                f"{dataset.samples} samples, so leave n_samples out (got {value})",
            )
        return _int_between("n_samples", 10, 1_000_000)(value)

    @model_validator(mode="after")
    def _name_or_upload(self, info: ValidationInfo) -> DatasetSpec:
        if self.name is None and self.id is None:
            raise _error(
                "missing_dataset",
                "dataset needs a name (a built-in set: "
                f"{', '.join(DATASETS)}) or an id (an uploaded dataset); got neither",
            )
        if self.name is not None and self.id is not None:
            raise _error(
                "name_and_id",
                f"dataset takes a name or an id, not both; got name {self.name!r} "
                f"and id {self.id!r}",
            )
        uploads = info.context.get(UPLOADS) if isinstance(info.context, dict) else None
        if self.id is not None and uploads is not None:
            if self.id not in uploads:
                message = (
                    f"no uploaded dataset {self.id!r}; upload one with POST /api/v1/datasets "
                    "and list them with GET /api/v1/datasets"
                )
                raise _field_error("dataset", ("id",), "unknown_dataset", message, self.id)
            self._upload = uploads[self.id]
        return self

    @property
    def described(self) -> str:
        """How messages name the data: ``dataset 'xor'`` or ``uploaded dataset '3f9a...'``."""
        if self.name is not None:
            return f"dataset {self.name!r}"
        return f"uploaded dataset {self.id!r}"

    @property
    def known_info(self) -> DatasetInfo | None:
        """The shape of the data, or None for an upload whose shape was not bound."""
        return DATASETS[self.name] if self.name is not None else self._upload

    @property
    def info(self) -> DatasetInfo:
        """The shape of the data; ValueError for an upload whose shape was not bound."""
        known = self.known_info
        if known is None:
            raise ValueError(
                f"the shape of uploaded dataset {self.id!r} is not known to this spec; "
                f'validate it with context={{"{UPLOADS}": {{id: DatasetInfo}}}}, or count '
                "the rows of the prepared split"
            )
        return known

    @property
    def samples(self) -> int:
        """Rows in the whole set, before the holdout split."""
        return self.info.samples or self.n_samples or DEFAULT_SAMPLES

    def split_sizes(self, rows: int | None = None) -> tuple[int, int]:
        """(training rows, evaluation rows): at least one of each, out of ``rows`` if
        given, else out of :attr:`samples`."""
        total = self.samples if rows is None else rows
        held_out = max(1, round(total * self.holdout))
        return total - held_out, held_out


# -- model --------------------------------------------------------------------------------


def _check_layers(sizes: list[int]) -> list[int]:
    if not 2 <= len(sizes) <= MAX_LAYERS:
        raise _error(
            "layer_count",
            f"layers lists {len(sizes)} sizes; expected 2 to {MAX_LAYERS} "
            "(inputs, hidden layers..., outputs)",
        )
    for i, size in enumerate(sizes):
        if not 1 <= size <= MAX_WIDTH:
            raise _field_error(
                "layers",
                (i,),
                "out_of_range",
                f"layers[{i}] must be between 1 and {MAX_WIDTH} units; got {size}",
                size,
            )
    n_params = param_count(sizes)
    if n_params > MAX_PARAMS:
        raise _error(
            "too_many_params",
            f"layers {sizes} make {n_params} parameters; at most {MAX_PARAMS} are allowed",
        )
    return sizes


class ModelSpec(BaseModel):
    """The network: layer widths, hidden activations, output activation and loss."""

    model_config = _FORBID

    layers: Annotated[
        list[Annotated[int, Field(strict=True)]],
        Field(description="[inputs, hidden..., outputs]"),
        AfterValidator(_check_layers),
    ]
    activation: Annotated[
        StrictStr | list[StrictStr],
        Field(description="one name for every hidden layer, or one per layer"),
    ] = "tanh"
    output: Annotated[
        str,
        Field(strict=True, json_schema_extra=_enum(OUTPUTS)),
        AfterValidator(_choice("output", "output", OUTPUTS)),
    ]
    loss: Annotated[str, Field(strict=True, json_schema_extra=_enum(LOSSES))]
    activation_derivative: Annotated[
        bool,
        Field(strict=True, description="false replaces every f'(z) by 1 in backprop"),
    ] = True
    init: Annotated[
        str,
        Field(strict=True, json_schema_extra=_enum(INITS)),
        AfterValidator(_choice("init", "init", INITS)),
    ] = "auto"

    @field_validator("activation")
    @classmethod
    def _known_activations(cls, value: str | list[str], info: ValidationInfo) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        for i, name in enumerate(names):
            if name not in ACTIVATIONS:
                where = "" if isinstance(value, str) else f"activation[{i}]: "
                raise _error(
                    "unknown_activation",
                    f"{where}unknown activation {name!r}; "
                    f"expected one of: {', '.join(ACTIVATIONS)}",
                )
        layers = info.data.get("layers")
        if isinstance(value, list) and layers is not None and len(value) != len(layers) - 2:
            raise _error(
                "activation_count",
                f"activation lists {len(value)} names; expected {len(layers) - 2}, "
                f"one per hidden layer of layers {layers} (or a single name for all)",
            )
        return value

    @field_validator("loss")
    @classmethod
    def _loss_fits_output(cls, value: str, info: ValidationInfo) -> str:
        if value not in LOSSES:
            raise _error(
                "unknown_loss", f"unknown loss {value!r}; expected one of: {', '.join(LOSSES)}"
            )
        output = info.data.get("output")
        if output is not None:
            try:
                Head(output, value)
            except ValueError as exc:
                raise _error("output_loss_mismatch", str(exc)) from None
        return value

    @model_validator(mode="after")
    def _math_core_accepts(self) -> ModelSpec:
        try:
            build_mlp(self)
        except ValueError as exc:  # the field checks above should have caught it first
            raise _error("invalid_model", str(exc)) from None
        return self


# -- training -----------------------------------------------------------------------------


def _check_lr(value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise _error("out_of_range", f"lr must be a finite number > 0; got {value!r}")
    return value


class OptimizerSpec(BaseModel):
    """``{"name": "sgd", "lr": 0.5, "momentum": 0.9}``: the name, the learning rate, and the
    optimizer's own options (sgd: momentum, nesterov, weight_decay; adam: beta1, beta2, eps,
    weight_decay; adagrad: eps, initial_accumulator, weight_decay)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: Annotated[
        str,
        Field(strict=True, json_schema_extra=_enum(tuple(OPTIMIZERS))),
        AfterValidator(_choice("optimizer", "optimizer", tuple(OPTIMIZERS))),
    ]
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
                raise _field_error("optimizer", (key,), "unknown_option", message, value)
            wants_bool = isinstance(fields[key].default, bool)
            is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if wants_bool and not isinstance(value, bool):
                message = f"{key} must be true or false; got {value!r}"
                raise _field_error("optimizer", (key,), "bool_type", message, value)
            if not wants_bool and not is_number:
                message = f"{key} must be a number; got {value!r}"
                raise _field_error("optimizer", (key,), "number_type", message, value)
        try:
            build_optimizer(self)
        except ValueError as exc:
            # name the option when it is wrong on its own, not only in combination
            for key, value in self.options.items():
                try:
                    make_optimizer(self.name, **{key: value})
                except ValueError as alone:
                    if str(alone) == str(exc):
                        raise _field_error(
                            "optimizer", (key,), "invalid_option", str(exc), value
                        ) from None
            raise _error("invalid_optimizer", str(exc)) from None
        return self


def _positive_seconds(name: str) -> Callable[[float | None], float | None]:
    def check(value: float | None) -> float | None:
        if value is not None and not (math.isfinite(value) and value > 0):
            raise _error(
                "out_of_range", f"{name} must be a finite number of seconds > 0; got {value!r}"
            )
        return value

    return check


class ScheduleSpec(BaseModel):
    """``training.lr_schedule``: a :class:`chainrule.nn.Schedule` around ``optimizer.lr``."""

    model_config = _FORBID

    name: Annotated[
        str,
        Field(strict=True, json_schema_extra=_enum(SCHEDULES)),
        AfterValidator(_choice("schedule", "lr schedule", SCHEDULES)),
    ] = "constant"
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

    model_config = _FORBID

    patience: Annotated[int, Field(strict=True, ge=1, le=10_000)] = 5
    min_delta: Annotated[float, Field(ge=0)] = 0.0


MAX_STEPS = 1_000_000
"""The most optimizer steps a job may run, given as ``steps`` or implied by ``epochs``."""


class TrainingSpec(BaseModel):
    """How to train: consistency mode, workers, minibatches, steps, optimizer, evaluation.

    ``batch_size`` is the minibatch of one task, that is of one worker in one step; a sync
    step averages ``workers`` such gradients. ``steps`` counts θ versions in every mode:
    in sync one per step, in async and ssp one per applied gradient.
    """

    model_config = _FORBID

    mode: Annotated[
        str,
        Field(strict=True, json_schema_extra=_enum(MODES)),
        AfterValidator(_choice("mode", "mode", MODES)),
    ] = "sync"
    workers: Annotated[
        int,
        Field(strict=True, json_schema_extra=_bounds(1, 256)),
        AfterValidator(_int_between("workers", 1, 256)),
    ] = 1
    batch_size: Annotated[
        int,
        Field(strict=True, json_schema_extra=_bounds(1, 65536)),
        AfterValidator(_int_between("batch_size", 1, 65536)),
    ] = 32
    steps: Annotated[
        int | None,
        Field(
            strict=True,
            description="optimizer steps (θ versions); default 1000 unless epochs is given",
            json_schema_extra=_bounds(1, 1_000_000),
        ),
    ] = None
    epochs: Annotated[
        int | None,
        Field(
            strict=True,
            description="passes over the training rows, instead of steps",
            json_schema_extra=_bounds(1, 100_000),
        ),
    ] = None
    optimizer: OptimizerSpec
    eval_every: Annotated[
        int,
        Field(strict=True, json_schema_extra=_bounds(1, 1_000_000)),
        AfterValidator(_int_between("eval_every", 1, 1_000_000)),
    ] = 50
    seed: Annotated[
        int,
        Field(strict=True, json_schema_extra=_bounds(0, MAX_SEED)),
        AfterValidator(_int_between("seed", 0, MAX_SEED)),
    ] = 0
    max_staleness: Annotated[
        int | None,
        Field(strict=True, description="ssp only: reject gradients more versions old than this"),
    ] = None
    staleness_lr: Annotated[
        str,
        Field(strict=True, json_schema_extra=_enum(STALENESS_LR)),
        AfterValidator(_choice("staleness_lr", "staleness_lr", STALENESS_LR)),
    ] = "none"
    step_timeout_s: Annotated[
        float | None,
        Field(description="sync: reassign a task not completed within this many seconds"),
        AfterValidator(_positive_seconds("step_timeout_s")),
    ] = None
    quorum: Annotated[
        int | None,
        Field(strict=True, description="sync: close a step once this many gradients are in"),
    ] = None
    checkpoint_every: Annotated[
        int,
        Field(strict=True, json_schema_extra=_bounds(1, 1_000_000)),
        AfterValidator(_int_between("checkpoint_every", 1, 1_000_000)),
    ] = 100
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
        Field(description="end FAILED if the job cannot start (too few workers) this long"),
        AfterValidator(_positive_seconds("pending_timeout_s")),
    ] = 600.0

    @model_validator(mode="after")
    def _consistent(self) -> TrainingSpec:
        def fail(field_name: str, kind: str, message: str) -> ValidationError:
            value = getattr(self, field_name)
            return _field_error("training", (field_name,), kind, message, value)

        if self.steps is not None and self.epochs is not None:
            raise fail("epochs", "steps_and_epochs", "give steps or epochs, not both")
        for name, low, high in (("steps", 1, MAX_STEPS), ("epochs", 1, 100_000)):
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
                raise _field_error(
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


# -- the job ------------------------------------------------------------------------------


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise _error(
            "invalid_name",
            f"name {value!r} must be 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return value


class JobSpec(BaseModel):
    """A training job as submitted: ``JobSpec.model_validate(obj)``."""

    model_config = _FORBID

    name: Annotated[str, Field(strict=True), AfterValidator(_check_name)]
    dataset: DatasetSpec
    model: ModelSpec
    training: TrainingSpec

    @field_validator("model")
    @classmethod
    def _model_fits_dataset(cls, model: ModelSpec, info: ValidationInfo) -> ModelSpec:
        dataset: DatasetSpec | None = info.data.get("dataset")
        data = dataset.known_info if dataset is not None else None
        if dataset is None or data is None:  # an upload's shape is checked where it is known
            return model
        layers, last = model.layers, len(model.layers) - 1
        if layers[0] != data.features:
            message = (
                f"layers[0] is {layers[0]} but {dataset.described} has {data.features} "
                f"input features; set layers[0] to {data.features}"
            )
            raise _field_error("model", ("layers", 0), "dataset_mismatch", message, layers[0])
        if data.classes is None:
            _check_regression_model(model, dataset.described)
            return model
        allowed = output_units(data, model.loss)
        if layers[-1] not in allowed:
            message = (
                f"layers[{last}] is {layers[-1]} output units but {dataset.described} has "
                f"{data.classes} classes; with loss {model.loss!r} "
                f"expected {' or '.join(str(k) for k in allowed)}"
            )
            raise _field_error("model", ("layers", last), "dataset_mismatch", message, layers[-1])
        return model

    @field_validator("training")
    @classmethod
    def _workers_fit_dataset(cls, training: TrainingSpec, info: ValidationInfo) -> TrainingSpec:
        dataset: DatasetSpec | None = info.data.get("dataset")
        if dataset is None or dataset.known_info is None:
            return training
        train_rows, _ = dataset.split_sizes()
        if training.workers > train_rows:
            message = (
                f"workers is {training.workers} but {dataset.described} leaves only "
                f"{train_rows} training rows after the holdout; "
                f"workers must be at most {train_rows}"
            )
            raise _field_error(
                "training", ("workers",), "too_many_workers", message, training.workers
            )
        steps = training.total_steps(train_rows)
        if training.epochs is not None and steps > MAX_STEPS:
            message = (
                f"epochs={training.epochs} over the {train_rows} training rows of "
                f"{dataset.described}, at {training.workers} × batch_size "
                f"{training.batch_size} rows per step, is {steps} steps; the limit is "
                f"{MAX_STEPS} steps (as for steps)"
            )
            raise _field_error("training", ("epochs",), "too_many_steps", message, training.epochs)
        return training


def _check_regression_model(model: ModelSpec, described: str) -> None:
    """A regression set has one real-valued target: one identity output under mse."""
    need = "loss 'mse', output 'identity' and one output unit"
    if model.loss != "mse" or model.output != "identity":
        field = "loss" if model.loss != "mse" else "output"
        message = (
            f"{described} is a regression set (real-valued targets), so the model needs "
            f"{need}; got loss {model.loss!r} with output {model.output!r}"
        )
        raise _field_error("model", (field,), "regression_model", message, getattr(model, field))
    last = len(model.layers) - 1
    if model.layers[-1] != 1:
        message = (
            f"layers[{last}] is {model.layers[-1]} output units but {described} is a "
            f"regression set with one real-valued target; set layers[{last}] to 1 "
            f"(the model needs {need})"
        )
        raise _field_error("model", ("layers", last), "regression_model", message, model.layers[-1])


def total_steps(spec: JobSpec, train_rows: int | None = None) -> int:
    """The θ versions ``spec`` runs to (``training.epochs`` counted in training rows).

    ``train_rows`` defaults to the dataset's own split; it is needed only for an upload
    trained by epochs whose shape is not bound to ``spec`` (a spec read back from a job
    record): pass ``len(split.X_train)`` of the prepared split.
    """
    if train_rows is None and spec.training.epochs is not None:
        train_rows, _ = spec.dataset.split_sizes()
    return spec.training.total_steps(train_rows or 0)


def output_units(data: DatasetInfo, loss: str) -> tuple[int, ...]:
    """The output widths that fit ``data`` under ``loss``: one unit per class, or a single
    unit for a two-class set (the 0/1 label), except with softmax + cross_entropy; a
    regression set (``classes`` None) has one unit, its target."""
    if data.classes is None:
        return (1,)
    if data.classes == 2 and loss != "cross_entropy":
        return (1, 2)
    return (data.classes,)


# -- from spec to math --------------------------------------------------------------------


def build_mlp(model: ModelSpec) -> MLP:
    return MLP(
        layers=model.layers,
        activation=model.activation,
        output=model.output,
        loss=model.loss,
        activation_derivative=model.activation_derivative,
        init=model.init,  # type: ignore[arg-type]  # checked against INITS above
    )


def build_optimizer(optimizer: OptimizerSpec) -> Optimizer:
    """The optimizer with its options; the learning rate goes to each update, not here."""
    return make_optimizer(optimizer.name, **optimizer.options)


def build_training(spec: JobSpec) -> tuple[MLP, Optimizer]:
    """The network and the optimizer that ``spec`` describes."""
    return build_mlp(spec.model), build_optimizer(spec.training.optimizer)
