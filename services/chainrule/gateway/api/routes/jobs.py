"""Submit jobs, list them, read one job's state and its metric series."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from chainrule.gateway.api.deps import DatasetStoreDep, JobStoreDep
from chainrule.gateway.api.routes.datasets import check_job_dataset
from chainrule.gateway.schemas import (
    JobDetail,
    JobsPublic,
    JobSummary,
    Message,
    MetricSeries,
)
from chainrule.spec import JobSpec
from chainrule.store import JobRecord, JobStore

router = APIRouter(prefix="/jobs", tags=["jobs"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": Message, "description": "no job with that id"}
}


@router.post("", status_code=status.HTTP_201_CREATED)
def submit_job(
    spec: JobSpec,
    store: JobStoreDep,
    datasets: DatasetStoreDep,
    request: Request,
    response: Response,
) -> JobDetail:
    """Validate the spec (against the uploaded dataset it names, if any), store the job as
    PENDING and queue it for the scheduler."""
    record = store.submit(check_job_dataset(spec, datasets))
    response.headers["Location"] = str(request.url_for("get_job", job_id=record.id))
    return JobDetail.from_parts(record, latest=None)


@router.get("")
def list_jobs(
    store: JobStoreDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobsPublic:
    """Jobs, newest first."""
    records = store.list(limit=limit, offset=offset)
    return JobsPublic(data=[JobSummary.from_record(r) for r in records], count=store.count())


@router.get("/{job_id}", responses=NOT_FOUND)
def get_job(job_id: str, store: JobStoreDep) -> JobDetail:
    """Status, phase, progress, timestamps, the spec and the latest metrics of one job."""
    record = _job_or_404(store, job_id)
    return JobDetail.from_parts(record, store.latest_metrics(job_id))


@router.get("/{job_id}/metrics", responses=NOT_FOUND)
def get_metrics(job_id: str, store: JobStoreDep) -> MetricSeries:
    """The job's whole metric series, oldest first."""
    _job_or_404(store, job_id)
    return MetricSeries.from_points(job_id, store.metrics(job_id))


def _job_or_404(store: JobStore, job_id: str) -> JobRecord:
    record = store.get(job_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job_id!r}")
    return record
