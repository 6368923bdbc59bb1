"""Datasets: seeded synthetic generators and bundled sets, by name."""

from chainrule.data.registry import CLASSES, DATASETS, FEATURES, Split, prepare, targets
from chainrule.data.synthetic import GENERATORS, make_dataset

__all__ = [
    "CLASSES",
    "DATASETS",
    "FEATURES",
    "GENERATORS",
    "Split",
    "make_dataset",
    "prepare",
    "targets",
]
