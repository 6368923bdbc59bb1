"""The line of pending jobs as the gateway shows it (``GET /api/v1/queue`` and the job
detail's ``queue``): the order the scheduler uses and an estimate of when each job
starts. Pure functions of what the store reads; the scheduler decides
(scheduler/admission.py, scheduler/sharing.py), this only predicts.

The estimate follows the scheduler's rules:

- a sync job is a gang: it starts when its ``training.workers`` slots are free of the
  running sync jobs, and no sync job starts before one ahead of it in line (no
  backfill);
- an async or ssp job holds no slots: it starts as soon as enough workers are live;
- a job that needs more workers than are live waits for workers (no estimate) and holds
  nothing up.

A running sync job frees its slots when its ETA says it ends (``progress.eta_seconds``
of the job detail: :func:`chainrule.gateway.series.eta_seconds`); one without an ETA
yet never does, as far as the estimate knows. A job ahead in line that the estimate
starts keeps the slots it takes (how long it will run is not known before it runs), so
a job behind it that needs them has no estimate either.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chainrule.spec.training import PRIORITIES

WAITING_FOR_WORKERS = "waiting_for_workers"
STARTING_PHASES = frozenset({"preparing"})  # the scheduler is starting it now


@dataclass(frozen=True)
class Waiting:
    """A pending job, as the estimate sees it."""

    mode: str  # sync, async or ssp
    slots: int  # training.workers
    phase: str


@dataclass(frozen=True)
class Holding:
    """A running sync job: the slots it holds, and in how many seconds it ends (None:
    not known yet)."""

    slots: int
    ends_in: float | None


def line_key(priority: str, created_at: float, job_id: str) -> tuple[int, float, str]:
    """The order of the line: higher ``training.priority`` first, then by arrival."""
    rank = PRIORITIES.index(priority) if priority in PRIORITIES else 0
    return (-rank, created_at, job_id)


def estimated_starts(
    line: Sequence[Waiting], running: Sequence[Holding], live: int
) -> list[float | None]:
    """For each job of ``line`` (in line order), in how many seconds it is estimated to
    start (0: now), or None when that cannot be told; ``running``: the sync jobs that
    hold slots; ``live``: the workers alive."""
    free = live - sum(h.slots for h in running)
    ends = sorted((h.ends_in, h.slots) for h in running if h.ends_in is not None)
    freed = 0  # how many of ``ends`` have been counted into ``free``
    not_before = 0.0  # gangs start in line order: none before the one ahead of it
    blocked = False  # a gang ahead has no estimate: neither has any gang behind it
    starts: list[float | None] = []
    for job in line:
        if job.phase == WAITING_FOR_WORKERS or job.slots > live:
            starts.append(None)  # it holds nothing up (the scheduler skips it)
            continue
        if job.mode != "sync":
            starts.append(0.0)
            continue
        if job.phase in STARTING_PHASES:  # its slots are already its own
            free -= job.slots
            starts.append(0.0)
            continue
        if blocked:
            starts.append(None)
            continue
        at = not_before
        while freed < len(ends) and (free < job.slots or ends[freed][0] <= at):
            end, slots = ends[freed]
            free += slots
            freed += 1
            at = max(at, end, 0.0)
        if free < job.slots:
            blocked = True
            starts.append(None)
            continue
        free -= job.slots
        not_before = at
        starts.append(at)
    return starts
