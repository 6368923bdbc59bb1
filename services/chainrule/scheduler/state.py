"""What the parts of the scheduler share: the running jobs, the workers, the leader's
epoch, and the one lock (a condition variable) that guards them.

Admission (:mod:`.admission`) moves jobs into ``active``; dispatch (:mod:`.dispatch`)
hands their tasks to workers; stepping (:mod:`.stepping`) records their steps; recovery
(:mod:`.recovery`) and ending (:mod:`.ending`) take them out again. Slow work (a call to
the parameter server, a Redis write) runs outside the lock, serialised per job by the
job's ``apply_lock``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from chainrule.paramserver.state import AppliedStep
from chainrule.scheduler.job import ActiveJob
from chainrule.scheduler.membership import Membership


@dataclass
class SchedulerState:
    lease_seconds: float
    cond: threading.Condition = field(default_factory=threading.Condition)
    active: dict[str, ActiveJob] = field(default_factory=dict)
    # jobs whose task took down every worker that tried it (lock held to add): ended by
    # the next tick, outside the lock
    doomed: dict[str, tuple[ActiveJob, str]] = field(default_factory=dict)
    # sync jobs preempted at a step boundary for a job of higher priority: parked as they
    # were (θ stays on the parameter server), PENDING until their slots are free again
    preempted: dict[str, ActiveJob] = field(default_factory=dict)
    leading: bool = False  # a standby scheduler refuses workers until it leads
    epoch: int = 0  # the leader epoch, carried by every plan
    # monotonic seconds: what leases, deadlines, timeouts and rates are measured by (a test
    # passes a clock it moves itself)
    clock: Callable[[], float] = time.monotonic
    membership: Membership = field(init=False)

    def __post_init__(self) -> None:
        self.membership = Membership(self.lease_seconds, self.clock)

    def live_workers(self) -> set[str]:
        return self.membership.live()

    def held_slots(self) -> int:
        """The worker slots the running sync jobs (gangs) hold (lock held)."""
        return sum(j.slots for j in self.active.values() if j.mode == "sync")

    def worker_counts(self, job: ActiveJob, now: float) -> tuple[int, int]:
        """(workers active on ``job``, workers it lost). Active: a live worker that holds
        one of its tasks, or completed one within a lease.

        A worker blocked on a parameter server that does not answer holds its task while
        its push retries (~11 s, longer than a lease), so it still counts. Once the job
        waits out the outage, a worker active on the job when the outage began (a
        completion within a lease before it) counts too, as long as it is a live member.
        One that is gone no longer does (dispatch.workers_gone also drops it from
        ``recent_workers``)."""
        lease, since = self.lease_seconds, job.outage.since
        live = self.live_workers()
        holding = {t.worker_id for t in job.open.values() if t.worker_id} & live
        recent = {
            w
            for w, seen in job.recent_workers.items()
            if now - seen <= lease or (since is not None and seen >= since - lease and w in live)
        }
        return len(recent | holding), job.lost_workers


def by_step(applied: Iterable[AppliedStep]) -> dict[int, AppliedStep]:
    """A parameter server's applied-step log, keyed by the step each entry applied."""
    return {a.step: a for a in applied}
