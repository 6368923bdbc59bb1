"""The scheduler's state machine: workers, jobs, tasks and the step clock.

Plain Python with its collaborators passed in (job records, blobs, the parameter server
client); the gRPC servicer and the queue reader only call into it. :class:`SchedulerCore`
wires its parts, each a module of this package: the shared state and its lock
(``state``), jobs arriving (``admission``), workers and their tasks (``dispatch``),
completions and steps (``stepping``), the slow half of a step (``recording``), failures
(``recovery``) and ends (``ending``). Slow work (a call to the parameter server,
evaluation, Redis writes) runs outside the lock, serialised per job by the job's
``apply_lock``.

Life of a job: PENDING (phase ``waiting_for_workers``) until ``training.workers`` workers
are live, then RUNNING until a stop rule (:mod:`chainrule.scheduler.stopping`) ends it.

- **sync**: a step is one task per slot; it closes when all of them, or ``quorum`` of
  them, are in: one Apply of their sample-weighted mean. Tasks of a worker whose lease
  expired, or that ran past ``step_timeout_s``, go back to the queue for any live worker;
  the first completion of a task counts.
- **async**: a free worker gets a task on the current θ; each gradient is applied as it
  arrives, with lr scaled by 1/(1 + staleness) when ``staleness_lr`` is ``inverse``.
- **ssp**: async, but a gradient more than ``max_staleness`` versions old is rejected
  (counted), and a worker more than ``max_staleness`` tasks ahead of the slowest waits.

Membership: any number of workers, joining or leaving at any time. ``training.workers``
is the number to wait for before starting and, in sync mode, the task slots per step;
extra workers pick up reassigned tasks (sync) or share the stream of tasks (async, ssp).
The parameter server checkpoints θ at creation, every ``checkpoint_every`` versions and
at the last step, with the scheduler's minibatch state; a parameter server that lost θ
is rolled back to the latest checkpoint and the steps after it are recomputed (metric
``restored_from``). A job that ends early keeps its final θ as its model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chainrule import telemetry
from chainrule.scheduler.admission import Admission, StartFailure
from chainrule.scheduler.dispatch import Dispatch
from chainrule.scheduler.ending import Ending
from chainrule.scheduler.job import ActiveJob, Completion, Task
from chainrule.scheduler.membership import EndedIncarnationError, Member
from chainrule.scheduler.outages import DEFAULT_BUDGET_S
from chainrule.scheduler.ports import Jobs, ParamServer
from chainrule.scheduler.publisher import Publisher, StepPublisher
from chainrule.scheduler.recording import Recorder
from chainrule.scheduler.recovery import Recovery
from chainrule.scheduler.state import SchedulerState
from chainrule.scheduler.stepping import Stepper
from chainrule.store.blobs import BlobStore
from chainrule.store.datasets import DatasetStore
from chainrule.store.diagnostics import DiagnosticsStore

__all__ = ["Completion", "EndedIncarnationError", "SchedulerCore", "Task"]
LOST_WORKERS_SHOWN_S = 600.0


class SchedulerCore:
    def __init__(
        self,
        jobs: Jobs,
        blobs: BlobStore,
        datasets: DatasetStore,
        diagnostics: DiagnosticsStore,
        paramserver: ParamServer,
        prefix: str,
        ack: Callable[[str], None],
        lease_seconds: float = 10.0,
        log: Any = None,
        registry: Any = None,
        publisher: Publisher | None = None,
        outage_budget_s: float = DEFAULT_BUDGET_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.jobs, self.registry, self.lease_seconds = jobs, registry, lease_seconds
        self.state = state = SchedulerState(lease_seconds, clock=clock)
        publisher = publisher or StepPublisher(log)
        self.recorder = Recorder(state, jobs, diagnostics, paramserver, publisher, log)
        self.ending = Ending(
            state, jobs, blobs, paramserver, publisher, self.recorder, prefix, ack, log
        )
        self.recovery = Recovery(
            state,
            jobs,
            paramserver,
            self.recorder,
            self.ending,
            lambda job, status: self.stepper.catch_up(job, status),
            log,
        )
        self.recorder.on_error = self.recovery.fail_later
        self.dispatch = Dispatch(state)
        self.stepper = Stepper(
            state, paramserver, self.dispatch, self.recorder, self.recovery, self.ending, log
        )
        self.admission = Admission(
            state,
            jobs,
            blobs,
            datasets,
            paramserver,
            self.recorder,
            self.ending,
            prefix,
            outage_budget_s,
            log,
        )
        self._paramserver = paramserver

    @property
    def paramserver(self) -> ParamServer:
        return self._paramserver

    @paramserver.setter
    def paramserver(self, client: ParamServer) -> None:
        """Connected once this scheduler leads (scheduler/__main__.py): every part uses it."""
        self._paramserver = client
        for part in (self.recorder, self.ending, self.recovery, self.stepper, self.admission):
            part.paramserver = client

    @property
    def active(self) -> dict[str, ActiveJob]:
        return self.state.active

    @property
    def pending(self) -> dict[str, str]:
        return self.admission.pending

    @property
    def start_failures(self) -> dict[str, StartFailure]:
        return self.admission.start_failures

    # -- workers ----------------------------------------------------------------------------

    @property
    def workers(self) -> dict[str, Member]:
        return self.state.membership.workers

    @property
    def lost(self) -> dict[str, tuple[Member, float]]:
        """Recently lost workers (lease expired or replaced by a new incarnation)."""
        return self.state.membership.lost

    def register(self, worker_id: str, host: str, incarnation: str = "") -> None:
        self.dispatch.register(worker_id, host, incarnation)

    def heartbeat(self, worker_id: str, incarnation: str = "") -> None:
        """A worker busy with a task says it is alive (EndedIncarnationError if ended)."""
        with self.state.cond:
            self.dispatch.heartbeat(worker_id, incarnation)

    def live_workers(self) -> set[str]:
        return self.state.live_workers()

    def next_task(self, worker_id: str, wait_seconds: float, incarnation: str = "") -> Task | None:
        return self.dispatch.next_task(worker_id, wait_seconds, incarnation)

    def release(self, worker_id: str, task_ids: list[str]) -> None:
        self.dispatch.release(worker_id, task_ids)

    def complete(self, done: Completion) -> None:
        self.stepper.complete(done)

    # -- jobs -------------------------------------------------------------------------------

    def admit(self, job_id: str, message_id: str) -> None:
        self.admission.admit(job_id, message_id)

    def tick(self) -> None:
        """Housekeeping: expire silent workers, reassign overdue tasks, honour stop
        requests and pending timeouts, start jobs that can start."""
        state = self.state
        self.admission.requeue_preempted()
        with state.cond:
            now = self.state.clock()
            expired = {w.worker_id for w in state.membership.expire()}
            if expired:
                self.dispatch.workers_gone(expired)
            self.dispatch.requeue(lambda t: t.worker_id is not None and now > t.deadline)
            live = len(state.live_workers())
            telemetry.set_workers_active(live)
            pending = list(self.admission.pending.items())
            active = list(state.active.values())
            doomed, state.doomed = list(state.doomed.values()), {}
        for job, reason in doomed:
            self.ending.end(job.job_id, job.message_id, "FAILED", reason=reason)
        ready = self.admission.ready(pending, live, now)
        for job in active:
            if self.jobs.stop_requested(job.job_id) and not self.ending.stops_after_run(job, now):
                self.ending.stop(job)
        self.admission.start(ready)

    def publish_workers(self) -> None:
        """Write the membership (live and recently lost workers) and per-job worker
        counts to Redis for the API, and refresh the message of jobs waiting for their
        parameter server (how long so far); called about once a second."""
        state = self.state
        with state.cond:
            now, wall = self.state.clock(), time.time()
            holding = {
                t.worker_id: job.job_id
                for job in state.active.values()
                for t in job.open.values()
                if t.worker_id
            }
            rows = [
                {
                    "id": w.worker_id,
                    "incarnation": w.incarnation,
                    "host": w.host,
                    "state": "busy" if w.worker_id in holding else "idle",
                    "current_job": holding.get(w.worker_id),
                    "last_heartbeat": wall - (now - w.last_seen),
                    "tasks_done": w.tasks_done,
                }
                for w in self.workers.values()
            ]
            rows += [
                {
                    "id": w.worker_id,
                    "incarnation": w.incarnation,
                    "host": w.host,
                    "state": "lost",
                    "current_job": None,
                    "last_heartbeat": lost_at,
                    "tasks_done": w.tasks_done,
                }
                for w, lost_at in self.lost.values()
                if wall - lost_at < LOST_WORKERS_SHOWN_S and w.worker_id not in self.workers
            ]
            counts = {job.job_id: state.worker_counts(job, now) for job in state.active.values()}
        if self.registry is not None:
            self.registry.write(rows, LOST_WORKERS_SHOWN_S)
        for job_id, (active_count, lost_count) in counts.items():
            self.jobs.set_workers(job_id, active_count, lost_count)
        self.recovery.refresh_waiting()
