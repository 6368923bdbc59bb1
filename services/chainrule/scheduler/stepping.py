"""Completions and steps: what a finished task means (a retry, a resync, a failure, a
gradient to apply), when a sync step closes, and what follows a step (its metric
point, a holdout evaluation when due, the stop rules, the next step).

- **sync**: a step is one task per slot; it closes when all of them, or ``quorum`` of
  them, are in: the parameter server applied their sample-weighted mean by the step's
  plan as the last of them arrived.
- **async**: each gradient is applied as it arrives, with lr scaled by
  1/(1 + staleness) when ``staleness_lr`` is ``inverse``.
- **ssp**: async, but a gradient more than ``max_staleness`` versions old is rejected.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from chainrule import telemetry
from chainrule.data.evaluation import evaluate
from chainrule.rpc.retry import TRANSIENT
from chainrule.scheduler import stopping
from chainrule.scheduler.dispatch import MAX_TASK_ATTEMPTS, Dispatch, attempts_failed
from chainrule.scheduler.ending import Ending
from chainrule.scheduler.job import ActiveJob, Completion, Failure, Step, Task
from chainrule.scheduler.ports import ParamServer
from chainrule.scheduler.recording import Recorder
from chainrule.scheduler.recovery import RESYNC_CODES, Recovery
from chainrule.scheduler.state import SchedulerState, by_step

EVAL_WAIT_SECONDS = 10.0
# sync steps' points are written a run at a time, and at least this often, so a leader
# SIGKILLed mid-run loses at most this long of its metric series (θ loses nothing)
FLUSH_EVERY_S = 0.5

Action = Callable[[ActiveJob, Task, Completion], None]


class OutOfStepError(grpc.RpcError):  # type: ignore[misc]
    """θ on the parameter server is not at the version the scheduler expects."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.FAILED_PRECONDITION

    def details(self) -> str:
        return str(self)


