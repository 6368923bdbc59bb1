"""Jobs arriving: read from the queue, PENDING (phase ``waiting_for_workers``) until
``training.workers`` workers are live (a sync job: that many not reserved by the sync
jobs running, in submission order, else phase ``queued`` with the reason:
scheduler/sharing.py), then started: the dataset prepared, θ created on the parameter
server (or resumed from the job's checkpoint when a scheduler died mid-job), the job
RUNNING. ``pending_timeout_s`` runs only while fewer workers are live than the job
needs, not while it is queued behind others. A start that fails (the parameter server
or Redis not reachable yet) is retried with backoff until ``pending_timeout_s``."""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import grpc

from chainrule import telemetry
from chainrule.data.registry import prepare_dataset
from chainrule.paramserver.sharding import ShardsOutOfStepError
from chainrule.paramserver.state import AppliedStep
from chainrule.scheduler import outages
from chainrule.scheduler.batches import job_rngs
from chainrule.scheduler.ending import Ending
from chainrule.scheduler.job import ActiveJob, Step
from chainrule.scheduler.ports import Jobs, ParamServer
from chainrule.scheduler.recording import Recorder, recovered_points
from chainrule.scheduler.sharing import queue_reason
from chainrule.scheduler.state import SchedulerState, by_step
from chainrule.spec import JobSpec, build_mlp, total_steps
from chainrule.spec.training import PRIORITIES
from chainrule.store.blobs import BlobStore, dataset_key, preprocess_key
from chainrule.store.datasets import DatasetStore
from chainrule.store.job_records import TERMINAL

QUEUED_PHASE = "queued"
PREEMPTED_PHASE = "preempted"


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


