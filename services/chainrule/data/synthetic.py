"""Seeded synthetic problems: ``make_dataset(name, n, rng) -> (X, y)``.

Classification sets give ``X: (n, features)`` float32 and ``y: (n,)`` int64 class labels;
the regression set ``linear`` gives float32 targets ``y: (n,)``. The shape of each
problem (centres, weights, radii) is fixed; only the sampled rows depend on ``rng``.

:data:`GENERATORS` holds the two-class plane problems the activation lab compares
(xor, moons, spirals); :data:`GENERATED` holds every generated set.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

Dataset = tuple[NDArray[np.float32], NDArray[np.int64]]
RegressionDataset = tuple[NDArray[np.float32], NDArray[np.float32]]


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


def circles(n: int, rng: np.random.Generator, noise: float = 0.05, factor: float = 0.5) -> Dataset:
    """Two concentric circles: class 0 on the unit circle, class 1 on a circle of radius
    ``factor`` inside it. Separable only by a curved boundary (a ring)."""
    y = rng.integers(0, 2, size=n)
    t = rng.uniform(0.0, 2.0 * np.pi, size=n)
    radius = np.where(y == 1, factor, 1.0)
    X = radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    X = X + rng.normal(0.0, noise, size=(n, 2))
    return X.astype(np.float32), y.astype(np.int64)


BLOB_CENTRES = 2.0 * np.array(
    [[np.cos(a), np.sin(a)] for a in np.deg2rad([90.0, 210.0, 330.0])]
)  # three classes, 120° apart at radius 2


def blobs(n: int, rng: np.random.Generator, spread: float = 0.6) -> Dataset:
    """Three Gaussian clouds (standard deviation ``spread``) around fixed centres 120°
    apart at radius 2: a three-class problem that straight lines almost separate."""
    y = rng.integers(0, len(BLOB_CENTRES), size=n)
    X = BLOB_CENTRES[y] + rng.normal(0.0, spread, size=(n, 2))
    return X.astype(np.float32), y.astype(np.int64)


LINEAR_WEIGHTS = np.array([1.5, -2.0, 0.5, 0.0])  # the last feature is pure distraction
LINEAR_BIAS = 0.3


def linear(n: int, rng: np.random.Generator, noise: float = 0.1) -> RegressionDataset:
    """Regression: ``y = X·w + b + ε`` with ``X ~ N(0, 1)`` of 4 features, the fixed
    ``w = (1.5, −2, 0.5, 0)``, ``b = 0.3`` and ``ε ~ N(0, noise²)``. Var(X·w) = 6.5, so
    the best possible holdout R² is about 6.5 / (6.5 + noise²) ≈ 0.998."""
    X = rng.normal(0.0, 1.0, size=(n, len(LINEAR_WEIGHTS)))
    y = X @ LINEAR_WEIGHTS + LINEAR_BIAS + rng.normal(0.0, noise, size=n)
    return X.astype(np.float32), y.astype(np.float32)


GENERATORS: dict[str, Callable[[int, np.random.Generator], Dataset]] = {
    "xor": xor,
    "moons": moons,
    "spirals": spirals,
}
CLASSIFICATION: dict[str, Callable[[int, np.random.Generator], Dataset]] = {
    **GENERATORS,
    "circles": circles,
    "blobs": blobs,
}
REGRESSION: dict[str, Callable[[int, np.random.Generator], RegressionDataset]] = {
    "linear": linear,
}
GENERATED: tuple[str, ...] = (*CLASSIFICATION, *REGRESSION)


def make_dataset(name: str, n: int, rng: np.random.Generator) -> Dataset | RegressionDataset:
    """``n`` samples of the generated set ``name`` (int64 labels, or float32 targets
    for a regression set)."""
    if name not in GENERATED:
        raise ValueError(f"unknown dataset {name!r}; expected one of: {', '.join(GENERATED)}")
    if n < 1:
        raise ValueError(f"n must be >= 1; got {n}")
    if name in REGRESSION:
        return REGRESSION[name](n, rng)
    return CLASSIFICATION[name](n, rng)
