"""Admission: is a valid job spec one the cluster can run? Checked at the gateway, before
the job is stored, against limits that are settings (gateway/settings.py).

A spec can be valid and still need far more memory than any machine has: a batch of
65,536 rows through sixteen 8,192-unit layers needs ~170 GB in one task. The estimates
here are upper bounds measured on the math core (tests/unit/test_admission.py holds
them against tracemalloc's peak of a real backward pass):

- **a task** (one worker's gradient of one minibatch): the minibatch, each layer's
  pre-activation, activation, derivative and backpropagated error (4 arrays of
  batch × width, plus one more of slack for numpy's temporaries), and θ, its gradient and
  the pulled copy: ``itemsize × (batch × (inputs + 5·Σ widths) + 3·params)``;
- **the dataset** every worker and the scheduler hold in memory: rows × features in
  float32, plus the labels, twice (the split and its serialised copy).

The holdout is evaluated in chunks (data/evaluation.py), so its memory is bounded by a
chunk, not by the number of held-out rows; and ``epochs`` are capped like ``steps``
(spec.MAX_STEPS), so neither needs a limit here.
"""

from __future__ import annotations

from dataclasses import dataclass

from chainrule.nn import param_count
from chainrule.spec import JobSpec

ITEMSIZE = 4  # θ, activations and features are float32
MIB = 1024 * 1024
DEFAULT_MAX_TASK_MEMORY_MB = 2048
DEFAULT_MAX_DATASET_MEMORY_MB = 2048


@dataclass(frozen=True)
class Limits:
    task_memory_bytes: int = DEFAULT_MAX_TASK_MEMORY_MB * MIB
    dataset_memory_bytes: int = DEFAULT_MAX_DATASET_MEMORY_MB * MIB


@dataclass(frozen=True)
class Refusal:
    """Why a spec is refused: the field to change, the estimate and the limit."""

    loc: tuple[str | int, ...]  # within the spec, as pydantic's errors give it
    message: str
    value: object


def bytes_per_row(layers: list[int]) -> int:
    """Activation memory one minibatch row costs a task (forward and backward pass)."""
    return ITEMSIZE * (layers[0] + 5 * sum(layers[1:]))


def task_bytes(layers: list[int], batch_size: int) -> int:
    """The memory one task of ``batch_size`` rows needs, at most (see the module doc)."""
    return batch_size * bytes_per_row(layers) + 3 * ITEMSIZE * param_count(layers)


def dataset_bytes(rows: int, features: int) -> int:
    """The memory a dataset of ``rows`` × ``features`` takes where it is held."""
    return 2 * rows * (features + 1) * ITEMSIZE


def refusal(spec: JobSpec, limits: Limits) -> Refusal | None:
    """Why ``spec`` cannot run within ``limits``, or None when it can. ``spec`` must know
    its dataset's shape (an upload's: validated with it, see gateway check_job_dataset)."""
    layers, batch = spec.model.layers, spec.training.batch_size
    need = task_bytes(layers, batch)
    if need > limits.task_memory_bytes:
        fits = (limits.task_memory_bytes - task_bytes(layers, 0)) // bytes_per_row(layers)
        advice = (
            f"use batch_size <= {fits} with these layers"
            if fits >= 1
            else "these layers do not fit even one row: use fewer or narrower layers"
        )
        return Refusal(
            ("training", "batch_size"),
            f"one task of batch_size {batch} through layers {_short(layers)} needs about "
            f"{_mib(need)} of memory (forward and backward pass); the limit is "
            f"{_mib(limits.task_memory_bytes)} (CHAINRULE_MAX_TASK_MEMORY_MB): {advice}",
            batch,
        )
    info = spec.dataset.known_info
    if info is None:
        return None
    rows = sum(spec.dataset.split_sizes())
    need = dataset_bytes(rows, info.features)
    if need > limits.dataset_memory_bytes:
        field = "n_samples" if info.samples is None else "id"
        return Refusal(
            ("dataset", field),
            f"{spec.dataset.described} has {rows} rows of {info.features} features, about "
            f"{_mib(need)} where it is held; the limit is "
            f"{_mib(limits.dataset_memory_bytes)} (CHAINRULE_MAX_DATASET_MEMORY_MB)",
            spec.dataset.n_samples if field == "n_samples" else spec.dataset.id,
        )
    return None


def _mib(n: int) -> str:
    return f"{n / MIB:,.0f} MiB" if n >= 10 * MIB else f"{n / MIB:.1f} MiB"


def _short(layers: list[int]) -> str:
    return str(layers) if len(layers) <= 8 else f"[{layers[0]}, ... {len(layers)} sizes]"
