"""Large message bodies of the same-host transport (rpc/local.py) through shared memory.

A Unix socket moves bytes by copying them into the kernel and out again; for θ and
gradients (megabytes per step) that is most of a step's transport cost. So a body of at
least :data:`MIN_BYTES` goes through a shared-memory region instead, and only its length
goes through the socket:

- each side of a connection owns one region for what it sends (an anonymous
  ``memfd``, so nothing is left on disk or in ``/dev/shm`` by a process that dies), and
  passes its file descriptor to the peer with ``SCM_RIGHTS`` along with the first
  message that needs it (and again when it has to grow);
- the sender copies the body into its region, then sends the header; the receiver,
  having read the header, copies the body out into a buffer of its own (one copy on
  each side, no kernel copies), so a handler may keep views of it;
- a connection carries one call at a time, request then reply: a side writes its region
  again only after the peer has answered, that is, after the peer copied the last body
  out. No lock or flag is needed beyond the socket's own ordering.
- A server may instead *lend* a request's body to its handler (:meth:`Inbox.lend`, for
  the methods it is told to): a ``memoryview`` of the client's region, no copy at all,
  valid until the handler returns (the client writes its region again only after the
  reply). A handler that gets a ``memoryview`` copies what it keeps beyond its call
  (:func:`is_lent`); the parameter server's PushPull applies a gradient from it in place.

Where ``os.memfd_create`` does not exist (not Linux), every body goes through the
socket. Each region is at most as large as the largest body sent on its connection
(rounded up to a power of two), and freed with the connection.
"""

from __future__ import annotations

import array
import contextlib
import mmap
import os
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

MIN_BYTES = 64 * 1024
"""Bodies from this size on go through shared memory (smaller ones: the socket)."""

AVAILABLE = hasattr(os, "memfd_create")

IN_SHARED_MEMORY = 1  # header flag: the body is in the sender's region, not on the socket
NEW_REGION = 2  # header flag: the sender's region is new; its fd came with this message
FD_SPACE = socket.CMSG_SPACE(4 * array.array("i").itemsize)  # ancillary room per recvmsg
_MAX_PENDING_FDS = 4  # a peer that sends descriptors it never uses gets them closed


class Outbox:
    """The region one side of a connection writes its bodies into."""

    def __init__(self) -> None:
        self._map: mmap.mmap | None = None

    def place(self, parts: Sequence[Any], size: int) -> tuple[int, int | None]:
        """Copy ``parts`` (``size`` bytes in all) into the region. Returns the header
        flags and, when the region is new, its descriptor to pass along (the caller
        closes it after sending); ``(0, None)`` if the body goes through the socket."""
        if size < MIN_BYTES or not AVAILABLE:
            return 0, None
        fd = None
        if self._map is None or len(self._map) < size:
            try:
                fd, region = _new_region(size)
            except OSError:  # no memory for it, too many files: the socket still works
                return 0, None
            self.close()
            self._map = region
        into, at = np.frombuffer(self._map, np.uint8), 0
        for part in parts:
            data = np.frombuffer(part, np.uint8)
            # numpy copies without the GIL: the replies to several workers are written
            # side by side (mmap.write would hold it for the whole memcpy)
            into[at : at + data.size] = data
            at += data.size
        return IN_SHARED_MEMORY | (NEW_REGION if fd is not None else 0), fd

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


class Inbox:
    """The peer's region, as this side maps it, and the descriptors received for it."""

    def __init__(self) -> None:
        self._map: mmap.mmap | None = None
        self.fds: deque[int] = deque()

    def received(self, ancdata: list[tuple[int, int, bytes]]) -> None:
        """Keep the descriptors a ``recvmsg`` brought (for the header that says so)."""
        for level, kind, data in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
                self.fds.extend(fds)
        while len(self.fds) > _MAX_PENDING_FDS:
            os.close(self.fds.popleft())

    def take(self, flags: int, size: int) -> memoryview:
        """The body a header with ``flags`` announced, copied out of the peer's region
        into memory of its own (a writable view of it); EOFError if the peer broke the
        protocol (the connection cannot go on)."""
        out = np.empty(size, np.uint8)
        out[:] = np.frombuffer(self._region(flags, size), np.uint8, size)  # without the GIL
        return out.data

    def lend(self, flags: int, size: int) -> memoryview:
        """The body a header with ``flags`` announced, as a read-only view of the peer's
        region: valid until this side answers (see the module's docstring)."""
        return memoryview(self._region(flags, size)).toreadonly()[:size]

    def _region(self, flags: int, size: int) -> mmap.mmap:
        if flags & NEW_REGION:
            if not self.fds:
                raise EOFError("a new shared-memory region was announced without its descriptor")
            fd = self.fds.popleft()
            try:
                region = mmap.mmap(fd, 0)
            except (OSError, ValueError) as e:
                raise EOFError(f"cannot map the peer's shared memory: {e}") from e
            finally:
                os.close(fd)
            self.close()
            self._map = region
        if self._map is None or size > len(self._map):
            raise EOFError(f"a {size}-byte body does not fit the peer's shared memory")
        return self._map

    def close(self) -> None:
        if self._map is not None:
            with contextlib.suppress(BufferError):  # a view lent out and not yet freed:
                self._map.close()  # the mapping goes with the last reference to it
            self._map = None
        while self.fds:
            with contextlib.suppress(OSError):
                os.close(self.fds.popleft())


def is_lent(body: object) -> bool:
    """Whether a handler's request body is lent (valid only until it returns): lent
    bodies are the read-only views of :meth:`Inbox.lend` (a body taken out of shared
    memory is a writable one, of memory of its own)."""
    return isinstance(body, memoryview) and body.readonly


def _new_region(size: int) -> tuple[int, mmap.mmap]:
    capacity = max(MIN_BYTES, 1 << (size - 1).bit_length())
    fd = os.memfd_create("chainrule-rpc", os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, capacity)
        return fd, mmap.mmap(fd, capacity)
    except BaseException:
        os.close(fd)
        raise


def fd_message(fd: int | None) -> list[tuple[int, int, bytes]]:
    """The ancillary data that passes ``fd`` (nothing for None)."""
    if fd is None:
        return []
    return [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())]
