"""Array and parameter types shared by the math core."""

from __future__ import annotations

from typing import Any

from numpy.typing import NDArray

# float32 in training and on the wire, float64 in gradient checks; int64 class labels.
# The dtype is checked at the edges at run time, so the static type leaves it open.
Array = NDArray[Any]
Params = dict[str, Array]
"""Parameters or gradients by name: ``"dense1.W"`` (fan_in, fan_out), ``"dense1.b"`` (fan_out,)."""
