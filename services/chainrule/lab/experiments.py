"""The lab's runs: every dataset × activation × derivative on/off, trained by
:func:`chainrule.nn.train.train` while the holdout is measured along the way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from chainrule.lab.config import BATCHES, INIT, LabConfig, LabData, make_split, seeded
from chainrule.nn import MLP, Params
from chainrule.nn.train import accuracy, eval_due, train
from chainrule.nn.types import Array


@dataclass
class Curve:
    """Measurements every ``eval_every`` steps (and at step 0): the loss on the whole
    training set, accuracy on the training set and on the holdout."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    holdout_accuracy: list[float] = field(default_factory=list)
    diverged_after: int | None = None  # updates applied when the loss stopped being finite

    def record(self, step: int, net: MLP, params: Params, data: LabData) -> bool:
        """Append one measurement; False when the training loss is no longer finite."""
        loss = float(net.objective(params, data.X_train, data.y_train))
        if not np.isfinite(loss):
            return False
        self.steps.append(step)
        self.train_loss.append(loss)
        self.train_accuracy.append(accuracy(net, params, data.X_train, data.y_train))
        self.holdout_accuracy.append(accuracy(net, params, data.X_holdout, data.y_holdout))
        return True


def fit(
    net: MLP, params: Params, data: LabData, cfg: LabConfig, rng: np.random.Generator
) -> tuple[Params, Curve]:
    """:func:`chainrule.nn.train.train` on the training rows, measuring the curve at step
    0 and every ``eval_every`` updates; a run stops where a minibatch loss (nn.train's
    stop) or the whole training loss (the curve's) stops being finite. Returns new params."""
    curve = Curve()
    if not curve.record(0, net, params, data):
        curve.diverged_after = 0
        return {k: v.copy() for k, v in params.items()}, curve

    def measure(done: int, now: Params) -> bool:
        if not eval_due(done, cfg.steps, cfg.eval_every) or curve.record(done, net, now, data):
            return True
        curve.diverged_after = done
        return False

    X, y, steps, batch = data.X_train, data.y_train, cfg.steps, cfg.batch_size
    params, history = train(
        net, params, X, y, cfg.optimizer, cfg.schedule, steps, batch, rng, on_step=measure
    )
    if curve.diverged_after is None and not np.isfinite(history.loss[-1]):
        curve.diverged_after = len(history.loss) - 1  # that minibatch's update was not applied
    return params, curve


@dataclass(frozen=True)
class Run:
    """One dataset × activation × derivative on/off, trained."""

    dataset: str
    activation: str
    derivative: bool
    curve: Curve
    params: Params

    @property
    def diverged(self) -> bool:
        return self.curve.diverged_after is not None

    @property
    def final_loss(self) -> float:
        return self.curve.train_loss[-1] if not self.diverged else float("nan")

    @property
    def train_accuracy(self) -> float:
        return self.curve.train_accuracy[-1] if not self.diverged else float("nan")

    @property
    def holdout_accuracy(self) -> float:
        return self.curve.holdout_accuracy[-1] if not self.diverged else float("nan")

    def steps_to(self, target: float) -> int | None:
        """The first measured step with holdout accuracy ≥ ``target``; None if never."""
        measured = zip(self.curve.steps, self.curve.holdout_accuracy, strict=True)
        return next((step for step, acc in measured if acc >= target), None)


def run_one(cfg: LabConfig, data: LabData, dataset: str, activation: str, derivative: bool) -> Run:
    """Train one network; overflow in a diverging run is an outcome, reported, not warned."""
    net = MLP(cfg.layers, activation, "sigmoid", "bce", activation_derivative=derivative)
    params = net.init(seeded(cfg, INIT, dataset))
    with np.errstate(over="ignore", invalid="ignore"):
        params, curve = fit(net, params, data, cfg, seeded(cfg, BATCHES, dataset))
    return Run(dataset, activation, derivative, curve, params)


def run_lab(cfg: LabConfig, on_run: Callable[[Run], None] | None = None) -> list[Run]:
    """Every dataset × activation × (derivative on, off), in that order; ``on_run`` is
    called after each run (the CLI's progress bar)."""
    runs: list[Run] = []
    for dataset in cfg.datasets:
        data = make_split(cfg, dataset)
        for activation in cfg.activations:
            for derivative in (True, False):
                runs.append(run_one(cfg, data, dataset, activation, derivative))
                if on_run is not None:
                    on_run(runs[-1])
    return runs


def total_runs(cfg: LabConfig) -> int:
    return len(cfg.datasets) * len(cfg.activations) * 2


def linear_map(params: Params) -> tuple[Array, Array]:
    """(W, b) of the one affine map an all-identity MLP computes before its output f:
    ``(x W₁ + b₁) W₂ + b₂ = x (W₁W₂) + (b₁W₂ + b₂)``, folded over every layer."""
    n_dense = len(params) // 2
    W, b = params["dense1.W"], params["dense1.b"]
    for i in range(2, n_dense + 1):
        W_i = params[f"dense{i}.W"]
        W, b = W @ W_i, b @ W_i + params[f"dense{i}.b"]
    return W, b
