"""Datasets: seeded synthetic generators, bundled sets and uploads, by name or id."""

from chainrule.data.csv_upload import parse_csv
from chainrule.data.evaluation import evaluate
from chainrule.data.npz_upload import parse_npz
from chainrule.data.registry import (
    BUNDLED,
    DATASETS,
    INFO,
    DatasetInfo,
    Split,
    prepare,
    prepare_dataset,
    standardize,
    targets,
)
from chainrule.data.synthetic import GENERATED, GENERATORS, make_dataset
from chainrule.data.uploads import DatasetError, DatasetTooLargeError, ParsedDataset

__all__ = [
    "BUNDLED",
    "DATASETS",
    "GENERATED",
    "GENERATORS",
    "INFO",
    "DatasetError",
    "DatasetInfo",
    "DatasetTooLargeError",
    "ParsedDataset",
    "Split",
    "evaluate",
    "make_dataset",
    "parse_csv",
    "parse_npz",
    "prepare",
    "prepare_dataset",
    "standardize",
    "targets",
]
