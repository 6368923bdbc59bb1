"""How the workers are shared between the jobs that run at once.

- **Sync jobs are gangs**: a step needs all of its ``training.workers`` slots, so a sync
  job starts only when that many live workers are not reserved by the sync jobs already
  running (scheduler/admission.py), in submission order; until then it is PENDING with
  phase ``queued`` and the reason (:func:`queue_reason`). A free worker takes a task of
  a reserved (sync) job first.
- **Async and ssp jobs time-share** what is left: a free worker takes a task of the one
  that has used the fewest task-seconds over the last :data:`WINDOW_S` seconds (tasks
  in hand included) per unit of ``training.weight``, so no job waits behind another
  that always has a task, and a job of weight 2 gets twice the share of one of weight 1.
- The line of pending jobs is ordered by ``training.priority`` (high, normal, low), then
  by arrival.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from chainrule.scheduler.job import ActiveJob

WINDOW_S = 30.0
"""The sliding window over which async and ssp jobs' task-seconds are compared."""
BUCKET_S = 1.0


@dataclass
class Usage:
    """Task-seconds a job used over the last :data:`WINDOW_S`, in 1 s buckets (at most
    WINDOW_S / BUCKET_S + 1 of them, however many tasks complete)."""

    window_s: float = WINDOW_S
    buckets: deque[list[float]] = field(default_factory=deque)  # [start, task-seconds]
    total: float = 0.0

    def add(self, now: float, seconds: float) -> None:
        start = now - now % BUCKET_S
        if self.buckets and self.buckets[-1][0] == start:
            self.buckets[-1][1] += seconds
        else:
            self.buckets.append([start, seconds])
        self.total += seconds
        self._trim(now)

    def recent(self, now: float) -> float:
        self._trim(now)
        return self.total

    def _trim(self, now: float) -> None:
        while self.buckets and self.buckets[0][0] + BUCKET_S <= now - self.window_s:
            self.total -= self.buckets.popleft()[1]
        if not self.buckets:
            self.total = 0.0  # no float drift left over


def in_turn(jobs: Iterable[ActiveJob], now: float) -> list[ActiveJob]:
    """The order in which a free worker looks for a task: the sync jobs (their slots are
    reserved) in the order they started, then the async and ssp jobs, least served (per
    unit of weight) first."""
    jobs = list(jobs)
    gangs = [j for j in jobs if j.mode == "sync"]
    shared = [j for j in jobs if j.mode != "sync"]
    shared.sort(key=lambda j: (j.usage.recent(now) + j.in_hand_seconds(now)) / j.weight)
    return gangs + shared


def queue_reason(need: int, free: int, ahead: int) -> str:
    """Why a sync job waits: ``waiting for 2 worker slots; 1 free; 3 jobs ahead``."""
    slots = "slot" if need == 1 else "slots"
    jobs = "job" if ahead == 1 else "jobs"
    return f"waiting for {need} worker {slots}; {max(free, 0)} free; {ahead} {jobs} ahead"
