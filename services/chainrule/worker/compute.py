"""The worker's arithmetic: one task's minibatch gradient, from cached data and θ."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chainrule.data import Split, targets
from chainrule.nn import MLP, LayerDiagnostics, Params
from chainrule.spec import ModelSpec, build_mlp


@dataclass
class JobCache:
    """What a worker keeps per job between tasks: the model, the data, a copy of θ."""

    net: MLP
    split: Split
    params: Params | None = None
    version: int = -1


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
    if cache.params is None:
        raise RuntimeError("θ has not been pulled for this job")
    n_train = len(cache.split.X_train)
    if len(indices) == 0 or indices.min() < 0 or indices.max() >= n_train:
        raise ValueError(f"task rows must lie in [0, {n_train}); got {len(indices)} indices")
    net = cache.net
    X = cache.split.X_train[indices]
    y = targets(cache.split.y_train[indices], net.layers[-1], net.head.loss)
    if not diagnostics:
        loss, grads = net.loss_and_grad(cache.params, X, y)
        return Gradient(loss, grads, len(indices))
    loss, grads, layers = net.loss_and_grad(cache.params, X, y, diagnostics=True)
    return Gradient(loss, grads, len(indices), layers)
