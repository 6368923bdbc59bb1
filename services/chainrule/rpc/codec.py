"""The one place ndarray <-> Tensor{name, dtype, shape, bytes}.

Data travels as raw little-endian bytes in C order; the receiver checks the byte count
against the shape before ``np.frombuffer``, so a malformed tensor is an error, not a
crash or a silent reshape.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
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
_WIRE_READY = frozenset(_FROM_WIRE.values())  # dtypes whose bytes go on the wire as they are


class TensorError(ValueError):
    """A Tensor that cannot be decoded, or does not match what was expected."""


def encode(name: str, array: Array) -> tensor_pb2.Tensor:
    """``array`` as a Tensor (float32, float64 or int64; little-endian, C order)."""
    tensor = encode_meta(name, array)
    tensor.data = np.ascontiguousarray(array, dtype=_FROM_WIRE[tensor.dtype]).tobytes()
    return tensor


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


_ROWS = np.dtype("<i8")


def encode_rows(rows: Array) -> bytes:
    """Row indices (a task's minibatch) as int64 little-endian bytes, back to back."""
    return np.asarray(rows).astype(_ROWS, copy=False).tobytes()


def decode_rows(data: bytes) -> Array:
    """The row indices of :func:`encode_rows` (a read-only view, native int64)."""
    if len(data) % _ROWS.itemsize:
        raise TensorError(f"rows take 8 bytes each; got {len(data)} bytes")
    return np.frombuffer(data, _ROWS).astype(np.int64, copy=False)


# -- frames: a protobuf header and the tensors' bytes in one contiguous field ----------
#
# Push and Pull move θ and gradients. Building ``Tensor(data=...)`` copies every array
# into protobuf, and nesting it in a request copies it again. A frame instead is the
# request message with its Tensors' ``data`` left empty, followed by two fields written
# by hand: ``align`` (padding, so that the payload starts on an 8-byte boundary of the
# received buffer) and ``payload`` (every tensor's bytes back to back, in the order of
# the message's tensor list, each padded to a multiple of 8 bytes). The result is a valid
# serialization of the very message declared in protos/, so any protobuf reader can
# parse it; this module writes it with one copy of each array and reads it back as
# ``np.frombuffer`` views of the received bytes, with no copy at all.

ALIGN = 8
_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LEN, _WIRE_FIXED32 = 0, 1, 2, 5


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        bits, n = n & 0x7F, n >> 7
        if n:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise TensorError("truncated frame: a varint runs past the end")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TensorError("malformed frame: a varint longer than 10 bytes")


def _padded(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def frame(message: Any, tensors_field: str, arrays: Mapping[str, Array]) -> bytes:
    """``message`` (a request or reply with a ``repeated Tensor`` field named
    ``tensors_field``, an ``align`` and a ``payload`` field) serialized with ``arrays``
    as its tensors, their bytes in the payload. One copy of each array."""
    return b"".join(frame_parts(message, tensors_field, arrays))


def frame_parts(message: Any, tensors_field: str, arrays: Mapping[str, Array]) -> list[Any]:
    """:func:`frame` as the buffers that, written back to back, are the frame (views of
    the arrays among them): a socket sends them without joining them first. The tensor
    list is written after ``message``'s own fields (any field order parses alike), from
    a cache: a job's θ and gradients keep their names, dtypes and shapes."""
    number = message.DESCRIPTOR.fields_by_name[tensors_field].number
    tensors, chunks = _tensor_list(number, arrays), _payload(arrays)
    head = message.SerializeToString() + tensors
    fields = message.DESCRIPTOR.fields_by_name
    payload_len = sum(len(c) for c in chunks)
    payload_tag = _varint(fields["payload"].number << 3 | _WIRE_LEN) + _varint(payload_len)
    align_tag = _varint(fields["align"].number << 3 | _WIRE_LEN)
    used = len(head) + len(align_tag) + 1 + len(payload_tag)
    pad = -used % ALIGN  # the align field carries pad bytes (< 8, so a 1-byte length)
    return [head, align_tag, bytes([pad]), b"\0" * pad, payload_tag, *chunks]


_TENSOR_LISTS: dict[tuple[Any, ...], bytes] = {}
_MAX_TENSOR_LISTS = 256


def _tensor_list(number: int, arrays: Mapping[str, Array]) -> bytes:
    """The serialized ``repeated Tensor`` field ``number`` naming ``arrays``' names,
    dtypes and shapes (their data left to the payload); TensorError for a bad dtype."""
    key = (number, *((name, a.dtype.str, a.shape) for name, a in arrays.items()))
    cached = _TENSOR_LISTS.get(key)
    if cached is None:
        tag = _varint(number << 3 | _WIRE_LEN)
        metas = [encode_meta(name, a).SerializeToString() for name, a in arrays.items()]
        cached = b"".join(tag + _varint(len(m)) + m for m in metas)
        if len(_TENSOR_LISTS) >= _MAX_TENSOR_LISTS:
            _TENSOR_LISTS.clear()
        _TENSOR_LISTS[key] = cached
    return cached


def _payload(arrays: Mapping[str, Array]) -> list[Any]:
    """The arrays' bytes as chunks (views, and zero padding) to be written back to back."""
    chunks: list[Any] = []
    for array in arrays.values():
        arr = array
        if arr.dtype not in _WIRE_READY or not arr.flags.c_contiguous:  # else as it is
            arr = np.ascontiguousarray(arr, dtype=_FROM_WIRE[_TO_WIRE[arr.dtype.newbyteorder("=")]])
        chunks.append(arr.reshape(-1).view(np.uint8) if arr.size else b"")
        pad = _padded(arr.nbytes) - arr.nbytes
        if pad:
            chunks.append(b"\0" * pad)
    return chunks


def encode_meta(name: str, array: Array) -> tensor_pb2.Tensor:
    """A Tensor naming ``array``'s name, dtype and shape, its data left to a payload."""
    arr = np.asarray(array)
    if arr.dtype.newbyteorder("=") not in _TO_WIRE:
        allowed = ", ".join(str(d) for d in _TO_WIRE)
        raise TensorError(f"tensor {name!r} has dtype {arr.dtype}; expected one of: {allowed}")
    wire = _TO_WIRE[arr.dtype.newbyteorder("=")]
    return tensor_pb2.Tensor(name=name, dtype=wire, shape=list(arr.shape))


def unframe(data: bytes, message_type: Any) -> tuple[Any, memoryview]:
    """Parse a frame (or any serialization of ``message_type``): the message without its
    payload, and the payload as a view of ``data``. Only the small header is copied."""
    fields, payload = _split(memoryview(data), message_type, None)
    return message_type.FromString(_joined(fields)), payload


def read_frame(data: bytes, message_type: Any, tensors_field: str) -> tuple[Any, dict[str, Array]]:
    """:func:`unframe` and :func:`decode_framed` in one: the message (its tensor list
    left out) and its arrays as views of ``data``. The tensor list is parsed and checked
    once per layout (a job's θ and gradients keep theirs), then looked up by its bytes."""
    number = message_type.DESCRIPTOR.fields_by_name[tensors_field].number
    fields, payload = _split(memoryview(data), message_type, number)
    listed = fields.pop()
    header = message_type.FromString(_joined(fields))
    key = _joined(listed)
    layout = _LAYOUTS.get(key)
    if layout is None:
        tensors = getattr(message_type.FromString(key), tensors_field)
        if any(t.data for t in tensors):  # inline data (the generated stubs'): not cached
            return header, decode_framed(tensors, payload)
        layout = _layout(tensors)
        if len(_LAYOUTS) >= _MAX_TENSOR_LISTS:
            _LAYOUTS.clear()
        _LAYOUTS[key] = layout
    slots, size = layout
    if size != len(payload):  # the same errors as decode_framed's, in the same order
        for s in slots:
            _view(s, payload)
        raise TensorError(f"the payload has {len(payload)} bytes; its tensors account for {size}")
    return header, {s.name: _view(s, payload) for s in slots}


def _split(
    buf: memoryview, message_type: Any, tensors_number: int | None
) -> tuple[list[Any], memoryview]:
    """The fields of a serialized message, as views: every field but the payload (and
    then, if ``tensors_number``, a last entry: the list of that field's occurrences),
    and the payload."""
    payload_number = message_type.DESCRIPTOR.fields_by_name["payload"].number
    rest: list[Any] = []
    listed: list[memoryview] = []
    payload = memoryview(b"")
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == _WIRE_VARINT:
            _, pos = _read_varint(buf, pos)
        elif wire == _WIRE_FIXED64:
            pos += 8
        elif wire == _WIRE_FIXED32:
            pos += 4
        elif wire == _WIRE_LEN:
            length, pos = _read_varint(buf, pos)
            if number == payload_number:
                payload = buf[pos : pos + length]
                if len(payload) != length:
                    raise TensorError("truncated frame: the payload runs past the end")
                pos += length
                continue
            pos += length
        else:
            raise TensorError(f"malformed frame: unsupported wire type {wire}")
        if pos > len(buf):
            raise TensorError("truncated frame: a field runs past the end")
        (listed if number == tensors_number else rest).append(buf[start:pos])
    if tensors_number is not None:
        rest.append(listed)
    return rest, payload


def _joined(fields: list[memoryview]) -> bytes:
    return fields[0].tobytes() if len(fields) == 1 else b"".join(fields)


@dataclass(frozen=True)
class _Slot:
    """Where one tensor lies in a frame's payload."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int, ...]
    count: int
    offset: int

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


_LAYOUTS: dict[bytes, tuple[tuple[_Slot, ...], int]] = {}


def _slot(t: tensor_pb2.Tensor, offset: int) -> _Slot:
    if t.dtype not in _FROM_WIRE:
        raise TensorError(f"tensor {t.name!r} has unknown dtype code {t.dtype}")
    shape = tuple(t.shape)
    if any(s < 0 for s in shape):
        raise TensorError(f"tensor {t.name!r} has a negative dimension in shape {shape}")
    return _Slot(t.name, _FROM_WIRE[t.dtype], shape, math.prod(shape), offset)


def _layout(tensors: Iterable[tensor_pb2.Tensor]) -> tuple[tuple[_Slot, ...], int]:
    """The slots of tensors whose bytes are all in the payload, and its length."""
    slots: dict[str, _Slot] = {}
    offset = 0
    for t in tensors:
        if t.name in slots:
            raise TensorError(f"tensor {t.name!r} appears more than once")
        slots[t.name] = s = _slot(t, offset)
        offset += _padded(s.nbytes)
    return tuple(slots.values()), offset


def _view(s: _Slot, payload: memoryview) -> Array:
    """The tensor of ``s``: a read-only view of the payload (checked to hold it)."""
    if s.offset + s.nbytes > len(payload):
        raise TensorError(
            f"tensor {s.name!r} (shape {s.shape} of {s.dtype.name}, {s.nbytes} bytes) runs "
            f"past the end of the {len(payload)}-byte payload"
        )
    if not s.count:
        return np.empty(0, s.dtype).reshape(s.shape)
    arr = np.frombuffer(payload, s.dtype, s.count, s.offset)
    if not s.dtype.isnative:  # a big-endian host
        arr = arr.astype(s.dtype.newbyteorder("="))
    return arr.reshape(s.shape)


def decode_framed(tensors: Iterable[tensor_pb2.Tensor], payload: memoryview) -> dict[str, Array]:
    """The arrays of a frame: each a read-only ``np.frombuffer`` view of the payload (a
    Tensor that carries its own ``data`` instead is decoded from that). Checked: names
    unique, shapes non-negative, the payload exactly as long as the tensors need."""
    out: dict[str, Array] = {}
    offset = 0
    for t in tensors:
        if t.name in out:
            raise TensorError(f"tensor {t.name!r} appears more than once")
        if t.data:
            out[t.name] = decode(t)
            continue
        s = _slot(t, offset)
        out[t.name] = _view(s, payload)
        offset += _padded(s.nbytes)
    if offset != len(payload):
        raise TensorError(f"the payload has {len(payload)} bytes; its tensors account for {offset}")
    return out
