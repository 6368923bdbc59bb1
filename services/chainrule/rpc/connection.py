"""One end of a same-host connection (rpc/local.py): exact reads, vectored sends, and the
connection's shared-memory regions for large bodies (rpc/shm.py)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence

from chainrule.rpc import shm

_CHUNK = 64 * 1024


class Connection:
    """One end of a connection. Reads exact byte counts from the socket: small messages
    (a header, a method name, a small body) come out of one ``recvmsg`` of up to 64 KiB;
    a large body is received straight into its own buffer, or copied out of the peer's
    shared memory (:meth:`body`). Keeps the connection's shared-memory regions."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self._buffer = bytearray()
        self.inbox, self.outbox = shm.Inbox(), shm.Outbox()

    def body(self, flags: int, n: int) -> bytearray | memoryview:
        """The ``n``-byte body a header with ``flags`` announced, in a buffer of its own."""
        if flags & shm.IN_SHARED_MEMORY:
            return self.inbox.take(flags, n)
        return self.read(n)

    def lent_body(self, flags: int, n: int) -> bytearray | memoryview:
        """:meth:`body`, but a body in shared memory is a view of it, valid until the
        reply (rpc/shm.py)."""
        if flags & shm.IN_SHARED_MEMORY:
            return self.inbox.lend(flags, n)
        return self.read(n)

    def close(self) -> None:
        self.conn.close()
        self.inbox.close()
        self.outbox.close()

    def read(self, n: int) -> bytearray:
        """``n`` bytes in a new buffer (its tensors are read as views of it, so it is
        never reused); EOFError if the peer closed first."""
        if len(self._buffer) >= n:
            out = self._buffer[:n]
            del self._buffer[:n]
            return out
        out = bytearray(n)
        got = len(self._buffer)
        out[:got] = self._buffer
        self._buffer.clear()
        view = memoryview(out)
        while got < n:
            if n - got >= _CHUNK:  # a large body: no detour through the buffer
                k, ancdata, _, _ = self.conn.recvmsg_into([view[got:]], shm.FD_SPACE)
                self.inbox.received(ancdata)
                if k == 0:
                    raise EOFError("connection closed by the peer")
                got += k
                continue
            chunk, ancdata, _, _ = self.conn.recvmsg(_CHUNK, shm.FD_SPACE)
            self.inbox.received(ancdata)  # a shared-memory region's descriptor
            if not chunk:
                raise EOFError("connection closed by the peer")
            take = min(len(chunk), n - got)
            view[got : got + take] = chunk[:take]
            self._buffer += chunk[take:]
            got += take
        return out


Parts = Sequence[bytes | bytearray | memoryview]


def send_message(reader: Connection, header: Callable[[int, int], Parts], body: Parts) -> None:
    """Send a message: ``header(body length, flags)``'s parts, then the body, which goes
    through the connection's shared memory if it is large (and its region's descriptor
    with it when the region is new)."""
    size = sum(memoryview(p).nbytes for p in body)
    flags, fd = reader.outbox.place(body, size)
    try:
        send(reader.conn, [*header(size, flags), *(() if flags else body)], shm.fd_message(fd))
    finally:
        if fd is not None:
            os.close(fd)


def send(conn: socket.socket, parts: Parts, ancdata: list[tuple[int, int, bytes]]) -> None:
    """Send every part, in order, without joining them into one buffer (``ancdata``
    with the first bytes)."""
    views: list[memoryview] = [memoryview(p).cast("B") for p in parts]
    views = [v for v in views if v.nbytes]
    while views:
        sent = conn.sendmsg(views, ancdata)
        ancdata = []
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]
