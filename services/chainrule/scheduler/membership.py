"""Which workers are alive, and which incarnation of each.

A worker id is a readable name (``<host>-<pid>``, a pod name, or whatever
``CHAINRULE_WORKER_ID`` says), and names come back: a restarted container has the same
hostname and pid 1, a pod keeps its name across container restarts. So every process
start registers its id together with a fresh **incarnation** token. A registration of a
known id with another token ends the previous incarnation at once (the caller requeues
its tasks and counts it lost), and anything the ended incarnation sends afterwards is
refused with :class:`EndedIncarnationError`.

Plain data guarded by the scheduler's lock; nothing here blocks or does I/O.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

MAX_ENDED_REMEMBERED = 4096  # ended incarnations whose late calls are still recognised


class EndedIncarnationError(Exception):
    """A call from an incarnation that a newer one of the same worker id replaced."""

    def __init__(self, worker_id: str, incarnation: str) -> None:
        super().__init__(
            f"worker {worker_id!r} incarnation {incarnation!r} has ended: another process "
            "registered under the same id; give each worker process its own "
            "CHAINRULE_WORKER_ID"
        )
        self.worker_id, self.incarnation = worker_id, incarnation


@dataclass
class Member:
    """A registered worker process, as the scheduler knows it."""

    worker_id: str
    host: str
    last_seen: float  # monotonic
    incarnation: str = ""
    tasks_done: int = 0


class Membership:
    def __init__(self, lease_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lease_seconds, self.clock = lease_seconds, clock
        self.workers: dict[str, Member] = {}
        self.lost: dict[str, tuple[Member, float]] = {}  # id -> (worker, wall time lost)
        self._ended: OrderedDict[tuple[str, str], None] = OrderedDict()

    def register(self, worker_id: str, host: str, incarnation: str) -> Member | None:
        """Admit ``worker_id``'s ``incarnation``; return the incarnation it ends, if any.
        Registering the same incarnation again (a retried Register) changes nothing."""
        self._refuse_ended(worker_id, incarnation)
        current = self.workers.get(worker_id)
        if current is not None and current.incarnation == incarnation:
            current.last_seen, current.host = self.clock(), host or current.host
            return None
        self.workers[worker_id] = Member(worker_id, host, self.clock(), incarnation)
        self.lost.pop(worker_id, None)  # it is back
        if current is None:
            return None
        self.lost[worker_id] = (current, time.time())
        self._ended[(worker_id, current.incarnation)] = None
        while len(self._ended) > MAX_ENDED_REMEMBERED:
            self._ended.popitem(last=False)
        return current

    def heartbeat(self, worker_id: str, incarnation: str) -> Member | None:
        """A call from a worker. An id not known (this scheduler restarted, or took over
        as leader) registers implicitly; an unknown incarnation of a known id is a new
        one that ends its predecessor, which is returned."""
        worker = self.workers.get(worker_id)
        if worker is not None and worker.incarnation == incarnation:
            worker.last_seen = self.clock()
            return None
        return self.register(worker_id, worker.host if worker else "", incarnation)

    def live(self) -> set[str]:
        now = self.clock()
        return {
            w.worker_id for w in self.workers.values() if now - w.last_seen <= self.lease_seconds
        }

    def expire(self) -> list[Member]:
        """Remove and return the workers silent for longer than the lease. They are
        presumed dead, not ended: one that was only slow may come back as it was."""
        now = self.clock()
        expired = [w for w in self.workers.values() if now - w.last_seen > self.lease_seconds]
        for worker in expired:
            del self.workers[worker.worker_id]
            self.lost[worker.worker_id] = (worker, time.time())
        return expired

    def _refuse_ended(self, worker_id: str, incarnation: str) -> None:
        if (worker_id, incarnation) in self._ended:
            raise EndedIncarnationError(worker_id, incarnation)
