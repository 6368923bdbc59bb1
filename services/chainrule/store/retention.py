"""Retention: ended jobs expire after ``CHAINRULE_RETENTION_DAYS`` (off by default).

A job that has ended (SUCCEEDED, FAILED or STOPPED) longer ago than the retention period
is deleted as ``DELETE /api/v1/jobs/{id}`` deletes it (:meth:`JobStore.delete`: record,
history, metrics, events, diagnostics, checkpoints, model, prepared data, index
entries), so nothing of it stays behind. The leading scheduler sweeps
(:class:`Retention`), a bounded batch at a time, the longest ended first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chainrule.store.jobs import JobActiveError, JobNotFoundError, JobStore

DAY_S = 86_400.0
SWEEP_BATCH = 100  # jobs deleted per sweep at most
MAX_SWEEP_INTERVAL_S = 60.0


class Retention:
    """Deletes ended jobs older than ``days`` (0 = keep them forever)."""

    def __init__(self, jobs: JobStore, days: float, clock: Callable[[], float] = time.time) -> None:
        if days < 0:
            raise ValueError(f"retention days must be >= 0 (0 = off); got {days!r}")
        self.jobs, self.days, self._clock = jobs, days, clock
        # a sweep at least ten times per period, at most once a minute
        self.interval_s = min(MAX_SWEEP_INTERVAL_S, days * DAY_S / 10)
        self._next = 0.0  # monotonic time of the next sweep

    def due(self) -> bool:
        return self.days > 0 and time.monotonic() >= self._next

    def sweep(self) -> list[str]:
        """Delete up to :data:`SWEEP_BATCH` expired jobs; the ids deleted. The next sweep
        is due at once when the batch was full, else after ``interval_s`` (after a
        Redis error too: it propagates, and the sweep waits its interval)."""
        if self.days <= 0:
            return []
        self._next = time.monotonic() + self.interval_s
        candidates = self.jobs.ended_before(self._clock() - self.days * DAY_S, SWEEP_BATCH)
        deleted = []
        for job_id in candidates:
            try:
                self.jobs.delete(job_id)
                deleted.append(job_id)
            except (JobNotFoundError, JobActiveError):  # deleted meanwhile, or running again
                self.jobs.unindex_ended(job_id)
        if len(candidates) == SWEEP_BATCH:  # more may be waiting
            self._next = time.monotonic()
        return deleted
