"""A worker id that comes back (a restarted container or pod) is a new incarnation: the
old one's tasks are requeued at once, it counts as lost, and its late calls are refused."""

from __future__ import annotations

import dataclasses

import pytest

from chainrule.scheduler.core import EndedIncarnationError
from chainrule.scheduler.membership import Membership
from chainrule.store.job_records import JobStatus
from tests.support.scheduler_sim import SimWorker, Stack, job_spec, make_stack, take_all


@pytest.fixture
def stack() -> Stack:
    return make_stack()


def restart(worker: SimWorker, incarnation: str) -> SimWorker:
    """The same id, a new process: registers before it asks for anything."""
    return dataclasses.replace(worker, incarnation=incarnation, caches={}).register()


def incarnated(stack: Stack) -> tuple[str, SimWorker, SimWorker]:
    """A running two-slot job and its two workers, each with an incarnation token."""
    w1 = SimWorker(stack, "w1", incarnation="w1-a").register()
    w2 = SimWorker(stack, "w2", incarnation="w2-a").register()
    job_id = stack.jobs.add(job_spec(steps=50))
    stack.core.admit(job_id, "m1")
    stack.core.tick()
    assert stack.jobs.record(job_id).status is JobStatus.RUNNING
    return job_id, w1, w2


def test_a_new_incarnation_requeues_the_task_its_predecessor_held(stack: Stack) -> None:
    job_id, w1, w2 = incarnated(stack)
    (_, t1), (_, t2) = take_all([w1, w2])
    w2.run(t2)  # the step now waits for t1, which the old w1 will never finish

    reborn = restart(w1, "w1-b")
    retried = reborn.take()
    assert retried is not None and retried.task_id == t1.task_id
    assert retried.worker_id == "w1"  # the same readable id, the new incarnation
    reborn.run(retried)
    assert stack.core.active[job_id].version == 1  # the step closed
    assert stack.core.active[job_id].lost_workers == 1
    assert stack.core.active[job_id].reassigned == 1


def test_a_lost_incarnation_counts_once_and_the_return_counts_as_active(stack: Stack) -> None:
    job_id, w1, w2 = incarnated(stack)
    for worker, task in take_all([w1, w2]):
        worker.run(task)
    stack.core.publish_workers()
    assert stack.jobs.workers[job_id] == (2, 0)

    reborn = restart(w1, "w1-b")
    stack.core.publish_workers()
    assert stack.jobs.workers[job_id] == (1, 1)  # the old incarnation is gone at once
    reborn.register()  # a retried Register of the same incarnation changes nothing
    for worker, task in take_all([reborn, w2]):
        worker.run(task)
    stack.core.publish_workers()
    assert stack.jobs.workers[job_id] == (2, 1)


def test_whatever_an_ended_incarnation_sends_later_is_refused_and_changes_nothing(
    stack: Stack,
) -> None:
    job_id, w1, w2 = incarnated(stack)
    (_, t1), (_, t2) = take_all([w1, w2])
    gradient = w1.compute(t1)  # the old w1 pushed (a duplicate push stays a no-op)...
    reborn = restart(w1, "w1-b")

    with pytest.raises(EndedIncarnationError, match="another process registered"):
        w1.complete(t1, gradient)  # ...but its Complete comes too late
    with pytest.raises(EndedIncarnationError):
        w1.take()
    with pytest.raises(EndedIncarnationError):
        w1.register()
    assert t1.task_id in stack.core.active[job_id].open  # still waiting for its new holder
    assert stack.core.active[job_id].version == 0

    retried = reborn.take()
    assert retried is not None and retried.task_id == t1.task_id
    reborn.run(retried)
    w2.run(t2)
    assert stack.core.active[job_id].version == 1
    assert [sorted(ids) for _, _, ids, _ in stack.ps.applied] == [sorted([t1.task_id, t2.task_id])]


def test_a_worker_whose_lease_ran_out_may_come_back_as_the_same_incarnation() -> None:
    """Expiry presumes a silent worker dead; it does not end it: a slow one that answers
    again is readmitted (and its task was already given to another)."""
    members = Membership(lease_seconds=10)
    members.register("w1", "host", "a")
    members.workers["w1"].last_seen -= 60
    assert [w.worker_id for w in members.expire()] == ["w1"]
    assert "w1" in members.lost
    assert members.heartbeat("w1", "a") is None
    assert members.live() == {"w1"} and "w1" not in members.lost


def test_an_unknown_incarnation_in_a_heartbeat_replaces_the_registered_one() -> None:
    """A scheduler that took over never saw the Register: the first call introduces it."""
    members = Membership(lease_seconds=10)
    members.register("w1", "host", "a")
    ended = members.heartbeat("w1", "b")
    assert ended is not None and ended.incarnation == "a"
    assert members.workers["w1"].incarnation == "b"
    assert members.workers["w1"].host == "host"
    with pytest.raises(EndedIncarnationError, match="'w1' incarnation 'a' has ended"):
        members.heartbeat("w1", "a")
