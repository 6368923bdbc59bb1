"""The job specs in examples/, which the README shows and `make run` trains: the tests use
the same files, so an example that stops validating fails the suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_spec(name: str = "xor", **sections: dict[str, Any]) -> dict[str, Any]:
    """``examples/{name}.json`` as a dict, with keys of its sections replaced."""
    spec: dict[str, Any] = json.loads((EXAMPLES / f"{name}.json").read_text())
    for section, values in sections.items():
        spec[section] = {**spec[section], **values}
    return spec
