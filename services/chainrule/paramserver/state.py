"""What the parameter server holds, as plain objects: no gRPC here.

Every mutation is idempotent. A Push with a task id already buffered or applied changes
nothing; an Apply for a step below the current version is a replay and changes nothing.
θ's version counts applied steps exactly.

With a checkpoint store, an Apply asked to checkpoint snapshots θ, optimizer state and
version after the step, and a job this process does not hold (it was restarted) is
restored from its latest checkpoint on first use.

The records it keeps per job (θ, buffers, plans, the applied-step log) are in records.py.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np

from chainrule.nn import Params, make_optimizer
from chainrule.paramserver.interface import Planner
from chainrule.paramserver.records import (
    AppliedStep,
    JobState,
    LoggedStep,
    PlannedStep,
    PushedGradient,
    StepPlan,
)
from chainrule.rpc.codec import check_like
from chainrule.store.checkpoints import Checkpoint

__all__ = [  # and the records the scheduler and its tests import from here
    "APPLIED_MEMORY",
    "MAX_PLANS",
    "MAX_TOMBSTONES",
    "AppliedStep",
    "Checkpoints",
    "OutOfOrderError",
    "ParameterStore",
    "PlannedStep",
    "StepPlan",
    "ThetaNotFoundError",
]

APPLIED_MEMORY = 100_000
"""How many applied task ids a job remembers, to recognise a retried Push."""


class ThetaNotFoundError(LookupError):
    """No job with that id on this parameter server."""


class OutOfOrderError(RuntimeError):
    """A request that is valid but not now (a future step, a gradient not pushed yet)."""


MAX_PLANS = 64
"""How many steps ahead of θ's version a job may hold plans for."""

MAX_TOMBSTONES = 10_000
"""How many dropped job ids a server remembers (oldest forgotten first)."""


def _check_plan(task_ids: list[str], quorum: int, lr: float) -> None:
    if not task_ids:
        raise ValueError("a plan needs at least one task id")
    if len(set(task_ids)) != len(task_ids):
        raise ValueError(f"a plan names each task once; got {task_ids}")
    if not 0 <= quorum <= len(task_ids):
        raise ValueError(f"quorum must lie in [0, {len(task_ids)}]; got {quorum}")
    if not np.isfinite(lr):
        raise ValueError(f"lr must be finite; got {lr}")


class Checkpoints(Protocol):
    def save(self, job_id: str, checkpoint: Checkpoint, final: bool = False) -> None: ...
    def load(self, job_id: str, at_most: int | None = None) -> Checkpoint | None: ...


