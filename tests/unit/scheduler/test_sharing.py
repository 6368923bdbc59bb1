"""Sharing the workers (scheduler/sharing.py): sync jobs are gangs that start only when
their slots are free, in submission order, and wait PENDING ``queued`` with the reason
meanwhile; async jobs time-share by task-seconds."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from chainrule.scheduler.sharing import WINDOW_S, Usage, queue_reason
from chainrule.store.blobs import model_key
from chainrule.store.jobs import JobStatus
from tests.support.scheduler_sim import (
    PREFIX,
    ManualClock,
    Stack,
    job_spec,
    load_npz,
    make_stack,
    run_to_end,
    take_all,
    workers,
)


def admitted(stack: Stack, **training: Any) -> str:
    job_id = stack.jobs.add(job_spec(**training))
    stack.core.admit(job_id, f"m-{job_id}")
    return job_id


def test_usage_counts_task_seconds_over_a_sliding_window_in_bounded_buckets() -> None:
    usage = Usage()
    for i in range(10_000):  # 100 tasks a second for 100 s
        usage.add(i / 100, 0.01)
    assert len(usage.buckets) <= WINDOW_S + 1
    assert abs(usage.recent(100.0) - 0.01 * 100 * WINDOW_S) < 0.02
    assert usage.recent(100.0 + WINDOW_S + 1.0) == 0.0


def test_the_reason_names_the_slots_the_free_ones_and_the_jobs_ahead() -> None:
    assert queue_reason(2, 1, 3) == "waiting for 2 worker slots; 1 free; 3 jobs ahead"
    assert queue_reason(1, -1, 1) == "waiting for 1 worker slot; 0 free; 1 job ahead"


def test_sync_jobs_that_do_not_fit_wait_queued_in_line_then_run_in_turn(stack: Stack) -> None:
    team = workers(stack, 2)
    first = admitted(stack, workers=2)
    second = admitted(stack, workers=1)
    third = admitted(stack, workers=1)
    stack.core.tick()

    assert stack.jobs.record(first).status is JobStatus.RUNNING
    for job_id, reason in (
        (second, "waiting for 1 worker slot; 0 free; 0 jobs ahead"),
        (third, "waiting for 1 worker slot; 0 free; 1 job ahead"),
    ):
        record = stack.jobs.record(job_id)
        assert (record.status, record.phase, record.message) == (
            JobStatus.PENDING, "queued", reason)  # fmt: skip
    for worker, task in take_all(team):  # nothing of theirs is handed out
        assert task.job_id == first
        worker.run(task)

    run_to_end(stack, first, team)
    stack.core.tick()  # 2 slots free: both start, side by side
    assert stack.jobs.record(second).status is JobStatus.RUNNING
    assert stack.jobs.record(third).status is JobStatus.RUNNING
    queued = [t for t in stack.jobs.record(third).status_transitions if t.phase == "queued"]
    assert len(queued) == 2  # at submission, and in line: the reason's updates add none
    run_to_end(stack, second, team)
    run_to_end(stack, third, team)
    assert stack.jobs.record(third).status is JobStatus.SUCCEEDED


def test_a_later_sync_job_does_not_overtake_the_head_of_the_line(stack: Stack) -> None:
    workers(stack, 2)
    running = admitted(stack, workers=1)
    stack.core.tick()
    head = admitted(stack, workers=2)  # needs both: waits for the running one
    small = admitted(stack, workers=1)  # would fit the free slot, but would delay the head
    stack.core.tick()
    assert stack.jobs.record(running).status is JobStatus.RUNNING
    assert stack.jobs.record(head).message == "waiting for 2 worker slots; 1 free; 0 jobs ahead"
    assert stack.jobs.record(small).message == "waiting for 1 worker slot; 1 free; 1 job ahead"


def test_a_queued_job_does_not_time_out_but_one_short_of_live_workers_does() -> None:
    clock = ManualClock()
    stack = make_stack(clock=clock)
    workers(stack, 2)
    running = admitted(stack, workers=2)
    queued = admitted(stack, workers=2, pending_timeout_s=1.0)
    short = admitted(stack, workers=3, pending_timeout_s=1.0)  # only 2 live
    stack.core.tick()
    clock.advance(5.0)
    stack.core.tick()
    assert stack.jobs.record(running).status is JobStatus.RUNNING
    assert stack.jobs.record(queued).status is JobStatus.PENDING
    assert stack.jobs.record(short).status is JobStatus.FAILED


def test_async_jobs_time_share_the_workers() -> None:
    clock = ManualClock()
    stack = make_stack(clock=clock)
    team = workers(stack, 2)
    jobs = [admitted(stack, mode="async", workers=1, steps=10_000) for _ in range(4)]
    stack.core.tick()
    assert all(stack.jobs.record(j).status is JobStatus.RUNNING for j in jobs)
    served: Counter[str] = Counter()
    for _ in range(100):  # each task takes 0.1 s
        taken = take_all(team)
        clock.advance(0.1)
        for worker, task in taken:
            served[task.job_id] += 1
            worker.run(task)
    counts = [served[j] for j in jobs]
    assert min(counts) >= 0.8 * max(counts), counts  # insertion order alone: [200, 0, 0, 0]


def test_a_higher_priority_sync_job_goes_ahead_in_line(stack: Stack) -> None:
    team = workers(stack, 2)
    running = admitted(stack, workers=2)
    stack.core.tick()
    normal = admitted(stack, workers=2)
    high = admitted(stack, workers=2, priority="high")
    low = admitted(stack, workers=2, priority="low")
    stack.core.tick()
    assert stack.jobs.record(high).message.endswith("; 0 jobs ahead")
    assert stack.jobs.record(normal).message.endswith("; 1 job ahead")
    assert stack.jobs.record(low).message.endswith("; 2 jobs ahead")
    run_to_end(stack, running, team)
    stack.core.tick()
    assert stack.jobs.record(high).status is JobStatus.RUNNING
    assert stack.jobs.record(normal).status is JobStatus.PENDING


def test_async_jobs_share_the_workers_by_weight() -> None:
    clock = ManualClock()
    stack = make_stack(clock=clock)
    team = workers(stack, 2)
    light = admitted(stack, mode="async", workers=1, steps=10_000)
    heavy = admitted(stack, mode="async", workers=1, steps=10_000, weight=3)
    stack.core.tick()
    served: Counter[str] = Counter()
    for _ in range(200):
        taken = take_all(team)
        clock.advance(0.1)
        for worker, task in taken:
            served[task.job_id] += 1
            worker.run(task)
    assert 2.5 <= served[heavy] / served[light] <= 3.5, served


def final_theta(stack: Stack, job_id: str) -> dict[str, np.ndarray]:
    return load_npz(stack.blobs.get(model_key(PREFIX, job_id)))


def test_a_higher_priority_job_preempts_a_lower_one_which_resumes_where_it_stopped() -> None:
    spec = job_spec(workers=2, steps=30, eval_every=10, seed=5)
    alone = make_stack()
    team = workers(alone, 2)
    job_id = alone.jobs.add(spec)
    alone.core.admit(job_id, "m1")
    alone.core.tick()
    run_to_end(alone, job_id, team)
    uninterrupted = final_theta(alone, job_id)

    stack = make_stack()
    team = workers(stack, 2)
    low = stack.jobs.add(spec)
    stack.core.admit(low, "m-low")
    stack.core.tick()
    for _ in range(5):  # a few steps in
        for worker, task in take_all(team):
            worker.run(task)
    high = admitted(stack, workers=2, priority="high", steps=8)
    stack.core.tick()  # high heads the line: low is to park at its next step boundary
    parked_at = None
    for _ in range(50):
        for worker, task in take_all(team):
            worker.run(task)
        stack.core.tick()
        if stack.jobs.record(low).status is JobStatus.PENDING:
            parked_at = stack.jobs.record(low).step
            break
    record = stack.jobs.record(low)
    assert (record.status, record.phase) == (JobStatus.PENDING, "preempted"), record
    assert record.message.startswith(f"preempted at step {parked_at} by a job of higher")
    assert stack.jobs.record(high).status is JobStatus.RUNNING
    run_to_end(stack, high, team)
    stack.core.tick()  # the slots are free again: low resumes
    record = stack.jobs.record(low)
    assert (record.status, record.message) == (
        JobStatus.RUNNING, f"resumed at step {parked_at} after its preemption")  # fmt: skip
    run_to_end(stack, low, team)

    record = stack.jobs.record(low)
    assert record.status is JobStatus.SUCCEEDED and record.step == 30
    assert [p["step"] for p in stack.jobs.points[low]] == list(range(1, 31))  # no gap, no repeat
    statuses = [t.status for t in record.status_transitions]
    assert statuses.count(JobStatus.RUNNING) >= 2 and JobStatus.PENDING in statuses[2:]
    theta = final_theta(stack, low)
    for name, value in uninterrupted.items():
        np.testing.assert_array_equal(theta[name], value, err_msg=name)


def test_a_job_stopped_while_preempted_keeps_its_theta_as_its_model() -> None:
    stack = make_stack()
    team = workers(stack, 2)
    low = admitted(stack, workers=2, steps=40)
    stack.core.tick()
    for worker, task in take_all(team):
        worker.run(task)
    admitted(stack, workers=2, priority="high", steps=40)
    for _ in range(50):
        stack.core.tick()
        if stack.jobs.record(low).status is JobStatus.PENDING:
            break
        for worker, task in take_all(team):
            worker.run(task)
    assert stack.jobs.record(low).phase == "preempted"
    stack.jobs.set_status(low, "STOPPED", phase="ended", message="stopped before it started")
    stack.core.tick()
    assert low not in stack.core.state.preempted
    assert final_theta(stack, low)  # θ as it was parked
    assert f"m-{low}" in stack.acks