@dataclass(eq=False)
class Stepper:
    state: SchedulerState
    paramserver: ParamServer
    dispatch: Dispatch
    recorder: Recorder
    recovery: Recovery
    ending: Ending
    log: Any = None

    def complete(self, done: Completion) -> None:
        """Record a finished task: a sync step closes when enough are in; an async or ssp
        gradient is applied (or rejected) at once."""
        state = self.state
        with state.cond:
            self.dispatch.heartbeat(done.worker_id, done.incarnation)  # an ended one: refused
            job = state.active.get(done.job_id)
            task = job.open.pop(done.task_id, None) if job else None
            ahead = job.ahead_task(done.task_id) if job is not None and task is None else None
            if job is not None and ahead is not None:  # a run's task of a later step
                if done.error:  # done again by whoever takes its step (errors counted)
                    ahead.worker_id = None
                    if done.failure is not Failure.PARAMSERVER:
                        ahead.errors.append(f"worker {done.worker_id}: {done.error}")
                else:
                    job.early[done.task_id] = done  # counted when its step comes
                return
            if job is None or task is None:
                return  # a job that ended, or a task completed already (first one counts)
            if done.task_id in job.queue:
                job.queue.remove(done.task_id)
            job.clocks[done.worker_id] = job.clocks.get(done.worker_id, 0) + 1
            now = self.state.clock()
            job.recent_workers[done.worker_id] = now
            if task.taken_at:
                job.usage.add(now, now - task.taken_at)
            worker = state.membership.workers.get(done.worker_id)
            if worker:
                worker.tasks_done += 1
            action = self._triage(job, task, done)
        self.recovery.guarded(job, lambda: action(job, task, done))

    def _triage(self, job: ActiveJob, task: Task, done: Completion) -> Action:
        """What to do with a completion (called with the lock held)."""
        if done.failure is Failure.PARAMSERVER:
            if done.paramserver_code in RESYNC_CODES:
                return lambda j, t, d: self.recovery.resync(j)
            if done.paramserver_code in TRANSIENT:  # try the task again
                self._retry(job, task)
                return lambda j, t, d: self.recovery.waiting(
                    j, d.error, d.paramserver_target, d.paramserver_unanswered_s
                )
        if done.failure in (Failure.WORKER, Failure.PARAMSERVER):
            task.errors.append(f"worker {done.worker_id}: {done.error}")
            task.failed_by.add(done.worker_id)
            if len(task.errors) < MAX_TASK_ATTEMPTS:  # another worker may do it
                self._retry(job, task)
                return lambda j, t, d: None
        failure = _failure(done, task)
        if failure:
            self.state.active.pop(job.job_id, None)
            return lambda j, t, d: self.ending.end(j.job_id, j.message_id, "FAILED", reason=failure)
        if job.mode != "sync":
            return self._apply_one
        job.done[done.task_id] = done
        if not _closing(job):
            return lambda j, t, d: None
        return lambda j, t, d: self._close_step(j)

    def _retry(self, job: ActiveJob, task: Task) -> None:
        """Put a task that failed back at the head of its job's queue (lock held)."""
        task.worker_id, task.deadline = None, float("inf")
        job.open[task.task_id] = task
        job.queue.appendleft(task.task_id)
        job.reassigned += 1
        telemetry.record_reassigned()
        self.state.cond.notify_all()

    def _close_step(self, job: ActiveJob) -> None:
        """Sync: every gradient the step's plan needed is in, so the parameter server
        has applied it (each Complete follows its accepted PushPull); the late ones were
        no-ops there. Record the step and hand out the next."""
        done = list(job.done.values())
        samples = sum(d.samples for d in done)
        loss = sum(d.loss * d.samples for d in done) / samples
        lr = job.schedule(job.version)
        finished = max(d.finished_unix for d in done)  # a run reports its steps together
        if finished and job.last_point_unix:
            elapsed = finished - job.last_point_unix
        else:
            elapsed = self.state.clock() - job.step_started
        job.last_point_unix = finished
        job.step_seconds = (
            elapsed if not job.step_seconds else 0.8 * job.step_seconds + 0.2 * elapsed
        )
        self._stepped(job, job.version + 1, lr, loss, samples / max(elapsed, 1e-9), done)

    def _apply_one(self, job: ActiveJob, task: Task, done: Completion) -> None:
        """Async/ssp: apply one gradient now, or reject it as too stale."""
        if job.version >= job.total_steps or job.job_id not in self.state.active:
            self.paramserver.discard(job.job_id, [task.task_id])
            return
        staleness = job.version - task.base_version
        bound = job.spec.training.max_staleness
        if job.mode == "ssp" and bound is not None and staleness > bound:
            job.rejected_stale += 1
            telemetry.record_rejected_stale()
            self.paramserver.discard(job.job_id, [task.task_id])
            with self.state.cond:
                self.state.cond.notify_all()
            return
        lr = job.schedule(job.version)
        if job.spec.training.staleness_lr == "inverse":
            lr /= 1 + staleness
        now = self.state.clock()
        rate = done.samples / max(now - job.step_started, 1e-9)
        job.step_started = now
        telemetry.record_staleness(job.mode, staleness)
        checkpoint, scheduler_state = job.checkpoint_plan()
        with telemetry.apply_timer(job.mode):
            version, _ = self.paramserver.apply(
                job.job_id, job.version, [task.task_id], lr, checkpoint, scheduler_state
            )
        self._stepped(job, version, lr, done.loss, rate, [done], staleness)

    def _stepped(
        self,
        job: ActiveJob,
        version: int,
        lr: float,
        loss: float,
        samples_per_s: float,
        done: list[Completion],
        staleness: int | None = None,
    ) -> None:
        """θ is at ``version``: the metric point (with a holdout evaluation when due),
        the stop rules, the next step at once, and the Redis writes behind it."""
        t, state = job.spec.training, self.state
        if job.outage.since is not None:
            self.recovery.answered(job)
        if job.mode == "sync":
            telemetry.record_step(self.state.clock() - job.step_started)
        with state.cond:
            live = len(state.live_workers())
        point: dict[str, Any] = {
            "step": version,
            "time": job.last_point_unix
            if job.mode == "sync" and job.last_point_unix
            else time.time(),
            "loss": loss,
            "lr": lr,
            "samples_per_s": samples_per_s,
            "active_workers": len({d.worker_id for d in done}) if job.mode == "sync" else live,
            **job.counters(),
        }
        if staleness is not None:
            point["staleness"] = staleness
        job.restored_from = None
        if version >= job.total_steps or version % t.eval_every == 0:
            point.update(self._evaluate(job, version))
        stop = stopping.check(t, job.total_steps, job.stop, point, self.state.clock())
        drawn: list[Step] = []
        closes = False
        with state.cond:
            job.version = version
            stop = _at_run_end(job, version, stop)
            parked = stop is None and job.preempt and not job.mid_run
            if parked:  # at a step boundary, no task out: admission re-queues it
                state.active.pop(job.job_id, None)
                state.preempted[job.job_id] = job
            elif stop is None and job.mode == "sync":
                job.closing = False
                live_set = state.live_workers()
                # a run lasts a quarter of a lease at most: its worker is silent meanwhile
                drawn = job.queue_step(
                    _runs(job, live_set), live_set, budget_s=state.lease_seconds / 4
                )
                closes = _closing(job)  # a run's results for it are all in already
            if stop is not None:
                state.active.pop(job.job_id, None)
            state.cond.notify_all()
        self.recorder.plan(job, drawn)
        layers = next((d.layers for d in done if d.layers), None)
        job.unrecorded.append((version, point, layers))
        # written a run at a time (a run ends at every checkpoint), every FLUSH_EVERY_S,
        # and at the end
        if (
            stop is not None
            or parked
            or drawn
            or job.mode != "sync"
            or self.state.clock() - job.flushed_at >= FLUSH_EVERY_S
        ):
            self.recorder.flush(job)
        if stop is not None:  # the final θ is kept as the job's model by end()
            reason = stop.message if stop.status == "FAILED" else None
            self.ending.end(
                job.job_id,
                job.message_id,
                stop.status,
                reason=reason,
                message=_with_accuracy(stop.message, point),
                job=job,
            )
        elif closes:
            self._close_step(job)

    def catch_up(self, job: ActiveJob, status: Any) -> bool:
        """Sync: the server is ahead because it applied steps whose reports did not all
        reach this scheduler (a worker died between its pushes and its Complete, as one
        may in a run). Those steps were applied by this scheduler's own plans, so they
        are recorded from the server's log of them and the job goes on from the server's
        version, without a rollback. False when the log does not cover them."""
        if job.mode != "sync" or status.restored:
            return False
        log = by_step(status.applied)
        if any(step not in log for step in range(job.version, status.version)):
            return False
        if self.log:
            self.log.info(
                "steps applied without their reports", job_id=job.job_id, steps=status.version
            )
        while job.version < status.version and job.job_id in self.state.active:
            applied = log[job.version]
            with self.state.cond:  # the step's tasks still out are late: applied without them
                done = list(job.done.values())
                job.closing = True
                job.open.clear()
                job.queue.clear()
            rate = applied.samples / max(self.state.clock() - job.step_started, 1e-9)
            job.last_point_unix = time.time()
            self._stepped(job, job.version + 1, job.schedule(job.version), applied.loss, rate, done)
        return True

    def _evaluate(self, job: ActiveJob, version: int) -> dict[str, float]:
        """Holdout metrics of θ at ``version`` (a plan may still be on its way to the
        parameter server: wait for it a while; FAILED_PRECONDITION resyncs the job)."""
        got, params = self.paramserver.pull(
            job.job_id, -1, min_version=version, wait_seconds=EVAL_WAIT_SECONDS
        )
        if got != version or params is None:
            raise OutOfStepError(f"θ of job {job.job_id} is at version {got}, expected {version}")
        return evaluate(job.net, params, job.split)