class ParameterStore(Planner):
    """θ, version, gradient buffers and optimizer state for every job (``plan``: a run
    of one, :meth:`Planner.plan`)."""

    def __init__(self, checkpoints: Checkpoints | None = None) -> None:
        self._jobs: dict[str, JobState] = {}
        # ended here: not brought back from a checkpoint by a worker's call (only by the
        # scheduler's explicit Restore or CreateJob); bounded, oldest forgotten first
        self._dropped: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self.checkpoints = checkpoints

    def job(self, job_id: str) -> JobState:
        """The job as held in memory, restored from its checkpoint if it is not."""
        job = self._jobs.get(job_id)
        if job is not None:
            return job
        job, _ = self.restore(job_id, only_if_missing=True)
        return job

    def restore(
        self, job_id: str, only_if_missing: bool = False, at_most: int | None = None
    ) -> tuple[JobState, bool]:
        """Replace the job's in-memory state by its latest checkpoint. Returns the job and
        whether a checkpoint was loaded (not when ``only_if_missing`` and it is held).

        A dropped job comes back only when asked explicitly (not ``only_if_missing``): the
        scheduler that leads knows whether the job still runs; a worker's call does not.
        ``at_most``: the newest checkpoint of a version up to it (a sharded restore)."""
        if only_if_missing and job_id in self._dropped:
            raise ThetaNotFoundError(f"job {job_id!r} was dropped from this parameter server")
        checkpoint = self.checkpoints.load(job_id, at_most) if self.checkpoints else None
        with self._lock:
            if only_if_missing and job_id in self._jobs:
                return self._jobs[job_id], False
            if checkpoint is None:
                raise ThetaNotFoundError(f"unknown job {job_id!r}; create it first")
            optimizer = make_optimizer(checkpoint.optimizer, **checkpoint.options)
            job = JobState(
                checkpoint.params,
                optimizer,
                checkpoint.opt_state,
                checkpoint.optimizer,
                checkpoint.options,
                checkpoint.version,
                checkpoint.version,
                checkpoint.scheduler_state,
            )
            job.applied_steps.extend(AppliedStep(*a) for a in checkpoint.applied)
            self._jobs[job_id] = job
            self._dropped.pop(job_id, None)
            return job, True

    def create(
        self, job_id: str, params: Params, optimizer: str, options: dict[str, Any] | None = None
    ) -> tuple[int, bool]:
        """Install θ with a fresh ``optimizer``; a job that exists (in memory or as a
        checkpoint) is left as it is. Returns (version, created).

        θ may be empty: one shard of several may hold none of a small model's tensors, and
        it still counts the job's versions so that every shard agrees on them."""
        if not job_id:
            raise ValueError("job_id must not be empty")
        for name, p in params.items():
            if p.dtype not in (np.float32, np.float64) or not np.isfinite(p).all():
                raise ValueError(f"parameter {name!r} must be finite float32/float64")
        opt = make_optimizer(optimizer, **(options or {}))
        try:  # held, or checkpointed (even if dropped since): never overwritten
            held = self._jobs.get(job_id)
            return (held or self.restore(job_id)[0]).version, False
        except ThetaNotFoundError:
            pass
        with self._lock:
            if job_id in self._jobs:
                return self._jobs[job_id].version, False
            owned = {k: np.array(v) for k, v in params.items()}  # writable, ours
            job = JobState(owned, opt, opt.init(owned), optimizer, dict(options or {}))
            if self.checkpoints is not None:  # version 0: a job can always be rolled back
                self._checkpoint(job_id, job, "")
            self._jobs[job_id] = job
            self._dropped.pop(job_id, None)
            return 0, True

    def push(
        self,
        job_id: str,
        task_id: str,
        base_version: int,
        grads: Params,
        samples: int,
        loss: float,
    ) -> bool:
        """Buffer a gradient; returns True when ``task_id`` was seen before (no change)."""
        job = self.job(job_id)
        if not task_id:
            raise ValueError("task_id must not be empty")
        if samples < 1:
            raise ValueError(f"samples must be >= 1; got {samples}")
        check_like(grads, job.params)
        with job.lock:
            if task_id in job.buffers or task_id in job.applied:
                return True
            if base_version > job.version:
                raise OutOfOrderError(
                    f"base_version {base_version} is ahead of job {job_id!r} at {job.version}"
                )
            job.buffers[task_id] = PushedGradient(grads, samples, loss, base_version)
            self._apply_planned(job_id, job)
            return False

    def own(self, job_id: str, task_id: str) -> None:
        """Copy a buffered gradient that is still a view of its request's memory, which
        was lent for the call only (rpc/shm.py): PushPull's, once it returns."""
        job = self._jobs.get(job_id)
        if job is None:
            return
        with job.lock:
            pushed = job.buffers.get(task_id)
            if pushed is not None:
                owned = {name: np.array(g) for name, g in pushed.grads.items()}
                job.buffers[task_id] = replace(pushed, grads=owned)

    def plan_run(
        self, job_id: str, plans: Sequence[PlannedStep], epoch: int = 0
    ) -> tuple[int, bool]:
        """Register the plans of a run of steps, in step order (all are checked before
        any is registered), and apply each whose gradients are in already. Returns
        (version, duplicate: the last step was applied before)."""
        if not plans:
            raise ValueError("a run needs at least one plan")
        for p in plans:
            _check_plan(p.task_ids, p.quorum, p.lr)
        job = self.job(job_id)
        with job.lock:
            before = job.version
            for p in plans:
                if p.step >= job.version + MAX_PLANS:
                    raise OutOfOrderError(
                        f"step {p.step} is more than {MAX_PLANS} steps ahead of job "
                        f"{job_id!r} at {job.version}"
                    )
            job.epoch = max(job.epoch, epoch)
            for p in plans:
                if p.step >= job.version:
                    job.plans[p.step] = StepPlan(
                        tuple(p.task_ids),
                        p.lr,
                        p.quorum or len(p.task_ids),
                        p.checkpoint,
                        p.scheduler_state,
                        epoch,
                    )
            self._apply_planned(job_id, job)
            return job.version, plans[-1].step < before

    def _apply_planned(self, job_id: str, job: JobState) -> None:
        """Apply every plan whose gradients are in, in step order (lock held)."""
        while (plan := job.plans.get(job.version)) is not None:
            arrived = [t for t in plan.task_ids if t in job.buffers]
            if len(arrived) < plan.needed:
                return
            step = job.version
            del job.plans[step]
            summed = [job.buffers[t] for t in arrived[: plan.needed]]
            samples = sum(g.samples for g in summed)
            loss = sum(g.loss * g.samples for g in summed) / samples
            self._step(job, arrived[: plan.needed], plan.lr, plan.epoch)
            job.applied_steps.append(AppliedStep(step, loss, samples, len(summed)))
            for t in plan.task_ids:  # the rest of a quorum: late, a no-op when pushed
                job.applied[t] = None
            # gradients computed on θ of this step or older can never be applied now
            for t in [t for t, g in job.buffers.items() if g.base_version <= step]:
                del job.buffers[t]
                job.applied[t] = None
            self._forget_applied(job)
            if plan.checkpoint and self.checkpoints is not None:
                try:
                    self._checkpoint(job_id, job, plan.scheduler_state)
                    job.checkpoint_error = ""
                except Exception as e:  # a Redis blip: training goes on, the next one retries
                    job.checkpoint_error = f"{type(e).__name__}: {e}"

    def apply(
        self,
        job_id: str,
        step: int,
        task_ids: list[str],
        lr: float,
        checkpoint: bool = False,
        scheduler_state: str = "",
        epoch: int = 0,
    ) -> tuple[int, bool]:
        """Average the named buffers by sample count, take one optimizer step, bump the
        version, and checkpoint if asked. Returns (version, duplicate). A step applied
        before under another leader ``epoch`` than the caller's is not the caller's to
        repeat: OutOfOrderError (the caller resynchronises)."""
        job = self.job(job_id)
        with job.lock:
            if step < job.version:
                first = self.applied_epoch(job, step)
                if first is not None and first != epoch:
                    raise OutOfOrderError(
                        f"step {step} of job {job_id!r} was applied under leader epoch "
                        f"{first}, not under this caller's {epoch}: another scheduler applied "
                        "it; resynchronise"
                    )
                return job.version, True
            if step > job.version:
                raise OutOfOrderError(
                    f"step {step} is ahead of job {job_id!r}: the next step to apply is "
                    f"{job.version}"
                )
            if not task_ids:
                raise ValueError("apply needs at least one task id")
            missing = [t for t in task_ids if t not in job.buffers]
            if missing:
                raise OutOfOrderError(f"no gradient pushed for task(s) {missing} of job {job_id!r}")
            self._step(job, task_ids, lr, epoch)
            self._forget_applied(job)
            if checkpoint and self.checkpoints is not None:
                self._checkpoint(job_id, job, scheduler_state)
            return job.version, False

    @staticmethod
    def applied_epoch(job: JobState, step: int) -> int | None:
        """The leader epoch step ``step`` was applied under, if the log still has it."""
        if not job.log or not job.log[0].step <= step <= job.log[-1].step:
            return None
        logged = job.log[step - job.log[0].step]  # one entry per version, in order
        return logged.epoch if logged.step == step else None

    @staticmethod
    def _step(job: JobState, task_ids: list[str], lr: float, epoch: int) -> None:
        """The sample-weighted mean of the named buffers, summed in the given order into
        one float32 buffer per tensor, one optimizer step, version + 1, logged (lock
        held)."""
        pushed = [job.buffers[t] for t in task_ids]
        total = sum(p.samples for p in pushed)
        mean: Params = {}
        for name, param in job.params.items():
            acc = np.multiply(pushed[0].grads[name], param.dtype.type(pushed[0].samples / total))
            for p in pushed[1:]:
                acc += p.grads[name] * param.dtype.type(p.samples / total)
            mean[name] = acc
        job.optimizer.update_(job.params, mean, job.opt_state, lr)
        job.log.append(LoggedStep(job.version, epoch, tuple(task_ids)))
        job.version += 1
        for t in task_ids:
            del job.buffers[t]
            job.applied[t] = None
        job.moved.notify_all()

    @staticmethod
    def _forget_applied(job: JobState) -> None:
        while len(job.applied) > APPLIED_MEMORY:
            job.applied.popitem(last=False)

    def _checkpoint(
        self, job_id: str, job: JobState, scheduler_state: str, final: bool = False
    ) -> None:
        """Snapshot the job (called with its lock held, so θ is of one version)."""
        assert self.checkpoints is not None
        self.checkpoints.save(
            job_id,
            Checkpoint(
                job.params,
                job.opt_state,
                job.version,
                job.optimizer_name,
                job.options,
                scheduler_state,
                [(a.step, a.loss, a.samples, a.tasks) for a in job.applied_steps],
            ),
            final,
        )
        job.checkpoint_version, job.scheduler_state = job.version, scheduler_state

    def discard(self, job_id: str, task_ids: list[str]) -> int:
        """Forget buffered gradients that will not be applied; returns how many."""
        job = self.job(job_id)
        with job.lock:
            gone = [t for t in task_ids if job.buffers.pop(t, None) is not None]
            for t in task_ids:
                job.applied[t] = None  # a retried push of it is a no-op, not a new buffer
            return len(gone)

    def drop(self, job_id: str, final_checkpoint: bool = False, scheduler_state: str = "") -> bool:
        """Forget the job (a tombstone keeps workers' calls from bringing it back).
        ``final_checkpoint``: it has ended, so θ and its optimizer state as they are
        become its one checkpoint first (with a checkpoint store), the older ones gone."""
        with self._lock:
            job = self._jobs.get(job_id)
        if final_checkpoint and job is not None and self.checkpoints is not None:
            with job.lock:
                self._checkpoint(job_id, job, scheduler_state, final=True)
        with self._lock:
            self._dropped[job_id] = None
            self._dropped.move_to_end(job_id)
            while len(self._dropped) > MAX_TOMBSTONES:
                self._dropped.popitem(last=False)
            return self._jobs.pop(job_id, None) is not None
