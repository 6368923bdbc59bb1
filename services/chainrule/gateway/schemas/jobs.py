"""What the job routes take and send back."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from chainrule.gateway.schemas.metrics import MetricPointOut
from chainrule.gateway.schemas.queue import QueuePosition
from chainrule.spec import JobSpec
from chainrule.store import JobRecord, JobStatus, MetricPoint

# examples/xor.json, which the README shows (a test keeps the two the same)
XOR_SPEC: dict[str, Any] = {
    "name": "xor-tanh",
    "dataset": {"name": "xor", "holdout": 0.2},
    "model": {"layers": [2, 8, 1], "activation": "tanh", "output": "sigmoid", "loss": "bce"},
    "training": {
        "mode": "sync",
        "workers": 2,
        "batch_size": 32,
        "steps": 2000,
        "optimizer": {"name": "sgd", "lr": 0.5, "momentum": 0.9},
        "eval_every": 50,
        "seed": 0,
    },
}
SUBMISSION_EXAMPLES: dict[str, dict[str, Any]] = {
    "xor": {"summary": "a tanh MLP on XOR, two sync workers", "value": XOR_SPEC},
    "idempotent": {
        "summary": "the same, safe to retry: a second POST with this id returns the first job",
        "value": {**XOR_SPEC, "submission_id": "nightly-xor-2026-11-28"},
    },
}


class JobSubmission(JobSpec):
    """A job spec, plus an optional ``submission_id`` that makes the POST idempotent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    submission_id: Annotated[
        str | None,
        Field(
            strict=True,
            min_length=1,
            max_length=64,
            pattern=r"^[A-Za-z0-9._-]+$",
            description="chosen by the client: the same id with the same spec returns the job "
            "it created (200); with another spec it is refused (409)",
        ),
    ] = None

    def job_spec(self) -> JobSpec:
        return JobSpec.model_validate(self.model_dump(exclude={"submission_id"}))


class StatusTransitionOut(BaseModel):
    status: JobStatus
    phase: str
    message: str
    reason: str | None
    at: datetime


class Progress(BaseModel):
    step: int = Field(description="θ versions applied so far")
    total_steps: int
    percent: float = Field(description="step / total_steps, in percent")
    eta_seconds: float | None = Field(
        description="time left at the rate of the recent metric points; null while the job "
        "is not RUNNING or the rate cannot be told yet"
    )


class WorkerCounts(BaseModel):
    active: int = Field(
        description="live workers that hold a task of this job or completed one within the "
        "last lease (while its parameter server does not answer, also those active when the "
        "outage began)"
    )
    lost: int = Field(
        description="worker incarnations this job lost while they served it (lease "
        "expired, or restarted under the same id)"
    )


class JobSummary(BaseModel):
    id: str
    name: str
    status: JobStatus
    phase: str = Field(description="waiting_for_workers, preparing, training, stopping, ...")
    message: str
    failure_reason: str | None = Field(description="FAILED jobs: why")
    step: int
    total_steps: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    submission_id: str | None
    owner: str | None = Field(
        description="the principal that submitted it, who (or an admin) may stop and delete "
        "it; null: submitted while the gateway had no tokens, it belongs to the admins"
    )

    @classmethod
    def from_record(cls, record: JobRecord) -> JobSummary:
        return cls.model_validate(record, from_attributes=True)


class JobDetail(JobSummary):
    spec: JobSpec
    progress: Progress
    latest_metrics: MetricPointOut | None
    workers: WorkerCounts
    stop_requested: bool = Field(description="a stop was asked for; the job ends STOPPED")
    status_transitions: list[StatusTransitionOut] = Field(description="oldest first")
    queue: QueuePosition | None = Field(
        default=None,
        description="PENDING jobs: where it stands in line (as GET /api/v1/queue shows it); "
        "null for the others",
    )

    @classmethod
    def from_parts(
        cls,
        record: JobRecord,
        latest: MetricPoint | None,
        eta_seconds: float | None = None,
        queue: QueuePosition | None = None,
    ) -> JobDetail:
        total = max(record.total_steps, 1)
        progress = Progress(
            step=record.step,
            total_steps=record.total_steps,
            percent=round(100.0 * min(record.step, total) / total, 2),
            eta_seconds=None if eta_seconds is None else round(eta_seconds, 1),
        )
        workers = WorkerCounts(active=record.workers_active, lost=record.workers_lost)
        fields = {**asdict(record), "spec": record.spec}
        return cls.model_validate(
            {
                **fields,
                "latest_metrics": latest,
                "progress": progress,
                "workers": workers,
                "queue": queue,
            }
        )


class JobsPublic(BaseModel):
    data: list[JobSummary] = Field(description="newest first")
    count: int = Field(description="jobs that match, in all, not only on this page")
    next_page_token: str | None = Field(
        description="pass as page_token for the next page; null on the last page"
    )
