"""Datasets by name, split into training and holdout rows, deterministically by seed.

Generated sets (``xor``, ``moons``, ``spirals``) come from :mod:`chainrule.data.synthetic`;
``digits`` is the 8×8 handwritten-digits set bundled with scikit-learn (1,797 samples,
64 features scaled to [0, 1], 10 classes), read from the package, never downloaded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from chainrule.data.synthetic import GENERATORS, make_dataset

BUNDLED = ("digits",)
DATASETS = (*GENERATORS, *BUNDLED)
FEATURES = {"xor": 2, "moons": 2, "spirals": 2, "digits": 64}
CLASSES = {"xor": 2, "moons": 2, "spirals": 2, "digits": 10}


@dataclass(frozen=True)
class Split:
    """Training and holdout rows: float32 features, int64 class labels."""

    X_train: NDArray[np.float32]
    y_train: NDArray[np.int64]
    X_test: NDArray[np.float32]
    y_test: NDArray[np.int64]

    def to_bytes(self) -> bytes:
        """An ``.npz`` image: how a prepared dataset travels through Redis."""
        buffer = io.BytesIO()
        np.savez(
            buffer,
            X_train=self.X_train,
            y_train=self.y_train,
            X_test=self.X_test,
            y_test=self.y_test,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Split:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(z["X_train"], z["y_train"], z["X_test"], z["y_test"])


def load(
    name: str, n_samples: int, rng: np.random.Generator
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """All rows of dataset ``name`` (``n_samples`` only applies to generated sets)."""
    if name == "digits":
        from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

        digits = load_digits()
        return (digits.data / 16.0).astype(np.float32), digits.target.astype(np.int64)
    if name not in GENERATORS:
        raise ValueError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    return make_dataset(name, n_samples, rng)


def prepare(name: str, n_samples: int, holdout: float, seed: int) -> Split:
    """Load ``name`` and hold out a stratum-free random ``holdout`` share of rows.

    Everything is drawn from ``np.random.default_rng(seed)``: the same seed gives the
    same rows in the same split on every machine.
    """
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must lie in (0, 1); got {holdout!r}")
    rng = np.random.default_rng(seed)
    X, y = load(name, n_samples, rng)
    n_test = max(1, round(holdout * len(X)))
    if n_test >= len(X):
        raise ValueError(f"holdout {holdout} of {len(X)} rows leaves no training rows")
    order = rng.permutation(len(X))
    test, train = order[:n_test], order[n_test:]
    return Split(X[train], y[train], X[test], y[test])


def targets(labels: NDArray[np.int64], outputs: int, loss: str) -> NDArray[np.generic]:
    """What the network is trained against: the class index for ``cross_entropy``, the
    0/1 label for a single output unit, otherwise the one-hot row."""
    if loss == "cross_entropy":
        return labels
    if outputs == 1:
        return labels.astype(np.float32)
    return np.eye(outputs, dtype=np.float32)[labels]
