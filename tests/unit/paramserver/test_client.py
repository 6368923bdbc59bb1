"""The client's error when a parameter server does not answer after its retries: still
the gRPC error callers handle by code, and naming the server as configured (its target),
which gRPC's own details do not (they name the address it resolved); through the
sharded client too, naming the shard that did not answer."""

from __future__ import annotations

import socket
import time

import grpc
import numpy as np
import pytest

from chainrule.paramserver.client import ParamServerClient, ParamServerUnavailableError
from chainrule.paramserver.server import serve
from chainrule.paramserver.sharding import ShardedParamServerClient

pytestmark = pytest.mark.timeout(60)


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, then let go)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_server_that_does_not_answer_raises_unavailable_naming_its_target() -> None:
    target = f"127.0.0.1:{closed_port()}"
    client = ParamServerClient(target, timeout=5, attempts=2)
    try:
        started = time.monotonic()
        for call in (
            lambda: client.status("j"),  # a generated stub's method
            lambda: client.pull("j"),  # framed
            lambda: client.push("j", "t", 0, {"W": np.ones(2, np.float32)}, 1, 0.5),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                call()
            error = raised.value
            assert isinstance(error, ParamServerUnavailableError)
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert error.target == target
            assert error.details()  # gRPC's own, as it came
            assert isinstance(error.__cause__, grpc.RpcError)
            assert str(error).startswith(f"parameter server {target} said UNAVAILABLE: ")
            assert 0.1 <= error.unanswered_s < 10  # the retries' time: one pause of 0.1 s
        assert time.monotonic() - started < 10  # two tries each, not the default ten
    finally:
        client.close()


def test_other_errors_are_raised_as_they_came() -> None:
    server, port = serve("127.0.0.1:0")
    client = ParamServerClient(f"127.0.0.1:{port}", timeout=5, attempts=2)
    try:
        with pytest.raises(grpc.RpcError) as missing:
            client.pull("nope")
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        assert not isinstance(missing.value, ParamServerUnavailableError)
    finally:
        client.close()
        server.stop(None)


def test_the_sharded_client_names_the_shard_that_does_not_answer() -> None:
    server, port = serve("127.0.0.1:0")
    gone = f"127.0.0.1:{closed_port()}"
    shards = [
        ParamServerClient(f"127.0.0.1:{port}", timeout=5, attempts=2),
        ParamServerClient(gone, timeout=5, attempts=2),
    ]
    sharded = ShardedParamServerClient(shards)
    try:
        with pytest.raises(grpc.RpcError) as raised:
            sharded.create_job("j", {"W": np.zeros(2, np.float32)}, "sgd")
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert getattr(raised.value, "target", None) == gone  # not the list of all shards
    finally:
        sharded.close()
        server.stop(None)
