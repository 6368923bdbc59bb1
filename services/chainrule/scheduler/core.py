"""The scheduler's state machine: workers, jobs, tasks and the step clock.

Plain Python with its collaborators passed in (job records, blobs, the parameter server
client); the gRPC servicer and the queue reader only call into it. One condition
variable guards the shared state; slow work (Apply, evaluation, Redis writes) runs
outside it, serialised per job by the job's ``apply_lock``.

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

import contextlib
import io
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import grpc
import numpy as np
import redis

from chainrule import telemetry
from chainrule.data.evaluation import evaluate
from chainrule.data.registry import prepare_dataset
from chainrule.nn import Params
from chainrule.paramserver.sharding import ShardsOutOfStepError
from chainrule.paramserver.state import AppliedStep, PlannedStep
from chainrule.rpc.retry import TRANSIENT
from chainrule.scheduler import stopping
from chainrule.scheduler.job import ActiveJob, Completion, Step, Task
from chainrule.scheduler.membership import EndedIncarnationError, Membership, Worker
from chainrule.scheduler.outages import DEFAULT_BUDGET_S, WAITING_PHASE, Outage
from chainrule.scheduler.publisher import Publisher, StepPublisher
from chainrule.spec import JobSpec, build_mlp, total_steps
from chainrule.store.blobs import BlobStore, dataset_key, model_key, preprocess_key
from chainrule.store.datasets import DatasetStore
from chainrule.store.diagnostics import DiagnosticsStore
from chainrule.store.fencing import DeposedError

__all__ = ["Completion", "EndedIncarnationError", "SchedulerCore", "Task"]
RESYNC_CODES = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)
LOST_WORKERS_SHOWN_S = 600.0
EVAL_WAIT_SECONDS = 10.0
MAX_PUSH_WAIT_SECONDS = 1.0  # a PushPull's wait for its step (see _push_wait)
# sync steps' points are written a run at a time, and at least this often, so a leader
# SIGKILLed mid-run loses at most this long of its metric series (θ loses nothing)
FLUSH_EVERY_S = 0.5
MAX_TASK_ATTEMPTS = 3  # a task that fails this often (not by diverging) fails its job


class OutOfStepError(grpc.RpcError):  # type: ignore[misc]
    """θ on the parameter server is not at the version the scheduler expects."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.FAILED_PRECONDITION

    def details(self) -> str:
        return str(self)


class Jobs(Protocol):
    """What the scheduler needs of the job records (chainrule.store.jobs.JobStore)."""

    def get(self, job_id: str) -> Any: ...
    def set_status(
        self,
        job_id: str,
        status: str,
        phase: str | None = None,
        message: str | None = None,
        reason: str | None = None,
    ) -> Any: ...
    def set_phase(self, job_id: str, phase: str, message: str | None = None) -> Any: ...
    def set_progress(self, job_id: str, step: int) -> Any: ...
    def append_metrics_many(
        self, job_id: str, points: list[dict[str, Any]], progress: int | None = None
    ) -> Any: ...
    def stop_requested(self, job_id: str) -> bool: ...
    def set_workers(self, job_id: str, active: int, lost: int) -> Any: ...


