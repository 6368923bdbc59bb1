"""Kept for the importers not yet moved to tests.support.examples (it moved there)."""

from tests.support.examples import EXAMPLES, example_spec

__all__ = ["EXAMPLES", "example_spec"]
