"""Datasets by name or upload id, split into training and holdout rows, deterministically
by seed.

Generated sets (``xor``, ``moons``, ``spirals``, ``circles``, ``blobs``; ``linear`` for
regression) come from :mod:`chainrule.data.synthetic`. Bundled sets are scikit-learn's
toy sets, their files copied into this package (``bundled/``, whose ``NOTICE.md`` names the
source and the BSD-3 licence) and read with numpy, never downloaded; :func:`load_bundled`
returns exactly what scikit-learn's loaders do:

- ``digits``: 1,797 8×8 handwritten digits, 64 features scaled to [0, 1], 10 classes;
- ``iris``: 150 flowers, 4 measurements in cm (0.1 to 7.9, left as they are), 3 classes;
- ``breast_cancer``: 569 tumours, 30 measurements in their own units (from 0 to
  4,254), 2 classes. Left raw, as the features of an uploaded CSV are: set the dataset's
  ``standardize`` option, or tanh and sigmoid units saturate on the large ones.

Uploaded sets (:mod:`chainrule.data.uploads`) come through the ``fetch_upload`` callable
of :func:`prepare_dataset`. ``standardize`` rescales every feature to mean 0 and standard
deviation 1 with statistics of the *training* rows only, so nothing about the holdout
leaks into training.

A :class:`Split` holds int64 class labels for classification and float32 targets for
regression; ``y.dtype`` is how everyone tells the two apart (:attr:`Split.task`).
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from chainrule.data.synthetic import GENERATED, make_dataset
from chainrule.data.uploads import Labels, ParsedDataset
from chainrule.npz import npz_bytes

BUNDLED = ("digits", "iris", "breast_cancer")
DATASETS = (*GENERATED, *BUNDLED)


@dataclass(frozen=True)
class DatasetInfo:
    """The shape of a dataset: input features, classes (None: a regression set with
    real-valued targets), and rows if the set is fixed."""

    features: int
    classes: int | None
    samples: int | None = None  # None: generated, ``n_samples`` rows

    @property
    def task(self) -> str:
        return "regression" if self.classes is None else "classification"


INFO: dict[str, DatasetInfo] = {
    "xor": DatasetInfo(features=2, classes=2),
    "moons": DatasetInfo(features=2, classes=2),
    "spirals": DatasetInfo(features=2, classes=2),
    "circles": DatasetInfo(features=2, classes=2),
    "blobs": DatasetInfo(features=2, classes=3),
    "linear": DatasetInfo(features=4, classes=None),  # y = X·w + b + noise
    # bundled: scikit-learn's toy sets, in bundled/
    "digits": DatasetInfo(features=64, classes=10, samples=1797),  # 8x8 handwritten digits
    "iris": DatasetInfo(features=4, classes=3, samples=150),
    "breast_cancer": DatasetInfo(features=30, classes=2, samples=569),
}
"""Every built-in dataset by name: the one table the job spec checks models against."""


class DatasetChoice(Protocol):
    """What :func:`prepare_dataset` reads of a job's dataset: a job spec's
    ``DatasetSpec`` is one (the spec depends on this module, never the reverse)."""

    @property
    def name(self) -> str | None: ...  # a built-in set
    @property
    def id(self) -> str | None: ...  # an upload
    @property
    def samples(self) -> int: ...  # rows of a generated set
    @property
    def holdout(self) -> float: ...
    @property
    def standardize(self) -> bool: ...


@dataclass(frozen=True)
class Split:
    """Training and holdout rows: float32 features; int64 class labels, or float32
    targets for a regression set."""

    X_train: NDArray[np.float32]
    y_train: Labels
    X_test: NDArray[np.float32]
    y_test: Labels
    # set by standardize(): what new rows need before prediction (not sent to workers)
    feature_mean: NDArray[np.float64] | None = None
    feature_std: NDArray[np.float64] | None = None

    @property
    def task(self) -> str:
        """``"regression"`` when the targets are floats, else ``"classification"``."""
        return "regression" if np.issubdtype(self.y_train.dtype, np.floating) else "classification"

    def preprocess_bytes(self, classes: list[str] | None = None) -> bytes:
        """An ``.npz`` of what turns a raw row into the network's input, and its outputs
        into class names: ``feature_mean``/``feature_std`` and ``classes`` when known."""
        arrays: dict[str, NDArray[Any]] = {}
        if self.feature_mean is not None and self.feature_std is not None:
            arrays["feature_mean"], arrays["feature_std"] = self.feature_mean, self.feature_std
        if classes:
            arrays["classes"] = np.array(classes, dtype=np.str_)
        return npz_bytes(arrays)

    def to_bytes(self) -> bytes:
        """An ``.npz`` image: how a prepared dataset travels through Redis."""
        parts = ("X_train", "y_train", "X_test", "y_test")
        return npz_bytes({name: getattr(self, name) for name in parts})

    @classmethod
    def from_bytes(cls, data: bytes) -> Split:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(z["X_train"], z["y_train"], z["X_test"], z["y_test"])


def load(name: str, n_samples: int, rng: np.random.Generator) -> tuple[NDArray[np.float32], Labels]:
    """All rows of dataset ``name`` (``n_samples`` only applies to generated sets)."""
    if name in BUNDLED:
        return _bundled(name)
    if name not in GENERATED:
        raise ValueError(f"unknown dataset {name!r}; expected one of: {', '.join(DATASETS)}")
    return make_dataset(name, n_samples, rng)


BUNDLED_FILES = {
    "digits": "digits.csv.gz",
    "iris": "iris.csv",
    "breast_cancer": "breast_cancer.csv",
}
"""Each bundled set's file in ``chainrule/data/bundled/``, as scikit-learn names it."""


