"""One running job as the scheduler sees it: its tasks, its step clock, its counters.

Tasks are made here. In **sync** mode a step has one task per slot (``training.workers``
of them), drawn by :mod:`chainrule.scheduler.batches`; in **async** and **ssp** modes a
task is made whenever a worker is free, for the next slot in turn, on the θ version of
that moment. The minibatch random stream can be saved with a checkpoint and restored, so
a job resumed from a checkpoint draws the same minibatches it would have drawn.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from chainrule.data import Split
from chainrule.nn import MLP, Schedule
from chainrule.scheduler.batches import Indices, job_rngs, make_shards, step_batches
from chainrule.scheduler.stopping import StopState
from chainrule.spec import JobSpec


@dataclass
class Task:
    task_id: str
    job_id: str
    step: int  # sync: the step it belongs to; async/ssp: the θ version it was made on
    base_version: int
    dataset_key: str
    model_json: str
    indices: Indices
    worker_id: str | None = None
    deadline: float = float("inf")  # monotonic; sync with step_timeout_s only
    planned: bool = False  # sync: the step's plan is on the parameter server (PushPull)
    diagnostics: bool = True  # compute per-layer derivative statistics
    push_wait_s: float = 0.0  # planned: how long the PushPull may wait for the step


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
    incarnation: str = ""  # of the worker process that computed it


@dataclass
class ActiveJob:
    job_id: str
    spec: JobSpec
    net: MLP
    split: Split
    schedule: Schedule
    message_id: str
    dataset_key: str
    total_steps: int
    shards: list[Indices] = field(default_factory=list)
    batch_rng: np.random.Generator = field(default_factory=np.random.default_rng)
    version: int = 0  # θ's version = steps applied
    next_slot: int = 0  # async/ssp: the slot of the next task
    open: dict[str, Task] = field(default_factory=dict)  # queued or handed out, not completed
    queue: deque[str] = field(default_factory=deque)  # open tasks waiting for a worker
    done: dict[str, Completion] = field(default_factory=dict)  # sync: this step's completions
    closing: bool = False
    step_started: float = field(default_factory=time.monotonic)
    clocks: dict[str, int] = field(default_factory=dict)  # ssp: tasks completed per worker
    rejected_stale: int = 0
    dropped_late: int = 0
    reassigned: int = 0
    restored_from: int | None = None  # reported with the next metric point
    stop: StopState = field(default_factory=lambda: StopState(time.monotonic()))
    recent_workers: dict[str, float] = field(default_factory=dict)  # id -> last completion
    lost_workers: int = 0  # workers whose lease ran out while they worked on this job
    apply_lock: threading.Lock = field(default_factory=threading.Lock)
    step_tasks: list[str] = field(default_factory=list)  # sync: this step's, in slot order
    generation: int = 0  # bumped by every rollback: plans made before it are void

    @cached_property
    def model_json(self) -> str:
        """The model section every task carries, serialised once per job."""
        return self.spec.model.model_dump_json()

    @property
    def mode(self) -> str:
        return self.spec.training.mode

    @property
    def slots(self) -> int:
        return self.spec.training.workers

    def seed_batches(self) -> None:
        """Shards and the minibatch stream from the job's seed (the state at step 0)."""
        _, self.batch_rng = job_rngs(self.spec.training.seed)
        self.shards = make_shards(len(self.split.X_train), self.slots, self.batch_rng)
        self.next_slot = 0

    def scheduler_state(self) -> str:
        """What a checkpoint keeps so that the job can resume at this version."""
        return json.dumps({"rng": self.batch_rng.bit_generator.state, "next_slot": self.next_slot})

    def checkpoint_plan(self) -> tuple[bool, str]:
        """Whether the step at ``version`` checkpoints (every ``checkpoint_every`` versions
        and at the last step), and the scheduler state the checkpoint keeps."""
        upcoming = self.version + 1
        every = self.spec.training.checkpoint_every
        checkpoint = upcoming % every == 0 or upcoming >= self.total_steps
        return checkpoint, self.scheduler_state() if checkpoint else ""

    def resume(self, version: int, state: str) -> None:
        """Continue from a checkpoint at ``version`` saved with :meth:`scheduler_state`."""
        self.seed_batches()
        if state:
            saved = json.loads(state)
            self.batch_rng.bit_generator.state = saved["rng"]
            self.next_slot = int(saved["next_slot"])
        self.version = version
        self.generation += 1
        self.open.clear()
        self.queue.clear()
        self.done.clear()
        self.closing = False

    def _task(self, slot_rows: Indices, step: int, diagnostics: bool = True) -> Task:
        task_id = f"{self.job_id}:{step}:{uuid.uuid4().hex[:8]}"
        task = Task(
            task_id,
            self.job_id,
            step,
            self.version,
            self.dataset_key,
            self.model_json,
            slot_rows,
            planned=self.mode == "sync",
            diagnostics=diagnostics,
        )
        self.open[task_id] = task
        self.queue.append(task_id)
        return task

    def queue_step(self) -> None:
        """Sync: the tasks of step ``version``, one per slot."""
        self.done.clear()
        self.step_started = time.monotonic()
        batches = step_batches(self.shards, self.spec.training.batch_size, self.batch_rng)
        self.step_tasks = [
            self._task(rows, self.version, diagnostics=slot == 0).task_id
            for slot, rows in enumerate(batches)
            if len(rows)
        ]

    def queue_one(self) -> Task:
        """Async/ssp: one task on the current θ, for the next slot in turn."""
        shard = self.shards[self.next_slot % len(self.shards)]
        self.next_slot += 1
        size = min(self.spec.training.batch_size, len(shard))
        return self._task(shard[self.batch_rng.permutation(len(shard))[:size]], self.version)

    def may_take(self, worker_id: str, live: set[str]) -> bool:
        """SSP: a worker more than max_staleness tasks ahead of the slowest waits."""
        if self.mode != "ssp":
            return True
        clocks = [self.clocks.get(w, 0) for w in live if w in self.clocks] or [0]
        bound = self.spec.training.max_staleness or 0
        return self.clocks.get(worker_id, min(clocks)) <= min(clocks) + bound

    def counters(self) -> dict[str, int]:
        out = {"reassigned": self.reassigned}
        if self.mode == "ssp":
            out["rejected_stale"] = self.rejected_stale
        if self.spec.training.quorum is not None:
            out["dropped_late"] = self.dropped_late
        if self.restored_from is not None:
            out["restored_from"] = self.restored_from
        return out
