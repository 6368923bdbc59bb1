"""What the queue route sends back, and the job detail's ``queue``."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

ESTIMATE = (
    "an estimate, not a promise: when the running sync jobs ahead end (at their ETA, "
    "progress.eta_seconds) enough to free this job's slots, counting the slots the jobs "
    "ahead of it in line will take; null when that cannot be told (waiting for workers, a "
    "running job without an ETA yet, or a job ahead that has not run yet holding the "
    "slots)"
)


class QueuePosition(BaseModel):
    position: int = Field(
        description="0 at the head of the line (by priority, then arrival), counting every "
        "pending job, those a reader may not see included"
    )
    reason: str = Field(description="why it waits, as the scheduler last wrote it")
    estimated_start: datetime | None = Field(description=ESTIMATE)


class QueueEntry(QueuePosition):
    id: str
    name: str
    owner: str | None
    priority: str = Field(description="training.priority: high, normal or low")
    mode: str = Field(description="training.mode: sync, async or ssp")
    workers: int = Field(description="training.workers: the slots (workers) it needs")
    phase: str = Field(description="queued, waiting_for_workers, preparing, ...")
    created_at: datetime
    waited_seconds: float = Field(
        description="since it was submitted, or since it last became PENDING again"
    )


class QueueSummary(BaseModel):
    total: int = Field(description="pending jobs listed")
    by_priority: dict[str, int] = Field(description="pending jobs listed, by priority")


class QueuePublic(BaseModel):
    data: list[QueueEntry] = Field(description="in line order: the head first")
    summary: QueueSummary
