"""NPZ uploads (:func:`parse_npz`): an ``np.savez`` archive holding exactly ``X`` (2-D
numbers, one row per sample) and ``y`` (1-D, one target per row). Positions are 0-based
array indices: ``X[12, 3]``, row 12.

What the targets and features may hold is :mod:`chainrule.data.uploads`'.
"""

from __future__ import annotations

import io
import math
import zipfile

import numpy as np
from numpy.typing import NDArray

from chainrule.data import uploads
from chainrule.data.uploads import DatasetError, DatasetTooLargeError, ParsedDataset


def parse_npz(
    data: bytes,
    *,
    task: str = "classification",
    max_bytes: int = uploads.DEFAULT_MAX_BYTES,
    max_rows: int = uploads.MAX_ROWS,
    max_features: int = uploads.MAX_FEATURES,
) -> ParsedDataset:
    """Check an ``np.savez`` archive of ``X`` and ``y``; see the module notes. The arrays
    may take at most ``max_bytes`` uncompressed, too."""
    uploads.check_task(task)
    uploads.check_bytes(len(data), max_bytes)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError):
        raise DatasetError(
            "the file is not an NPZ archive (a zip of .npy arrays, as np.savez writes); "
            "upload a CSV file with a .csv name, or an .npz file"
        ) from None
    with archive:
        members = {info.filename.removesuffix(".npy"): info for info in archive.infolist()}
        if set(members) != {"X", "y"}:
            found = ", ".join(sorted(members)) or "nothing"
            raise DatasetError(
                f"the NPZ archive holds {found}; expected exactly two arrays, X and y"
            )
        unpacked = sum(info.file_size for info in members.values())
        if unpacked > max_bytes:
            raise DatasetTooLargeError(
                f"X and y take {unpacked} bytes uncompressed; the limit is {max_bytes} bytes"
            )
        X_raw, y_raw = (_npy(archive, members[name], name) for name in ("X", "y"))
    if X_raw.ndim != 2:
        raise DatasetError(
            f"X has shape {X_raw.shape}; expected 2 dimensions (rows, features)", column="X"
        )
    rows, width = X_raw.shape
    if rows > max_rows:
        raise DatasetTooLargeError(f"X has {rows} rows; the limit is {max_rows}", column="X")
    if width > max_features:
        raise DatasetTooLargeError(
            f"X has {width} features; the limit is {max_features}", column="X"
        )
    if width < 1:
        raise DatasetError(f"X has shape {X_raw.shape}: no features; expected at least one")
    if rows < uploads.MIN_ROWS:
        raise DatasetError(
            f"X has {rows} rows; at least {uploads.MIN_ROWS} are needed (one to train on, one to hold out)"
        )
    if y_raw.shape != (rows,):
        raise DatasetError(
            f"y has shape {y_raw.shape}; expected ({rows},), one target per row of X",
            column="y",
        )
    if not (np.issubdtype(X_raw.dtype, np.integer) or X_raw.dtype.kind in "bf"):
        raise DatasetError(
            f"X has dtype {X_raw.dtype}; expected numbers (integers or floats)", column="X"
        )
    names = [f"x{j}" for j in range(width)]
    place = uploads.Place(csv=False, columns=names)
    X = uploads.finite_float32(X_raw.astype(np.float64), place)
    y, classes = uploads.parse_targets(y_raw, "y", task, place)
    return ParsedDataset(X, y, classes, names, "y")


def _npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> NDArray[np.generic]:
    """The array ``info`` holds, its header checked before anything is allocated: the
    data its shape and dtype claim must fit the member (which the archive's size limit
    bounds), so a header that lies about its shape is refused, not a MemoryError."""
    try:
        with archive.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
        claimed = math.prod(shape) * dtype.itemsize
        if claimed > info.file_size:
            raise DatasetError(
                f"array {name}'s header claims shape {shape} of {dtype} ({claimed} bytes), "
                f"but the archive holds {info.file_size} bytes for it; save it with np.savez",
                column=name,
            )
        with archive.open(info) as member:
            array: NDArray[np.generic] = np.lib.format.read_array(member, allow_pickle=False)
    except DatasetError:
        raise
    except ValueError as exc:  # object arrays, a broken header
        raise DatasetError(
            f"array {name} cannot be read ({exc}); save plain numeric arrays with np.savez",
            column=name,
        ) from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DatasetError(f"array {name} is damaged in the archive: {exc}", column=name) from None
    return array
