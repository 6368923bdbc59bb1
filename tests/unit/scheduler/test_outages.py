"""The outage tracker's rules (scheduler/outages.py): when an outage begins and ends,
when it is past its budget, and the backoff of the scheduler's own retries; and what a
user sees meanwhile (the simulated stack, its clock moved by the test): the job's
message naming the server and how long, refreshed, and its workers' counts."""

from __future__ import annotations

import grpc

from chainrule.paramserver.client import ParamServerUnavailableError
from chainrule.scheduler.job import Failure
from chainrule.scheduler.outages import REFRESH_S, RETRY_FIRST_S, RETRY_MAX_S, WAITING_PHASE, Outage
from chainrule.store.jobs import JobStatus
from tests.support.scheduler_sim import (
    ManualClock,
    SimWorker,
    Stack,
    job_spec,
    make_stack,
    start,
    take_all,
)

SHARD = "paramserver:50051"  # as CHAINRULE_PARAMSERVERS names it
RAW = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:172.18.0.4:50051: "
    "Failed to connect to remote host: Connection refused"
)


def test_an_outage_begins_once_and_ends_with_how_long_it_lasted() -> None:
    outage = Outage(budget_s=60)
    assert outage.ended(5.0) is None  # nothing to end
    assert outage.seen("UNAVAILABLE: connect failed", 10.0, SHARD) is True
    assert outage.seen("UNAVAILABLE: still", 12.0) is False  # the same outage
    assert outage.error == "UNAVAILABLE: still"
    assert outage.target == SHARD  # a report that does not say which keeps it
    assert (
        outage.waiting_message(12.0)
        == f"waiting for parameter server {SHARD} — unavailable for 2 s"
    )
    assert (
        outage.waiting_message(45.4)
        == f"waiting for parameter server {SHARD} — unavailable for 35 s"
    )
    assert outage.ended(40.0) == 30.0
    assert outage.since is None and outage.error == "" and outage.target == ""
    assert outage.seen("again", 50.0) is True  # a new one
    assert outage.waiting_message(53.0) == "waiting for the parameter server — unavailable for 3 s"


def test_the_waiting_message_is_due_again_every_refresh_interval() -> None:
    outage = Outage()
    assert not outage.refresh_due(0.0)  # no outage
    outage.seen("x", 10.0, SHARD)
    assert outage.refresh_due(10.0)  # not written yet
    outage.written = 10.0
    assert not outage.refresh_due(10.0 + REFRESH_S - 0.1)
    assert outage.refresh_due(10.0 + REFRESH_S)
    outage.ended(20.0)
    assert not outage.refresh_due(100.0)


def test_the_budget_is_counted_from_the_first_error_of_the_outage() -> None:
    outage = Outage(budget_s=60)
    outage.seen("UNAVAILABLE", 100.0)
    outage.seen("UNAVAILABLE", 150.0)
    assert not outage.over_budget(160.0)
    assert outage.over_budget(160.5)
    reason = outage.reason(161.0)
    assert reason.startswith("the parameter server did not answer for 61 s, past the outage")
    assert "budget of 60 s (CHAINRULE_OUTAGE_BUDGET_S): UNAVAILABLE" in reason
    outage.ended(170.0)
    assert not outage.over_budget(1e9)  # no outage, nothing over budget


def test_the_schedulers_own_retries_back_off_to_a_cap_and_start_over_with_an_outage() -> None:
    outage = Outage()
    outage.seen("x", 0.0)
    pauses = [outage.next_retry_s() for _ in range(6)]
    assert pauses == [RETRY_FIRST_S * 2**i for i in range(4)] + [RETRY_MAX_S] * 2
    outage.ended(1.0)
    outage.seen("y", 2.0)
    assert outage.next_retry_s() == RETRY_FIRST_S


# -- what the job says meanwhile (the simulated stack) ---------------------------------------


