"""The scheduler's state machine: workers, jobs, tasks and the sync step clock.

Plain Python with its collaborators passed in (job records, blobs, the parameter server
client); the gRPC servicer and the queue reader only call into it. One condition
variable guards all state; slow work (Apply, evaluation, Redis writes) runs outside it.

A job is PENDING (phase ``waiting_for_workers``) until ``training.workers`` workers are
live, then RUNNING: each step queues one task per slot; the step closes when all of them
have completed, with one Apply of their gradients; the job SUCCEEDED after ``steps``
steps, or FAILED with a reason (the loss became non-finite, the dataset was invalid, a
worker could not compute a task).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from chainrule.data import Split, prepare, targets
from chainrule.nn import MLP, Params, Schedule
from chainrule.nn.train import accuracy
from chainrule.scheduler.batches import Indices, job_rngs, make_shards, step_batches
from chainrule.spec import JobSpec, build_mlp
from chainrule.store.blobs import BlobStore, dataset_key, model_key
from chainrule.store.diagnostics import DiagnosticsStore


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
    def append_metrics(self, job_id: str, point: dict[str, Any]) -> Any: ...


class ParamServer(Protocol):
    def create_job(
        self,
        job_id: str,
        params: Params,
        optimizer: str,
        hyper: dict[str, float] | None = None,
        flags: dict[str, bool] | None = None,
    ) -> tuple[int, bool]: ...
    def pull(self, job_id: str, have_version: int = -1) -> tuple[int, Params | None]: ...
    def apply(self, job_id: str, step: int, task_ids: list[str], lr: float) -> tuple[int, bool]: ...
    def drop_job(self, job_id: str) -> bool: ...


@dataclass
class Task:
    task_id: str
    job_id: str
    step: int
    base_version: int
    dataset_key: str
    model_json: str
    indices: Indices
    worker_id: str | None = None


@dataclass
class Completion:
    worker_id: str
    task_id: str
    job_id: str
    step: int
    loss: float
    samples: int
    error: str = ""
    layers: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ActiveJob:
    job_id: str
    spec: JobSpec
    net: MLP
    split: Split
    shards: list[Indices]
    batch_rng: np.random.Generator
    schedule: Schedule
    message_id: str
    step: int = 0
    queue: deque[Task] = field(default_factory=deque)
    in_flight: dict[str, Task] = field(default_factory=dict)
    done: dict[str, Completion] = field(default_factory=dict)
    step_started: float = 0.0
    closing: bool = False


@dataclass
class Worker:
    worker_id: str
    host: str
    last_seen: float
    steps_done: int = 0


class SchedulerCore:
    def __init__(
        self,
        jobs: Jobs,
        blobs: BlobStore,
        diagnostics: DiagnosticsStore,
        paramserver: ParamServer,
        prefix: str,
        ack: Callable[[str], None],
        lease_seconds: float = 10.0,
        log: Any = None,
    ) -> None:
        self.jobs, self.blobs, self.paramserver = jobs, blobs, paramserver
        self.diagnostics = diagnostics
        self.prefix, self.ack, self.lease_seconds, self.log = prefix, ack, lease_seconds, log
        self.cond = threading.Condition()
        self.workers: dict[str, Worker] = {}
        self.pending: dict[str, str] = {}  # job id -> queue message id
        self.active: dict[str, ActiveJob] = {}

    # -- membership -----------------------------------------------------------------------

    def register(self, worker_id: str, host: str) -> None:
        with self.cond:
            self.workers[worker_id] = Worker(worker_id, host, time.monotonic())
            self.cond.notify_all()

    def live_workers(self) -> int:
        now = time.monotonic()
        return sum(now - w.last_seen <= self.lease_seconds for w in self.workers.values())

    def _heartbeat(self, worker_id: str) -> None:
        worker = self.workers.get(worker_id)
        if worker is None:
            self.workers[worker_id] = Worker(worker_id, "", time.monotonic())
            self.cond.notify_all()
        else:
            worker.last_seen = time.monotonic()

    # -- jobs arriving ----------------------------------------------------------------------

    def admit(self, job_id: str, message_id: str) -> None:
        """A job read from the queue. Ended or unknown jobs are acknowledged and skipped."""
        record = self.jobs.get(job_id)
        if record is None or record.status in ("SUCCEEDED", "FAILED", "STOPPED"):
            self.ack(message_id)
            return
        with self.cond:
            if job_id in self.active or job_id in self.pending:
                return
            self.pending[job_id] = message_id
        if record.status == "RUNNING":  # a scheduler died mid-job: run it again from step 0
            self.paramserver.drop_job(job_id)
            self.jobs.set_phase(job_id, "restarting", message="scheduler restarted; from step 0")
        else:
            self.jobs.set_phase(
                job_id, "waiting_for_workers", message="waiting for workers to register"
            )

    def tick(self) -> None:
        """Periodic housekeeping: expire silent workers, start jobs that can start."""
        with self.cond:
            now = time.monotonic()
            dead = [w for w in self.workers.values() if now - w.last_seen > self.lease_seconds]
            for w in dead:
                del self.workers[w.worker_id]
                self._requeue_tasks_of(w.worker_id)
            live = self.live_workers()
            ready = []
            for job_id, message_id in list(self.pending.items()):
                record = self.jobs.get(job_id)
                if record is None:
                    del self.pending[job_id]
                    self.ack(message_id)
                    continue
                spec = JobSpec.model_validate(record.spec)
                if live >= spec.training.workers:
                    del self.pending[job_id]
                    ready.append((job_id, spec, message_id))
        for job_id, spec, message_id in ready:
            try:
                self._start(job_id, spec, message_id)
            except Exception:  # the paramserver or Redis is not reachable yet: retry
                with self.cond:
                    self.active.pop(job_id, None)
                    self.pending[job_id] = message_id
                raise

    def _requeue_tasks_of(self, worker_id: str) -> None:
        for job in self.active.values():
            for task_id, task in list(job.in_flight.items()):
                if task.worker_id == worker_id:
                    del job.in_flight[task_id]
                    task.worker_id = None
                    job.queue.appendleft(task)
        self.cond.notify_all()

    def _start(self, job_id: str, spec: JobSpec, message_id: str) -> None:
        self.jobs.set_phase(job_id, "preparing", message=f"preparing dataset {spec.dataset.name!r}")
        try:
            split = prepare(
                spec.dataset.name, spec.dataset.samples, spec.dataset.holdout, spec.training.seed
            )
        except (ValueError, OSError) as e:
            self._end(job_id, message_id, "FAILED", reason=f"bad dataset: {e}")
            return
        net = build_mlp(spec.model)
        init_rng, batch_rng = job_rngs(spec.training.seed)
        params = net.init(init_rng)
        self.blobs.put(dataset_key(self.prefix, job_id), split.to_bytes())
        opt = spec.training.optimizer
        hyper = {k: float(v) for k, v in opt.options.items() if not isinstance(v, bool)}
        flags = {k: v for k, v in opt.options.items() if isinstance(v, bool)}
        self.paramserver.create_job(job_id, params, opt.name, hyper, flags)
        job = ActiveJob(
            job_id=job_id,
            spec=spec,
            net=net,
            split=split,
            shards=make_shards(len(split.X_train), spec.training.workers, batch_rng),
            batch_rng=batch_rng,
            schedule=Schedule(lr=opt.lr),
            message_id=message_id,
        )
        message = f"training with {spec.training.workers} task slots"
        if self.jobs.get(job_id).status == "RUNNING":
            self.jobs.set_phase(job_id, "training", message=message)
        else:
            self.jobs.set_status(job_id, "RUNNING", phase="training", message=message)
        with self.cond:
            self.active[job_id] = job
            self._queue_step(job)

    def _queue_step(self, job: ActiveJob) -> None:
        """Queue the tasks of ``job.step`` (called with the lock held)."""
        spec = job.spec
        model_json = spec.model.model_dump_json()
        key = dataset_key(self.prefix, job.job_id)
        for slot, rows in enumerate(
            step_batches(job.shards, spec.training.batch_size, job.batch_rng)
        ):
            if len(rows):
                task_id = f"{job.job_id}:{job.step}:{slot}:{uuid.uuid4().hex[:6]}"
                job.queue.append(
                    Task(task_id, job.job_id, job.step, job.step, key, model_json, rows)
                )
        job.done.clear()
        job.step_started = time.monotonic()
        self.cond.notify_all()

    # -- tasks ------------------------------------------------------------------------------

    def next_task(self, worker_id: str, wait_seconds: float) -> Task | None:
        """The next queued task of any running job, waiting up to ``wait_seconds``."""
        deadline = time.monotonic() + max(0.0, min(wait_seconds, 30.0))
        with self.cond:
            self._heartbeat(worker_id)
            while True:
                for job in self.active.values():
                    if job.queue:
                        task = job.queue.popleft()
                        task.worker_id = worker_id
                        job.in_flight[task.task_id] = task
                        return task
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.cond.wait(min(remaining, 1.0))
                self._heartbeat(worker_id)

    def complete(self, done: Completion) -> None:
        """Record a finished task; the completion that finishes a step closes it."""
        with self.cond:
            self._heartbeat(done.worker_id)
            job = self.active.get(done.job_id)
            if job is None or done.task_id not in job.in_flight:
                return  # a job that ended, or a task already completed or reassigned
            del job.in_flight[done.task_id]
            job.done[done.task_id] = done
            worker = self.workers.get(done.worker_id)
            if worker:
                worker.steps_done += 1
            failure = self._failure(done)
            if failure:
                self.active.pop(job.job_id, None)
            elif job.queue or job.in_flight or job.closing:
                return
            else:
                job.closing = True
        if failure:
            self._end(job.job_id, job.message_id, "FAILED", reason=failure)
            return
        self._close_step(job)

    @staticmethod
    def _failure(done: Completion) -> str:
        """Why this completion ends its job ("" when it does not)."""
        if not np.isfinite(done.loss):
            return f"diverged: loss became {done.loss} at step {done.step}"
        if done.error.startswith("diverged"):
            return f"{done.error} at step {done.step}"
        if done.error:
            return f"worker {done.worker_id} could not compute step {done.step}: {done.error}"
        return ""

    def _close_step(self, job: ActiveJob) -> None:
        spec = job.spec
        done = list(job.done.values())
        samples = sum(d.samples for d in done)
        loss = sum(d.loss * d.samples for d in done) / samples
        lr = job.schedule(job.step)
        version, _ = self.paramserver.apply(job.job_id, job.step, [d.task_id for d in done], lr)
        elapsed = time.monotonic() - job.step_started
        point: dict[str, Any] = {
            "step": version,
            "time": time.time(),
            "loss": loss,
            "lr": lr,
            "samples_per_s": samples / elapsed if elapsed > 0 else 0.0,
            "active_workers": len({d.worker_id for d in done}),
        }
        finished = version >= spec.training.steps
        if finished or version % spec.training.eval_every == 0:
            point.update(self._evaluate(job))
        self.jobs.append_metrics(job.job_id, point)
        if done[0].layers:  # the derivative diagnostics of slot 0's minibatch
            self.diagnostics.append(job.job_id, version, done[0].layers)
        self.jobs.set_progress(job.job_id, version)
        if finished:
            acc = point.get("eval_accuracy")
            message = (
                f"trained {version} steps; holdout accuracy {acc:.4f}" if acc is not None else ""
            )
            self._end(job.job_id, job.message_id, "SUCCEEDED", message=message)
            return
        with self.cond:
            job.step = version
            job.closing = False
            self._queue_step(job)

    def _evaluate(self, job: ActiveJob) -> dict[str, float]:
        _, params = self.paramserver.pull(job.job_id, -1)
        assert params is not None
        split, net = job.split, job.net
        y = targets(split.y_test, net.layers[-1], net.head.loss)
        return {
            "eval_loss": float(net.objective(params, split.X_test, y)),
            "eval_accuracy": accuracy(net, params, split.X_test, split.y_test),
        }

    def _end(
        self,
        job_id: str,
        message_id: str,
        status: str,
        reason: str | None = None,
        message: str | None = None,
    ) -> None:
        with self.cond:
            self.active.pop(job_id, None)
            self.cond.notify_all()
        if status == "SUCCEEDED":
            _, params = self.paramserver.pull(job_id, -1)
            if params is not None:
                self.blobs.put(model_key(self.prefix, job_id), _npz(params))
        self.paramserver.drop_job(job_id)
        self.jobs.set_status(
            job_id, status, phase="ended", message=message or reason, reason=reason
        )
        self.ack(message_id)
        if self.log:
            self.log.info("job ended", job_id=job_id, status=status, reason=reason, message=message)


def _npz(params: Params) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **params)  # type: ignore[arg-type]
    return buffer.getvalue()
