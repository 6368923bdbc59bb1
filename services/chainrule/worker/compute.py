"""The worker's arithmetic: one task's minibatch gradient, from cached data and θ."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chainrule.data import Split, targets
from chainrule.nn import MLP, Array, LayerDiagnostics, Params
from chainrule.spec import ModelSpec, build_mlp


@dataclass
class JobCache:
    """What a worker keeps per job between tasks: the model, the data, a copy of θ.

    The training rows are checked once, with the first θ (finite, the model's width,
    targets its head takes), and kept in θ's dtype: a task names rows, and its gradient
    is computed without checking them again."""

    net: MLP
    split: Split
    params: Params | None = None
    version: int = -1
    rows: tuple[Array, Array] | None = None  # the checked inputs and targets, all rows

    def checked_rows(self) -> tuple[Array, Array]:
        if self.params is None:
            raise RuntimeError("θ has not been pulled for this job")
        dtype = next(iter(self.params.values())).dtype
        if self.rows is None or self.rows[0].dtype != dtype:
            net, split = self.net, self.split
            labels = targets(split.y_train, net.layers[-1], net.head.loss)
            self.rows = net.validate(self.params, split.X_train, labels)
        return self.rows


@dataclass
class Gradient:
    loss: float
    grads: Params
    samples: int
    layers: list[LayerDiagnostics] = field(default_factory=list)


def build_cache(model_json: str, dataset: bytes) -> JobCache:
    return JobCache(build_mlp(ModelSpec.model_validate_json(model_json)), Split.from_bytes(dataset))


def task_gradient(cache: JobCache, indices: np.ndarray, diagnostics: bool = True) -> Gradient:
    """Loss, ∂J/∂θ and (if asked) per-layer diagnostics on the training rows ``indices``."""
    x, y = cache.checked_rows()
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= len(x):
        raise ValueError(f"task rows must lie in [0, {len(x)}); got {len(indices)} indices")
    net, params = cache.net, cache.params
    assert params is not None  # checked_rows saw it
    if not diagnostics:
        loss, grads = net.backprop(params, x[indices], y[indices])
        return Gradient(loss, grads, len(indices))
    loss, grads, layers = net.backprop(params, x[indices], y[indices], diagnostics=True)
    return Gradient(loss, grads, len(indices), layers)
