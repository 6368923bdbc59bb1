"""What a submission writes and checks, for JobStore.submit_once (store/jobs.py): the new
job's fields, the job a submission_id already names, and how many jobs an owner has."""

from __future__ import annotations

from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from chainrule.spec import JobSpec, total_steps
from chainrule.store.job_reads import JobReader
from chainrule.store.job_records import (
    DEFAULT_PHASES,
    JobStatus,
    SubmissionConflictError,
    text,
)


def new_job_fields(
    job_id: str,
    spec: JobSpec,
    spec_json: str,
    now: float,
    submission_id: str | None,
    owner: str | None,
) -> dict[FieldT, EncodableT]:
    """The record of a new PENDING job."""
    fields: dict[FieldT, EncodableT] = {
        "id": job_id,
        "name": spec.name,
        "status": JobStatus.PENDING.value,
        "phase": DEFAULT_PHASES[JobStatus.PENDING],
        "message": "",
        "step": "0",
        "total_steps": str(total_steps(spec)),
        "created_at": repr(now),
        "spec": spec_json,
    }
    if submission_id is not None:
        fields["submission_id"] = submission_id
    if owner is not None:
        fields["owner"] = owner
    return fields


def owned_count(jobs: JobReader, pipe: Pipeline, status: JobStatus, owner: str) -> int:
    """How many jobs in ``status`` ``owner`` has; the status index is watched (the
    owners are read apart: a job's owner never changes)."""
    key = jobs.status_index_key(status)
    pipe.watch(key)  # type: ignore[no-untyped-call]
    ids = [text(job_id) for job_id in pipe.zrange(key, 0, -1)]
    return sum(1 for of in jobs.owners(ids) if of == owner)


def claimed(jobs: JobReader, pipe: Pipeline, submission_id: str, spec_json: str) -> str | None:
    """The live job ``submission_id`` names (watched), or None if it names none."""
    raw = pipe.get(jobs.submission_key(submission_id))
    if raw is None:
        return None
    existing = text(raw)
    pipe.watch(jobs.job_key(existing))  # type: ignore[no-untyped-call]
    stored = pipe.hget(jobs.job_key(existing), "spec")
    if stored is None:
        return None  # a stale claim: the job is gone, so the id is free again
    if text(stored) != spec_json:
        raise SubmissionConflictError(
            f"submission_id {submission_id!r} was already used for job {existing} with a "
            "different spec; resubmit that spec unchanged to get the job back, or use a "
            "new submission_id for a new job",
            existing,
        )
    return existing
