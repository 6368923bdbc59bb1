"""Redis access: job records and queue, metric series, uploaded datasets.

Objects take a ``redis.Redis`` client in ``__init__``; :func:`connect` makes one from a
URL (``redis://host:6379/0``, or ``unix:///path/redis.sock`` for an embedded server),
:func:`binary_client` one for binary values (datasets, blobs).
"""

from __future__ import annotations

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

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
    "REQUEST_RETRIES",
    "RETRIES",
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


SOCKET_TIMEOUT_S = 15.0
"""The longest any Redis command may take, a hung connection included: longer than every
blocking read made here (the scheduler's queue 0.5 s, event streams 1 s) and than a
large dataset's transfer. A leader whose renewal hangs learns it this late, then steps
down (its lease has lapsed by then; the parameter servers' fence covers the gap)."""

RETRIES = 10
"""How often a service's command that met a lost connection or a timeout is sent again,
after exponential backoff with jitter from 0.1 s up to 2 s between tries: a Redis
restarting (AOF replay, a failover) for up to about 13 s is ridden out without an error
reaching the caller; a longer outage is an error (the caller's own retry or failure
rules)."""

REQUEST_RETRIES = 2
"""The gateway's: a user's request (and a readiness probe) gets a prompt 503 "try again
shortly" rather than waiting out an outage."""

_TIMEOUTS = {
    "socket_connect_timeout": 5.0,
    "socket_timeout": SOCKET_TIMEOUT_S,
    "health_check_interval": 30,
}


def _options(retries: int) -> dict[str, object]:
    retry = Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), retries)
    return {**_TIMEOUTS, "retry": retry}


def connect(url: str, retries: int = RETRIES) -> redis.Redis:
    """A client for the Redis at ``url``; connects lazily, on the first command.

    Replies are decoded to str. The connect timeout is short so that an unreachable
    Redis is reported within seconds, not minutes; no command waits longer than
    :data:`SOCKET_TIMEOUT_S` (a Redis that hangs is an error, not a hang); a lost
    connection is retried ``retries`` times (:data:`RETRIES`; the gateway's
    :data:`REQUEST_RETRIES`).
    """
    return redis.Redis.from_url(url, decode_responses=True, **_options(retries))


def binary_client(url: str, retries: int = RETRIES) -> redis.Redis:
    """Like :func:`connect`, but replies stay bytes: for binary values such as datasets."""
    return redis.Redis.from_url(url, **_options(retries))
