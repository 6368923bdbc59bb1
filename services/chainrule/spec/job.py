"""The whole job spec: a name, a dataset, a model and how to train it, checked together
(the output layer against the dataset, the total steps against the cap)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, ValidationInfo, field_validator

from chainrule.data.registry import DatasetInfo
from chainrule.nn import MLP, Optimizer
from chainrule.spec.checks import FORBID, error, field_error
from chainrule.spec.dataset import DatasetSpec
from chainrule.spec.model import ModelSpec, build_mlp
from chainrule.spec.training import MAX_STEPS, TrainingSpec, build_optimizer

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise error(
            "invalid_name",
            f"name {value!r} must be 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    return value


class JobSpec(BaseModel):
    """A training job as submitted: ``JobSpec.model_validate(obj)``."""

    model_config = FORBID

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
            raise field_error("model", ("layers", 0), "dataset_mismatch", message, layers[0])
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
            raise field_error("model", ("layers", last), "dataset_mismatch", message, layers[-1])
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
            raise field_error(
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
            raise field_error("training", ("epochs",), "too_many_steps", message, training.epochs)
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
        raise field_error("model", (field,), "regression_model", message, getattr(model, field))
    last = len(model.layers) - 1
    if model.layers[-1] != 1:
        message = (
            f"layers[{last}] is {model.layers[-1]} output units but {described} is a "
            f"regression set with one real-valued target; set layers[{last}] to 1 "
            f"(the model needs {need})"
        )
        raise field_error("model", ("layers", last), "regression_model", message, model.layers[-1])


def build_training(spec: JobSpec) -> tuple[MLP, Optimizer]:
    """The network and the optimizer that ``spec`` describes."""
    return build_mlp(spec.model), build_optimizer(spec.training.optimizer)


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
