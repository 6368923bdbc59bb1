"""Prometheus metrics: every chainrule metric is defined here, and nowhere else.

Names follow the Prometheus conventions: a ``chainrule_`` prefix, base units in the name
(``_seconds``, ``_bytes``), counters ending in ``_total``. Labels take only small, fixed
sets of values (rpc name, stage, mode, status, method, route template, status code):
never a job id or a worker id, so that the number of series stays bounded however many
jobs run.

The metrics are grouped by the process that reports them (:data:`COMPONENTS`); each
process registers only its own group, so a worker's endpoint does not list empty
parameter-server series. Updating a metric works whether or not it is registered.

- paramserver, worker, scheduler: ``serve_metrics(settings.metrics_port, "<component>")``
  in ``__main__`` serves the default registry on ``CHAINRULE_METRICS_PORT``;
- gateway: ``GET /metrics`` on its HTTP port (:mod:`chainrule.gateway.prometheus`).

The scheduler's metrics are updated through the small ``record_*`` helpers below, one
call per event, so that the scheduler's code keeps reading like the scheduler.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from chainrule import __version__
from chainrule.logs import get_logger

# the *_created series (a timestamp per counter and histogram) double the series count
# for what Prometheus infers from resets anyway
disable_created_metrics()  # type: ignore[no-untyped-call]

# -- buckets --------------------------------------------------------------------------------

#: latencies from 1 ms to 10 s
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: payload sizes from 1 KiB to 1 GiB, in steps of 4
BYTES_BUCKETS = tuple(float(2**exponent) for exponent in range(10, 31, 2))
#: staleness in θ versions, 0 (fresh) to 64
STALENESS_BUCKETS = (0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)

MODES = ("sync", "async", "ssp")
JOB_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED")
PARAMSERVER_RPCS = ("Push", "Pull", "PushPull", "Plan", "Apply")
WORKER_STAGES = ("pull", "compute", "push")
TASK_OUTCOMES = ("done", "failed")

# -- every process --------------------------------------------------------------------------

BUILD_INFO = Info("chainrule_build", "The chainrule version this process runs.", registry=None)
BUILD_INFO.info({"version": __version__})

# -- parameter server -----------------------------------------------------------------------

PARAMSERVER_RPC_SECONDS = Histogram(
    "chainrule_paramserver_rpc_duration_seconds",
    "Time the parameter server took to answer Push, Pull and Apply, errors included.",
    ["rpc"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
PARAMSERVER_RPC_ERRORS_TOTAL = Counter(
    "chainrule_paramserver_rpc_errors_total",
    "Push, Pull and Apply calls refused or failed, by gRPC status code "
    "(INVALID_ARGUMENT: bad tensors; FAILED_PRECONDITION: out of order; NOT_FOUND: no such job).",
    ["rpc", "code"],
    registry=None,
)
GRADIENT_BYTES = Histogram(
    "chainrule_paramserver_gradient_bytes",
    "Size of the gradient tensors received in one Push (raw tensor bytes); "
    "the sum is all gradient bytes received.",
    buckets=BYTES_BUCKETS,
    registry=None,
)
PARAMS_SENT_BYTES_TOTAL = Counter(
    "chainrule_paramserver_params_sent_bytes_total",
    "Bytes of θ sent in Pull replies (raw tensor bytes; an unchanged θ sends none).",
    registry=None,
)

# -- worker ---------------------------------------------------------------------------------

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

# -- scheduler ------------------------------------------------------------------------------

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

# -- gateway --------------------------------------------------------------------------------

HTTP_REQUESTS_TOTAL = Counter(
    "chainrule_http_requests_total",
    "HTTP requests the gateway answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=None,
)
HTTP_REQUEST_SECONDS = Histogram(
    "chainrule_http_request_duration_seconds",
    "Time the gateway took to answer, by method and route template (event streams last "
    "as long as the client stays).",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)
JOBS_METRIC = "chainrule_jobs"
JOBS_HELP = "Jobs in the job index, by state."


class JobsByState(Collector):
    """``chainrule_jobs{state}``, computed when scraped by ``count`` (state -> jobs).

    Every state is reported, zero included, so that a series never vanishes. If
    ``count`` raises ``errors`` (e.g. Redis is unreachable) the metric is left out of
    that scrape rather than failing the whole page.
    """

    def __init__(
        self,
        count: Callable[[], Mapping[str, int]],
        errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.count, self.errors = count, errors

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [GaugeMetricFamily(JOBS_METRIC, JOBS_HELP, labels=["state"])]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        try:
            counts = self.count()
        except self.errors:
            return []
        family = GaugeMetricFamily(JOBS_METRIC, JOBS_HELP, labels=["state"])
        for state in (*JOB_STATES, *sorted(set(counts) - set(JOB_STATES))):
            family.add_metric([state], counts.get(state, 0))
        return [family]


# -- registration ---------------------------------------------------------------------------

COMPONENTS: dict[str, tuple[MetricWrapperBase, ...]] = {
    "paramserver": (
        PARAMSERVER_RPC_SECONDS,
        PARAMSERVER_RPC_ERRORS_TOTAL,
        GRADIENT_BYTES,
        PARAMS_SENT_BYTES_TOTAL,
    ),
    "worker": (WORKER_STAGE_SECONDS, WORKER_TASK_SECONDS, WORKER_TASKS_TOTAL),
    "scheduler": (
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
    ),
    "gateway": (HTTP_REQUESTS_TOTAL, HTTP_REQUEST_SECONDS),
}
_registered: weakref.WeakKeyDictionary[CollectorRegistry, set[str]] = weakref.WeakKeyDictionary()
_register_lock = threading.Lock()


def register(component: str, registry: CollectorRegistry = REGISTRY) -> None:
    """Expose ``component``'s metrics (and the build info) on ``registry``; idempotent."""
    if component not in COMPONENTS:
        raise ValueError(
            f"unknown component {component!r}; expected one of: {', '.join(COMPONENTS)}"
        )
    with _register_lock:
        done = _registered.setdefault(registry, set())
        for name, collectors in (("common", (BUILD_INFO,)), (component, COMPONENTS[component])):
            if name not in done:
                for collector in collectors:
                    registry.register(collector)
                done.add(name)


