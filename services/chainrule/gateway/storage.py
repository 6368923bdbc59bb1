"""Redis' memory is bounded (``maxmemory`` with ``noeviction``): near the limit the
gateway refuses new jobs and uploads with 507 and a message, instead of letting them fail
later, half written, in the scheduler or a worker. Reads, stops and deletes (which free
memory) still work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from fastapi import HTTPException, status

MIB = 1024 * 1024
CACHE_S = 1.0  # INFO memory is read at most once a second


class StorageGuard:
    """Whether Redis has room for new work: used memory under ``refuse_at`` of
    ``maxmemory`` (no limit configured: always)."""

    def __init__(
        self,
        client: redis.Redis,
        refuse_at: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client, self.refuse_at, self.clock = client, refuse_at, clock
        self._lock = threading.Lock()
        self._read_at = -float("inf")
        self._memory: tuple[int, int] = (0, 0)  # used, maxmemory

    def memory(self) -> tuple[int, int]:
        """(used_memory, maxmemory) in bytes, at most CACHE_S old."""
        with self._lock:
            if self.clock() - self._read_at >= CACHE_S:
                info: dict[str, Any] = self.client.info("memory")
                self._memory = (int(info["used_memory"]), int(info.get("maxmemory", 0)))
                self._read_at = self.clock()
            return self._memory

    def check(self, what: str) -> None:
        """HTTP 507 naming the use and the limit when Redis is too full for ``what``."""
        used, limit = self.memory()
        if limit and used >= self.refuse_at * limit:
            raise HTTPException(
                status.HTTP_507_INSUFFICIENT_STORAGE,
                detail=(
                    f"{what} refused: Redis holds {used / MIB:.1f} MiB of its "
                    f"{limit / MIB:.1f} MiB limit (maxmemory), over the "
                    f"{self.refuse_at:.0%} at which new work is refused "
                    "(CHAINRULE_STORAGE_REFUSE_AT); delete ended jobs or datasets, or raise "
                    "Redis' maxmemory"
                ),
            )
