"""Submit jobs, list them, read one, stop one, delete one."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError

from chainrule.admission import refusal
from chainrule.gateway.api.deps import (
    AUTH_ERRORS,
    STORAGE_FULL,
    WRITE_ACCESS,
    DatasetStoreDep,
    JobDep,
    JobStoreDep,
    ReaderDep,
    SettingsDep,
    WorkerRegistryDep,
    WriterDep,
    check_owner,
    room_for,
)
from chainrule.gateway.api.routes.datasets import check_job_dataset
from chainrule.gateway.api.routes.queue import queue_position
from chainrule.gateway.schemas import (
    BAD_BODY,
    SUBMISSION_EXAMPLES,
    JobDetail,
    JobsPublic,
    JobSubmission,
    JobSummary,
    Message,
    not_found,
)
from chainrule.gateway.series import ETA_WINDOW, eta_seconds
from chainrule.store import JobRecord, JobStatus, JobStore
from chainrule.store.jobs import (
    InvalidCursorError,
    JobActiveError,
    JobNotFoundError,
    OwnerLimitError,
    SubmissionConflictError,
)
from chainrule.store.workers import WorkerRegistry

router = APIRouter(prefix="/jobs", tags=["jobs"])

NOT_FOUND = not_found("job")
LIMIT_VARIABLES = {
    JobStatus.PENDING: "CHAINRULE_MAX_QUEUED_JOBS_PER_PRINCIPAL",
    JobStatus.RUNNING: "CHAINRULE_MAX_RUNNING_JOBS_PER_PRINCIPAL",
}
NOT_YOURS: dict[int | str, dict[str, Any]] = {
    403: {
        "model": Message,
        "description": "the token is not an accepted one, or its principal is neither the "
        "job's owner nor an admin",
    },
}


def job_detail(
    store: JobStore, record: JobRecord, registry: WorkerRegistry | None = None
) -> JobDetail:
    """The record with its latest metrics, while it runs the time it has left and, while
    it is PENDING (and a ``registry`` is given), where it stands in line."""
    recent = store.recent_metrics(record.id, ETA_WINDOW)
    eta = None
    if record.status is JobStatus.RUNNING:
        eta = eta_seconds(recent, record.step, record.total_steps)
    queue = None if registry is None else queue_position(store, registry, record)
    return JobDetail.from_parts(record, recent[-1] if recent else None, eta, queue)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[*WRITE_ACCESS, room_for("a new job")],
    responses={
        200: {"model": JobDetail, "description": "submission_id already used, same spec"},
        **STORAGE_FULL,
        409: {"model": Message, "description": "submission_id already used, another spec"},
        429: {
            "model": Message,
            "description": "the principal has as many queued or running jobs as a "
            "per-principal limit allows",
        },
        **BAD_BODY,
        **AUTH_ERRORS,
    },
)
def submit_job(
    submission: Annotated[JobSubmission, Body(openapi_examples=SUBMISSION_EXAMPLES)],
    store: JobStoreDep,
    datasets: DatasetStoreDep,
    settings: SettingsDep,
    caller: WriterDep,
    registry: WorkerRegistryDep,
    request: Request,
    response: Response,
) -> JobDetail:
    """Validate the spec (against the uploaded dataset it names, if any), store the job as
    PENDING, owned by the token's principal, and queue it for the scheduler: 201. With a
    ``submission_id`` used before, the job it made comes back (200) if the spec is the
    same, else 409. A user (not an admin) with as many queued or running jobs as
    CHAINRULE_MAX_QUEUED_JOBS_PER_PRINCIPAL or CHAINRULE_MAX_RUNNING_JOBS_PER_PRINCIPAL
    allows is refused with 429, and nothing is stored."""
    spec = check_job_dataset(submission.job_spec(), datasets)
    refused = refusal(spec, settings.limits)
    if refused is not None:  # valid, but more than the cluster can run
        error = {"type": "too_much_memory", "loc": ("body", *refused.loc), "msg": refused.message}
        raise RequestValidationError([{**error, "input": refused.value}])
    try:
        record, created = store.submit_once(
            spec,
            submission.submission_id,
            owner=None if caller is None else caller.name,
            limits=None if caller is None or caller.admin else settings.job_limits,
        )
    except SubmissionConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
    except OwnerLimitError as exc:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, detail=limit_message(exc)) from None
    response.headers["Location"] = str(request.url_for("get_job", job_id=record.id))
    if not created:
        response.status_code = status.HTTP_200_OK
        return job_detail(store, record, registry)
    return JobDetail.from_parts(record, latest=None)


def limit_message(exc: OwnerLimitError) -> str:
    """What a 429 says: the limit, its value and the current count."""
    kind = "queued (PENDING)" if exc.status is JobStatus.PENDING else "RUNNING"
    advice = (
        "wait for one to start, or stop one"
        if exc.status is JobStatus.PENDING
        else "wait for one to end, or stop one"
    )
    return (
        f"{exc.owner} already has {exc.count} {kind} jobs and "
        f"{LIMIT_VARIABLES[exc.status]} is {exc.limit}: the job was not submitted; {advice}"
    )


@router.get("")
def list_jobs(
    store: JobStoreDep,
    reader: ReaderDep,
    status_filter: Annotated[
        JobStatus | None, Query(alias="status", description="only jobs in this status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="jobs per page")] = 50,
    page_token: Annotated[
        str | None,
        Query(max_length=512, description="next_page_token of the previous page"),
    ] = None,
) -> JobsPublic:
    """Jobs, newest first, a page at a time; jobs submitted meanwhile do not shift the
    later pages. With CHAINRULE_AUTH_READS on, a user (not an admin) lists only its own."""
    owner = None if reader is None or reader.admin else reader.name
    try:
        page = store.page(status_filter, limit, page_token, owner=owner)
    except InvalidCursorError as exc:
        error = {"type": "value_error", "loc": ("query", "page_token"), "msg": str(exc)}
        raise RequestValidationError([{**error, "input": page_token}]) from None
    return JobsPublic(
        data=[JobSummary.from_record(r) for r in page.records],
        count=page.total,
        next_page_token=page.next_cursor,
    )


@router.get("/{job_id}", responses=NOT_FOUND)
def get_job(job: JobDep, store: JobStoreDep, registry: WorkerRegistryDep) -> JobDetail:
    """Status, phase, message, progress with an ETA, timestamps, workers, the spec, the
    latest metrics, every status transition of one job and, while it is PENDING, its
    ``queue``: position, reason and estimated start (as GET /api/v1/queue has them)."""
    return job_detail(store, job, registry)


@router.post(
    "/{job_id}/stop",
    dependencies=WRITE_ACCESS,
    responses={**NOT_FOUND, **AUTH_ERRORS, **NOT_YOURS},
)
def stop_job(job: JobDep, store: JobStoreDep, caller: WriterDep) -> JobDetail:
    """Stop the job. PENDING: STOPPED at once. RUNNING: phase ``stopping`` until the
    scheduler ends it STOPPED after the step in progress. Ended: nothing changes. Only
    its owner or an admin may (403)."""
    check_owner(caller, f"job {job.id}", job.owner, "stop")
    try:
        record = store.request_stop(job.id)
    except JobNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job.id!r}") from None
    return job_detail(store, record)


@router.delete(
    "/{job_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=WRITE_ACCESS,
    responses={
        **NOT_FOUND,
        409: {"model": Message, "description": "the job is PENDING or RUNNING"},
        **AUTH_ERRORS,
        **NOT_YOURS,
    },
)
def delete_job(job: JobDep, store: JobStoreDep, caller: WriterDep) -> None:
    """Delete an ended job with its history, metrics, events, diagnostics, checkpoints
    and model. A PENDING or RUNNING job is refused (409): stop it first. Only its owner
    or an admin may (403)."""
    check_owner(caller, f"job {job.id}", job.owner, "delete")
    try:
        store.delete(job.id)
    except JobNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no job {job.id!r}") from None
    except JobActiveError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from None
