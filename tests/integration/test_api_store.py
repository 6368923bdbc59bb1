"""What the REST API needs from the job store, against the real Redis: events written
with every change, submission ids, pages that hold still, stop requests, worker counts."""

from __future__ import annotations

import json

import pytest
import redis

from chainrule.spec import JobSpec
from chainrule.store import JobStatus, JobStore
from chainrule.store.jobs import (
    InvalidCursorError,
    JobActiveError,
    JobNotFoundError,
    SubmissionConflictError,
)
from tests.support.api import point
from tests.support.examples import example_spec

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spec() -> JobSpec:
    return JobSpec.model_validate(example_spec())


def kinds(store: JobStore, job_id: str) -> list[tuple[str, str]]:
    return [(e.event, e.data) for e in store.events(job_id)]


def test_every_change_and_point_is_an_event_in_order(job_store: JobStore, spec: JobSpec) -> None:
    job_id = job_store.submit(spec).id
    job_store.set_phase(job_id, "waiting_for_workers", message="0 of 2")
    job_store.set_status(job_id, "RUNNING")
    job_store.set_progress(job_id, 1)
    job_store.append_metrics(job_id, point(1))
    job_store.set_status(job_id, "FAILED", reason="diverged")
    job_store.append_metrics(job_id, point(2))  # after the end: the series only

    events = job_store.events(job_id)

    assert [e.event for e in events] == ["status", "status", "status", "metrics", "status", "end"]
    assert json.loads(events[1].data) == {"status": "PENDING", "phase": "waiting_for_workers",
                                          "message": "0 of 2", "failure_reason": None, "step": 0}  # fmt: skip
    assert json.loads(events[4].data)["step"] == 1
    assert json.loads(events[4].data)["failure_reason"] == "diverged"
    assert json.loads(events[3].data)["step"] == 1
    assert [e.id for e in job_store.events(job_id, after=events[2].id)] == [
        e.id for e in events[3:]
    ]
    assert job_store.events(job_id, after=events[-1].id, block_ms=50) == []
    with pytest.raises(ValueError, match="not of the form"):
        job_store.events(job_id, after="latest")


def test_a_refused_change_writes_no_event(job_store: JobStore, spec: JobSpec) -> None:
    job_id = job_store.submit(spec).id
    with pytest.raises(ValueError):
        job_store.set_status(job_id, "SUCCEEDED")
    assert len(job_store.events(job_id)) == 1


def test_a_submission_id_names_one_job(job_store: JobStore, spec: JobSpec) -> None:
    first, created = job_store.submit_once(spec, "run-1")
    again, created_again = job_store.submit_once(spec, "run-1")
    other = JobSpec.model_validate(example_spec("xor", training={"steps": 5}))

    assert created and not created_again and again.id == first.id
    assert again.submission_id == "run-1"
    with pytest.raises(SubmissionConflictError, match="different spec") as refused:
        job_store.submit_once(other, "run-1")
    assert refused.value.job_id == first.id
    with pytest.raises(ValueError, match="submission_id 'a b' must be"):
        job_store.submit_once(spec, "a b")
    assert job_store.count() == 1


def test_a_claim_whose_job_is_gone_is_free_again(
    job_store: JobStore, redis_client: redis.Redis, spec: JobSpec
) -> None:
    redis_client.set(job_store.submission_key("run-2"), "0123456789abcdef")  # stale
    record, created = job_store.submit_once(spec, "run-2")
    assert created and redis_client.get(job_store.submission_key("run-2")) == record.id


def test_pages_hold_still_when_jobs_share_a_creation_time(
    redis_client: redis.Redis, key_prefix: str, spec: JobSpec
) -> None:
    store = JobStore(redis_client, prefix=key_prefix, clock=lambda: 1000.0)
    ids = {store.submit(spec).id for _ in range(7)}
    seen: list[str] = []
    cursor = None
    while True:
        page = store.page(limit=3, cursor=cursor)
        seen += [r.id for r in page.records]
        store.submit(spec)  # same time again: must not shift what follows
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert ids <= set(seen) and len(seen) == len(set(seen))


def test_pages_by_status_and_bad_cursors(job_store: JobStore, spec: JobSpec) -> None:
    running = [job_store.submit(spec).id for _ in range(3)]
    for job_id in running:
        job_store.set_status(job_id, "RUNNING")
    job_store.submit(spec)

    page = job_store.page(JobStatus.RUNNING, limit=2)
    rest = job_store.page(JobStatus.RUNNING, limit=2, cursor=page.next_cursor)

    assert page.total == 3 and rest.next_cursor is None
    assert sorted(r.id for r in page.records + rest.records) == sorted(running)
    assert job_store.page(JobStatus.PENDING).total == 1
    for bad in ("!!", "bm8tY29sb24", "bmFuOmFiYw", "MTI6YTpi"):  # "no-colon", "nan:abc", "12:a:b"
        with pytest.raises(InvalidCursorError):
            job_store.page(cursor=bad)


def test_stop_requests(job_store: JobStore, spec: JobSpec) -> None:
    pending = job_store.submit(spec).id
    running = job_store.submit(spec).id
    job_store.set_status(running, "RUNNING")

    assert job_store.request_stop(pending).status is JobStatus.STOPPED
    requested = job_store.request_stop(running)
    assert (requested.status, requested.phase, requested.stop_requested) == (
        JobStatus.RUNNING, "stopping", True)  # fmt: skip
    assert job_store.stop_requested(running) and not job_store.stop_requested(pending)
    assert job_store.stop_requested("0123456789abcdef") is False
    assert job_store.request_stop(running).status_transitions == requested.status_transitions
    with pytest.raises(JobNotFoundError):
        job_store.request_stop("0123456789abcdef")


def test_worker_counts(job_store: JobStore, spec: JobSpec, redis_client: redis.Redis) -> None:
    job_id = job_store.submit(spec).id
    job_store.set_workers(job_id, active=3, lost=1)
    record = job_store.get(job_id)
    assert record is not None and (record.workers_active, record.workers_lost) == (3, 1)
    with pytest.raises(ValueError, match="active must be an integer >= 0"):
        job_store.set_workers(job_id, active=-1, lost=0)
    with pytest.raises(JobNotFoundError):
        job_store.set_workers("0123456789abcdef", 1, 0)
    assert redis_client.exists(job_store.job_key("0123456789abcdef")) == 0


def test_delete_refuses_live_jobs(job_store: JobStore, spec: JobSpec) -> None:
    job_id = job_store.submit(spec).id
    with pytest.raises(JobActiveError, match="is PENDING"):
        job_store.delete(job_id)
    job_store.set_status(job_id, "STOPPED")
    job_store.delete(job_id)
    with pytest.raises(JobNotFoundError):
        job_store.delete(job_id)
    assert job_store.get(job_id) is None and job_store.count() == 0
