"""Which process exposes which metrics (:data:`COMPONENTS`), and serving them."""

from __future__ import annotations

import threading
import weakref

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from chainrule.logs import get_logger
from chainrule.telemetry import gateway, paramserver, scheduler, worker
from chainrule.telemetry.common import BUILD_INFO

COMPONENTS: dict[str, tuple[MetricWrapperBase, ...]] = {
    "paramserver": paramserver.METRICS,
    "worker": worker.METRICS,
    "scheduler": scheduler.METRICS,
    "gateway": gateway.METRICS,
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