def _unavailable(worker: SimWorker, target: str = SHARD, unanswered_s: float = 0.0) -> None:
    """``worker`` takes its next task and reports that the parameter server did not
    answer, as the worker loop does after its client's retries."""
    task = worker.take()
    assert task is not None
    worker.fail(
        task,
        error=f"parameter server said UNAVAILABLE: {RAW}",
        failure=Failure.PARAMSERVER,
        code=grpc.StatusCode.UNAVAILABLE,
        target=target,
        unanswered_s=unanswered_s,
    )


def _one_round_done(
    workers: int = 2, lease_seconds: float = 10.0
) -> tuple[ManualClock, Stack, str, list[SimWorker]]:
    """A simulated stack on a manual clock with a 50-step job started and one task of
    each of its ``workers`` done."""
    clock = ManualClock()
    stack = make_stack(lease_seconds=lease_seconds, clock=clock)
    job_id, team = start(stack, job_spec(steps=50, workers=workers))
    for worker, task in take_all(team):
        worker.run(task)
    return clock, stack, job_id, team


def _alive(stack: Stack, *team: SimWorker) -> None:
    for worker in team:
        stack.core.heartbeat(worker.worker_id, worker.incarnation)


def test_the_waiting_message_names_the_shard_and_counts_the_seconds_until_it_answers() -> None:
    clock, stack, job_id, team = _one_round_done()
    w1, w2 = team
    _unavailable(w1)

    record = stack.jobs.record(job_id)
    assert (record.status, record.phase) == (JobStatus.RUNNING, WAITING_PHASE)
    assert record.message == f"waiting for parameter server {SHARD} — unavailable for 0 s"
    assert "172.18.0.4" not in record.message  # the raw error is for the log and the reason

    seen = []
    for _ in range(6):  # a second at a time, as the scheduler publishes
        clock.advance(1.0)
        _alive(stack, *team)
        stack.core.publish_workers()
        seen.append(stack.jobs.record(job_id).message)
    assert seen == [
        *[f"waiting for parameter server {SHARD} — unavailable for 0 s"] * 4,
        f"waiting for parameter server {SHARD} — unavailable for 5 s",
        f"waiting for parameter server {SHARD} — unavailable for 5 s",
    ]
    clock.advance(29.0)
    _alive(stack, *team)
    stack.core.publish_workers()
    record = stack.jobs.record(job_id)
    assert record.phase == WAITING_PHASE
    assert record.message == f"waiting for parameter server {SHARD} — unavailable for 35 s"
    # the refreshes rewrote the message alone: one history entry for the outage
    waits = [t for t in record.status_transitions if t.phase == WAITING_PHASE]
    assert len(waits) == 1, waits

    # the server answers: the task is done again, the step closes, the job trains on
    for worker in (w1, w2):
        again = worker.take()
        assert again is not None
        worker.run(again)
    record = stack.jobs.record(job_id)
    assert (record.phase, record.message) == (
        "training",
        "training again: the parameter server answered after 35 s",
    )
    clock.advance(REFRESH_S * 2)
    _alive(stack, *team)
    stack.core.publish_workers()  # nothing left to refresh
    assert stack.jobs.record(job_id).message.startswith("training again")


def test_the_schedulers_own_call_names_the_shard_that_did_not_answer() -> None:
    stack = make_stack(clock=ManualClock())
    job_id, _ = start(stack, job_spec(steps=50))
    job = stack.core.active[job_id]
    job.outage.retry_pending = True  # no timer: its retry is not what this test is about
    error = ParamServerUnavailableError("ps-b:50052", grpc.StatusCode.UNAVAILABLE, RAW)

    def plan() -> None:
        raise error

    stack.core.recovery.guarded(job, plan)
    record = stack.jobs.record(job_id)
    assert (record.phase, record.message) == (
        WAITING_PHASE,
        "waiting for parameter server ps-b:50052 — unavailable for 0 s",
    )
    assert job.outage.error == f"parameter server said UNAVAILABLE: {RAW}"  # for the reason


