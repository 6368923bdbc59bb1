"""Workers and their tasks: registrations and heartbeats, handing out the next task of
a running job, and taking tasks back from workers that are gone or overdue.

A worker takes the first job in ``active`` that has a task it may take; a task that
failed on a worker goes to another live worker if there is one. Lock held where noted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from chainrule import telemetry
from chainrule.scheduler.job import ActiveJob, Task
from chainrule.scheduler.sharing import in_turn
from chainrule.scheduler.state import SchedulerState

MAX_PUSH_WAIT_SECONDS = 1.0  # a PushPull's wait for its step (see _push_wait)
MAX_TASK_ATTEMPTS = 3  # a task that fails this often (not by diverging) fails its job


@dataclass(eq=False)
class Dispatch:
    state: SchedulerState

    # -- workers ----------------------------------------------------------------------------

    def register(self, worker_id: str, host: str, incarnation: str = "") -> None:
        """A worker process announces itself. A new incarnation of a known id ends the
        old one at once: its tasks go back to the queue and its jobs count it lost.
        EndedIncarnationError if ``incarnation`` itself was ended by a newer one."""
        with self.state.cond:
            ended = self.state.membership.register(worker_id, host, incarnation)
            if ended is not None:
                self.workers_gone({ended.worker_id})
            self.state.cond.notify_all()

    def heartbeat(self, worker_id: str, incarnation: str = "") -> None:
        """Any call from a worker (lock held); EndedIncarnationError from an ended one."""
        known = worker_id in self.state.membership.workers
        ended = self.state.membership.heartbeat(worker_id, incarnation)
        if ended is not None:
            self.workers_gone({ended.worker_id})
        if ended is not None or not known:
            self.state.cond.notify_all()

    def workers_gone(self, gone: set[str]) -> None:
        """Workers presumed dead (lock held): each job they served (a recent completion
        or a task in hand) counts them lost, and their tasks go back to the queue."""
        for job in self.state.active.values():
            holding = {t.worker_id for t in job.open.values() if t.worker_id in gone}
            for w in gone & (set(job.recent_workers) | holding):
                job.lost_workers += 1
                job.recent_workers.pop(w, None)
        telemetry.record_workers_lost(len(gone))
        self._count_lost_attempts(gone)
        self.requeue(lambda t: t.worker_id in gone)

    def _count_lost_attempts(self, gone: set[str]) -> None:
        """A task whose holder died counts a failed attempt (lock held): a task that
        kills every worker that takes it (out of memory, a crash in native code) must
        not go round them for ever. At MAX_TASK_ATTEMPTS its job is doomed."""
        state = self.state
        for job in list(state.active.values()):
            for task in job.open.values():
                if task.worker_id not in gone:
                    continue
                task.errors.append(
                    f"worker {task.worker_id}: lost while it held the task (it stopped "
                    "answering, e.g. killed by the out-of-memory killer)"
                )  # (not in failed_by: a worker back under the same id is a new process)
                if len(task.errors) >= MAX_TASK_ATTEMPTS and job.job_id not in state.doomed:
                    state.doomed[job.job_id] = (job, attempts_failed(task.step, task.errors))
                    state.active.pop(job.job_id, None)  # no more of its tasks go out

    def requeue(self, lost: Callable[[Task], bool]) -> None:
        """Put handed-out tasks matching ``lost`` back in their job's queue (lock held);
        those of steps ahead in a run are freed for whoever takes their step."""
        for job in self.state.active.values():
            for step in job.ahead:
                for task in step.tasks:
                    if task.worker_id is not None and lost(task):
                        task.worker_id = None
            for task in job.open.values():
                if lost(task):
                    task.worker_id, task.deadline = None, float("inf")
                    job.queue.appendleft(task.task_id)
                    job.reassigned += 1
                    telemetry.record_reassigned()
        self.state.cond.notify_all()

    # -- tasks ------------------------------------------------------------------------------

    def next_task(self, worker_id: str, wait_seconds: float, incarnation: str = "") -> Task | None:
        """The next task of any running job, waiting up to ``wait_seconds`` (real time:
        a wait on the lock's condition)."""
        deadline = time.monotonic() + max(0.0, min(wait_seconds, 30.0))
        with self.state.cond:
            self.heartbeat(worker_id, incarnation)
            while True:
                task = self._take(worker_id)
                if task is not None:
                    return task
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.state.cond.wait(min(remaining, 1.0))
                self.heartbeat(worker_id, incarnation)  # refused if replaced meanwhile

    def _take(self, worker_id: str) -> Task | None:
        live, now = self.state.live_workers(), self.state.clock()
        for job in in_turn(self.state.active.values(), now):
            if job.closing or not job.may_take(worker_id, live):
                continue
            if not job.queue and job.mode != "sync" and job.version < job.total_steps:
                job.queue_one()
            task_id = _pick(job, worker_id, live)
            if task_id is not None:
                if task_id == job.queue[0]:
                    job.queue.popleft()
                else:
                    job.queue.remove(task_id)
                task = job.open[task_id]
                task.worker_id, task.taken_at = worker_id, now
                timeout = job.spec.training.step_timeout_s
                task.deadline = now + timeout if timeout else float("inf")
                if task.planned:
                    task.push_wait_s = _push_wait(job, worker_id, live)
                    task.following = job.following(task, worker_id)
                    for later in task.following:
                        later.push_wait_s, later.taken_at = task.push_wait_s, now
                return task
        return None

    def release(self, worker_id: str, task_ids: list[str]) -> None:
        """Tasks of a run that ``worker_id`` handed back unstarted: any worker may take
        them (at once if their step is the current one, else when it becomes so)."""
        with self.state.cond:
            for job in self.state.active.values():
                for task_id in task_ids:
                    task = job.open.get(task_id) or job.ahead_task(task_id)
                    if task is None or task.worker_id != worker_id:
                        continue
                    task.worker_id, task.deadline = None, float("inf")
                    if task_id in job.open and task_id not in job.queue:
                        job.queue.appendleft(task_id)
            self.state.cond.notify_all()


def _pick(job: ActiveJob, worker_id: str, live: set[str]) -> str | None:
    """The first queued task ``worker_id`` may take: not one that failed on it while
    a live worker it has not failed on could take it instead."""
    for task_id in job.queue:
        failed_by = job.open[task_id].failed_by
        if worker_id not in failed_by or live <= failed_by:
            return task_id
    return None


def _push_wait(job: ActiveJob, worker_id: str, live: set[str]) -> float:
    """How long the worker's PushPull should wait for the rest of the step: only
    while other live workers, free now, can take every task still waiting; a worker
    that will have to compute them itself (fewer workers than slots) must not wait,
    and a step timeout bounds the wait, so that a reassigned task finds it free."""
    holding = {t.worker_id for t in job.open.values() if t.worker_id}
    free = len(live - holding - {worker_id})
    if len(job.queue) > free:
        return 0.0
    timeout = job.spec.training.step_timeout_s
    return min(MAX_PUSH_WAIT_SECONDS, timeout) if timeout else MAX_PUSH_WAIT_SECONDS


def attempts_failed(step: int, errors: list[str]) -> str:
    """Why a job ends whose task of ``step`` failed every attempt (``errors``)."""
    return f"step {step} could not be computed in {len(errors)} attempts: " + "; ".join(errors)
