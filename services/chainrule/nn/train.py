"""Single-process minibatch training: the reference every distributed run must match.

Pure: the caller passes the data, the generator and the optimizer; nothing is read
from or written to anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from chainrule.nn.mlp import MLP
from chainrule.nn.optim import Optimizer
from chainrule.nn.schedules import Schedule
from chainrule.nn.types import Array, Params


@dataclass
class History:
    """Per-step training loss; accuracy on the full training set every ``eval_every``."""

    loss: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)


def accuracy(net: MLP, params: Params, X: Array, y: Array) -> float:
    """Share of rows classified right: argmax for softmax, ŷ > ½ for sigmoid outputs."""
    p = net.predict(params, X)
    labels = np.asarray(y)
    if p.shape[1] == 1:
        pred = (p[:, 0] > 0.5).astype(np.int64)
        return float((pred == labels.reshape(-1)).mean())
    if labels.ndim == 2:
        labels = labels.argmax(axis=1)
    return float((p.argmax(axis=1) == labels).mean())


def minibatches(n: int, batch_size: int, rng: np.random.Generator) -> Array:
    """Row indices of one minibatch: ``batch_size`` distinct rows drawn at random."""
    perm = rng.permutation(n)
    return perm[: min(batch_size, n)]


def train(
    net: MLP,
    params: Params,
    X: Array,
    y: Array,
    optimizer: Optimizer,
    schedule: Schedule,
    steps: int,
    batch_size: int,
    rng: np.random.Generator,
    eval_every: int = 0,
) -> tuple[Params, History]:
    """Run ``steps`` SGD-family updates on random minibatches; returns new params."""
    params = {k: v.copy() for k, v in params.items()}
    state = optimizer.init(params)
    history = History()
    for step in range(steps):
        idx = minibatches(len(X), batch_size, rng)
        loss, grads = net.loss_and_grad(params, X[idx], y[idx])
        history.loss.append(loss)
        if not np.isfinite(loss):
            break
        optimizer.update_(params, grads, state, schedule(step))
        if eval_every and ((step + 1) % eval_every == 0 or step + 1 == steps):
            history.eval_steps.append(step + 1)
            history.accuracy.append(accuracy(net, params, X, y))
    return params, history
