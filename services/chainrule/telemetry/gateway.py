"""The gateway's metrics: its HTTP requests, and the jobs in the index by state (counted
when scraped, by :class:`JobsByState`); served on ``GET /metrics``
(:mod:`chainrule.gateway.prometheus`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chainrule.telemetry.common import LATENCY_BUCKETS

JOB_STATES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED")

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

METRICS = (HTTP_REQUESTS_TOTAL, HTTP_REQUEST_SECONDS)


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
