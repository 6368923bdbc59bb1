"""The same-host transport (rpc/local.py, rpc/local_server.py) on real Unix sockets: the
generated stubs and servicers run on it unchanged, with gRPC's status codes, deadlines and
limits."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from chainrule.paramserver.client import ParamServerClient
from chainrule.paramserver.server import serve
from chainrule.rpc import local, shm
from chainrule.rpc.codec import MAX_MESSAGE_BYTES
from chainrule.rpc.local import LocalChannel, local_path
from chainrule.rpc.local_server import LocalServer
from chainrule.rpc.server import channel

pytestmark = pytest.mark.timeout(60)
METHOD = "/test.Echo/Echo"


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    text = bytes(request)
    if text == b"abort":
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "told to abort")
    if text == b"raise":
        raise KeyError("boom")
    if text.startswith(b"sleep"):
        time.sleep(float(text[5:]))
    if text == b"metadata":
        return repr(context.invocation_metadata()).encode()
    return text[::-1]


@pytest.fixture
def echo(tmp_path: Path) -> Iterator[LocalServer]:
    server = LocalServer(str(tmp_path / "echo.sock"))
    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(_echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    server.start()
    yield server
    server.stop()


def test_a_call_returns_the_reply_and_reuses_its_connection(echo: LocalServer) -> None:
    ch = LocalChannel(echo.path)
    call = ch.unary_unary(METHOD)
    assert bytes(call(b"abc", timeout=5)) == b"cba"
    assert bytes(call(b"x" * 100_000, timeout=5)) == b"x" * 100_000
    assert len(ch._idle) == 1  # one connection, kept for the next call
    assert bytes(call(b"metadata", timeout=5, metadata=[("k", "v=1")])) == b"(('k', 'v=1'),)"
    ch.close()


def test_errors_carry_grpc_status_codes(echo: LocalServer) -> None:
    call = LocalChannel(echo.path).unary_unary(METHOD)
    with pytest.raises(grpc.RpcError) as aborted:
        call(b"abort", timeout=5)
    assert aborted.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert aborted.value.details() == "told to abort"
    with pytest.raises(grpc.RpcError) as raised:
        call(b"raise", timeout=5)
    assert raised.value.code() == grpc.StatusCode.UNKNOWN
    assert "boom" in raised.value.details()
    missing = LocalChannel(echo.path).unary_unary("/test.Echo/Nope")
    with pytest.raises(grpc.RpcError) as unknown:
        missing(b"", timeout=5)
    assert unknown.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert bytes(call(b"ok", timeout=5)) == b"ko"  # the connection survived the errors


def test_a_deadline_is_deadline_exceeded_and_the_next_call_works(echo: LocalServer) -> None:
    call = LocalChannel(echo.path).unary_unary(METHOD)
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as late:
        call(b"sleep1.0", timeout=0.2)
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 0.9
    assert bytes(call(b"next", timeout=5)) == b"txen"  # a new connection, not the late reply


def test_no_server_is_unavailable(tmp_path: Path) -> None:
    call = LocalChannel(str(tmp_path / "nobody.sock")).unary_unary(METHOD)
    with pytest.raises(grpc.RpcError) as e:
        call(b"x", timeout=1)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_stopped_server_cuts_calls_off_as_unavailable(echo: LocalServer) -> None:
    call = LocalChannel(echo.path).unary_unary(METHOD)
    errors: list[grpc.StatusCode] = []

    def slow() -> None:
        try:
            call(b"sleep3", timeout=10)
        except grpc.RpcError as e:
            errors.append(e.code())

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    echo.stop()
    thread.join(timeout=10)
    assert errors == [grpc.StatusCode.UNAVAILABLE]
    assert not os.path.exists(echo.path)


def test_the_socket_is_private_and_a_second_server_cannot_take_it(echo: LocalServer) -> None:
    assert stat.S_IMODE(os.stat(echo.path).st_mode) == 0o600
    with pytest.raises(OSError, match="another server is listening"):
        LocalServer(echo.path).start()


def test_a_dead_servers_socket_file_is_replaced(tmp_path: Path) -> None:
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens: a server that was SIGKILLed
    server = LocalServer(path)
    server.start()
    server.stop()
    with pytest.raises(OSError, match="not a socket"):
        Path(path).write_text("")
        LocalServer(path).start()


def test_a_request_over_the_limit_is_refused(echo: LocalServer) -> None:
    ch = LocalChannel(echo.path)
    conn = ch._connection().conn
    conn.sendall(local.REQUEST_HEADER.pack(len(METHOD), 0, MAX_MESSAGE_BYTES + 1, 5.0, 0))
    code, length, _ = local.REPLY_HEADER.unpack(conn.recv(local.REPLY_HEADER.size))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert b"over the limit" in conn.recv(length)
    conn.close()


@pytest.mark.skipif(not shm.AVAILABLE, reason="shared memory needs os.memfd_create (Linux)")
def test_large_bodies_go_through_shared_memory_both_ways(echo: LocalServer) -> None:
    """A body of MIN_BYTES or more is not on the socket but in the sender's region; the
    region grows for a larger body, and small ones still go through the socket."""
    ch = LocalChannel(echo.path)
    call = ch.unary_unary(METHOD)
    rng = np.random.default_rng(0)
    bodies = [rng.bytes(n) for n in (shm.MIN_BYTES, 300_000, 10, 5_000_000, shm.MIN_BYTES + 1)]
    for body in bodies:
        assert bytes(call(body, timeout=10)) == body[::-1]
    reader = ch._idle[0]
    assert reader.outbox._map is not None and len(reader.outbox._map) == 1 << 23  # 5 MB
    assert reader.inbox._map is not None and len(reader.inbox._map) == 1 << 23
    assert not reader.inbox.fds  # every descriptor passed was mapped and closed
    # a body held by the caller is a copy: the next call reuses the region under it
    first = call(bodies[1], timeout=10)
    call(bodies[3], timeout=10)
    assert bytes(first) == bodies[1][::-1]
    # the errors of a call sent through shared memory are the same
    with pytest.raises(grpc.RpcError) as e:
        call([b"abort"], timeout=5)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    ch.close()


@pytest.mark.skipif(not shm.AVAILABLE, reason="shared memory needs os.memfd_create (Linux)")
def test_a_body_announced_beyond_the_peers_region_closes_the_connection(
    echo: LocalServer,
) -> None:
    ch = LocalChannel(echo.path)
    conn = ch._connection().conn
    conn.sendall(
        local.REQUEST_HEADER.pack(len(METHOD), 0, 1000, 5.0, shm.IN_SHARED_MEMORY) + METHOD.encode()
    )
    assert conn.recv(16) == b""  # no region was ever passed: closed, nothing served
    conn.close()
    assert bytes(ch.unary_unary(METHOD)(b"abc", timeout=5)) == b"cba"
    ch.close()


def test_targets_choose_the_transport(tmp_path: Path) -> None:
    assert local_path("local:/run/x.sock") == "/run/x.sock"
    assert local_path("127.0.0.1:50051") is None
    assert isinstance(channel(f"local:{tmp_path}/x.sock"), LocalChannel)


def test_the_paramserver_serves_both_transports_alike(tmp_path: Path) -> None:
    """The generated stub and the framed methods over the socket, next to TCP."""
    path = str(tmp_path / "ps.sock")
    server, port = serve("127.0.0.1:0", local_socket=path)
    try:
        local = ParamServerClient(f"local:{path}", timeout=5)
        tcp = ParamServerClient(f"127.0.0.1:{port}", timeout=5)
        params = {"W1": np.arange(6, dtype=np.float32).reshape(2, 3)}
        assert local.create_job("j", params, "sgd") == (0, True)
        local.plan("j", 0, ["t"], lr=0.5)
        version, theta = local.push_pull(
            "j", "t", 0, {"W1": np.ones((2, 3), np.float32)}, 1, 0.1, 5
        )
        assert version == 1 and theta is not None
        np.testing.assert_array_equal(theta["W1"], params["W1"] - 0.5)
        assert tcp.pull("j")[0] == 1
        np.testing.assert_array_equal(tcp.pull("j")[1]["W1"], theta["W1"])  # type: ignore[index]
        with pytest.raises(grpc.RpcError) as bad:
            local.push("j", "u", 1, {"W1": np.ones((3, 2), np.float32)}, 1, 0.1)
        assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as missing:
            local.pull("nope")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        local.close()
        tcp.close()
    finally:
        server.stop(None)
    assert not os.path.exists(path)


@pytest.mark.skipif(not shm.AVAILABLE, reason="shared memory needs os.memfd_create (Linux)")
def test_a_gradient_lent_to_pushpull_is_copied_when_it_outlives_the_call(
    tmp_path: Path,
) -> None:
    """PushPull applies a large gradient straight from the worker's shared memory; one
    that is still buffered when the call returns (its step not applied within the wait)
    is copied first: the worker's next body, written over that memory, must not change
    it. Both on one connection (one region)."""
    path = str(tmp_path / "ps.sock")
    server, _ = serve("127.0.0.1:0", local_socket=path)
    try:
        client = ParamServerClient(f"local:{path}", timeout=5)
        shape = (300, 300)  # 360 kB: through shared memory
        zero = {"W": np.zeros(shape, np.float32)}
        client.create_job("j", zero, "sgd")
        first, second = np.full(shape, 1.0, np.float32), np.full(shape, 7.0, np.float32)
        assert client.push_pull("j", "a", 0, {"W": first}, 1, 0.0, 0) == (0, None)
        client.push("j", "b", 0, {"W": second}, 1, 0.0)  # the same region, overwritten
        assert client.push_pull("j", "c", 0, {"W": second}, 1, 0.0, 0) == (0, None)
        assert len(client._channel._idle) == 1
        client.apply("j", 0, ["a"], lr=1.0)
        version, theta = client.pull("j", 0)
        assert version == 1 and theta is not None
        np.testing.assert_array_equal(theta["W"], -first)  # a's gradient, not c's
        # a planned step applied within the wait reads the lent memory in place
        client.plan("j", 1, ["d"], lr=1.0)
        version, theta = client.push_pull("j", "d", 1, {"W": second}, 1, 0.0, 5)
        assert version == 2 and theta is not None
        np.testing.assert_array_equal(theta["W"], -first - second)
        client.close()
    finally:
        server.stop(None)


def test_a_second_server_on_a_taken_port_fails_to_start(tmp_path: Path) -> None:
    first, port = serve("127.0.0.1:0")
    try:
        with pytest.raises(OSError, match="could not bind"):
            serve(f"127.0.0.1:{port}")
        with pytest.raises(OSError, match="could not bind"):  # its socket is not taken over
            serve(f"127.0.0.1:{port}", local_socket=str(tmp_path / "second.sock"))
        assert not os.path.exists(tmp_path / "second.sock")
    finally:
        first.stop(None)
