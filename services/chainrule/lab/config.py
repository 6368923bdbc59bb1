"""What the activation lab trains, and the data every run of a dataset shares.

Each run is a binary classifier ``[2, *hidden, 1]`` with a sigmoid output and binary
cross-entropy, trained by SGD with momentum on 75% of a seeded synthetic set and scored
on the other 25% (the holdout). Within a dataset every run sees the same data, the same
initialisation draws and the same minibatch order, so an on/off pair differs only in
whether backprop multiplies by f'(z).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from chainrule.data import GENERATORS, make_dataset
from chainrule.nn import ACTIVATIONS, SGD, Schedule
from chainrule.nn.types import Array

# seeds are (purpose, dataset index, user seed): independent streams, reproducible runs
DATA, INIT, BATCHES = 0, 1, 2
SCHEDULE = Schedule(lr=0.1)  # constant
OPTIMIZER = SGD(momentum=0.9)


@dataclass(frozen=True)
class LabConfig:
    """What to train and how. The defaults are the README's table; the learning rate
    and momentum live in nn's own ``schedule`` and ``optimizer``, which check them."""

    datasets: tuple[str, ...] = tuple(GENERATORS)
    activations: tuple[str, ...] = tuple(ACTIVATIONS)
    hidden: tuple[int, ...] = (16, 16)
    steps: int = 2000
    targets: tuple[float, ...] = (0.95, 1.0)
    seed: int = 0
    samples: int = 400
    holdout: float = 0.25
    batch_size: int = 32
    eval_every: int = 10
    schedule: Schedule = SCHEDULE
    optimizer: SGD = OPTIMIZER

    def __post_init__(self) -> None:
        _check_names("dataset", self.datasets, tuple(GENERATORS))
        _check_names("activation", self.activations, tuple(ACTIVATIONS))
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must list one or more positive sizes; got {self.hidden}")
        if not self.targets or not all(0 < t <= 1 for t in self.targets):
            raise ValueError(f"targets must be accuracies in (0, 1]; got {self.targets}")
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
class LabData:
    """One dataset cut into the rows we train on and the rows we only score."""

    X_train: Array
    y_train: Array
    X_holdout: Array
    y_holdout: Array


def make_split(cfg: LabConfig, dataset: str) -> LabData:
    """The seeded samples of ``dataset``; the last ``holdout`` share is held out (the rows
    are drawn independently, so the cut is a random split)."""
    X, y = make_dataset(dataset, cfg.samples, seeded(cfg, DATA, dataset))
    cut = cfg.samples - round(cfg.samples * cfg.holdout)
    return LabData(X[:cut], y[:cut], X[cut:], y[cut:])


def seeded(cfg: LabConfig, purpose: int, dataset: str) -> np.random.Generator:
    """The generator for one purpose (DATA, INIT, BATCHES) on one dataset."""
    return np.random.default_rng([purpose, list(GENERATORS).index(dataset), cfg.seed])
