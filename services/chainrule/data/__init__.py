"""Datasets: seeded synthetic generators and bundled sets, by name."""

from chainrule.data.synthetic import GENERATORS, make_dataset

__all__ = ["GENERATORS", "make_dataset"]
