"""The scheduler's metrics, updated through small ``record_*`` helpers, one call per
event, so that the scheduler's code keeps reading like the scheduler."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram

from chainrule.telemetry.common import LATENCY_BUCKETS, WAIT_BUCKETS, children

MODES = ("sync", "async", "ssp")
PRIORITIES = ("low", "normal", "high")
#: staleness in θ versions, 0 (fresh) to 64
STALENESS_BUCKETS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)

STEP_SECONDS = Histogram(
    "chainrule_scheduler_step_duration_seconds",
    "Sync mode: time from a step's tasks being queued to its Apply returning.",
    buckets=LATENCY_BUCKETS,
    registry=None,
)
APPLY_SECONDS = Histogram(
    "chainrule_scheduler_apply_duration_seconds",
    "Time of one Apply call to the parameter server(s), as the scheduler sees it.",
    ["mode"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
STEPS_TOTAL = Counter(
    "chainrule_scheduler_steps_total",
    "Updates of θ applied (an Apply in async/ssp, a planned step in sync), by mode.",
    ["mode"],
    registry=None,
)
STALENESS = Histogram(
    "chainrule_scheduler_gradient_staleness_versions",
    "Async and ssp: how many θ versions old an applied gradient's base θ was.",
    ["mode"],
    buckets=STALENESS_BUCKETS,
    registry=None,
)
REJECTED_STALE_TOTAL = Counter(
    "chainrule_scheduler_rejected_stale_total",
    "Ssp: gradients rejected for being more than max_staleness versions old.",
    registry=None,
)
DROPPED_LATE_TOTAL = Counter(
    "chainrule_scheduler_dropped_late_total",
    "Sync with a quorum: tasks dropped because their step closed without them.",
    registry=None,
)
REASSIGNED_TOTAL = Counter(
    "chainrule_scheduler_reassigned_total",
    "Tasks handed to another worker (lease expired, deadline passed or a transient error).",
    registry=None,
)
WORKERS_ACTIVE = Gauge(
    "chainrule_scheduler_workers_active",
    "Workers whose lease is live.",
    registry=None,
)
WORKERS_LOST_TOTAL = Counter(
    "chainrule_scheduler_workers_lost_total",
    "Workers dropped from membership because their lease expired.",
    registry=None,
)
JOBS_STARTED_TOTAL = Counter(
    "chainrule_scheduler_jobs_started_total",
    "Jobs that started training, by consistency mode.",
    ["mode"],
    registry=None,
)
JOBS_ENDED_TOTAL = Counter(
    "chainrule_scheduler_jobs_ended_total",
    "Jobs ended by this scheduler, by final status.",
    ["status"],
    registry=None,
)
QUEUED_JOBS = Gauge(
    "chainrule_scheduler_queued_jobs",
    "Jobs admitted and not started (waiting for workers, or queued behind other jobs).",
    ["priority"],
    registry=None,
)
QUEUE_WAIT_SECONDS = Histogram(
    "chainrule_scheduler_queue_wait_seconds",
    "Time from a job's admission to its start.",
    ["priority"],
    buckets=WAIT_BUCKETS,
    registry=None,
)

METRICS = (
    STEP_SECONDS,
    APPLY_SECONDS,
    STEPS_TOTAL,
    STALENESS,
    REJECTED_STALE_TOTAL,
    DROPPED_LATE_TOTAL,
    REASSIGNED_TOTAL,
    WORKERS_ACTIVE,
    WORKERS_LOST_TOTAL,
    JOBS_STARTED_TOTAL,
    JOBS_ENDED_TOTAL,
    QUEUED_JOBS,
    QUEUE_WAIT_SECONDS,
)

_APPLY_SECONDS = children(APPLY_SECONDS, "mode", MODES)
_STEPS = children(STEPS_TOTAL, "mode", MODES)
children(JOBS_STARTED_TOTAL, "mode", MODES)
children(STALENESS, "mode", ("async", "ssp"))
children(JOBS_ENDED_TOTAL, "status", ("SUCCEEDED", "FAILED", "STOPPED"))
children(QUEUED_JOBS, "priority", PRIORITIES)
children(QUEUE_WAIT_SECONDS, "priority", PRIORITIES)


@contextmanager
def apply_timer(mode: str) -> Iterator[None]:
    """Time an Apply call; one more step of ``mode`` when it returns without error."""
    started = time.perf_counter()
    try:
        yield
    finally:
        (_APPLY_SECONDS.get(mode) or APPLY_SECONDS.labels(mode=mode)).observe(
            time.perf_counter() - started
        )
    (_STEPS.get(mode) or STEPS_TOTAL.labels(mode=mode)).inc()


def record_step(seconds: float) -> None:
    """A sync step closed: ``seconds`` from its tasks being queued to its last Complete
    (its plan was applied by the parameter server when its last gradient came in)."""
    STEP_SECONDS.observe(seconds)
    _STEPS["sync"].inc()


def record_staleness(mode: str, versions: int) -> None:
    """An async/ssp gradient computed on a θ ``versions`` versions old is applied."""
    STALENESS.labels(mode=mode).observe(versions)


def record_rejected_stale(count: int = 1) -> None:
    REJECTED_STALE_TOTAL.inc(count)


def record_dropped_late(count: int) -> None:
    DROPPED_LATE_TOTAL.inc(count)


def record_reassigned(count: int = 1) -> None:
    REASSIGNED_TOTAL.inc(count)


def set_workers_active(count: int) -> None:
    WORKERS_ACTIVE.set(count)


def record_workers_lost(count: int) -> None:
    WORKERS_LOST_TOTAL.inc(count)


def record_job_started(mode: str) -> None:
    JOBS_STARTED_TOTAL.labels(mode=mode).inc()


def set_queued(by_priority: dict[str, int]) -> None:
    """How many admitted jobs wait to start, by priority (every priority written)."""
    for priority in PRIORITIES:
        QUEUED_JOBS.labels(priority=priority).set(by_priority.get(priority, 0))


def record_queue_wait(priority: str, seconds: float) -> None:
    QUEUE_WAIT_SECONDS.labels(priority=priority).observe(seconds)


def record_job_ended(status: str) -> None:
    JOBS_ENDED_TOTAL.labels(status=status).inc()
