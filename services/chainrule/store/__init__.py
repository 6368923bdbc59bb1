"""Redis access: job records and queue, metric series, uploaded datasets.

Objects take a ``redis.Redis`` client in ``__init__``; :func:`connect` makes one from a
URL (``redis://host:6379/0``, or ``unix:///path/redis.sock`` for an embedded server),
:func:`binary_client` one for binary values (datasets, blobs).
"""

from __future__ import annotations

import redis

from chainrule.store.datasets import DatasetMeta, DatasetNotFoundError, DatasetStore
from chainrule.store.jobs import (
    TERMINAL,
    JobNotFoundError,
    JobRecord,
    JobStatus,
    JobStore,
    StatusTransition,
)
from chainrule.store.metrics import METRIC_FIELDS, MetricPoint

__all__ = [
    "METRIC_FIELDS",
    "TERMINAL",
    "DatasetMeta",
    "DatasetNotFoundError",
    "DatasetStore",
    "JobNotFoundError",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "MetricPoint",
    "StatusTransition",
    "binary_client",
    "connect",
]


def connect(url: str) -> redis.Redis:
    """A client for the Redis at ``url``; connects lazily, on the first command.

    Replies are decoded to str. The connect timeout is short so that an unreachable
    Redis is reported within seconds, not minutes; reads may block as long as a command
    asks (the scheduler blocks on its queue).
    """
    return redis.Redis.from_url(
        url, decode_responses=True, socket_connect_timeout=5.0, health_check_interval=30
    )


def binary_client(url: str) -> redis.Redis:
    """Like :func:`connect`, but replies stay bytes: for binary values such as datasets."""
    return redis.Redis.from_url(url, socket_connect_timeout=5.0, health_check_interval=30)
