"""The server side of the same-host transport (rpc/local.py has the wire format).

A :class:`LocalServer` serves the servicers registered on it, as a ``grpc.Server`` would,
to :class:`chainrule.rpc.local.LocalChannel` clients; handlers get a :class:`LocalContext`
in place of a ``grpc.ServicerContext``.

A peer that is not this process's user is refused (``SO_PEERCRED``); a body over
:data:`MAX_MESSAGE_BYTES` closes the connection (as gRPC's message limit would refuse
it); a server holds at most ``max_connections`` connections, a thread each.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
import stat
import struct
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import grpc

from chainrule.rpc.codec import MAX_MESSAGE_BYTES
from chainrule.rpc.connection import Connection, send_message
from chainrule.rpc.local import REPLY_HEADER, REQUEST_HEADER

_MAX_METHOD = 256
_MAX_METADATA = 64 * 1024


class _CallDetails(NamedTuple):
    method: str
    invocation_metadata: tuple[tuple[str, str], ...]


class _AbortedError(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class LocalContext:
    """The part of ``grpc.ServicerContext`` the servicers use."""

    def __init__(self, metadata: tuple[tuple[str, str], ...], timeout: float) -> None:
        self._metadata = metadata
        self._deadline = time.monotonic() + timeout if timeout > 0 else None
        self._code: grpc.StatusCode | None = None
        self._details = ""

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details
        raise _AbortedError(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str:
        return self._details

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return "local"

    def is_active(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class LocalServer:
    """Serves the unary methods registered on it (as on a ``grpc.Server``) on a Unix
    socket at ``path``; ``start()`` binds (OSError if another server listens there)."""

    def __init__(
        self,
        path: str,
        max_connections: int = 128,
        interceptors: Sequence[Any] = (),
        lend: Iterable[str] = (),
    ) -> None:
        self.path = path
        self.max_connections = max_connections
        # methods whose handlers take a large request body lent, not copied (rpc/shm.py)
        self.lend = frozenset(lend)
        # the handler lookup behind the interceptors (grpc.ServerInterceptor, as on
        # grpc.server; the first runs first), chained once here, not per call
        find: Callable[[Any], Any] = self._lookup
        for interceptor in reversed(list(interceptors)):
            find = functools.partial(interceptor.intercept_service, find)
        self._find = find
        self._generic: list[Any] = []
        self._methods: dict[str, Any] = {}
        self._listener: socket.socket | None = None
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    # -- the grpc.Server interface the generated helpers call -------------------------------

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self._methods.update({f"/{service}/{name}": h for name, h in handlers.items()})

    # -- life -----------------------------------------------------------------------------

    def start(self) -> None:
        _clear_stale_socket(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.path)
            os.chmod(self.path, 0o600)
            listener.listen(64)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        threading.Thread(target=self._accept, name=f"local:{self.path}", daemon=True).start()

    def stop(self, grace: float | None = None) -> threading.Event:
        """Stop accepting and close every connection (calls in progress are cut off:
        their callers see UNAVAILABLE and retry, as with a stopped gRPC server)."""
        self._stopped.set()
        if self._listener is not None:
            self._listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        done = threading.Event()
        done.set()
        return done

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed by stop()
            if not _same_user(conn):
                conn.close()
                continue
            with self._lock:
                if len(self._connections) >= self.max_connections:
                    conn.close()  # the caller sees UNAVAILABLE and retries with backoff
                    continue
                self._connections.add(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = Connection(conn)
        try:
            with conn:
                while not self._stopped.is_set():
                    method_len, meta_len, body_len, timeout, flags = REQUEST_HEADER.unpack(
                        reader.read(REQUEST_HEADER.size)
                    )
                    if method_len > _MAX_METHOD or meta_len > _MAX_METADATA:
                        return  # not a client of this protocol
                    if body_len > MAX_MESSAGE_BYTES:
                        details = (
                            f"request of {body_len} bytes is over the limit of "
                            f"{MAX_MESSAGE_BYTES} bytes"
                        )
                        _respond(reader, grpc.StatusCode.RESOURCE_EXHAUSTED, details.encode())
                        return  # its body is not read: the connection cannot go on
                    method = bytes(reader.read(method_len)).decode()
                    metadata = _parse_metadata(bytes(reader.read(meta_len)))
                    lend = method in self.lend
                    body = (reader.lent_body if lend else reader.body)(flags, body_len)
                    reply = self._call(method, metadata, body, timeout)
                    del body  # a lent body is void from here on: the reply frees the region
                    _respond(reader, *reply)
        except (EOFError, OSError, UnicodeDecodeError):
            pass  # the caller went away, or the server is stopping
        finally:
            reader.close()
            with self._lock:
                self._connections.discard(conn)

    def _lookup(self, details: Any) -> Any:
        handler = self._methods.get(details.method)
        for generic in self._generic:
            if handler is not None:
                break
            handler = generic.service(details)
        return handler

    def _call(
        self,
        method: str,
        metadata: tuple[tuple[str, str], ...],
        body: bytearray | bytes | memoryview,
        timeout: float,
    ) -> tuple[grpc.StatusCode, Any]:
        """The status and the reply's body (the error's details unless OK)."""
        handler = self._find(_CallDetails(method, metadata))
        if handler is None or handler.unary_unary is None:
            return _error(grpc.StatusCode.UNIMPLEMENTED, f"method {method} is not served here")
        context = LocalContext(metadata, timeout)
        try:
            decode, encode = handler.request_deserializer, handler.response_serializer
            response = handler.unary_unary(decode(body) if decode else body, context)
            data = encode(response) if encode else response
        except _AbortedError as e:
            return _error(e.code, e.details)
        except Exception as e:  # what gRPC reports for an exception in a handler
            return _error(grpc.StatusCode.UNKNOWN, f"Exception calling application: {e}")
        if context.code() not in (None, grpc.StatusCode.OK):
            return _error(context.code() or grpc.StatusCode.UNKNOWN, context.details())
        return grpc.StatusCode.OK, data


def _error(code: grpc.StatusCode, details: str) -> tuple[grpc.StatusCode, bytes]:
    return code, details.encode()


def _respond(reader: Connection, code: grpc.StatusCode, data: Any) -> None:
    parts = list(data) if isinstance(data, list | tuple) else [data]
    send_message(reader, lambda size, flags: [REPLY_HEADER.pack(code.value[0], size, flags)], parts)


def _parse_metadata(raw: bytes) -> tuple[tuple[str, str], ...]:
    pairs = []
    for line in raw.decode().splitlines():
        key, _, value = line.partition("=")
        pairs.append((key, value))
    return tuple(pairs)


def _same_user(conn: socket.socket) -> bool:
    """The peer runs as this process's user (the directory's mode already says so)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, _ = struct.unpack("3i", creds)
    return bool(uid == os.getuid())


def _clear_stale_socket(path: str) -> None:
    """Remove a socket file nobody listens on (a server that died); OSError if someone
    does, or if the path is not a socket."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"another server is listening on {path}")