def _closing(job: ActiveJob) -> bool:
    """Sync (lock held): whether enough of the step's tasks are in to close it; if
    so it is marked closing, and the tasks still out are dropped as late."""
    needed = job.spec.training.quorum or job.slots
    if not job.done or job.closing:
        return False
    if len(job.done) < min(needed, len(job.done) + len(job.open)):
        return False
    job.closing = True
    late = list(job.open)
    job.dropped_late += len(late)
    telemetry.record_dropped_late(len(late))
    job.open.clear()
    job.queue.clear()
    return True


def _runs(job: ActiveJob, live: set[str]) -> bool:
    """Whether the next sync steps go out as a run: every slot has a live worker,
    and no quorum (a straggler's run would fall behind the others')."""
    return job.spec.training.quorum is None and len(live) >= job.slots


def _at_run_end(job: ActiveJob, version: int, stop: stopping.Stop | None) -> stopping.Stop | None:
    """The stop to act on at ``version``: a sync job that is to stop (by a rule, or
    by a request seen since) in the middle of a run stops where the run ends, as
    the run's steps are planned on the parameter server already; FAILED at once."""
    if stop is None and job.stop_asked is not None:
        stop = stopping.Stop("STOPPED", f"stopped by request at step {version}")
    stop = stop or job.deferred_stop
    if stop is not None and stop.status != "FAILED" and job.mid_run:
        job.deferred_stop = stop
        return None
    return stop


def _failure(done: Completion, task: Task) -> str:
    """Why this completion ends its job ("" when it does not)."""
    if not np.isfinite(done.loss):
        return f"diverged: loss became {done.loss} at step {done.step}"
    if done.failure is Failure.DIVERGED:
        return f"{done.error} at step {done.step}"
    if done.failure is not Failure.NONE:
        return attempts_failed(done.step, task.errors)
    return ""


def _with_accuracy(message: str, point: dict[str, Any]) -> str:
    if point.get("eval_accuracy") is not None:
        return f"{message}; holdout accuracy {point['eval_accuracy']:.4f}"
    if point.get("eval_r2") is not None:
        return f"{message}; holdout R² {point['eval_r2']:.4f}, MSE {point['eval_mse']:.4g}"
    return message
