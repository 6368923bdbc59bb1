"""Seeded synthetic classification problems: ``make_dataset(name, n, rng) -> (X, y)``.

``X: (n, 2)`` float32 features, ``y: (n,)`` int64 class labels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

Dataset = tuple[NDArray[np.float32], NDArray[np.int64]]


def xor(n: int, rng: np.random.Generator, noise: float = 0.1) -> Dataset:
    """Four clusters at (±1, ±1); the class is 1 where the signs differ (x₁·x₂ < 0).
    No straight line separates the classes."""
    corners = rng.integers(0, 2, size=(n, 2))
    X = (2.0 * corners - 1.0) + rng.normal(0.0, noise, size=(n, 2))
    y = corners[:, 0] ^ corners[:, 1]
    return X.astype(np.float32), y.astype(np.int64)


def moons(n: int, rng: np.random.Generator, noise: float = 0.1) -> Dataset:
    """Two interleaving half circles (the scikit-learn ``make_moons`` shape)."""
    y = rng.integers(0, 2, size=n)
    t = rng.uniform(0.0, np.pi, size=n)
    X = np.where(
        y[:, None] == 0,
        np.stack([np.cos(t), np.sin(t)], axis=1),
        np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1),
    )
    X = X + rng.normal(0.0, noise, size=(n, 2))
    return X.astype(np.float32), y.astype(np.int64)


def spirals(n: int, rng: np.random.Generator, noise: float = 0.05, turns: float = 1.5) -> Dataset:
    """Two interleaved spirals, ``turns`` revolutions each; the hardest of the three."""
    y = rng.integers(0, 2, size=n)
    r = rng.uniform(0.1, 1.0, size=n)
    theta = 2.0 * np.pi * turns * r + np.pi * y
    X = np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)
    X = X + rng.normal(0.0, noise, size=(n, 2))
    return X.astype(np.float32), y.astype(np.int64)


GENERATORS: dict[str, Callable[[int, np.random.Generator], Dataset]] = {
    "xor": xor,
    "moons": moons,
    "spirals": spirals,
}


def make_dataset(name: str, n: int, rng: np.random.Generator) -> Dataset:
    """``n`` samples of the generated set ``name``."""
    if name not in GENERATORS:
        raise ValueError(f"unknown dataset {name!r}; expected one of: {', '.join(GENERATORS)}")
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    return GENERATORS[name](n, rng)