@dataclass(eq=False)
class Admission:
    state: SchedulerState
    jobs: Jobs
    blobs: BlobStore
    datasets: DatasetStore
    paramserver: ParamServer
    recorder: Recorder
    ending: Ending
    prefix: str
    outage_budget_s: float = outages.DEFAULT_BUDGET_S
    log: Any = None
    pending: dict[str, str] = field(default_factory=dict)  # job id -> queue message id
    pending_since: dict[str, float] = field(default_factory=dict)  # job id -> when admitted
    # pending again after a failed start
    start_failures: dict[str, StartFailure] = field(default_factory=dict)
    # since when fewer workers are live than the job needs (its pending timeout runs)
    short_since: dict[str, float] = field(default_factory=dict)

    def admit(self, job_id: str, message_id: str) -> None:
        """A job read from the queue. Ended or unknown jobs are acknowledged and skipped;
        a RUNNING one (its scheduler died) resumes from its checkpoint when it starts."""
        record = self.jobs.get(job_id)
        if record is None or record.status in TERMINAL:
            self.ending.ack(message_id)
            return
        with self.state.cond:
            if job_id in self.state.active or job_id in self.pending:
                return
            self.pending[job_id] = message_id
            self.pending_since.setdefault(job_id, self.state.clock())
        if record.status == "RUNNING":
            self.jobs.set_phase(job_id, "restoring", message="scheduler restarted; resuming")
        else:
            self.jobs.set_phase(
                job_id, "waiting_for_workers", message="waiting for workers to register"
            )
            spec = JobSpec.model_validate(record.spec)
            if spec.training.mode == "sync":  # at once, not at the next tick: a running
                # job's next run may be many steps
                with self.state.cond:
                    live, held = len(self.state.live_workers()), self.state.held_slots()
                if spec.training.workers <= live:
                    self._preempt_for(spec, live - held)

    def start(self, ready: list[tuple[str, JobSpec, str]]) -> None:
        """Start the jobs :meth:`ready` found. A start that fails is retried later (its
        error raised once the others were tried)."""
        failed: list[BaseException] = []
        for job_id, spec, message_id in ready:
            try:
                self._start(job_id, spec, message_id)
            except Exception as e:  # the paramserver or Redis is not reachable yet: retry
                with self.state.cond:
                    self.state.active.pop(job_id, None)
                    self.pending[job_id] = message_id  # its pending_since is kept
                    before = self.start_failures.get(job_id)
                    self.start_failures[job_id] = StartFailure.after(before, e, self.state.clock())
                failed.append(e)
                continue
            self._forget(job_id)  # started, or ended by _start itself
        if failed:
            raise failed[0]

    def ready(
        self, pending: list[tuple[str, str]], live: int, now: float
    ) -> list[tuple[str, JobSpec, str]]:
        """Of the ``pending`` jobs (a snapshot), those that can start now with ``live``
        workers; stopped, vanished and timed-out ones end."""
        ready = []
        with self.state.cond:
            free = live - self.state.held_slots()
        queued = 0  # sync jobs ahead in line
        waiting: Counter[str] = Counter()  # by priority, for Prometheus
        for job_id, message_id, record, spec in self._in_line(pending):
            need = spec.training.workers
            waited = now - self.pending_since.get(job_id, now)
            timeout = spec.training.pending_timeout_s
            failure = self.start_failures.get(job_id)
            if live < need:  # the pending timeout runs only while too few workers are live
                self.short_since.setdefault(job_id, now)
            else:
                self.short_since.pop(job_id, None)
            short = now - self.short_since.get(job_id, now)
            # a sync job needs its slots together; one that was RUNNING (its scheduler
            # died) had them and takes them back at once
            gang = spec.training.mode == "sync" and record.status != "RUNNING"
            if failure is not None and timeout is not None and waited > timeout:
                self._forget(job_id)
                reason = (
                    f"could not start within pending_timeout_s={timeout:g} "
                    f"({failure.attempts} attempts); the last said: {failure.error}"
                )
                self.ending.end(job_id, message_id, "FAILED", reason=reason)
            elif failure is not None and now < failure.not_before:
                continue  # backing off after a failed start
            elif live >= need and gang and (queued or need > free):
                if not queued:  # the head of the line: lower priorities may make room
                    self._preempt_for(spec, free)
                self._queue(job_id, record, queue_reason(need, free, queued))
                queued += 1
            elif live >= need:
                if spec.training.mode == "sync":
                    free -= need
                with self.state.cond:  # pending_since stays until it has started
                    self.pending.pop(job_id, None)
                ready.append((job_id, spec, message_id))
                telemetry.record_queue_wait(spec.training.priority, waited)
                continue
            elif timeout is not None and short > timeout:
                self._forget(job_id)
                reason = (
                    f"no workers: the job needs {spec.training.workers} and only {live} "
                    f"registered within pending_timeout_s={timeout:g}"
                )
                self.ending.end(job_id, message_id, "FAILED", reason=reason)
                continue
            waiting[spec.training.priority] += 1
        telemetry.set_queued(waiting)
        return ready

    def requeue_preempted(self) -> None:
        """Jobs parked at a step boundary since the last tick (stepping.py) go back in
        line: PENDING, phase ``preempted``; they resume where they stopped."""
        with self.state.cond:
            parked = [j for j in self.state.preempted.values() if j.job_id not in self.pending]
            for job in parked:
                self.pending[job.job_id] = job.message_id
                self.pending_since[job.job_id] = self.state.clock()
        for job in parked:
            message = (
                f"preempted at step {job.version} by a job of higher priority; "
                "it resumes from there when its workers are free"
            )
            if self.log:
                self.log.info("job preempted", job_id=job.job_id, step=job.version)
            with contextlib.suppress(ValueError):  # stopped meanwhile: ready() settles it
                self.jobs.set_status(job.job_id, "PENDING", phase=PREEMPTED_PHASE, message=message)

    def _preempt_for(self, spec: JobSpec, free: int) -> None:
        """The sync job of ``spec`` heads the line but its slots are held: flag running
        sync jobs of lower priority (lowest first, then the latest started) to park at
        their next step boundary, if together they free enough slots."""
        rank = PRIORITIES.index(spec.training.priority)
        with self.state.cond:
            running = [j for j in self.state.active.values() if j.mode == "sync"]
            freeing = sum(j.slots for j in running if j.preempt)
            lower = [
                j
                for j in reversed(running)  # started latest first
                if not j.preempt and PRIORITIES.index(j.spec.training.priority) < rank
            ]
            lower.sort(key=lambda j: PRIORITIES.index(j.spec.training.priority))  # stable
            chosen = []
            for job in lower:
                if free + freeing >= spec.training.workers:
                    break
                chosen.append(job)
                freeing += job.slots
            if free + freeing >= spec.training.workers:
                for job in chosen:
                    job.preempt = True

    def _in_line(self, pending: list[tuple[str, str]]) -> list[tuple[str, str, Any, JobSpec]]:
        """The pending jobs that still exist, with their records and specs, in line:
        by priority, then by submission. Ended and vanished ones are acknowledged and
        forgotten."""
        line = []
        for job_id, message_id in pending:
            record = self.jobs.get(job_id)
            if record is None or record.status in TERMINAL:
                self._forget(job_id)
                with self.state.cond:
                    parked = self.state.preempted.pop(job_id, None)
                if parked is not None:  # stopped while preempted: θ becomes its model
                    self.ending.stopped_while_preempted(parked, message_id)
                else:
                    self.ending.ack(message_id)
                continue
            line.append((job_id, message_id, record, JobSpec.model_validate(record.spec)))
        # a preempted job keeps its place: it arrived before the jobs submitted after it
        line.sort(key=lambda e: (-PRIORITIES.index(e[3].training.priority), e[2].created_at))
        return line

    def _queue(self, job_id: str, record: Any, reason: str) -> None:
        """PENDING in line behind other gangs: phase ``queued`` with the reason; the
        reason's figures are rewritten as they change, without a history entry each."""
        if record.phase == PREEMPTED_PHASE:  # it stays so, saying why it waits
            message = f"preempted at step {record.step} by a job of higher priority; {reason}"
            if record.message != message:
                self.jobs.refresh_message(job_id, PREEMPTED_PHASE, message)
        elif record.phase != QUEUED_PHASE:
            self.jobs.set_phase(job_id, QUEUED_PHASE, message=reason)
        elif record.message != reason:
            self.jobs.refresh_message(job_id, QUEUED_PHASE, reason)

    def _forget(self, job_id: str) -> None:
        with self.state.cond:
            self.pending.pop(job_id, None)
            self.pending_since.pop(job_id, None)
            self.short_since.pop(job_id, None)
            self.start_failures.pop(job_id, None)

    def _start(self, job_id: str, spec: JobSpec, message_id: str) -> None:
        with self.state.cond:
            parked = self.state.preempted.pop(job_id, None)
        if parked is not None:
            self._resume(parked)
            return
        if job_id not in self.start_failures:  # a retry is the same phase: no new entry
            self.jobs.set_phase(job_id, "preparing", message=f"preparing {spec.dataset.described}")
        t = spec.training
        try:
            split = prepare_dataset(spec.dataset, t.seed, self.datasets.data)
        except (ValueError, KeyError, OSError) as e:
            self.ending.end(job_id, message_id, "FAILED", reason=f"bad dataset: {e}")
            return
        net = build_mlp(spec.model)
        key = dataset_key(self.prefix, job_id)
        steps = total_steps(spec, train_rows=len(split.X_train))
        job = ActiveJob(
            job_id, spec, net, split, t.schedule(), message_id, key, steps, clock=self.state.clock
        )
        job.outage = outages.Outage(self.outage_budget_s)
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
            self.ending.ack(message_id)
            return
        telemetry.record_job_started(job.mode)
        drawn: list[Step] = []
        with self.state.cond:
            self.state.active[job_id] = job
            if job.mode == "sync":
                drawn = job.queue_step()  # the first step alone: workers may still be arriving
            self.state.cond.notify_all()
        self.recorder.plan(job, drawn)

    def _resume(self, job: ActiveJob) -> None:
        """A preempted job back where it was parked: the same θ, minibatch stream and
        counters, so its versions and metric points go on with no gap or repeat."""
        message = f"resumed at step {job.version} after its preemption"
        try:
            self.jobs.set_status(job.job_id, "RUNNING", phase="training", message=message)
        except ValueError:  # stopped just now: the next tick settles it
            with self.state.cond:
                self.state.preempted[job.job_id] = job
                self.pending[job.job_id] = job.message_id
            return
        with self.state.cond:
            job.preempt, job.closing = False, False
            job.step_started, job.last_point_unix = self.state.clock(), 0.0
            self.state.active[job.job_id] = job
            drawn = job.queue_step()
            self.state.cond.notify_all()
        self.recorder.plan(job, drawn)

    def _classes(self, spec: JobSpec) -> list[str] | None:
        """Class names of an uploaded dataset (built-in sets have none beyond indices)."""
        if spec.dataset.id is None:
            return None
        meta = self.datasets.get(spec.dataset.id)
        return list(meta.classes) if meta is not None and meta.classes else None

    def _install_theta(self, job: ActiveJob) -> None:
        """Create θ on the parameter server, or resume from the job's checkpoint if the
        server (or its checkpoint) already has the job."""
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
            return by_step(self.paramserver.status(job_id).applied)
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
        points = recovered_points(job, applied, record.step, version)
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
