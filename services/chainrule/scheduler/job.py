"""One running job as the scheduler sees it: its tasks, its step clock, its counters.

Tasks are made here. In **sync** mode a step has one task per slot (``training.workers``
of them), drawn by :mod:`chainrule.scheduler.batches`. Steps are drawn in *runs* of up to
:data:`RUN_STEPS` when every slot has a live worker: a worker then takes its slot's task
of every step of the run at once and reports them in one Complete, so that the scheduler
is off the critical path of all but the last step (the parameter server applies each
step as its gradients arrive, by the plans registered for the whole run). A run never
goes past an evaluation or a checkpoint step, so evaluations and the stop rules they feed
see the θ of their step, and a checkpoint never holds steps the scheduler has not heard
of. The minibatches are the same ones, in the same order, as step by step; the per-layer
derivative diagnostics come from one task of each run (of every step when they go one at
a time). In **async** and **ssp** modes a task is made whenever a worker is free, for the
next slot in turn, on the θ version of that moment. The minibatch random stream can be
saved with a checkpoint and restored, so
a job resumed from a checkpoint draws the same minibatches it would have drawn.
"""

from __future__ import annotations

import enum
import json
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import grpc
import numpy as np

from chainrule.data import Split
from chainrule.nn import MLP, Schedule
from chainrule.scheduler.batches import (
    Indices,
    draw_rows,
    job_rngs,
    make_shards,
    step_batches,
)
from chainrule.scheduler.outages import Outage
from chainrule.scheduler.sharing import Usage
from chainrule.scheduler.stopping import Stop, StopState
from chainrule.spec import JobSpec

RUN_STEPS = 32
"""The longest run of sync steps handed out at once (see the module docstring)."""


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
    taken_at: float = 0.0  # monotonic: when its worker took it (scheduler/sharing.py)
    planned: bool = False  # sync: the step's plan is on the parameter server (PushPull)
    diagnostics: bool = True  # compute per-layer derivative statistics
    push_wait_s: float = 0.0  # planned: how long the PushPull may wait for the step
    following: list[Task] = field(default_factory=list)  # handed out with it: its run
    errors: list[str] = field(default_factory=list)  # of the attempts that failed
    failed_by: set[str] = field(default_factory=set)  # workers that reported it failed


@dataclass
class Step:
    """A sync step drawn: its tasks in slot order, and what its plan checkpoints."""

    step: int
    tasks: list[Task]
    checkpoint: bool
    scheduler_state: str  # the state to resume from at version step + 1 (if checkpoint)

    @property
    def task_ids(self) -> list[str]:
        return [t.task_id for t in self.tasks]


class Failure(enum.Enum):
    """Why a task's result carries no gradient (the proto's TaskFailure, same values)."""

    NONE = 0  # computed
    WORKER = 1  # this worker could not compute it: another worker may try
    DIVERGED = 2  # its loss or a gradient is not finite: the job fails
    PARAMSERVER = 3  # the parameter server refused the push or did not answer (its code)