@dataclass(frozen=True)
class BundledSet:
    """A bundled set as its file holds it, and as ``sklearn.datasets.load_<name>()``
    returns it: ``data`` (float64, digits' pixels 0 to 16), ``target`` (class indices) and
    ``classes`` (``target_names``, as strings). The arrays are read-only."""

    data: NDArray[np.float64]
    target: NDArray[np.int64]
    classes: tuple[str, ...]


@cache
def load_bundled(name: str) -> BundledSet:
    """Read bundled set ``name`` from the package. ``iris.csv`` and ``breast_cancer.csv``
    start with a header ``n_samples,n_features,class,...``; ``digits.csv.gz`` has none
    (its classes are the digits 0 to 9). Every row is the features, then the class index."""
    if name not in BUNDLED_FILES:
        raise ValueError(f"no bundled dataset {name!r}; expected one of: {', '.join(BUNDLED)}")
    raw = (files("chainrule.data") / "bundled" / BUNDLED_FILES[name]).read_bytes()
    if name == "digits":
        body, shape, classes = (
            gzip.decompress(raw).decode("ascii"),
            None,
            [str(d) for d in range(10)],
        )
    else:
        header, _, body = raw.decode("utf-8").partition("\n")
        rows, features, *classes = header.strip().split(",")
        shape = (int(rows), int(features) + 1)
    table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    if shape is not None and table.shape != shape:
        raise ValueError(f"bundled {name}: {table.shape} values, its header says {shape}")
    data = np.ascontiguousarray(table[:, :-1])
    target = table[:, -1].astype(np.int64)
    if not np.array_equal(target, table[:, -1]) or not set(target.tolist()) <= set(
        range(len(classes))
    ):
        raise ValueError(f"bundled {name}: a class index is not one of {len(classes)} classes")
    data.setflags(write=False)
    target.setflags(write=False)
    return BundledSet(data, target, tuple(classes))


def _bundled(name: str) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """A bundled set's features as float32 (digits' pixels scaled to [0, 1]) and labels."""
    bundled = load_bundled(name)
    data = bundled.data / 16.0 if name == "digits" else bundled.data
    return data.astype(np.float32), bundled.target.copy()


