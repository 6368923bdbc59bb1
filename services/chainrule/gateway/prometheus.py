"""The gateway's Prometheus side: HTTP request metrics, jobs by state, the registry.

:class:`HttpMetrics` is a plain ASGI middleware (it does not buffer bodies, so event
streams pass straight through) that counts and times every HTTP request by method,
route *template* (``/api/v1/jobs/{job_id}``, never the job id itself) and status code.
A request no route matched is labelled ``<unmatched>``, so probing random paths cannot
grow the number of series.

``chainrule_jobs{state}`` is counted from Redis when scraped (:class:`JobStateCounter`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import fastapi.routing
import redis
from fastapi import FastAPI
from prometheus_client import REGISTRY, CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chainrule import telemetry
from chainrule.logs import get_logger
from chainrule.store.jobs import JobStatus, JobStore

UNMATCHED = "<unmatched>"

# FastAPI >= 0.140 resolves included routers lazily: a route keeps its own path (without
# the routers' prefixes) and this yields each route with its full path; older FastAPI
# copied the routes with the full path, which the fallback in route_template reads
_iter_route_contexts: Callable[[Any], Iterable[Any]] | None = getattr(
    fastapi.routing, "iter_route_contexts", None
)


class HttpMetrics:
    """Count (``chainrule_http_requests_total``) and time
    (``chainrule_http_request_duration_seconds``) each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            method, route = str(scope["method"]), route_template(scope)
            telemetry.HTTP_REQUESTS_TOTAL.labels(method=method, route=route, status=status).inc()
            telemetry.HTTP_REQUEST_SECONDS.labels(method=method, route=route).observe(
                time.perf_counter() - started
            )


def route_template(scope: Scope) -> str:
    """The path template of the route that handled ``scope`` (after routing), with the
    prefixes of included routers; :data:`UNMATCHED` when no route matched."""
    route = scope.get("route")
    if route is None:
        return UNMATCHED
    app = scope.get("app")
    if _iter_route_contexts is not None and app is not None:
        path, root = str(scope["path"]), str(scope.get("root_path", ""))
        path = path.removeprefix(root) if root else path  # as the router matched it
        for candidate in _iter_route_contexts(getattr(app, "routes", [])):
            regex = getattr(candidate, "path_regex", None)
            if regex is not None and regex.match(path):
                return str(candidate.path_format)
    return str(getattr(route, "path_format", None) or getattr(route, "path", UNMATCHED))


class JobStateCounter:
    """Jobs by status, from Redis: one ZCARD of each status index the job store keeps
    (``<prefix>:jobs:status:<STATUS>``), in one round trip, however many jobs there are."""

    def __init__(self, client: redis.Redis, store: JobStore) -> None:
        self.client, self.store = client, store

    def __call__(self) -> dict[str, int]:
        try:
            with self.client.pipeline(transaction=False) as pipe:
                for status in JobStatus:
                    pipe.zcard(self.store.status_index_key(status))
                replies = pipe.execute()
        except redis.RedisError as e:
            get_logger("gateway").warning("jobs by state not counted", error=str(e))
            raise
        return {status.value: int(n) for status, n in zip(JobStatus, replies, strict=True)}


_registry_lock = threading.Lock()


def app_registry(app: FastAPI) -> CollectorRegistry:
    """The registry ``GET /metrics`` serves for ``app``: the process-wide metrics (HTTP,
    process, Python) and this app's jobs by state, from the Redis on ``app.state``."""
    with _registry_lock:
        registry: CollectorRegistry | None = getattr(app.state, "metrics_registry", None)
        if registry is None:
            telemetry.register("gateway")
            counter = JobStateCounter(app.state.redis, app.state.job_store)
            jobs = telemetry.JobsByState(counter, errors=(redis.RedisError,))
            registry = CollectorRegistry(auto_describe=False)
            registry.register(REGISTRY)  # the process-wide metrics: HTTP, process, Python
            registry.register(jobs)
            app.state.metrics_registry = registry
        return registry
