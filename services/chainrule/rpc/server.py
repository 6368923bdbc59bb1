"""Starting a gRPC server the same way in every service: explicit message limits on
both ends, the standard health service, a bound port reported back."""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from chainrule.rpc.codec import GRPC_OPTIONS


def start_server(
    register: Callable[[grpc.Server], None],
    service_names: list[str],
    address: str,
    max_workers: int = 16,
    health_servicer: health.HealthServicer | None = None,
) -> tuple[grpc.Server, int]:
    """Start a server on ``address`` (``host:0`` picks a free port); returns it and its port.

    ``register`` adds the servicers; the health service reports SERVING for each name in
    ``service_names`` and for the whole server (""), unless the caller passes its own
    ``health_servicer`` to set when it is ready.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=GRPC_OPTIONS)
    register(server)
    own_health = health_servicer is None
    health_servicer = health_servicer or health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind gRPC server to {address}")
    server.start()
    if own_health:
        set_serving(health_servicer, service_names, True)
    return server, port


def set_serving(health_servicer: health.HealthServicer, names: list[str], serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        health_servicer.set(name, status)


def channel(target: str) -> grpc.Channel:
    """A client channel with the same message limits as the servers."""
    return grpc.insecure_channel(target, options=GRPC_OPTIONS)
