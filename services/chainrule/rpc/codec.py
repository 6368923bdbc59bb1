"""The one place ndarray <-> Tensor{name, dtype, shape, bytes}.

Data travels as raw little-endian bytes in C order; the receiver checks the byte count
against the shape before ``np.frombuffer``, so a malformed tensor is an error, not a
crash or a silent reshape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from chainrule.nn.types import Array
from chainrule.rpc.v1 import tensor_pb2

MAX_MESSAGE_BYTES = 512 * 1024 * 1024
"""gRPC send/receive limit on both ends: a 25 M-parameter float32 model (100 MB) moves
with room to spare for its gradient and optimizer traffic."""

GRPC_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

_TO_WIRE: dict[np.dtype[Any], tensor_pb2.DType] = {
    np.dtype(np.float32): tensor_pb2.DTYPE_FLOAT32,
    np.dtype(np.float64): tensor_pb2.DTYPE_FLOAT64,
    np.dtype(np.int64): tensor_pb2.DTYPE_INT64,
}
_FROM_WIRE = {wire: dt.newbyteorder("<") for dt, wire in _TO_WIRE.items()}


class TensorError(ValueError):
    """A Tensor that cannot be decoded, or does not match what was expected."""


def encode(name: str, array: Array) -> tensor_pb2.Tensor:
    """``array`` as a Tensor (float32, float64 or int64; little-endian, C order)."""
    arr = np.asarray(array)
    if arr.dtype.newbyteorder("=") not in _TO_WIRE:
        allowed = ", ".join(str(d) for d in _TO_WIRE)
        raise TensorError(f"tensor {name!r} has dtype {arr.dtype}; expected one of: {allowed}")
    wire = _TO_WIRE[arr.dtype.newbyteorder("=")]
    data = np.ascontiguousarray(arr, dtype=_FROM_WIRE[wire]).tobytes()
    return tensor_pb2.Tensor(name=name, dtype=wire, shape=list(arr.shape), data=data)


def decode(tensor: tensor_pb2.Tensor) -> Array:
    """The ndarray a Tensor carries (a read-only view of its bytes, native dtype)."""
    if tensor.dtype not in _FROM_WIRE:
        raise TensorError(f"tensor {tensor.name!r} has unknown dtype code {tensor.dtype}")
    dtype = _FROM_WIRE[tensor.dtype]
    shape = tuple(int(s) for s in tensor.shape)
    if any(s < 0 for s in shape):
        raise TensorError(f"tensor {tensor.name!r} has a negative dimension in shape {shape}")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(tensor.data) != expected:
        raise TensorError(
            f"tensor {tensor.name!r} has {len(tensor.data)} bytes; "
            f"shape {shape} of {dtype.name} needs {expected}"
        )
    arr = np.frombuffer(tensor.data, dtype=dtype).reshape(shape)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def encode_all(arrays: Mapping[str, Array]) -> list[tensor_pb2.Tensor]:
    return [encode(name, arr) for name, arr in arrays.items()]


def decode_all(tensors: Iterable[tensor_pb2.Tensor]) -> dict[str, Array]:
    """Tensors by name; a name sent twice is an error."""
    out: dict[str, Array] = {}
    for t in tensors:
        if t.name in out:
            raise TensorError(f"tensor {t.name!r} appears more than once")
        out[t.name] = decode(t)
    return out


def check_like(
    arrays: Mapping[str, Array], reference: Mapping[str, Array], what: str = "gradient"
) -> None:
    """``arrays`` has exactly the names, shapes and dtypes of ``reference``, all finite."""
    missing, unknown = sorted(set(reference) - set(arrays)), sorted(set(arrays) - set(reference))
    if unknown:
        raise TensorError(f"unknown {what} tensor(s) {unknown}; expected {sorted(reference)}")
    if missing:
        raise TensorError(f"missing {what} tensor(s) {missing}; expected {sorted(reference)}")
    for name, arr in arrays.items():
        ref = reference[name]
        if arr.shape != ref.shape:
            raise TensorError(f"{what} {name!r} has shape {arr.shape}; expected {ref.shape}")
        if arr.dtype != ref.dtype:
            raise TensorError(f"{what} {name!r} has dtype {arr.dtype}; expected {ref.dtype}")
        if not np.isfinite(arr).all():
            raise TensorError(
                f"{what} {name!r} contains NaN or infinity; all values must be finite"
            )
