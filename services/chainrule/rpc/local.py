"""The same-host transport: unary gRPC methods over a Unix domain socket, without gRPC.

Processes on one host (``chainrule up``) call each other through a socket file in a
private directory (mode 0700, the stack's user only) instead of loopback TCP. A gRPC
call from Python costs ~0.6 ms of CPU between client and server; a round trip on a
Unix socket ~25 µs. The methods, messages and servicers are the same ones gRPC serves
(the servicer is registered on a ``LocalServer`` exactly as on a ``grpc.Server``, and
the generated stubs run on a :class:`LocalChannel`), so every status code, retry and
test applies to both; TCP gRPC stays the transport between hosts and containers.

This module is the wire format and the client side; rpc/local_server.py the server side.

Wire format (all integers big-endian), one call at a time per connection:

- request: ``u32 method length, u32 metadata length, u32 body length, f64 timeout``
  (seconds; 0 = none), ``u8 flags``, then the method path
  (``/chainrule.rpc.v1.ParamServer/Pull``), the metadata (UTF-8 ``key=value`` lines) and
  the serialized request;
- reply: ``u8 status code, u32 body length, u8 flags``, then the serialized reply
  (status 0 = OK) or the error's details (UTF-8).

A large body (θ, a gradient) is not on the socket but in the sender's shared-memory
region, which the flags say (rpc/shm.py): one copy on each side instead of the kernel's.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from chainrule.rpc.connection import Connection, Parts, send_message

SCHEME = "local:"  # a target "local:/path/to/socket" is called through this transport
REQUEST_HEADER = struct.Struct("!IIIdB")  # method, metadata and body lengths, timeout, flags
REPLY_HEADER = struct.Struct("!BIB")  # status code, body length, flags
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_MAX_IDLE_CONNECTIONS = 8  # kept open per channel between calls


class LocalRpcError(grpc.RpcError):  # type: ignore[misc]
    """A failed call: the same ``code()`` and ``details()`` a gRPC error has."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def local_path(target: str) -> str | None:
    """The socket path of a ``local:`` target; None for any other (a gRPC target)."""
    return target[len(SCHEME) :] if target.startswith(SCHEME) else None


class LocalChannel:
    """A client of a ``LocalServer`` (rpc/local_server.py), shaped like a ``grpc.Channel``
    for the generated stubs: ``unary_unary`` callables that raise :class:`LocalRpcError`."""

    def __init__(self, path: str, metadata: Sequence[tuple[str, str]] = ()) -> None:
        self.path = path
        self._metadata = tuple(metadata)  # sent with every call (rpc.auth's token)
        self._idle: list[Connection] = []  # connections kept between calls
        self._lock = threading.Lock()
        self._closed = False

    def unary_unary(
        self,
        method: str,
        request_serializer: Callable[[Any], bytes] | None = None,
        response_deserializer: Callable[[Any], Any] | None = None,
        **_: Any,
    ) -> Callable[..., Any]:
        path = method.encode()

        def call(
            request: Any,
            timeout: float | None = None,
            metadata: Sequence[tuple[str, str]] | None = None,
            **__: Any,
        ) -> Any:
            body = request_serializer(request) if request_serializer else request
            data = self._round_trip(path, (*self._metadata, *(metadata or ())), body, timeout)
            return response_deserializer(data) if response_deserializer else data

        return call

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for reader in idle:
            reader.close()

    def _round_trip(
        self,
        method: bytes,
        metadata: Sequence[tuple[str, str]],
        body: Any,
        timeout: float | None,
    ) -> bytearray | memoryview:
        """One call; ``body`` is the serialized request, or a list of buffers that are
        (rpc.codec.frame_parts), sent without joining them."""
        parts = list(body) if isinstance(body, list | tuple) else [body]
        meta = "\n".join(f"{k}={v}" for k, v in metadata).encode()
        reader = self._connection()

        def header(size: int, flags: int) -> Parts:
            return [
                REQUEST_HEADER.pack(len(method), len(meta), size, timeout or 0.0, flags),
                method,
                meta,
            ]

        try:
            reader.conn.settimeout(timeout)
            send_message(reader, header, parts)
            code, length, flags = REPLY_HEADER.unpack(reader.read(REPLY_HEADER.size))
            data = reader.body(flags, length)
        except TimeoutError as e:  # the reply may still come: this connection is unusable
            reader.close()
            raise LocalRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from e
        except (EOFError, OSError) as e:
            reader.close()
            raise LocalRpcError(
                grpc.StatusCode.UNAVAILABLE, f"connection to {self.path} lost: {e}"
            ) from e
        self._release(reader)
        if code != 0:
            raise LocalRpcError(_CODES.get(code, grpc.StatusCode.UNKNOWN), bytes(data).decode())
        return data

    def _connection(self) -> Connection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.connect(self.path)
        except OSError as e:
            conn.close()
            raise LocalRpcError(
                grpc.StatusCode.UNAVAILABLE, f"cannot connect to {self.path}: {e}"
            ) from e
        return Connection(conn)

    def _release(self, reader: Connection) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < _MAX_IDLE_CONNECTIONS:
                self._idle.append(reader)
                return
        reader.close()
