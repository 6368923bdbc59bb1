"""ndarray <-> Tensor: round trips for any shape and dtype, precise errors otherwise."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from chainrule.rpc import codec
from chainrule.rpc.v1 import tensor_pb2

dtypes = st.sampled_from([np.float32, np.float64, np.int64])
arrays = dtypes.flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
)


@settings(max_examples=200, deadline=None)
@given(arrays)
def test_round_trip_keeps_values_shape_and_dtype(arr: np.ndarray) -> None:
    wire = codec.encode("t", arr).SerializeToString()
    back = codec.decode(tensor_pb2.Tensor.FromString(wire))
    assert back.dtype == arr.dtype
    assert back.shape == arr.shape
    np.testing.assert_array_equal(back, arr)


def test_big_endian_and_non_contiguous_input_arrive_as_the_same_values() -> None:
    arr = np.arange(12, dtype=">f4").reshape(3, 4)[:, ::2]
    back = codec.decode(codec.encode("t", arr))
    np.testing.assert_array_equal(back, arr.astype(np.float32))


def test_data_is_raw_little_endian_bytes() -> None:
    t = codec.encode("w", np.array([1.0, 2.0], dtype=np.float32))
    assert t.data == np.array([1.0, 2.0], dtype="<f4").tobytes()
    assert list(t.shape) == [2]


def test_unsupported_dtype_is_refused() -> None:
    with pytest.raises(codec.TensorError, match="dtype int8"):
        codec.encode("t", np.zeros(3, dtype=np.int8))


def test_byte_count_must_match_shape() -> None:
    t = codec.encode("w", np.zeros((2, 3), dtype=np.float32))
    t.shape[:] = [2, 4]
    with pytest.raises(
        codec.TensorError, match=r"'w' has 24 bytes; shape \(2, 4\) of float32 needs 32"
    ):
        codec.decode(t)


def test_duplicate_names_are_refused() -> None:
    t = codec.encode("w", np.zeros(2, dtype=np.float32))
    with pytest.raises(codec.TensorError, match="more than once"):
        codec.decode_all([t, t])


@pytest.mark.parametrize(
    ("grads", "message"),
    [
        ({"w": np.zeros(3, np.float32)}, "missing gradient tensor"),
        (
            {
                "w": np.zeros(3, np.float32),
                "b": np.zeros(1, np.float32),
                "x": np.zeros(1, np.float32),
            },
            "unknown gradient tensor",
        ),
        (
            {"w": np.zeros(4, np.float32), "b": np.zeros(1, np.float32)},
            r"'w' has shape \(4,\); expected \(3,\)",
        ),
        (
            {"w": np.zeros(3, np.float64), "b": np.zeros(1, np.float32)},
            "dtype float64; expected float32",
        ),
        (
            {"w": np.array([0, np.nan, 0], np.float32), "b": np.zeros(1, np.float32)},
            "NaN or infinity",
        ),
    ],
)
def test_check_like_names_what_is_wrong(grads: dict, message: str) -> None:
    reference = {"w": np.zeros(3, np.float32), "b": np.zeros(1, np.float32)}
    with pytest.raises(codec.TensorError, match=message):
        codec.check_like(grads, reference)