def test_the_workers_waiting_out_an_outage_still_count_and_one_that_leaves_does_not() -> None:
    clock, stack, job_id, team = _one_round_done(workers=3)
    stack.core.publish_workers()
    assert stack.jobs.workers[job_id] == (3, 0)
    w1, w2, _w3 = team  # w3 leaves
    _unavailable(w1)  # the others wait in their pushes, or for a task: no completions

    counts = []
    for _ in range(30):  # three leases without a completion
        clock.advance(1.0)
        _alive(stack, *team)
        stack.core.tick()
        stack.core.publish_workers()
        counts.append(stack.jobs.workers[job_id])
    assert set(counts) == {(3, 0)}

    for _ in range(12):  # w3 is gone: silent past its lease, then expired
        clock.advance(1.0)
        _alive(stack, w1, w2)
        stack.core.tick()
        stack.core.publish_workers()
        counts.append(stack.jobs.workers[job_id])
    assert counts[-1] == (2, 1)
    assert stack.core.workers.keys() == {"w1", "w2"}
    assert stack.jobs.record(job_id).message == (
        f"waiting for parameter server {SHARD} — unavailable for 40 s"  # written every 5 s
    )


def test_workers_blocked_in_their_pushes_before_the_outage_is_known_still_count() -> None:
    """The server stopped; each worker took its next task and its push retries for longer
    than a lease before it reports UNAVAILABLE: the counts hold still meanwhile."""
    clock, stack, job_id, team = _one_round_done(workers=3)
    blocked = [worker.take() for worker in team]  # held, not completed
    assert all(task is not None for task in blocked)
    counts = []
    for _ in range(12):  # past a lease, no completion, no outage known yet
        clock.advance(1.0)
        _alive(stack, *team)
        stack.core.tick()
        stack.core.publish_workers()
        counts.append(stack.jobs.workers[job_id])
    assert set(counts) == {(3, 0)}


def test_a_worker_silent_past_its_lease_is_not_counted_before_it_is_expired() -> None:
    clock, stack, job_id, team = _one_round_done(workers=3)
    _unavailable(team[0])
    clock.advance(11.0)
    _alive(stack, *team[:2])
    stack.core.publish_workers()  # no tick: w3 is still a member, but not a live one
    assert stack.jobs.workers[job_id] == (2, 0)


def test_a_resync_that_reaches_the_server_ends_the_outage_and_its_waiting_message() -> None:
    """The server is back (restarted: a worker's push finds θ gone) and the scheduler's
    resync reaches it before any step is recorded: no waiting message after that."""
    clock, stack, job_id, team = _one_round_done()
    w1, w2 = team
    _unavailable(w1)
    clock.advance(7.0)
    _alive(stack, *team)
    stack.core.publish_workers()
    assert stack.jobs.record(job_id).phase == WAITING_PHASE
    held = w2.take()
    assert held is not None
    w2.fail(
        held,
        error="parameter server said FAILED_PRECONDITION: restored",
        failure=Failure.PARAMSERVER,
        code=grpc.StatusCode.FAILED_PRECONDITION,
    )
    record = stack.jobs.record(job_id)
    assert (record.phase, record.message) == (
        "training",
        "training again: the parameter server answered after 7 s",
    )
    clock.advance(REFRESH_S * 2)
    _alive(stack, *team)
    stack.core.publish_workers()
    assert stack.jobs.record(job_id).phase == "training"


def test_the_outage_is_dated_from_when_the_workers_client_began_to_retry() -> None:
    """A worker's client retries ~11 s before it reports: the outage began then."""
    _, stack, job_id, team = _one_round_done()
    _unavailable(team[0], unanswered_s=11.2)
    assert stack.jobs.record(job_id).message == (
        f"waiting for parameter server {SHARD} — unavailable for 11 s"
    )
