"""Admission: the memory a spec implies, estimated as an upper bound of what the math core
really allocates, and refusals that name the field, the estimate and the limit."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from chainrule.admission import MIB, Limits, refusal, task_bytes
from chainrule.nn import MLP
from chainrule.spec import JobSpec
from tests.support.examples import example_spec


@pytest.mark.parametrize(
    ("layers", "batch"),
    [([2, 2048, 2048, 1], 1024), ([784, 512, 512, 10], 256), ([64, *[1024] * 6, 10], 512)],
)
def test_the_task_estimate_bounds_a_real_backward_pass_within_twice(
    layers: list[int], batch: int
) -> None:
    """tracemalloc sees numpy's buffers: the peak of one task's gradient computation
    (θ held as a worker holds it) lies under the estimate, and not far under."""
    head = ("sigmoid", "bce") if layers[-1] == 1 else ("softmax", "cross_entropy")
    net = MLP(layers, "relu", output=head[0], loss=head[1])
    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch, layers[0])).astype(np.float32)
    y = rng.integers(0, max(2, layers[-1]), size=batch)
    tracemalloc.start()
    try:
        params = net.init(rng)  # the pulled θ
        x, targets = net.validate(params, X, y)
        net.backprop(params, x, targets, False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    estimate = task_bytes(layers, batch)
    assert peak <= estimate <= 2 * peak, (peak / MIB, estimate / MIB)


def oversized() -> JobSpec:
    """The spec that OOM-killed a scheduler: ~170 GB in one task."""
    return JobSpec.model_validate(
        example_spec(
            dataset={"name": "xor", "n_samples": 1_000_000, "holdout": 0.9},
            model={"layers": [2] + [8192, 1] * 16},
            training={"batch_size": 65536},
        )
    )


def test_a_task_over_the_memory_limit_is_refused_naming_the_estimate_and_the_limit() -> None:
    refused = refusal(oversized(), Limits())
    assert refused is not None
    assert refused.loc == ("training", "batch_size") and refused.value == 65536
    assert "one task of batch_size 65536 through layers [2, ... 33 sizes] needs about" in (
        refused.message
    )
    assert "the limit is 2,048 MiB (CHAINRULE_MAX_TASK_MEMORY_MB)" in refused.message
    assert "use batch_size <= " in refused.message  # and how to fit it


def test_the_advised_batch_size_fits_and_one_more_row_does_not() -> None:
    spec = oversized()
    refused = refusal(spec, Limits())
    assert refused is not None
    fits = int(refused.message.split("use batch_size <= ")[1].split()[0])
    layers = spec.model.layers
    assert task_bytes(layers, fits) <= Limits().task_memory_bytes < task_bytes(layers, fits + 1)


def test_a_dataset_over_its_limit_is_refused_at_n_samples() -> None:
    spec = JobSpec.model_validate(example_spec(dataset={"name": "xor", "n_samples": 1_000_000}))
    refused = refusal(spec, Limits(dataset_memory_bytes=10 * MIB))
    assert refused is not None and refused.loc == ("dataset", "n_samples")
    assert "dataset 'xor' has 1000000 rows of 2 features, about 23 MiB" in refused.message
    assert "the limit is 10 MiB (CHAINRULE_MAX_DATASET_MEMORY_MB)" in refused.message


def test_the_usual_specs_are_admitted() -> None:
    assert refusal(JobSpec.model_validate(example_spec()), Limits()) is None
    digits = example_spec(
        dataset={"name": "digits"},
        model={"layers": [64, 512, 512, 10], "output": "softmax", "loss": "cross_entropy"},
        training={"batch_size": 4096},
    )
    assert refusal(JobSpec.model_validate(digits), Limits()) is None