def prepare(name: str, n_samples: int, holdout: float, seed: int) -> Split:
    """Load ``name`` and hold out a stratum-free random ``holdout`` share of rows.

    Everything is drawn from ``np.random.default_rng(seed)``: the same seed gives the
    same rows in the same split on every machine.
    """
    _check_holdout(holdout)
    rng = np.random.default_rng(seed)
    X, y = load(name, n_samples, rng)
    return split_rows(X, y, holdout, rng)


def prepare_dataset(
    dataset: DatasetChoice, seed: int, fetch_upload: Callable[[str], bytes]
) -> Split:
    """The split a job trains on: a built-in set by ``dataset.name`` (as :func:`prepare`
    makes it), or the upload ``dataset.id``, whose stored bytes ``fetch_upload(id)``
    returns (it raises ``KeyError`` or ``ValueError`` when there is no such upload).
    With ``dataset.standardize`` the features are standardized by :func:`standardize`.
    A service passes ``DatasetStore(binary_client(url), prefix).data`` as ``fetch_upload``.

    Raises ``ValueError`` for anything that makes the data unusable.
    """
    if dataset.id is not None:
        _check_holdout(dataset.holdout)
        try:
            data = fetch_upload(dataset.id)
        except KeyError:
            raise ValueError(f"no uploaded dataset {dataset.id!r}; was it deleted?") from None
        try:
            parsed = ParsedDataset.from_bytes(data)
        except (ValueError, KeyError, OSError) as exc:
            raise ValueError(
                f"the stored data of upload {dataset.id!r} is unreadable: {exc}"
            ) from None
        split = split_rows(parsed.X, parsed.y, dataset.holdout, np.random.default_rng(seed))
    elif dataset.name is not None:
        split = prepare(dataset.name, dataset.samples, dataset.holdout, seed)
    else:  # the spec refuses this; a hand-built object might not
        raise ValueError("the dataset needs a name (a built-in set) or an id (an upload)")
    return standardize(split) if dataset.standardize else split


def split_rows(
    X: NDArray[np.float32], y: Labels, holdout: float, rng: np.random.Generator
) -> Split:
    """A random ``holdout`` share of the rows (at least one) for evaluation, the rest for
    training; the order comes from ``rng``."""
    n_test = max(1, round(holdout * len(X)))
    if n_test >= len(X):
        raise ValueError(f"holdout {holdout} of {len(X)} rows leaves no training rows")
    order = rng.permutation(len(X))
    test, train = order[:n_test], order[n_test:]
    return Split(X[train], y[train], X[test], y[test])


def standardize(split: Split) -> Split:
    """Every feature shifted and scaled to mean 0 and standard deviation 1 over the
    training rows; the holdout rows get the same shift and scale (their own statistics
    are never looked at). A feature constant over the training rows is only centred."""
    train = split.X_train.astype(np.float64)
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0

    def scaled(X: NDArray[np.float32]) -> NDArray[np.float32]:
        standardized: NDArray[np.float64] = (X.astype(np.float64) - mean) / std
        return standardized.astype(np.float32)

    return Split(
        scaled(split.X_train), split.y_train, scaled(split.X_test), split.y_test, mean, std
    )


def targets(labels: Labels, outputs: int, loss: str) -> NDArray[np.generic]:
    """What the network is trained against: a regression set's float targets as they
    are; otherwise the class index for ``cross_entropy``, the 0/1 label for a single
    output unit, and the one-hot row for the rest."""
    if np.issubdtype(labels.dtype, np.floating):
        if outputs != 1:
            raise ValueError(
                f"regression targets need exactly 1 output unit; the network has {outputs}"
            )
        return labels.astype(np.float32)
    if loss == "cross_entropy":
        return labels
    if outputs == 1:
        return labels.astype(np.float32)
    return np.eye(outputs, dtype=np.float32)[labels]


def _check_holdout(holdout: float) -> None:
    if not 0.0 < holdout < 1.0:
        raise ValueError(f"holdout must lie in (0, 1); got {holdout!r}")