class ParamServer(Protocol):
    def create_job(
        self,
        job_id: str,
        params: Params,
        optimizer: str,
        hyper: dict[str, float] | None = None,
        flags: dict[str, bool] | None = None,
    ) -> tuple[int, bool]: ...
    def pull(
        self, job_id: str, have_version: int = -1, min_version: int = 0, wait_seconds: float = 0.0
    ) -> tuple[int, Params | None]: ...
    def plan_run(
        self, job_id: str, plans: Sequence[PlannedStep], epoch: int = 0
    ) -> tuple[int, bool]: ...
    def apply(
        self,
        job_id: str,
        step: int,
        task_ids: list[str],
        lr: float,
        checkpoint: bool = False,
        scheduler_state: str = "",
    ) -> tuple[int, bool]: ...
    def discard(self, job_id: str, task_ids: list[str]) -> int: ...
    def status(self, job_id: str) -> Any: ...
    def restore(self, job_id: str) -> Any: ...
    def drop_job(
        self, job_id: str, final_checkpoint: bool = False, scheduler_state: str = ""
    ) -> bool: ...


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
    ) -> None:
        self.jobs, self.blobs, self.paramserver = jobs, blobs, paramserver
        self.diagnostics, self.datasets = diagnostics, datasets
        self.prefix, self.ack, self.lease_seconds, self.log = prefix, ack, lease_seconds, log
        self.cond = threading.Condition()
        self.membership = Membership(lease_seconds)
        self.pending: dict[str, str] = {}  # job id -> queue message id
        self.pending_since: dict[str, float] = {}  # job id -> monotonic time admitted
        self.start_failures: dict[str, StartFailure] = {}  # pending again after a failed start
        # jobs whose task took down every worker that tried it (lock held to add): ended by
        # the next tick, outside the lock
        self.doomed: dict[str, tuple[ActiveJob, str]] = {}
        self.registry = registry
        self.active: dict[str, ActiveJob] = {}
        self.leading = False  # a standby scheduler refuses workers until it leads
        self.epoch = 0  # the leader epoch, carried by every plan
        self.publisher = publisher or StepPublisher(log)
        self.outage_budget_s = outage_budget_s  # how long a job waits for its parameter server

    # -- membership -----------------------------------------------------------------------

    @property
    def workers(self) -> dict[str, Worker]:
        return self.membership.workers

    @property
    def lost(self) -> dict[str, tuple[Worker, float]]:
        """Recently lost workers (lease expired or replaced by a new incarnation)."""
        return self.membership.lost

    def register(self, worker_id: str, host: str, incarnation: str = "") -> None:
        """A worker process announces itself. A new incarnation of a known id ends the
        old one at once: its tasks go back to the queue and its jobs count it lost.
        EndedIncarnationError if ``incarnation`` itself was ended by a newer one."""
        with self.cond:
            ended = self.membership.register(worker_id, host, incarnation)
            if ended is not None:
                self._workers_gone({ended.worker_id})
            self.cond.notify_all()

    def heartbeat(self, worker_id: str, incarnation: str = "") -> None:
        """A worker busy with a task says it is alive (EndedIncarnationError if ended)."""
        with self.cond:
            self._heartbeat(worker_id, incarnation)

    def live_workers(self) -> set[str]:
        return self.membership.live()

    def _heartbeat(self, worker_id: str, incarnation: str = "") -> None:
        """Any call from a worker (lock held); EndedIncarnationError from an ended one."""
        known = worker_id in self.membership.workers
        ended = self.membership.heartbeat(worker_id, incarnation)
        if ended is not None:
            self._workers_gone({ended.worker_id})
        if ended is not None or not known:
            self.cond.notify_all()

    def _workers_gone(self, gone: set[str]) -> None:
        """Workers presumed dead (lock held): each job they served (a recent completion
        or a task in hand) counts them lost, and their tasks go back to the queue."""
        for job in self.active.values():
            holding = {t.worker_id for t in job.open.values() if t.worker_id in gone}
            for w in gone & (set(job.recent_workers) | holding):
                job.lost_workers += 1
                job.recent_workers.pop(w, None)
        telemetry.record_workers_lost(len(gone))
        self._count_lost_attempts(gone)
        self._requeue(lambda t: t.worker_id in gone)

    def _count_lost_attempts(self, gone: set[str]) -> None:
        """A task whose holder died counts a failed attempt (lock held): a task that
        kills every worker that takes it (out of memory, a crash in native code) must
        not go round them for ever. At MAX_TASK_ATTEMPTS its job is doomed."""
        for job in list(self.active.values()):
            for task in job.open.values():
                if task.worker_id not in gone:
                    continue
                task.errors.append(
                    f"worker {task.worker_id}: lost while it held the task (it stopped "
                    "answering, e.g. killed by the out-of-memory killer)"
                )  # (not in failed_by: a worker back under the same id is a new process)
                if len(task.errors) >= MAX_TASK_ATTEMPTS and job.job_id not in self.doomed:
                    self.doomed[job.job_id] = (job, _attempts_failed(task.step, task.errors))
                    self.active.pop(job.job_id, None)  # no more of its tasks go out

    # -- jobs arriving ----------------------------------------------------------------------

    def admit(self, job_id: str, message_id: str) -> None:
        """A job read from the queue. Ended or unknown jobs are acknowledged and skipped;
        a RUNNING one (its scheduler died) resumes from its checkpoint when it starts."""
        record = self.jobs.get(job_id)
        if record is None or record.status in ("SUCCEEDED", "FAILED", "STOPPED"):
            self.ack(message_id)
            return
        with self.cond:
            if job_id in self.active or job_id in self.pending:
                return
            self.pending[job_id] = message_id
            self.pending_since.setdefault(job_id, time.monotonic())
        if record.status == "RUNNING":
            self.jobs.set_phase(job_id, "restoring", message="scheduler restarted; resuming")
        else:
            self.jobs.set_phase(
                job_id, "waiting_for_workers", message="waiting for workers to register"
            )

    def tick(self) -> None:
        """Housekeeping: expire silent workers, reassign overdue tasks, honour stop
        requests and pending timeouts, start jobs that can start."""
        with self.cond:
            now = time.monotonic()
            expired = {w.worker_id for w in self.membership.expire()}
            if expired:
                self._workers_gone(expired)
            self._requeue(lambda t: t.worker_id is not None and now > t.deadline)
            live = len(self.live_workers())
            telemetry.set_workers_active(live)
            pending = list(self.pending.items())
            active = list(self.active.values())
            doomed, self.doomed = list(self.doomed.values()), {}
        for job, reason in doomed:
            self._end(job.job_id, job.message_id, "FAILED", reason=reason)
        ready = self._pending_to_start(pending, live, now)
        for job in active:
            if self.jobs.stop_requested(job.job_id) and not self._stops_after_run(job, now):
                self._stop(job)
        failed: list[BaseException] = []
        for job_id, spec, message_id in ready:
            try:
                self._start(job_id, spec, message_id)
            except Exception as e:  # the paramserver or Redis is not reachable yet: retry
                with self.cond:
                    self.active.pop(job_id, None)
                    self.pending[job_id] = message_id  # its pending_since is kept
                    before = self.start_failures.get(job_id)
                    self.start_failures[job_id] = StartFailure.after(before, e, time.monotonic())
                failed.append(e)
                continue
            self._forget_pending(job_id)  # started, or ended by _start itself
        if failed:
            raise failed[0]

    def _pending_to_start(
        self, pending: list[tuple[str, str]], live: int, now: float
    ) -> list[tuple[str, JobSpec, str]]:
        """The pending jobs that can start now; stopped, vanished and timed-out ones end."""
        ready = []
        for job_id, message_id in pending:
            record = self.jobs.get(job_id)
            if record is None or record.status in ("SUCCEEDED", "FAILED", "STOPPED"):
                self._forget_pending(job_id)
                self.ack(message_id)
                continue
            spec = JobSpec.model_validate(record.spec)
            waited = now - self.pending_since.get(job_id, now)
            timeout = spec.training.pending_timeout_s
            failure = self.start_failures.get(job_id)
            if failure is not None and timeout is not None and waited > timeout:
                self._forget_pending(job_id)
                reason = (
                    f"could not start within pending_timeout_s={timeout:g} "
                    f"({failure.attempts} attempts); the last said: {failure.error}"
                )
                self._end(job_id, message_id, "FAILED", reason=reason)
            elif failure is not None and now < failure.not_before:
                continue  # backing off after a failed start
            elif live >= spec.training.workers:
                with self.cond:  # pending_since stays until it has started
                    self.pending.pop(job_id, None)
                ready.append((job_id, spec, message_id))
            elif timeout is not None and waited > timeout:
                self._forget_pending(job_id)
                reason = (
                    f"no workers: the job needs {spec.training.workers} and only {live} "
                    f"registered within pending_timeout_s={timeout:g}"
                )
                self._end(job_id, message_id, "FAILED", reason=reason)
        return ready

    def _forget_pending(self, job_id: str) -> None:
        with self.cond:
            self.pending.pop(job_id, None)
            self.pending_since.pop(job_id, None)
            self.start_failures.pop(job_id, None)

    def _stops_after_run(self, job: ActiveJob, now: float) -> bool:
        """A stop request for a sync job in the middle of a run waits for the run's end
        (its steps are planned on the parameter server, and workers holding its tasks
        push them still: stopping now would keep a θ ahead of the recorded step), up to
        a worker lease; then, or for any other job, it is honoured at once."""
        with self.cond:
            if job.mode != "sync" or not job.ahead:
                return False
            if job.stop_asked is None:
                job.stop_asked = now
            return now - job.stop_asked < self.lease_seconds

    def _stop(self, job: ActiveJob) -> None:
        """A stop request for a running job: it ends STOPPED, keeping θ as its model."""
        with self.cond:
            if self.active.pop(job.job_id, None) is None:
                return
        with job.apply_lock:  # not in the middle of an Apply
            self._flush(job)
            message = f"stopped by request at step {job.version}"
            self._end(job.job_id, job.message_id, "STOPPED", message=message)

    def publish_workers(self) -> None:
        """Write the membership (live and recently lost workers) and per-job worker
        counts to Redis for the API; called about once a second."""
        with self.cond:
            now, wall = time.monotonic(), time.time()
            holding = {
                t.worker_id: job.job_id
                for job in self.active.values()
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
            counts = {job.job_id: self._worker_counts(job, now) for job in self.active.values()}
        if self.registry is not None:
            self.registry.write(rows, LOST_WORKERS_SHOWN_S)
        for job_id, (active_count, lost_count) in counts.items():
            self.jobs.set_workers(job_id, active_count, lost_count)

    def _worker_counts(self, job: ActiveJob, now: float) -> tuple[int, int]:
        """(workers active on ``job``: a completion within a lease, workers it lost)."""
        recent = sum(now - seen <= self.lease_seconds for seen in job.recent_workers.values())
        return recent, job.lost_workers

    def _requeue(self, lost: Callable[[Task], bool]) -> None:
        """Put handed-out tasks matching ``lost`` back in their job's queue (lock held);
        those of steps ahead in a run are freed for whoever takes their step."""
        for job in self.active.values():
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
        self.cond.notify_all()

    def _start(self, job_id: str, spec: JobSpec, message_id: str) -> None:
        if job_id not in self.start_failures:  # a retry is the same phase: no new entry
            self.jobs.set_phase(job_id, "preparing", message=f"preparing {spec.dataset.described}")
        t = spec.training
        try:
            split = prepare_dataset(spec.dataset, t.seed, self.datasets.data)
        except (ValueError, KeyError, OSError) as e:
            self._end(job_id, message_id, "FAILED", reason=f"bad dataset: {e}")
            return
        net = build_mlp(spec.model)
        key = dataset_key(self.prefix, job_id)
        steps = total_steps(spec, train_rows=len(split.X_train))
        job = ActiveJob(job_id, spec, net, split, t.schedule(), message_id, key, steps)
        job.outage = Outage(self.outage_budget_s)
        job.seed_batches()
        self.blobs.put(key, split.to_bytes())
        self.blobs.put(
            preprocess_key(self.prefix, job_id), split.preprocess_bytes(self._classes(spec))
        )
        self._install_theta(job)
        message = f"training ({t.mode}) with {t.workers} task slots"
        try:
            if self.jobs.get(job_id).status == "RUNNING":
                self.jobs.set_phase(job_id, "training", message=message)
            else:
                self.jobs.set_status(job_id, "RUNNING", phase="training", message=message)
        except ValueError:  # stopped while it was being prepared
            self.paramserver.drop_job(job_id)
            self.ack(message_id)
            return
        telemetry.record_job_started(job.mode)
        drawn: list[Step] = []
        with self.cond:
            self.active[job_id] = job
            if job.mode == "sync":
                drawn = job.queue_step()  # the first step alone: workers may still be arriving
            self.cond.notify_all()
        self._plan(job, drawn)

    def _classes(self, spec: JobSpec) -> list[str] | None:
        """Class names of an uploaded dataset (built-in sets have none beyond indices)."""
        if spec.dataset.id is None:
            return None
        meta = self.datasets.get(spec.dataset.id)
        return list(meta.classes) if meta is not None and meta.classes else None

    def _install_theta(self, job: ActiveJob) -> None:
        """Create θ on the parameter server, or resume from the job's checkpoint if the
        server (or its checkpoint) already has the job."""
        from chainrule.scheduler.batches import job_rngs

        init_rng, _ = job_rngs(job.spec.training.seed)
        params = job.net.init(init_rng)
        opt = job.spec.training.optimizer
        hyper = {k: float(v) for k, v in opt.options.items() if not isinstance(v, bool)}
        flags = {k: v for k, v in opt.options.items() if isinstance(v, bool)}
        try:
            _, created = self.paramserver.create_job(job.job_id, params, opt.name, hyper, flags)
        except ShardsOutOfStepError:  # a shard restarted (restored) while the others went on
            created = False  # the job exists: restore every shard to a version they share
        if created:
            return
        applied = self._applied_log(job.job_id)  # a restore replaces it: read it first
        try:
            status = self.paramserver.restore(job.job_id)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            # θ without a checkpoint to resume from consistently: start over
            self.paramserver.drop_job(job.job_id)
            self.paramserver.create_job(job.job_id, params, opt.name, hyper, flags)
            return
        job.resume(status.version, status.scheduler_state)
        job.restored_from = status.version
        self._recover_points(job, applied, status.version)
        if self.log:
            self.log.info("job resumed", job_id=job.job_id, version=status.version)

    def _applied_log(self, job_id: str) -> dict[int, AppliedStep]:
        """The parameter server's log of the job's last applied steps, by step (empty
        when the server does not hold the job)."""
        try:
            return _by_step(self.paramserver.status(job_id).applied)
        except (grpc.RpcError, ShardsOutOfStepError):
            return {}

    def _recover_points(
        self, job: ActiveJob, applied: dict[int, AppliedStep], version: int
    ) -> None:
        """A leader killed between a checkpoint and writing its last points leaves steps
        up to the checkpoint at ``version`` that its successor neither has nor recomputes.
        Their points are rebuilt from the parameter server's log of applied steps, as far
        as it covers them: the loss and learning rate as applied; ``samples_per_s`` and
        ``active_workers`` were not logged and read 0."""
        record = self.jobs.get(job.job_id)
        if record is None or record.step >= version:
            return
        points = [
            {
                "step": step + 1,
                "loss": applied[step].loss,
                "lr": job.schedule(step),
                "samples_per_s": 0.0,
                "active_workers": 0,
            }
            for step in range(record.step, version)
            if step in applied
        ]
        if not points:
            return
        try:
            self.jobs.append_metrics_many(job.job_id, points, progress=version)
        except ValueError:  # the job ended meanwhile: its record is closed
            return
        if self.log:
            self.log.info(
                "points recovered from the applied-step log", job_id=job.job_id, points=len(points)
            )

    # -- tasks ------------------------------------------------------------------------------

    def next_task(self, worker_id: str, wait_seconds: float, incarnation: str = "") -> Task | None:
        """The next task of any running job, waiting up to ``wait_seconds``."""
        deadline = time.monotonic() + max(0.0, min(wait_seconds, 30.0))
        with self.cond:
            self._heartbeat(worker_id, incarnation)
            while True:
                task = self._take(worker_id)
                if task is not None:
                    return task
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.cond.wait(min(remaining, 1.0))
                self._heartbeat(worker_id, incarnation)  # refused if replaced meanwhile

    def _take(self, worker_id: str) -> Task | None:
        live = self.live_workers()
        for job in self.active.values():
            if job.closing or not job.may_take(worker_id, live):
                continue
            if not job.queue and job.mode != "sync" and job.version < job.total_steps:
                job.queue_one()
            task_id = self._pick(job, worker_id, live)
            if task_id is not None:
                if task_id == job.queue[0]:
                    job.queue.popleft()
                else:
                    job.queue.remove(task_id)
                task = job.open[task_id]
                task.worker_id = worker_id
                timeout = job.spec.training.step_timeout_s
                task.deadline = time.monotonic() + timeout if timeout else float("inf")
                if task.planned:
                    task.push_wait_s = self._push_wait(job, worker_id, live)
                    task.following = job.following(task, worker_id)
                    for later in task.following:
                        later.push_wait_s = task.push_wait_s
                return task
        return None

    @staticmethod
    def _pick(job: ActiveJob, worker_id: str, live: set[str]) -> str | None:
        """The first queued task ``worker_id`` may take: not one that failed on it while
        a live worker it has not failed on could take it instead."""
        for task_id in job.queue:
            failed_by = job.open[task_id].failed_by
            if worker_id not in failed_by or live <= failed_by:
                return task_id
        return None

    def release(self, worker_id: str, task_ids: list[str]) -> None:
        """Tasks of a run that ``worker_id`` handed back unstarted: any worker may take
        them (at once if their step is the current one, else when it becomes so)."""
        with self.cond:
            for job in self.active.values():
                for task_id in task_ids:
                    task = job.open.get(task_id) or job.ahead_task(task_id)
                    if task is None or task.worker_id != worker_id:
                        continue
                    task.worker_id, task.deadline = None, float("inf")
                    if task_id in job.open and task_id not in job.queue:
                        job.queue.appendleft(task_id)
            self.cond.notify_all()

    @staticmethod
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

    def complete(self, done: Completion) -> None:
        """Record a finished task: a sync step closes when enough are in; an async or ssp
        gradient is applied (or rejected) at once."""
        with self.cond:
            self._heartbeat(done.worker_id, done.incarnation)  # an ended incarnation: refused
            job = self.active.get(done.job_id)
            task = job.open.pop(done.task_id, None) if job else None
            ahead = job.ahead_task(done.task_id) if job is not None and task is None else None
            if job is not None and ahead is not None:  # a run's task of a later step
                if done.error:  # done again by whoever takes its step (errors counted)
                    ahead.worker_id = None
                    if not done.error.startswith("parameter server said"):
                        ahead.errors.append(f"worker {done.worker_id}: {done.error}")
                else:
                    job.early[done.task_id] = done  # counted when its step comes
                return
            if job is None or task is None:
                return  # a job that ended, or a task completed already (first one counts)
            if done.task_id in job.queue:
                job.queue.remove(done.task_id)
            job.clocks[done.worker_id] = job.clocks.get(done.worker_id, 0) + 1
            job.recent_workers[done.worker_id] = time.monotonic()
            worker = self.workers.get(done.worker_id)
            if worker:
                worker.tasks_done += 1
            action = self._triage(job, task, done)
        self._guarded(job, lambda: action(job, task, done))

    def _triage(
        self, job: ActiveJob, task: Task, done: Completion
    ) -> Callable[[ActiveJob, Task, Completion], None]:
        """What to do with a completion (called with the lock held)."""
        if done.error.startswith("parameter server said"):
            if any(code.name in done.error for code in RESYNC_CODES):
                return lambda j, t, d: self._resync(j)
            if any(code.name in done.error for code in TRANSIENT):  # try the task again
                self._retry(job, task)
                return lambda j, t, d: self._waiting(j, d.error)
        if done.error and not done.error.startswith("diverged"):
            task.errors.append(f"worker {done.worker_id}: {done.error}")
            task.failed_by.add(done.worker_id)
            if len(task.errors) < MAX_TASK_ATTEMPTS:  # another worker may do it
                self._retry(job, task)
                return lambda j, t, d: None
        failure = _failure(done, task)
        if failure:
            self.active.pop(job.job_id, None)
            return lambda j, t, d: self._end(j.job_id, j.message_id, "FAILED", reason=failure)
        if job.mode != "sync":
            return self._apply_one
        job.done[done.task_id] = done
        if not self._closing(job):
            return lambda j, t, d: None
        return lambda j, t, d: self._close_step(j)

    def _retry(self, job: ActiveJob, task: Task) -> None:
        """Put a task that failed back at the head of its job's queue (lock held)."""
        task.worker_id, task.deadline = None, float("inf")
        job.open[task.task_id] = task
        job.queue.appendleft(task.task_id)
        job.reassigned += 1
        telemetry.record_reassigned()
        self.cond.notify_all()

    @staticmethod
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

    def _guarded(self, job: ActiveJob, work: Callable[[], None]) -> None:
        """Run slow work for ``job`` one at a time; a failure ends the job, never hangs
        it: θ not where the job thinks resyncs it, a parameter server that does not
        answer is waited out (scheduler/outages.py), anything else fails the job."""
        try:
            with job.apply_lock:
                work()
        except grpc.RpcError as e:
            if e.code() in RESYNC_CODES:
                self._guarded(job, lambda: self._resync(job))
            elif e.code() in TRANSIENT:
                self._wait_out(job, f"parameter server said {e.code().name}: {e.details()}")
            else:
                self._fail_unexpectedly(job, e)
        except Exception as e:
            self._fail_unexpectedly(job, e)

    def _waiting(self, job: ActiveJob, error: str) -> None:
        """The job's parameter server did not answer (``error``): the job's phase says
        so when this begins an outage, and the job FAILS once it lasts past the budget."""
        now = time.monotonic()
        with self.cond:
            if self.active.get(job.job_id) is not job:
                return  # ended (or rolled over) meanwhile
            began, over = job.outage.seen(error, now), job.outage.over_budget(now)
            if over:
                self.active.pop(job.job_id)
                self.cond.notify_all()
        if over:
            self._end(job.job_id, job.message_id, "FAILED", reason=job.outage.reason(now), job=job)
        elif began:
            if self.log:
                self.log.warning("parameter server unavailable; waiting", job_id=job.job_id)
            with contextlib.suppress(ValueError):  # the job ended meanwhile
                self.jobs.set_phase(job.job_id, WAITING_PHASE, job.outage.waiting_message())

    def _wait_out(self, job: ActiveJob, error: str) -> None:
        """The scheduler's own call for ``job`` found its parameter server unavailable:
        try again (a resync: what reached the server before it went is unknown) after a
        backoff, while the outage is within its budget. One retry pending at a time."""
        self._waiting(job, error)
        with self.cond:
            if self.active.get(job.job_id) is not job or job.outage.retry_pending:
                return
            job.outage.retry_pending = True
            delay = job.outage.next_retry_s()

        def retry() -> None:
            job.outage.retry_pending = False
            self._guarded(job, lambda: self._resync(job))

        timer = threading.Timer(delay, retry)
        timer.daemon = True
        timer.start()

    def _answered(self, job: ActiveJob) -> None:
        """The job's parameter server answers again (a step was recorded): say so."""
        with self.cond:
            lasted = job.outage.ended(time.monotonic())
        if lasted is not None:
            if self.log:
                self.log.info("parameter server answers again", job_id=job.job_id, after=lasted)
            with contextlib.suppress(ValueError):
                self.jobs.set_phase(
                    job.job_id,
                    "training",
                    message=f"training again: the parameter server answered after {lasted:.0f} s",
                )

    def _fail_unexpectedly(self, job: ActiveJob, e: BaseException) -> None:
        self._flush(job)
        if self.log:
            self.log.exception("job step failed", job_id=job.job_id, version=job.version)
        with self.cond:
            self.active.pop(job.job_id, None)
        reason = f"could not complete step {job.version}: {type(e).__name__}: {e}"
        self._end(job.job_id, job.message_id, "FAILED", reason=reason)

    # -- applying gradients -----------------------------------------------------------------

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
            elapsed = time.monotonic() - job.step_started
        job.last_point_unix = finished
        job.step_seconds = (
            elapsed if not job.step_seconds else 0.8 * job.step_seconds + 0.2 * elapsed
        )
        self._stepped(job, job.version + 1, lr, loss, samples / max(elapsed, 1e-9), done)

    def _plan(self, job: ActiveJob, steps: list[Step]) -> None:
        """Register the plans of the sync steps just drawn, behind the step that closed
        (the workers start on their tasks meanwhile: their pushes wait for them)."""
        if not steps:
            return
        generation, quorum = job.generation, job.spec.training.quorum or 0

        plans = [
            PlannedStep(
                s.step, s.task_ids, job.schedule(s.step), quorum, s.checkpoint, s.scheduler_state
            )
            for s in steps
        ]

        def register() -> None:
            if generation != job.generation or job.job_id not in self.active:
                return  # the job was rolled back or ended since: these plans are void
            try:
                self.paramserver.plan_run(job.job_id, plans, self.epoch)
            except Exception as e:
                self._fail_later(job, e)

        self.publisher.submit(register)

    def _runs(self, job: ActiveJob, live: set[str]) -> bool:
        """Whether the next sync steps go out as a run: every slot has a live worker,
        and no quorum (a straggler's run would fall behind the others')."""
        return job.spec.training.quorum is None and len(live) >= job.slots

    def _apply_one(self, job: ActiveJob, task: Task, done: Completion) -> None:
        """Async/ssp: apply one gradient now, or reject it as too stale."""
        if job.version >= job.total_steps or job.job_id not in self.active:
            self.paramserver.discard(job.job_id, [task.task_id])
            return
        staleness = job.version - task.base_version
        bound = job.spec.training.max_staleness
        if job.mode == "ssp" and bound is not None and staleness > bound:
            job.rejected_stale += 1
            telemetry.record_rejected_stale()
            self.paramserver.discard(job.job_id, [task.task_id])
            with self.cond:
                self.cond.notify_all()
            return
        lr = job.schedule(job.version)
        if job.spec.training.staleness_lr == "inverse":
            lr /= 1 + staleness
        now = time.monotonic()
        rate = done.samples / max(now - job.step_started, 1e-9)
        job.step_started = now
        telemetry.record_staleness(job.mode, staleness)
        self._apply(job, [task.task_id], lr, done.loss, rate, [done], staleness)

    def _apply(
        self,
        job: ActiveJob,
        task_ids: list[str],
        lr: float,
        loss: float,
        samples_per_s: float,
        done: list[Completion],
        staleness: int | None = None,
    ) -> None:
        """Async/ssp: one Apply on the parameter server, then record the step."""
        checkpoint, state = job.checkpoint_plan()
        with telemetry.apply_timer(job.mode):
            version, _ = self.paramserver.apply(
                job.job_id, job.version, task_ids, lr, checkpoint, state
            )
        self._stepped(job, version, lr, loss, samples_per_s, done, staleness)

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
        t = job.spec.training
        if job.outage.since is not None:
            self._answered(job)
        if job.mode == "sync":
            telemetry.record_step(time.monotonic() - job.step_started)
        with self.cond:
            live = len(self.live_workers())
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
        stop = stopping.check(t, job.total_steps, job.stop, point, time.monotonic())
        drawn: list[Step] = []
        closes = False
        with self.cond:
            job.version = version
            stop = self._at_run_end(job, version, stop)
            if stop is None and job.mode == "sync":
                job.closing = False
                live_set = self.live_workers()
                # a run lasts a quarter of a lease at most: its worker is silent meanwhile
                drawn = job.queue_step(
                    self._runs(job, live_set), live_set, budget_s=self.lease_seconds / 4
                )
                closes = self._closing(job)  # a run's results for it are all in already
            if stop is not None:
                self.active.pop(job.job_id, None)
            self.cond.notify_all()
        self._plan(job, drawn)
        layers = next((d.layers for d in done if d.layers), None)
        job.unrecorded.append((version, point, layers))
        # written a run at a time (a run ends at every checkpoint), every FLUSH_EVERY_S,
        # and at the end
        if (
            stop is not None
            or drawn
            or job.mode != "sync"
            or time.monotonic() - job.flushed_at >= FLUSH_EVERY_S
        ):
            self._flush(job)
        if stop is not None:  # the final θ is kept as the job's model by _end
            reason = stop.message if stop.status == "FAILED" else None
            self._end(
                job.job_id,
                job.message_id,
                stop.status,
                reason=reason,
                message=_with_accuracy(stop.message, point),
                job=job,
            )
        elif closes:
            self._close_step(job)

    @staticmethod
    def _at_run_end(
        job: ActiveJob, version: int, stop: stopping.Stop | None
    ) -> stopping.Stop | None:
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

    def _flush(self, job: ActiveJob) -> None:
        """Write the job's points not yet written, behind whatever was submitted before."""
        job.flushed_at = time.monotonic()
        if job.unrecorded:
            items, job.unrecorded = job.unrecorded, []
            self.publisher.submit(lambda: self._record(job, items))

    def _record(
        self, job: ActiveJob, items: list[tuple[int, dict[str, Any], list[dict[str, Any]] | None]]
    ) -> None:
        """Steps' points, derivative diagnostics and progress, written to Redis."""
        try:
            self.jobs.append_metrics_many(
                job.job_id, [point for _, point, _ in items], progress=items[-1][0]
            )
            layers = [(version, layers) for version, _, layers in items if layers]
            if layers:  # the derivative diagnostics of one task's minibatch per step
                self.diagnostics.append_many(job.job_id, layers)
        except ValueError:  # the job was stopped meanwhile: its record is closed
            if self.log:
                self.log.info("steps not recorded: job ended", job_id=job.job_id)
        except Exception as e:
            self._fail_later(job, e)

    def _fail_later(self, job: ActiveJob, error: BaseException) -> None:
        """Background work for ``job`` failed: resync or fail it through ``_guarded``, on a
        thread of its own (the publisher must not wait for the job's lock)."""
        threading.Thread(target=self._guarded, args=(job, _raiser(error)), daemon=True).start()

    def _resync(self, job: ActiveJob) -> None:
        """The parameter server's θ is not where this job thinks it is (it restarted):
        roll every shard back to the latest checkpoint and recompute from there."""
        self._flush(job)  # the steps rolled back stay in the series, as they happened
        try:
            try:
                status = self.paramserver.status(job.job_id)
            except grpc.RpcError as e:  # not held (dropped, or the server restarted empty)
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                status = self.paramserver.restore(job.job_id)  # from its latest checkpoint
            if status.version > job.version and self._catch_up(job, status):
                return
            if status.version != job.version:
                status = self.paramserver.restore(job.job_id)
        except grpc.RpcError as e:
            if e.code() in TRANSIENT:
                raise  # not lost: the server does not answer (_guarded waits it out)
            with self.cond:
                self.active.pop(job.job_id, None)
            reason = f"θ was lost at step {job.version} and no checkpoint holds it ({e.details()})"
            self._end(job.job_id, job.message_id, "FAILED", reason=reason)
            return
        with self.cond:
            if status.version != job.version:
                job.resume(status.version, status.scheduler_state)
                job.restored_from = status.version
                self.jobs.set_phase(
                    job.job_id,
                    "training",
                    message=f"resumed from the checkpoint at step {status.version}",
                )
                if self.log:
                    self.log.warning("job rolled back", job_id=job.job_id, version=status.version)
            else:
                job.clear_steps()
            drawn = job.queue_step() if job.mode == "sync" else []
            self.cond.notify_all()
        self._plan(job, drawn)

    def _catch_up(self, job: ActiveJob, status: Any) -> bool:
        """Sync: the server is ahead because it applied steps whose reports did not all
        reach this scheduler (a worker died between its pushes and its Complete, as one
        may in a run). Those steps were applied by this scheduler's own plans, so they
        are recorded from the server's log of them and the job goes on from the server's
        version, without a rollback. False when the log does not cover them."""
        if job.mode != "sync" or status.restored:
            return False
        log = _by_step(status.applied)
        if any(step not in log for step in range(job.version, status.version)):
            return False
        if self.log:
            self.log.info(
                "steps applied without their reports", job_id=job.job_id, steps=status.version
            )
        while job.version < status.version and job.job_id in self.active:
            applied = log[job.version]
            with self.cond:  # the step's tasks still out are late: it was applied without them
                done = list(job.done.values())
                job.closing = True
                job.open.clear()
                job.queue.clear()
            rate = applied.samples / max(time.monotonic() - job.step_started, 1e-9)
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

    def _end(
        self,
        job_id: str,
        message_id: str,
        status: str,
        reason: str | None = None,
        message: str | None = None,
        job: ActiveJob | None = None,
    ) -> None:
        """Record the end; ``job``: its state, if it has left ``active`` already."""
        with self.cond:
            job = self.active.pop(job_id, None) or job
            counts = self._worker_counts(job, time.monotonic()) if job is not None else None
            self.cond.notify_all()
        self.publisher.drain()  # the job's last points are written before its end
        if counts is not None:  # as they ended, whenever publish_workers last ran
            self.jobs.set_workers(job_id, *counts)
        try:
            if status in ("SUCCEEDED", "STOPPED"):  # θ is worth keeping
                _, params = self.paramserver.pull(job_id, -1)
                if params is not None:
                    self.blobs.put(model_key(self.prefix, job_id), _npz(params))
        except grpc.RpcError as e:  # θ is lost with its server; the record still ends
            if self.log:
                self.log.warning("could not save θ", job_id=job_id, code=str(e.code()))
        # the end is recorded before θ is dropped: a scheduler that dies in between leaves
        # θ behind, never a job that a successor would re-admit without its θ
        self.jobs.set_status(
            job_id, status, phase="ended", message=message or reason, reason=reason
        )
        try:  # θ and its optimizer state as they end become the job's one checkpoint
            state = job.scheduler_state() if job is not None else ""
            self.paramserver.drop_job(job_id, final_checkpoint=True, scheduler_state=state)
        except grpc.RpcError as e:
            if self.log:
                self.log.warning("could not drop θ", job_id=job_id, code=str(e.code()))
        try:  # its copy of the dataset: done with
            self.blobs.delete(dataset_key(self.prefix, job_id))
        except (redis.RedisError, DeposedError) as e:  # left behind, as DELETE would remove
            if self.log:
                self.log.warning("could not delete the dataset copy", job_id=job_id, error=str(e))
        telemetry.record_job_ended(status)
        self.ack(message_id)
        if self.log:
            self.log.info("job ended", job_id=job_id, status=status, reason=reason, message=message)


@dataclass(frozen=True)
class StartFailure:
    """Why a pending job's last start failed, and when it may be tried again."""

    attempts: int
    error: str
    not_before: float  # monotonic

    FIRST_BACKOFF_S: ClassVar[float] = 0.1
    MAX_BACKOFF_S: ClassVar[float] = 10.0

    @classmethod
    def after(cls, before: StartFailure | None, error: BaseException, now: float) -> StartFailure:
        attempts = (before.attempts if before else 0) + 1
        backoff = min(cls.FIRST_BACKOFF_S * 2 ** (attempts - 1), cls.MAX_BACKOFF_S)
        return cls(attempts, f"{type(error).__name__}: {error}", now + backoff)


def _failure(done: Completion, task: Task) -> str:
    """Why this completion ends its job ("" when it does not)."""
    if not np.isfinite(done.loss):
        return f"diverged: loss became {done.loss} at step {done.step}"
    if done.error.startswith("diverged"):
        return f"{done.error} at step {done.step}"
    if done.error:
        return _attempts_failed(done.step, task.errors)
    return ""


def _attempts_failed(step: int, errors: list[str]) -> str:
    """Why a job ends whose task of ``step`` failed every attempt (``errors``)."""
    return f"step {step} could not be computed in {len(errors)} attempts: " + "; ".join(errors)


def _by_step(applied: Iterable[AppliedStep]) -> dict[int, AppliedStep]:
    """A parameter server's applied-step log, keyed by the step each entry applied."""
    return {a.step: a for a in applied}


def _with_accuracy(message: str, point: dict[str, Any]) -> str:
    if point.get("eval_accuracy") is not None:
        return f"{message}; holdout accuracy {point['eval_accuracy']:.4f}"
    if point.get("eval_r2") is not None:
        return f"{message}; holdout R² {point['eval_r2']:.4f}, MSE {point['eval_mse']:.4g}"
    return message


def _npz(params: Params) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **params)  # type: ignore[arg-type]
    return buffer.getvalue()


def _raiser(error: BaseException) -> Callable[[], None]:
    """Work that fails with ``error``: hands a background failure to ``_guarded``."""

    def fail() -> None:
        raise error

    return fail
