"""Frames: a Push or Pull message whose tensors travel back to back in one payload field.
Round trips for any set of arrays, read back as aligned views without copies; a plain
protobuf reader parses the same bytes; malformed frames are precise errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from chainrule.rpc import codec
from chainrule.rpc.v1 import paramserver_pb2 as pb

dtypes = st.sampled_from([np.float32, np.float64, np.int64])
arrays = dtypes.flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
)
named = st.dictionaries(st.text(min_size=1, max_size=12), arrays, max_size=5)
headers = st.builds(
    pb.PushRequest,
    job_id=st.text(max_size=20),
    task_id=st.text(max_size=40),
    base_version=st.integers(0, 2**40),
    samples=st.integers(1, 2**20),
)


@settings(max_examples=200, deadline=None)
@given(named, headers)
def test_a_frame_round_trips_as_aligned_views(tensors: dict, header: pb.PushRequest) -> None:
    expected = pb.PushRequest()
    expected.CopyFrom(header)
    data = codec.frame(header, "grads", tensors)

    back, payload = codec.unframe(data, pb.PushRequest)
    arrays_back = codec.decode_framed(back.grads, payload)

    assert (back.job_id, back.task_id, back.base_version, back.samples) == (
        expected.job_id,
        expected.task_id,
        expected.base_version,
        expected.samples,
    )
    assert list(arrays_back) == list(tensors)
    for name, arr in tensors.items():
        got = arrays_back[name]
        assert (got.dtype, got.shape) == (arr.dtype, arr.shape)
        np.testing.assert_array_equal(got, arr)
        if got.size:
            assert not got.flags.owndata  # a view of the received bytes, not a copy
            assert got.ctypes.data % codec.ALIGN == 0  # bytes objects start 16-aligned


def test_a_plain_protobuf_reader_parses_a_frame() -> None:
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = codec.frame(pb.PushRequest(job_id="j", task_id="t", samples=4), "grads", {"W": w})
    message = pb.PushRequest.FromString(data)
    assert (message.job_id, message.task_id, message.samples) == ("j", "t", 4)
    assert [(t.name, list(t.shape)) for t in message.grads] == [("W", [2, 3])]
    assert message.payload[: w.nbytes] == w.tobytes()  # the bytes, raw and in C order


def test_tensors_inline_in_the_message_are_read_too() -> None:
    """A caller using the generated stubs may send Tensor.data instead of a payload."""
    w = np.ones((2, 2), dtype=np.float32)
    message = pb.PushRequest(job_id="j", grads=codec.encode_all({"W": w}))
    back, payload = codec.unframe(message.SerializeToString(), pb.PushRequest)
    np.testing.assert_array_equal(codec.decode_framed(back.grads, payload)["W"], w)


@pytest.mark.parametrize(
    ("cut", "match"),
    [(-1, "payload runs past the end|its tensors account"), (-9, "payload runs past")],
)
def test_a_truncated_frame_is_refused(cut: int, match: str) -> None:
    data = codec.frame(pb.PushRequest(job_id="j"), "grads", {"W": np.ones(4, np.float32)})
    with pytest.raises(codec.TensorError, match=match):
        back, payload = codec.unframe(data[:cut], pb.PushRequest)
        codec.decode_framed(back.grads, payload)


def test_a_payload_shorter_than_the_shapes_claim_is_refused() -> None:
    data = codec.frame(pb.PushRequest(job_id="j"), "grads", {"W": np.ones(4, np.float32)})
    back, payload = codec.unframe(data, pb.PushRequest)
    back.grads[0].shape[:] = [1000]
    with pytest.raises(codec.TensorError, match=r"'W' \(shape \(1000,\) of float32"):
        codec.decode_framed(back.grads, payload)


def test_a_payload_longer_than_the_tensors_is_refused() -> None:
    data = codec.frame(pb.PushRequest(job_id="j"), "grads", {"W": np.ones(4, np.float32)})
    _, payload = codec.unframe(data, pb.PushRequest)
    with pytest.raises(codec.TensorError, match="payload has 16 bytes; its tensors account for 0"):
        codec.decode_framed([], payload)


@settings(max_examples=100, deadline=None)
@given(named, headers)
def test_read_frame_reads_what_unframe_and_decode_framed_read(
    tensors: dict, header: pb.PushRequest
) -> None:
    data = codec.frame(header, "grads", tensors)
    back, payload = codec.unframe(data, pb.PushRequest)
    expected = codec.decode_framed(back.grads, payload)
    for _ in range(2):  # the second time from the layout cache
        request, arrays = codec.read_frame(data, pb.PushRequest, "grads")
        assert (request.job_id, request.task_id, request.base_version, request.samples) == (
            back.job_id,
            back.task_id,
            back.base_version,
            back.samples,
        )
        assert not request.grads  # the tensor list is read into the arrays, not kept
        assert list(arrays) == list(expected)
        for name, arr in expected.items():
            assert (arrays[name].dtype, arrays[name].shape) == (arr.dtype, arr.shape)
            np.testing.assert_array_equal(arrays[name], arr)
            if arr.size:
                assert not arrays[name].flags.owndata


def test_read_frame_refuses_a_payload_that_does_not_fit_a_cached_layout() -> None:
    tensors = {"W": np.ones((3, 2), np.float32), "b": np.ones(3, np.float32)}  # 24 + 16 bytes
    data = codec.frame(pb.PushRequest(job_id="j"), "grads", tensors)
    codec.read_frame(data, pb.PushRequest, "grads")  # the layout is cached now
    header, payload = codec.unframe(data, pb.PushRequest)
    for size, match in [
        (36, "payload has 36 bytes; its tensors account for 40"),  # b's padding missing
        (30, r"'b' \(shape \(3,\) of float32, 12 bytes\) runs past the end of the 30-byte"),
        (48, "payload has 48 bytes; its tensors account for 40"),
    ]:
        header.payload = (payload.tobytes() + bytes(8))[:size]
        with pytest.raises(codec.TensorError, match=match):
            codec.read_frame(header.SerializeToString(), pb.PushRequest, "grads")


def test_read_frame_decodes_inline_tensors_without_caching_them() -> None:
    w = np.ones((2, 2), dtype=np.float32)
    message = pb.PushRequest(job_id="j", grads=codec.encode_all({"W": w}))
    for _ in range(2):
        request, arrays = codec.read_frame(message.SerializeToString(), pb.PushRequest, "grads")
        assert request.job_id == "j"
        np.testing.assert_array_equal(arrays["W"], w)


def test_read_frame_refuses_a_tensor_named_twice() -> None:
    message = pb.PushRequest(job_id="j", grads=[codec.encode_meta("W", np.ones(1))] * 2)
    with pytest.raises(codec.TensorError, match="'W' appears more than once"):
        codec.read_frame(message.SerializeToString(), pb.PushRequest, "grads")
