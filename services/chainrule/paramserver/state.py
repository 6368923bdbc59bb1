"""What the parameter server holds, as plain objects: no gRPC here.

Every mutation is idempotent. A Push with a task id already buffered or applied changes
nothing; an Apply for a step below the current version is a replay and changes nothing.
θ's version counts applied steps exactly.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from chainrule.nn import Optimizer, OptState, Params
from chainrule.rpc.codec import check_like

APPLIED_MEMORY = 100_000
"""How many applied task ids a job remembers, to recognise a retried Push."""


class JobNotFoundError(LookupError):
    """No job with that id on this parameter server."""


class OutOfOrderError(RuntimeError):
    """A request that is valid but not now (a future step, a gradient not pushed yet)."""


@dataclass
class PushedGradient:
    grads: Params
    samples: int
    loss: float
    base_version: int


@dataclass
class JobState:
    params: Params
    optimizer: Optimizer
    opt_state: OptState
    version: int = 0
    buffers: dict[str, PushedGradient] = field(default_factory=dict)
    applied: OrderedDict[str, None] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class ParameterStore:
    """θ, version, gradient buffers and optimizer state for every job."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobState] = {}
        self._lock = threading.Lock()

    def job(self, job_id: str) -> JobState:
        try:
            return self._jobs[job_id]
        except KeyError:
            raise JobNotFoundError(f"unknown job {job_id!r}; create it first") from None

    def create(self, job_id: str, params: Params, optimizer: Optimizer) -> tuple[int, bool]:
        """Install θ; a job that exists is left as it is. Returns (version, created)."""
        if not job_id:
            raise ValueError("job_id must not be empty")
        if not params:
            raise ValueError(f"job {job_id!r} needs at least one parameter tensor")
        for name, p in params.items():
            if p.dtype not in (np.float32, np.float64) or not np.isfinite(p).all():
                raise ValueError(f"parameter {name!r} must be finite float32/float64")
        with self._lock:
            if job_id in self._jobs:
                return self._jobs[job_id].version, False
            owned = {k: np.array(v) for k, v in params.items()}  # writable, ours
            self._jobs[job_id] = JobState(owned, optimizer, optimizer.init(owned))
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
            return False

    def apply(self, job_id: str, step: int, task_ids: list[str], lr: float) -> tuple[int, bool]:
        """Average the named buffers by sample count, take one optimizer step, bump the
        version. Returns (version, duplicate)."""
        job = self.job(job_id)
        with job.lock:
            if step < job.version:
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
            pushed = [job.buffers[t] for t in task_ids]
            total = sum(p.samples for p in pushed)
            mean = {
                name: sum((p.samples / total) * p.grads[name] for p in pushed)
                for name in job.params
            }
            job.optimizer.update_(job.params, mean, job.opt_state, lr)  # type: ignore[arg-type]
            job.version += 1
            for t in task_ids:
                del job.buffers[t]
                job.applied[t] = None
            while len(job.applied) > APPLIED_MEMORY:
                job.applied.popitem(last=False)
            return job.version, False

    def drop(self, job_id: str) -> bool:
        with self._lock:
            return self._jobs.pop(job_id, None) is not None
