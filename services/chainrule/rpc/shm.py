"""The same-host fast path: tensor payloads through files in a shared-memory directory.

Processes on one host (``chainrule up``) can hand each other θ and gradients without
pushing the bytes through gRPC. A sender owns a **segment**, one file in
``CHAINRULE_SHM_DIR`` (a tmpfs such as ``/dev/shm``) that it maps once and rewrites for
every message: it writes a frame's payload (see :func:`chainrule.rpc.codec.frame`) there
and sends the ordinary request naming the segment instead of carrying the payload. The
receiver maps the segment once too and copies the payload out: one copy on each side,
as over TCP, but memory to memory, without a socket or gRPC's buffers in between. Files
are reused, so no message pays for tmpfs allocating and freeing pages.

A segment is a 64-byte header, ``seq`` and ``length`` (little-endian u64), then the
payload. ``seq`` is odd while the owner writes and even otherwise (a seqlock): a reader
that sees it odd or changed across its copy has raced a rewrite and reads again, or
gives up with :class:`ShmError` (the caller then asks for the payload inline).

Safety: the directory must belong to this process's user and be closed to everyone else
(mode 0700); a segment is created exclusively with mode 0600 and opened only if its name
is one this module makes, it is a regular file (no symlinks followed), and it belongs to
this user with no access for others. Between containers and hosts (read-only root
filesystems, Docker's 64 MB /dev/shm) the setting stays unset and TCP is used.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
import stat
import struct
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np

HEADER = 64  # bytes before the payload: seq and length, padded to keep payloads aligned
MAX_MAPPED = 256  # segments a reader keeps mapped
READ_ATTEMPTS = 5
_NAME = re.compile(r"^(theta|grad)-[0-9a-f]{32}$")
_U64 = struct.Struct("<Q")


class ShmError(OSError):
    """A segment that cannot be used: missing, foreign, unsafe, or rewritten mid-read."""


def check_dir(path: str) -> str:
    """``path`` if it is a directory of this user closed to everyone else; ShmError if not."""
    try:
        info = os.stat(path)
    except OSError as e:
        raise ShmError(f"shared-memory directory {path!r} is not usable: {e}") from e
    if not stat.S_ISDIR(info.st_mode):
        raise ShmError(f"shared-memory directory {path!r} is not a directory")
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise ShmError(
            f"shared-memory directory {path!r} must belong to uid {os.getuid()} with mode "
            f"0700; it has uid {info.st_uid}, mode {oct(info.st_mode & 0o777)}"
        )
    return path


class Segment:
    """A file this process writes payloads into, one message at a time (callers hold
    whatever lock orders their messages)."""

    def __init__(self, directory: str, kind: str) -> None:
        self.directory, self.name = directory, f"{kind}-{uuid.uuid4().hex}"
        self.path = os.path.join(directory, self.name)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        self._fd = os.open(self.path, flags, 0o600)
        self._map: mmap.mmap | None = None
        self._seq = 0

    def write(self, chunks: Iterable[Any]) -> str:
        """Replace the segment's payload by ``chunks`` back to back; returns its name."""
        views = [memoryview(c).cast("B") for c in chunks]
        length = sum(len(v) for v in views)
        if self._map is None or len(self._map) < HEADER + length:
            self._grow(HEADER + length)
        assert self._map is not None
        self._seq += 1  # odd: being written
        self._map[0:8] = _U64.pack(self._seq)
        self._map[8:16] = _U64.pack(length)
        offset = HEADER
        for view in views:
            self._map[offset : offset + len(view)] = view
            offset += len(view)
        self._seq += 1  # even: complete
        self._map[0:8] = _U64.pack(self._seq)
        return self.name

    def _grow(self, size: int) -> None:
        size = max(size, 2 * len(self._map) if self._map is not None else 0)
        if self._map is not None:
            self._map.close()
        os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        os.close(self._fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class SegmentReader:
    """Reads other processes' segments in one directory, each mapped once."""

    def __init__(self, directory: str) -> None:
        self.directory = check_dir(directory)
        self._maps: OrderedDict[str, mmap.mmap] = OrderedDict()
        self._lock = threading.Lock()

    def read(self, name: str) -> memoryview:
        """A copy of segment ``name``'s payload (see the module for the checks)."""
        for _ in range(READ_ATTEMPTS):
            mapped = self._mapped(name)
            seq = _U64.unpack_from(mapped, 0)[0]
            length = _U64.unpack_from(mapped, 8)[0]
            if seq % 2 or HEADER + length > len(mapped):
                if HEADER + length > len(mapped):  # grown since it was mapped
                    self._forget(name)
                continue
            # one copy, straight from the mapping, into memory malloc may reuse (a zeroed
            # bytearray would be fresh pages, each faulted in)
            out = np.empty(length, dtype=np.uint8)
            out[:] = np.frombuffer(mapped, dtype=np.uint8, count=length, offset=HEADER)
            if _U64.unpack_from(mapped, 0)[0] == seq:
                return memoryview(out.data)
        raise ShmError(f"shared-memory segment {name!r} was rewritten while it was read")

    def _mapped(self, name: str) -> mmap.mmap:
        with self._lock:
            mapped = self._maps.get(name)
            if mapped is not None:
                self._maps.move_to_end(name)
                return mapped
        mapped = _open(self.directory, name)
        with self._lock:
            self._maps[name] = mapped
            while len(self._maps) > MAX_MAPPED:
                self._maps.popitem(last=False)[1].close()
        return mapped

    def _forget(self, name: str) -> None:
        with self._lock:
            old = self._maps.pop(name, None)
        if old is not None:
            old.close()


def _open(directory: str, name: str) -> mmap.mmap:
    if not _NAME.match(name):
        raise ShmError(f"{name!r} is not a shared-memory segment name this service makes")
    try:
        fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise ShmError(f"shared-memory segment {name!r} cannot be opened: {e}") from e
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise ShmError(f"shared-memory segment {name!r} is not a private file of this user")
        if info.st_size < HEADER:
            raise ShmError(f"shared-memory segment {name!r} has no header")
        return mmap.mmap(fd, info.st_size, prot=mmap.PROT_READ)
    finally:
        os.close(fd)
