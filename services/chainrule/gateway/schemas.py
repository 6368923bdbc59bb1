"""What the REST API sends back: pydantic schemas, kept apart from the stored records.

A loss that went NaN or infinite (a diverged run) is sent as ``null``: JSON has no NaN.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import datetime

from pydantic import BaseModel, Field, field_validator

from chainrule.spec import JobSpec
from chainrule.store import DatasetMeta, JobRecord, JobStatus, MetricPoint


class Message(BaseModel):
    detail: str


class Health(BaseModel):
    status: str
    redis: str | None = None


class MetricPointOut(BaseModel):
    step: int
    time: float = Field(description="Unix seconds")
    loss: float | None = Field(description="training loss; null once it is NaN or infinite")
    lr: float
    samples_per_s: float
    active_workers: int
    eval_loss: float | None = None
    eval_accuracy: float | None = None
    eval_mse: float | None = Field(default=None, description="regression jobs")
    eval_r2: float | None = Field(default=None, description="regression jobs")
    staleness: float | None = Field(
        default=None, description="versions between a gradient's θ and the θ it updated"
    )
    rejected_stale: int | None = Field(default=None, description="ssp: refused as too stale")
    dropped_late: int | None = Field(default=None, description="sync quorum: late gradients")
    reassigned: int | None = Field(default=None, description="tasks given to another worker")
    restored_from: int | None = Field(
        default=None, description="θ was restored from the checkpoint at this version"
    )

    @field_validator("loss", "eval_loss", "eval_mse", "eval_r2", mode="before")
    @classmethod
    def _diverged_as_null(cls, value: float | None) -> float | None:
        return value if value is None or math.isfinite(value) else None


class StatusTransitionOut(BaseModel):
    status: JobStatus
    phase: str
    message: str
    reason: str | None
    at: datetime


class JobSummary(BaseModel):
    id: str
    name: str
    status: JobStatus
    phase: str
    message: str
    failure_reason: str | None
    step: int
    total_steps: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def from_record(cls, record: JobRecord) -> JobSummary:
        return cls.model_validate(record, from_attributes=True)


class JobDetail(JobSummary):
    spec: JobSpec
    latest_metrics: MetricPointOut | None
    status_transitions: list[StatusTransitionOut]

    @classmethod
    def from_parts(cls, record: JobRecord, latest: MetricPoint | None) -> JobDetail:
        return cls.model_validate({**asdict(record), "latest_metrics": latest})


class JobsPublic(BaseModel):
    data: list[JobSummary]
    count: int = Field(description="jobs stored in all, not only on this page")


class MetricSeries(BaseModel):
    job_id: str
    count: int
    points: list[MetricPointOut]

    @classmethod
    def from_points(cls, job_id: str, points: list[MetricPoint]) -> MetricSeries:
        return cls.model_validate({"job_id": job_id, "count": len(points), "points": points})


class DatasetOut(BaseModel):
    """An uploaded dataset, as ``POST /api/v1/datasets`` stored it."""

    id: str = Field(description='what a job spec names: {"dataset": {"id": ...}}')
    name: str
    format: str = Field(description="csv or npz")
    task: str = Field(description="classification or regression")
    rows: int
    features: int = Field(description="what model.layers[0] must be")
    feature_names: list[str]
    label: str = Field(description="the target column (y for NPZ)")
    classes: list[str] | None = Field(
        description="class names in class-index order; null for regression"
    )
    created_at: datetime
    size: int = Field(description="bytes uploaded")

    @classmethod
    def from_meta(cls, meta: DatasetMeta) -> DatasetOut:
        return cls.model_validate(asdict(meta))


class DatasetsPublic(BaseModel):
    data: list[DatasetOut]
    count: int = Field(description="datasets stored in all, not only on this page")


class DatasetRefusal(BaseModel):
    """Why an upload was refused, and where in the file (rows as the file numbers them)."""

    detail: str
    row: int | None = None
    column: str | None = None
