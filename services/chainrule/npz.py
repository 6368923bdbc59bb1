"""Arrays as ``.npz`` bytes: how θ, checkpoints, datasets and models are stored and sent
(numpy's own format, no pickles)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np


def npz_bytes(arrays: Mapping[str, Any], compressed: bool = False) -> bytes:
    """``arrays`` by name as one ``.npz`` archive (zip-deflated when ``compressed``)."""
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buffer, **arrays)
    return buffer.getvalue()
