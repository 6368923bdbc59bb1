"""The line of pending jobs: in the scheduler's order, each with its position, the reason
it waits and an estimated start (gateway/queueing.py)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter

from chainrule.gateway.api.deps import JobStoreDep, ReaderDep, WorkerRegistryDep, may_read
from chainrule.gateway.queueing import Holding, Waiting, estimated_starts, line_key
from chainrule.gateway.schemas import QueueEntry, QueuePosition, QueuePublic, QueueSummary
from chainrule.gateway.series import ETA_WINDOW, eta_seconds
from chainrule.spec.training import PRIORITIES
from chainrule.store import JobRecord, JobStatus, JobStore
from chainrule.store.workers import WorkerRegistry

router = APIRouter(prefix="/queue", tags=["queue"])


def current_line(
    store: JobStore, registry: WorkerRegistry, now: float | None = None
) -> list[QueueEntry]:
    """Every PENDING job in line order with its place, reason and estimated start: one
    read of the pending and the running index (records pipelined), the running sync
    jobs' recent metrics (pipelined) and the worker list."""
    now = time.time() if now is None else now
    pending = sorted(
        store.in_status(JobStatus.PENDING),
        key=lambda r: line_key(r.spec.training.priority, r.created_at.timestamp(), r.id),
    )
    gangs = [r for r in store.in_status(JobStatus.RUNNING) if r.spec.training.mode == "sync"]
    recents = store.recent_metrics_of([r.id for r in gangs], ETA_WINDOW)
    running = [
        Holding(r.spec.training.workers, eta_seconds(recent, r.step, r.total_steps))
        for r, recent in zip(gangs, recents, strict=True)
    ]
    live = sum(1 for w in registry.read() if w.state != "lost")
    waiting = [Waiting(r.spec.training.mode, r.spec.training.workers, r.phase) for r in pending]
    starts = estimated_starts(waiting, running, live)
    return [
        entry(r, i, start, now) for i, (r, start) in enumerate(zip(pending, starts, strict=True))
    ]


def entry(record: JobRecord, position: int, start: float | None, now: float) -> QueueEntry:
    t = record.spec.training
    return QueueEntry(
        id=record.id,
        name=record.name,
        owner=record.owner,
        priority=t.priority,
        mode=t.mode,
        workers=t.workers,
        phase=record.phase,
        reason=record.message,
        position=position,
        created_at=record.created_at,
        waited_seconds=round(max(now - pending_since(record), 0.0), 1),
        estimated_start=None
        if start is None
        else datetime.fromtimestamp(now, UTC) + timedelta(seconds=start),
    )


def pending_since(record: JobRecord) -> float:
    """When the job last became PENDING (Unix seconds): when it was submitted, unless it
    ran and was put back in line since."""
    since, before = record.created_at.timestamp(), None
    for transition in record.status_transitions:
        if transition.status == JobStatus.PENDING and before != JobStatus.PENDING:
            since = transition.at.timestamp()
        before = transition.status
    return since


def queue_position(
    store: JobStore, registry: WorkerRegistry, record: JobRecord
) -> QueuePosition | None:
    """The job detail's ``queue``: where a PENDING job stands; None for the others."""
    if record.status is not JobStatus.PENDING:
        return None
    for found in current_line(store, registry):
        if found.id == record.id:
            return QueuePosition(
                position=found.position,
                reason=found.reason,
                estimated_start=found.estimated_start,
            )
    return None  # it started or ended since it was read


@router.get("")
def get_queue(store: JobStoreDep, registry: WorkerRegistryDep, reader: ReaderDep) -> QueuePublic:
    """The PENDING jobs in the order the scheduler starts them: by training.priority
    (high, normal, low), then by arrival. Each has its position (0: the head, counting
    every pending job), the phase and reason it waits (``waiting for 2 worker slots; 1
    free; 3 jobs ahead``), how long it has waited and an **estimated** start: for a sync
    job, when the running sync jobs ahead of it end (at their ETA) enough to free its
    slots, counting the slots the jobs ahead of it in line will take; null when that
    cannot be told. With CHAINRULE_AUTH_READS on, a user (not an admin) sees only its
    own jobs (their positions still count the others)."""
    line = [e for e in current_line(store, registry) if may_read(reader, e.owner)]
    counts = Counter(e.priority for e in line)
    by_priority = {p: counts.get(p, 0) for p in reversed(PRIORITIES)}
    return QueuePublic(data=line, summary=QueueSummary(total=len(line), by_priority=by_priority))
