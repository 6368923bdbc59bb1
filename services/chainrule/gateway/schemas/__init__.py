"""What the REST API takes and sends back: pydantic schemas, kept apart from the stored
records, one module per resource."""

from chainrule.gateway.schemas.common import (
    BAD_BODY,
    FieldError,
    FieldErrors,
    Health,
    Message,
    VersionOut,
    not_found,
)
from chainrule.gateway.schemas.datasets import DatasetOut, DatasetRefusal, DatasetsPublic
from chainrule.gateway.schemas.jobs import (
    SUBMISSION_EXAMPLES,
    XOR_SPEC,
    JobDetail,
    JobsPublic,
    JobSubmission,
    JobSummary,
    Progress,
    StatusTransitionOut,
    WorkerCounts,
)
from chainrule.gateway.schemas.metrics import (
    DiagnosticsOut,
    DiagnosticsPointOut,
    LayerStatsOut,
    MetricPointOut,
    MetricSeriesOut,
    MetricsOut,
    SeriesPointOut,
    StatusEventData,
)
from chainrule.gateway.schemas.models import MAX_ROWS, PredictIn, PredictOut
from chainrule.gateway.schemas.queue import QueueEntry, QueuePosition, QueuePublic, QueueSummary
from chainrule.gateway.schemas.workers import WorkerOut, WorkersPublic

__all__ = [
    "BAD_BODY",
    "MAX_ROWS",
    "SUBMISSION_EXAMPLES",
    "XOR_SPEC",
    "DatasetOut",
    "DatasetRefusal",
    "DatasetsPublic",
    "DiagnosticsOut",
    "DiagnosticsPointOut",
    "FieldError",
    "FieldErrors",
    "Health",
    "JobDetail",
    "JobSubmission",
    "JobSummary",
    "JobsPublic",
    "LayerStatsOut",
    "Message",
    "MetricPointOut",
    "MetricSeriesOut",
    "MetricsOut",
    "PredictIn",
    "PredictOut",
    "Progress",
    "QueueEntry",
    "QueuePosition",
    "QueuePublic",
    "QueueSummary",
    "SeriesPointOut",
    "StatusEventData",
    "StatusTransitionOut",
    "VersionOut",
    "WorkerCounts",
    "WorkerOut",
    "WorkersPublic",
    "not_found",
]
