"""What every process's metrics share: the latency buckets, the build info, and series
made ahead of their first event."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import Info, disable_created_metrics

from chainrule import __version__

# the *_created series (a timestamp per counter and histogram) double the series count
# for what Prometheus infers from resets anyway; off before any metric is defined
disable_created_metrics()  # type: ignore[no-untyped-call]

#: latencies from 1 ms to 10 s
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: waits measured in queues, 0.1 s to 4 h (a job waiting for workers or behind others)
WAIT_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)

BUILD_INFO = Info("chainrule_build", "The chainrule version this process runs.", registry=None)
BUILD_INFO.info({"version": __version__})


def children(metric: Any, label: str, values: Iterable[str]) -> dict[str, Any]:
    """The series of every known label value, made now: they read 0 before the first
    event instead of being absent (rates and alerts see the start), and the hot paths
    look them up here instead of calling ``labels()`` (a lock and a tuple each time)."""
    return {v: metric.labels(**{label: v}) for v in values}