def serve_metrics(
    port: int | None, component: str | None = None, addr: str = "0.0.0.0"
) -> int | None:
    """Serve the default registry on ``addr:port`` from a daemon thread; returns the port
    bound (0 picks a free one), or None when ``port`` is None (metrics stay off).

    ``addr`` defaults to every interface because Prometheus scrapes from outside the
    container or pod; the port is opened only when CHAINRULE_METRICS_PORT asks for it.
    """
    from prometheus_client import start_http_server

    if component is not None:
        register(component)
    if port is None:
        return None
    if not 0 <= port <= 65535:
        raise ValueError(f"metrics port must lie in [0, 65535]; got {port}")
    server, _ = start_http_server(port, addr)
    bound = int(server.server_port)
    get_logger("telemetry").info("serving metrics", addr=addr, port=bound, component=component)
    return bound


def _children(metric: Any, label: str, values: Iterable[str]) -> dict[str, Any]:
    """The series of every known label value, made now: they read 0 before the first
    event instead of being absent (rates and alerts see the start), and the hot paths
    look them up here instead of calling ``labels()`` (a lock and a tuple each time)."""
    return {v: metric.labels(**{label: v}) for v in values}


_RPC_SECONDS = _children(PARAMSERVER_RPC_SECONDS, "rpc", PARAMSERVER_RPCS)
_STAGE_SECONDS = _children(WORKER_STAGE_SECONDS, "stage", WORKER_STAGES)
_TASKS = _children(WORKER_TASKS_TOTAL, "outcome", TASK_OUTCOMES)
_APPLY_SECONDS = _children(APPLY_SECONDS, "mode", MODES)
_STEPS = _children(STEPS_TOTAL, "mode", MODES)
_children(JOBS_STARTED_TOTAL, "mode", MODES)
_children(STALENESS, "mode", ("async", "ssp"))
_children(JOBS_ENDED_TOTAL, "status", ("SUCCEEDED", "FAILED", "STOPPED"))

# -- parameter server helpers ---------------------------------------------------------------


@contextmanager
def paramserver_rpc(rpc: str, context: Any) -> Iterator[None]:
    """Time one paramserver RPC; an RPC that leaves by an exception (``context.abort``
    included) is counted under the status code set on ``context`` (UNKNOWN if none)."""
    started = time.perf_counter()
    try:
        yield
    except BaseException:
        PARAMSERVER_RPC_ERRORS_TOTAL.labels(rpc=rpc, code=_code_name(context)).inc()
        raise
    finally:
        seconds = _RPC_SECONDS.get(rpc) or PARAMSERVER_RPC_SECONDS.labels(rpc=rpc)
        seconds.observe(time.perf_counter() - started)


def _code_name(context: Any) -> str:
    code = context.code() if hasattr(context, "code") else None
    return str(getattr(code, "name", "UNKNOWN") if code is not None else "UNKNOWN")


def record_gradient_bytes(tensors: Mapping[str, Any]) -> None:
    """One Push's gradients (name -> ndarray) arrived."""
    GRADIENT_BYTES.observe(sum(int(t.nbytes) for t in tensors.values()))


def record_params_sent(tensors: Mapping[str, Any]) -> None:
    """θ (name -> ndarray) goes out in a Pull reply."""
    PARAMS_SENT_BYTES_TOTAL.inc(sum(int(t.nbytes) for t in tensors.values()))


# -- worker helpers -------------------------------------------------------------------------


def record_task_stages(pull_seconds: float, compute_seconds: float, push_seconds: float) -> None:
    """The stages of one task whose gradient was pushed."""
    _STAGE_SECONDS["pull"].observe(pull_seconds)
    _STAGE_SECONDS["compute"].observe(compute_seconds)
    _STAGE_SECONDS["push"].observe(push_seconds)


def record_task(seconds: float, failed: bool) -> None:
    """A task is finished (before it is reported to the scheduler)."""
    WORKER_TASK_SECONDS.observe(seconds)
    _TASKS["failed" if failed else "done"].inc()


# -- scheduler helpers ----------------------------------------------------------------------


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


def record_job_ended(status: str) -> None:
    JOBS_ENDED_TOTAL.labels(status=status).inc()
