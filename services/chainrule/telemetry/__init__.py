"""Prometheus metrics: every chainrule metric is defined in this package, and nowhere else.

Names follow the Prometheus conventions: a ``chainrule_`` prefix, base units in the name
(``_seconds``, ``_bytes``), counters ending in ``_total``. Labels take only small, fixed
sets of values (rpc name, stage, mode, status, method, route template, status code):
never a job id or a worker id, so that the number of series stays bounded however many
jobs run.

The metrics are grouped by the process that reports them, one module each (paramserver,
worker, scheduler, gateway: the metrics and the helpers that update them); common.py has
what they share, registration.py which process exposes which group (:data:`COMPONENTS`).
Each process registers only its own group, so a worker's endpoint does not list empty
parameter-server series. Updating a metric works whether or not it is registered.

- paramserver, worker, scheduler: ``serve_metrics(settings.metrics_port, "<component>")``
  in ``__main__`` serves the default registry on ``CHAINRULE_METRICS_PORT``;
- gateway: ``GET /metrics`` on its HTTP port (:mod:`chainrule.gateway.prometheus`).

Callers use this package's names (``telemetry.record_task``), not its modules'.
"""

from chainrule.telemetry.common import BUILD_INFO, LATENCY_BUCKETS
from chainrule.telemetry.gateway import (
    HTTP_REQUEST_SECONDS,
    HTTP_REQUESTS_TOTAL,
    JOB_STATES,
    JOBS_HELP,
    JOBS_METRIC,
    JobsByState,
)
from chainrule.telemetry.paramserver import (
    BYTES_BUCKETS,
    GRADIENT_BYTES,
    PARAMS_SENT_BYTES_TOTAL,
    PARAMSERVER_RPC_ERRORS_TOTAL,
    PARAMSERVER_RPC_SECONDS,
    PARAMSERVER_RPCS,
    paramserver_rpc,
    record_gradient_bytes,
    record_params_sent,
)
from chainrule.telemetry.registration import COMPONENTS, register, serve_metrics
from chainrule.telemetry.scheduler import (
    APPLY_SECONDS,
    DROPPED_LATE_TOTAL,
    JOBS_ENDED_TOTAL,
    JOBS_STARTED_TOTAL,
    MODES,
    REASSIGNED_TOTAL,
    REJECTED_STALE_TOTAL,
    STALENESS,
    STALENESS_BUCKETS,
    STEP_SECONDS,
    STEPS_TOTAL,
    WORKERS_ACTIVE,
    WORKERS_LOST_TOTAL,
    apply_timer,
    record_dropped_late,
    record_job_ended,
    record_job_started,
    record_queue_wait,
    record_reassigned,
    record_rejected_stale,
    record_staleness,
    record_step,
    record_workers_lost,
    set_queued,
    set_workers_active,
)
from chainrule.telemetry.worker import (
    TASK_OUTCOMES,
    WORKER_STAGE_SECONDS,
    WORKER_STAGES,
    WORKER_TASK_SECONDS,
    WORKER_TASKS_TOTAL,
    record_task,
    record_task_stages,
)

__all__ = [
    "APPLY_SECONDS",
    "BUILD_INFO",
    "BYTES_BUCKETS",
    "COMPONENTS",
    "DROPPED_LATE_TOTAL",
    "GRADIENT_BYTES",
    "HTTP_REQUESTS_TOTAL",
    "HTTP_REQUEST_SECONDS",
    "JOBS_ENDED_TOTAL",
    "JOBS_HELP",
    "JOBS_METRIC",
    "JOBS_STARTED_TOTAL",
    "JOB_STATES",
    "LATENCY_BUCKETS",
    "MODES",
    "PARAMSERVER_RPCS",
    "PARAMSERVER_RPC_ERRORS_TOTAL",
    "PARAMSERVER_RPC_SECONDS",
    "PARAMS_SENT_BYTES_TOTAL",
    "REASSIGNED_TOTAL",
    "REJECTED_STALE_TOTAL",
    "STALENESS",
    "STALENESS_BUCKETS",
    "STEPS_TOTAL",
    "STEP_SECONDS",
    "TASK_OUTCOMES",
    "WORKERS_ACTIVE",
    "WORKERS_LOST_TOTAL",
    "WORKER_STAGES",
    "WORKER_STAGE_SECONDS",
    "WORKER_TASKS_TOTAL",
    "WORKER_TASK_SECONDS",
    "JobsByState",
    "apply_timer",
    "paramserver_rpc",
    "record_dropped_late",
    "record_gradient_bytes",
    "record_job_ended",
    "record_job_started",
    "record_params_sent",
    "record_queue_wait",
    "record_reassigned",
    "record_rejected_stale",
    "record_staleness",
    "record_step",
    "record_task",
    "record_task_stages",
    "record_workers_lost",
    "register",
    "serve_metrics",
    "set_queued",
    "set_workers_active",
]
