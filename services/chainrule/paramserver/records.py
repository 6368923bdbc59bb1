"""The records the parameter server keeps and exchanges: plain dataclasses, no logic.

A job's in-memory state (:class:`JobState`), the plans the scheduler sends
(:class:`PlannedStep`, held as :class:`StepPlan`), the gradients buffered until a step
sums them (:class:`PushedGradient`), the steps as applied (:class:`AppliedStep` for the
scheduler's metrics, :class:`LoggedStep` for exactly-once checks) and a job's status as a
client reports it (:class:`ThetaStatus`). What changes them is
:class:`chainrule.paramserver.state.ParameterStore`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from chainrule.nn import Optimizer, OptState, Params

MAX_WAIT_SECONDS = 30.0
"""The longest a Pull or PushPull waits for θ to move."""

APPLIED_STEPS = 64
"""How many planned steps a job remembers the loss and samples of (see Status)."""

APPLIED_LOG = 10_000
"""How many applied steps a job's log keeps (version, leader epoch, task ids)."""


@dataclass(frozen=True)
class StepPlan:
    """A sync step as the scheduler defined it: applied by the server once ``needed`` of
    its tasks are in."""

    task_ids: tuple[str, ...]  # slot order: the order of the sum
    lr: float
    needed: int
    checkpoint: bool
    scheduler_state: str
    epoch: int


@dataclass(frozen=True)
class AppliedStep:
    """A planned step as the server applied it: what the scheduler records of it."""

    step: int
    loss: float  # sample-weighted mean over the gradients summed
    samples: int
    tasks: int


@dataclass(frozen=True)
class LoggedStep:
    """A step as applied, for exactly-once checks: θ went from ``step`` to ``step`` + 1
    under leader ``epoch``, from the gradients of ``task_ids`` (summed in that order)."""

    step: int
    epoch: int
    task_ids: tuple[str, ...]


@dataclass(frozen=True)
class ThetaStatus:
    """A job as a parameter server (or the oldest of its shards) holds it."""

    version: int
    checkpoint_version: int  # -1: no checkpoint
    scheduler_state: str
    restored: bool
    applied: tuple[AppliedStep, ...] = ()  # the last planned steps applied, oldest first
    log: tuple[LoggedStep, ...] = ()  # asked for (status(log=True)): every step applied here


@dataclass(frozen=True)
class PlannedStep:
    """A plan as the scheduler sends it (see ParamServer.plan_run). Its fields are
    PlanRequest's, by name (the client sends them as they are)."""

    step: int
    task_ids: list[str]
    lr: float
    quorum: int = 0
    checkpoint: bool = False
    scheduler_state: str = ""


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
    optimizer_name: str
    options: dict[str, Any]
    version: int = 0
    checkpoint_version: int = -1
    scheduler_state: str = ""
    buffers: dict[str, PushedGradient] = field(default_factory=dict)
    applied: OrderedDict[str, None] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    framed: bytes = b""  # θ as a Pull reply frame, made once per version
    framed_version: int = -1
    plans: dict[int, StepPlan] = field(default_factory=dict)  # step -> plan, steps >= version
    epoch: int = 0  # the highest leader epoch seen in a plan
    checkpoint_error: str = ""  # why the last checkpoint a plan asked for was not written
    applied_steps: deque[AppliedStep] = field(default_factory=lambda: deque(maxlen=APPLIED_STEPS))
    log: deque[LoggedStep] = field(default_factory=lambda: deque(maxlen=APPLIED_LOG))
    moved: threading.Condition = field(init=False)  # notified when the version moves

    def __post_init__(self) -> None:
        self.moved = threading.Condition(self.lock)

    def wait_for(self, version: int, seconds: float) -> bool:
        """Wait (lock held) until θ's version is at least ``version``; True if it is."""
        return self.moved.wait_for(
            lambda: self.version >= version, timeout=min(max(seconds, 0.0), MAX_WAIT_SECONDS)
        )
