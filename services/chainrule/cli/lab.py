"""The activation lab: the same small problems trained with every activation, with the
activation derivative on and off, in one process and with no services.

Pure: every function takes its configuration and returns results; the CLI prints,
plots and writes files.

Each run is a binary classifier ``[2, *hidden, 1]`` with a sigmoid output and binary
cross-entropy, trained by SGD with momentum on 75% of a seeded synthetic set and scored
on the other 25% (the holdout). Within a dataset every run sees the same data, the same
initialisation draws and the same minibatch order, so an on/off pair differs only in
whether backprop multiplies by f'(z).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from chainrule.data import GENERATORS, make_dataset
from chainrule.nn import ACTIVATIONS, MLP, SGD, Params, Schedule
from chainrule.nn.train import accuracy, minibatches, train
from chainrule.nn.types import Array

# seeds are (purpose, dataset index, user seed): independent streams, reproducible runs
_DATA, _INIT, _BATCHES = 0, 1, 2


@dataclass(frozen=True)
class LabConfig:
    """What to train and how. The defaults are the README's table."""

    datasets: tuple[str, ...] = tuple(GENERATORS)
    activations: tuple[str, ...] = tuple(ACTIVATIONS)
    hidden: tuple[int, ...] = (16, 16)
    steps: int = 2000
    targets: tuple[float, ...] = (0.95, 1.0)
    seed: int = 0
    samples: int = 400
    holdout: float = 0.25
    batch_size: int = 32
    lr: float = 0.1
    momentum: float = 0.9
    eval_every: int = 10

    def __post_init__(self) -> None:
        _check_names("dataset", self.datasets, tuple(GENERATORS))
        _check_names("activation", self.activations, tuple(ACTIVATIONS))
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list one or more positive sizes; got {self.hidden}")
        if not self.targets or not all(0 < t <= 1 for t in self.targets):
            raise ValueError(f"targets must be accuracies in (0, 1]; got {self.targets}")
        if not (np.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0; got {self.lr!r}")
        for name in ("steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if not 4 <= round(self.samples * self.holdout) <= self.samples - 4:
            raise ValueError(
                f"samples={self.samples} with holdout={self.holdout} leaves fewer than "
                "4 rows on one side; use more samples or a holdout share nearer 0.25"
            )

    @property
    def layers(self) -> list[int]:
        return [2, *self.hidden, 1]


def _check_names(what: str, names: Sequence[str], allowed: tuple[str, ...]) -> None:
    if not names:
        raise ValueError(f"no {what}s given; expected some of: {', '.join(allowed)}")
    for name in names:
        if name not in allowed:
            raise ValueError(f"unknown {what} {name!r}; expected one of: {', '.join(allowed)}")


@dataclass(frozen=True)
class Split:
    """One dataset cut into the rows we train on and the rows we only score."""

    X_train: Array
    y_train: Array
    X_holdout: Array
    y_holdout: Array


def make_split(cfg: LabConfig, dataset: str) -> Split:
    """The seeded samples of ``dataset``; the last ``holdout`` share is held out (the rows
    are drawn independently, so the cut is a random split)."""
    X, y = make_dataset(dataset, cfg.samples, _rng(cfg, _DATA, dataset))
    cut = cfg.samples - round(cfg.samples * cfg.holdout)
    return Split(X[:cut], y[:cut], X[cut:], y[cut:])


def _rng(cfg: LabConfig, purpose: int, dataset: str) -> np.random.Generator:
    return np.random.default_rng([purpose, list(GENERATORS).index(dataset), cfg.seed])


@dataclass
class Curve:
    """Measurements every ``eval_every`` steps (and at step 0): the loss on the whole
    training set, accuracy on the training set and on the holdout."""

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    holdout_accuracy: list[float] = field(default_factory=list)
    diverged_after: int | None = None  # updates applied when the loss stopped being finite

    def record(self, step: int, net: MLP, params: Params, data: Split) -> bool:
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
    net: MLP, params: Params, data: Split, cfg: LabConfig, rng: np.random.Generator
) -> tuple[Params, Curve]:
    """:func:`chainrule.nn.train.train`'s loop (same minibatches, same updates, same stop
    on a non-finite loss), measuring the holdout as it goes; returns new params."""
    params = {k: v.copy() for k, v in params.items()}
    optimizer = SGD(momentum=cfg.momentum)
    schedule = Schedule(lr=cfg.lr)
    state = optimizer.init(params)
    curve = Curve()
    if not curve.record(0, net, params, data):
        curve.diverged_after = 0
        return params, curve
    for step in range(cfg.steps):
        idx = minibatches(len(data.X_train), cfg.batch_size, rng)
        loss, grads = net.loss_and_grad(params, data.X_train[idx], data.y_train[idx])
        if not np.isfinite(loss):
            curve.diverged_after = step
            break
        optimizer.update_(params, grads, state, schedule(step))
        done = step + 1
        due = done % cfg.eval_every == 0 or done == cfg.steps
        if due and not curve.record(done, net, params, data):
            curve.diverged_after = done
            break
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


def run_one(cfg: LabConfig, data: Split, dataset: str, activation: str, derivative: bool) -> Run:
    """Train one network; overflow in a diverging run is an outcome, reported, not warned."""
    net = MLP(cfg.layers, activation, "sigmoid", "bce", activation_derivative=derivative)
    params = net.init(_rng(cfg, _INIT, dataset))
    with np.errstate(over="ignore", invalid="ignore"):
        params, curve = fit(net, params, data, cfg, _rng(cfg, _BATCHES, dataset))
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


def linear_map(params: Params) -> tuple[Array, Array]:
    """(W, b) of the one affine map an all-identity MLP computes before its output f:
    ``(x W₁ + b₁) W₂ + b₂ = x (W₁W₂) + (b₁W₂ + b₂)``, folded over every layer."""
    n_dense = len(params) // 2
    W, b = params["dense1.W"], params["dense1.b"]
    for i in range(2, n_dense + 1):
        W_i = params[f"dense{i}.W"]
        W, b = W @ W_i, b @ W_i + params[f"dense{i}.b"]
    return W, b


def total_runs(cfg: LabConfig) -> int:
    return len(cfg.datasets) * len(cfg.activations) * 2


# -- is the derivative-off update the gradient? ----------------------------------------


@dataclass(frozen=True)
class ProbeCase:
    """A network shape whose derivative-off update we compare with the true gradient."""

    hidden: str | None  # the activation of cfg.hidden's layers; None: no hidden layer
    output: str
    loss: str
    expected: str  # what the math says (mlp.py's docstring), for the table

    @property
    def head(self) -> str:
        loss = "½(ŷ − y)²" if self.loss == "mse" else "cross-entropy"
        return f"{self.output} + {loss}"


PROBE_CASES = (
    ProbeCase(None, "identity", "mse", "yes: f′ = 1"),
    ProbeCase(None, "sigmoid", "bce", "yes: σ′ cancels"),
    ProbeCase(None, "sigmoid", "mse", "no: drops σ′"),
    ProbeCase("identity", "sigmoid", "bce", "yes: f′ = 1"),
    ProbeCase("tanh", "sigmoid", "bce", "no: drops f′"),
    ProbeCase("sigmoid", "sigmoid", "bce", "no: drops f′"),
    ProbeCase("relu", "sigmoid", "bce", "no: drops f′"),
)


@dataclass(frozen=True)
class Probe:
    """cos∠(derivative-off update, true gradient) for the first layer's parameters, the
    ones whose gradient passes through every activation, on the training rows of one
    dataset: at initialisation and after the lab's ``steps`` of true-gradient training."""

    case: ProbeCase
    dataset: str
    cosine_at_init: float
    cosine_trained: float


_FIRST_LAYER = ("dense1.W", "dense1.b")


def gradient_cosine(params: Params, true_net: MLP, off_net: MLP, X: Array, y: Array) -> float:
    """cos∠ between the two nets' ∂J/∂θ at the same params; 1 means the same direction."""
    _, true_grads = true_net.loss_and_grad(params, X, y)
    _, off_grads = off_net.loss_and_grad(params, X, y)
    g = np.concatenate([true_grads[k].ravel() for k in _FIRST_LAYER])
    h = np.concatenate([off_grads[k].ravel() for k in _FIRST_LAYER])
    return float(g @ h / (np.linalg.norm(g) * np.linalg.norm(h)))


def probe_case(cfg: LabConfig, case: ProbeCase, dataset: str) -> Probe:
    """Both cosines for one case on the full training rows of ``dataset``, in float64."""
    data = make_split(cfg, dataset)
    layers = cfg.layers if case.hidden else [2, 1]
    activation = case.hidden or "tanh"  # unused without hidden layers
    true_net = MLP(layers, activation, case.output, case.loss)
    off_net = MLP(layers, activation, case.output, case.loss, activation_derivative=False)
    X = data.X_train.astype(np.float64)
    params = true_net.init(_rng(cfg, _INIT, dataset), np.float64)
    at_init = gradient_cosine(params, true_net, off_net, X, data.y_train)
    optimizer, schedule = SGD(momentum=cfg.momentum), Schedule(lr=cfg.lr)
    rng = _rng(cfg, _BATCHES, dataset)
    steps, batch = cfg.steps, cfg.batch_size
    trained, _ = train(true_net, params, X, data.y_train, optimizer, schedule, steps, batch, rng)
    after = gradient_cosine(trained, true_net, off_net, X, data.y_train)
    return Probe(case, dataset, at_init, after)


def probe_gradients(cfg: LabConfig) -> list[Probe]:
    """Every :data:`PROBE_CASES` entry on every dataset of ``cfg``."""
    return [probe_case(cfg, case, dataset) for case in PROBE_CASES for dataset in cfg.datasets]
