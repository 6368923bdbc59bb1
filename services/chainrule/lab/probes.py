"""Is the derivative-off update the gradient? For a few network shapes, the cosine
between the update backprop makes with f' := 1 and the true gradient."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from chainrule.lab.config import BATCHES, INIT, LabConfig, make_split, seeded
from chainrule.nn import MLP, Params
from chainrule.nn.train import train
from chainrule.nn.types import Array


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
    X, y = data.X_train.astype(np.float64), data.y_train
    params = true_net.init(seeded(cfg, INIT, dataset), np.float64)
    at_init = gradient_cosine(params, true_net, off_net, X, y)
    rng, steps, batch = seeded(cfg, BATCHES, dataset), cfg.steps, cfg.batch_size
    trained, _ = train(true_net, params, X, y, cfg.optimizer, cfg.schedule, steps, batch, rng)
    after = gradient_cosine(trained, true_net, off_net, X, y)
    return Probe(case, dataset, at_init, after)


def probe_gradients(cfg: LabConfig) -> list[Probe]:
    """Every :data:`PROBE_CASES` entry on every dataset of ``cfg``."""
    return [probe_case(cfg, case, dataset) for case in PROBE_CASES for dataset in cfg.datasets]