@dataclass
class Completion:
    worker_id: str
    task_id: str
    job_id: str
    step: int
    loss: float
    samples: int
    error: str = ""  # what went wrong, for people (``failure`` says it for the scheduler)
    failure: Failure = Failure.NONE
    paramserver_code: grpc.StatusCode | None = None  # failure PARAMSERVER: what it said
    paramserver_target: str = ""  # failure PARAMSERVER: which server (shard), as configured
    paramserver_unanswered_s: float = 0.0  # ...: how long the worker's client tried
    layers: list[dict[str, Any]] = field(default_factory=list)
    incarnation: str = ""  # of the worker process that computed it
    finished_unix: float = 0.0  # when its push was answered (0: unknown)

    def __post_init__(self) -> None:
        if self.error and self.failure is Failure.NONE:  # an error without a code
            self.failure = Failure.WORKER


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
    step_started: float = field(init=False)
    clocks: dict[str, int] = field(default_factory=dict)  # ssp: tasks completed per worker
    rejected_stale: int = 0
    dropped_late: int = 0
    reassigned: int = 0
    restored_from: int | None = None  # reported with the next metric point
    stop: StopState = field(init=False)
    recent_workers: dict[str, float] = field(default_factory=dict)  # id -> last completion
    lost_workers: int = 0  # workers whose lease ran out while they worked on this job
    outage: Outage = field(default_factory=Outage)  # of its parameter server, if any
    usage: Usage = field(default_factory=Usage)  # task-seconds lately (scheduler/sharing.py)
    preempt: bool = False  # sync: park at the next step boundary (scheduler/sharing.py)
    stop_asked: float | None = None  # sync: when a stop request came in mid-run (monotonic)
    deferred_stop: Stop | None = None  # sync: a stop decided mid-run, taken at the run's end
    apply_lock: threading.Lock = field(default_factory=threading.Lock)
    step_tasks: list[str] = field(default_factory=list)  # sync: this step's, in slot order
    generation: int = 0  # bumped by every rollback: plans made before it are void
    ahead: deque[Step] = field(default_factory=deque)  # sync: the rest of the current run
    early: dict[str, Completion] = field(default_factory=dict)  # completions of steps ahead
    last_point_unix: float = 0.0  # when the previous step's last push was answered
    step_seconds: float = 0.0  # sync: how long recent steps took (a moving average)
    # sync: recorded steps not yet written to Redis: (version, point, diagnostics), and
    # when the last were handed to the publisher (monotonic seconds)
    unrecorded: list[tuple[int, dict[str, Any], list[dict[str, Any]] | None]] = field(
        default_factory=list
    )
    flushed_at: float = 0.0
    clock: Callable[[], float] = time.monotonic  # the scheduler's (state.py)

    def __post_init__(self) -> None:
        self.step_started = self.clock()
        self.stop = StopState(self.clock())

    @property
    def mid_run(self) -> bool:
        """Sync, as θ reaches ``version`` (before the next step is made current): the
        next step is of the run under way, planned on the parameter server already."""
        return self.mode == "sync" and bool(self.ahead) and self.ahead[0].step == self.version

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
        """Async/ssp: whether the step at ``version`` checkpoints, and the scheduler state
        the checkpoint keeps (sync steps carry theirs: :class:`Step`)."""
        checkpoint = self.checkpoints_at(self.version)
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
        self.clear_steps()

    def clear_steps(self) -> None:
        """Forget every task of this job (a rollback, a resync): none will count."""
        self.open.clear()
        self.queue.clear()
        self.done.clear()
        self.ahead.clear()
        self.early.clear()
        self.closing = False

    def _task(
        self, slot_rows: Indices, step: int, diagnostics: bool = True, queued: bool = True
    ) -> Task:
        task_id = f"{self.job_id}:{step}:{uuid.uuid4().hex[:8]}"
        task = Task(
            task_id,
            self.job_id,
            step,
            step if self.mode == "sync" else self.version,
            self.dataset_key,
            self.model_json,
            slot_rows,
            planned=self.mode == "sync",
            diagnostics=diagnostics,
        )
        if queued:
            self.open[task_id] = task
            self.queue.append(task_id)
        return task

    def run_length(self, runs: bool, budget_s: float = math.inf) -> int:
        """Steps to draw at ``version``: 1, or (``runs``) up to RUN_STEPS, ending at the
        next evaluation, the next checkpoint or the last step (so that the scheduler has
        every report of a run before θ is evaluated or checkpointed past it), and taking
        about ``budget_s`` at most at the recent pace (a worker in a run sends no
        heartbeat until it reports: the run must end well within its lease)."""
        if not runs:
            return 1
        t = self.spec.training
        ends = [(self.version // every + 1) * every for every in (t.eval_every, t.checkpoint_every)]
        steps = min(RUN_STEPS, min(self.total_steps, *ends) - self.version)
        if self.step_seconds > 0:
            steps = min(steps, int(budget_s / self.step_seconds))
        return max(1, steps)

    def queue_step(
        self, runs: bool = False, live: set[str] | None = None, budget_s: float = math.inf
    ) -> list[Step]:
        """Sync: make step ``version`` the current one: the next step of the run under
        way, or a new run (one step unless ``runs``). Returns the steps newly drawn,
        whose plans are to be registered. A task of the run assigned to a worker that
        is no longer ``live`` (or handed back) waits in the queue for any worker."""
        self.done.clear()
        self.step_started = self.clock()
        drawn: list[Step] = []
        if not self.ahead or self.ahead[0].step != self.version:
            self.ahead.clear()
            length = self.run_length(runs, budget_s)
            drawn = [self._draw(self.version + k, k == 0) for k in range(length)]
            self.ahead.extend(drawn)
        current = self.ahead.popleft()
        self.step_tasks = current.task_ids
        timeout = self.spec.training.step_timeout_s
        for task in current.tasks:
            if task.task_id in self.early:  # its result came in while it was ahead
                self.done[task.task_id] = self.early.pop(task.task_id)
                continue
            self.open[task.task_id] = task
            if task.worker_id is None or (live is not None and task.worker_id not in live):
                task.worker_id, task.deadline = None, float("inf")
                self.queue.append(task.task_id)
            elif timeout:
                task.deadline = self.clock() + timeout
        return drawn

    def _draw(self, step: int, diagnosed: bool) -> Step:
        """Step ``step``'s tasks; if ``diagnosed``, its first computes the per-layer
        diagnostics (one task of each run: they cost a forward pass's worth of work)."""
        batches = step_batches(self.shards, self.spec.training.batch_size, self.batch_rng)
        tasks = [
            self._task(rows, step, diagnostics=diagnosed and slot == 0, queued=False)
            for slot, rows in enumerate(batches)
            if len(rows)
        ]
        checkpoint = self.checkpoints_at(step)
        return Step(step, tasks, checkpoint, self.scheduler_state() if checkpoint else "")

    def checkpoints_at(self, step: int) -> bool:
        """Whether the step ``step`` checkpoints θ (every ``checkpoint_every`` versions
        and at the last step)."""
        upcoming = step + 1
        return upcoming % self.spec.training.checkpoint_every == 0 or upcoming >= self.total_steps

    def following(self, task: Task, worker_id: str) -> list[Task]:
        """Sync: the tasks of the same slot in the rest of the run, given to
        ``worker_id`` with ``task`` (up to the first one another worker holds)."""
        if task.step != self.version or task.task_id not in self.step_tasks:
            return []
        slot = self.step_tasks.index(task.task_id)
        out = []
        for step in self.ahead:
            if slot >= len(step.tasks) or step.tasks[slot].worker_id not in (None, worker_id):
                break
            step.tasks[slot].worker_id = worker_id
            out.append(step.tasks[slot])
        return out

    def ahead_task(self, task_id: str) -> Task | None:
        for step in self.ahead:
            for task in step.tasks:
                if task.task_id == task_id:
                    return task
        return None

    def queue_one(self) -> Task:
        """Async/ssp: one task on the current θ, for the next slot in turn."""
        shard = self.shards[self.next_slot % len(self.shards)]
        self.next_slot += 1
        return self._task(
            draw_rows(shard, self.spec.training.batch_size, self.batch_rng), self.version
        )

    @property
    def weight(self) -> int:
        return self.spec.training.weight

    def in_hand_seconds(self, now: float) -> float:
        """How long its workers have held the tasks they hold now."""
        return sum(now - t.taken_at for t in self.open.values() if t.worker_id)

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
