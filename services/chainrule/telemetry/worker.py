"""A worker's metrics: the time of each task and of its stages, tasks by outcome."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from chainrule.telemetry.common import LATENCY_BUCKETS, children

WORKER_STAGES = ("pull", "compute", "push")
TASK_OUTCOMES = ("done", "failed")

WORKER_STAGE_SECONDS = Histogram(
    "chainrule_worker_stage_duration_seconds",
    "Time a worker spent per task making θ and data current (pull), computing the "
    "gradient (compute) and pushing it (push).",
    ["stage"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
WORKER_TASK_SECONDS = Histogram(
    "chainrule_worker_task_duration_seconds",
    "Time a worker spent on one task, from receiving it to its gradient being pushed.",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
WORKER_TASKS_TOTAL = Counter(
    "chainrule_worker_tasks_total",
    "Tasks a worker finished, by outcome (failed: the gradient could not be computed or pushed).",
    ["outcome"],
    registry=None,
)

METRICS = (WORKER_STAGE_SECONDS, WORKER_TASK_SECONDS, WORKER_TASKS_TOTAL)

_STAGE_SECONDS = children(WORKER_STAGE_SECONDS, "stage", WORKER_STAGES)
_TASKS = children(WORKER_TASKS_TOTAL, "outcome", TASK_OUTCOMES)


def record_task_stages(pull_seconds: float, compute_seconds: float, push_seconds: float) -> None:
    """The stages of one task whose gradient was pushed."""
    _STAGE_SECONDS["pull"].observe(pull_seconds)
    _STAGE_SECONDS["compute"].observe(compute_seconds)
    _STAGE_SECONDS["push"].observe(push_seconds)


def record_task(seconds: float, failed: bool) -> None:
    """A task is finished (before it is reported to the scheduler)."""
    WORKER_TASK_SECONDS.observe(seconds)
    _TASKS["failed" if failed else "done"].inc()
