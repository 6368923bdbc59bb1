"""Single-process minibatch training: the reference every distributed run must match.

Pure: the caller passes the data, the generator and the optimizer; nothing is read
from or written to anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from chainrule.nn.mlp import MLP
from chainrule.nn.optim import Optimizer
from chainrule.nn.schedules import Schedule
from chainrule.nn.types import Array, Params

OnStep = Callable[[int, Params], bool]
"""Called after each update with the updates applied so far and the params (read them,
do not change them); returning False stops the training there."""


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


def eval_due(done: int, steps: int, every: int) -> bool:
    """Whether to measure after ``done`` of ``steps`` updates: every ``every``-th and after
    the last; never when ``every`` is 0."""
    return every != 0 and (done % every == 0 or done == steps)


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
    on_step: OnStep | None = None,
) -> tuple[Params, History]:
    """Run ``steps`` SGD-family updates on random minibatches; returns new params.

    Stops early at a non-finite minibatch loss (the last ``history.loss``, no update
    applied) or when ``on_step`` returns False."""
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
        if eval_due(step + 1, steps, eval_every):
            history.eval_steps.append(step + 1)
            history.accuracy.append(accuracy(net, params, X, y))
        if on_step is not None and not on_step(step + 1, params):
            break
    return params, history
