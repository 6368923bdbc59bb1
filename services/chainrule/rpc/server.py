"""Starting a gRPC server the same way in every service: explicit message limits on
both ends, the standard health service, a bound port reported back; and beside it, on
request, the same servicers on a same-host socket (:mod:`chainrule.rpc.local`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from chainrule.rpc.auth import Credentials, metadata, with_metadata
from chainrule.rpc.codec import GRPC_OPTIONS
from chainrule.rpc.local import LocalChannel, local_path
from chainrule.rpc.local_server import LocalServer

# gRPC Python sets SO_REUSEPORT by default: a second server on a taken port would start
# "serving" and split the connections with the first. Off, the second fails to bind.
SERVER_OPTIONS = [*GRPC_OPTIONS, ("grpc.so_reuseport", 0)]


class Server:
    """A started gRPC server, and the same-host server beside it if there is one."""

    def __init__(self, server: grpc.Server, local: LocalServer | None) -> None:
        self.grpc, self.local = server, local

    def stop(self, grace: float | None = None) -> threading.Event:
        if self.local is not None:
            self.local.stop()
        event: threading.Event = self.grpc.stop(grace)
        return event


def start_server(
    register: Callable[[Any], None],
    service_names: list[str],
    address: str,
    max_workers: int = 16,
    health_servicer: health.HealthServicer | None = None,
    local_socket: str | None = None,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    tls: grpc.ServerCredentials | None = None,
    lend: Sequence[str] = (),
) -> tuple[Server, int]:
    """Start a server on ``address`` (``host:0`` picks a free port); returns it and its port.

    ``register`` adds the servicers; the health service reports SERVING for each name in
    ``service_names`` and for the whole server (""), unless the caller passes its own
    ``health_servicer`` to set when it is ready. With ``local_socket``, the same
    servicers answer on that Unix socket too (OSError if another server holds it).
    ``interceptors`` (rpc.auth's, the paramserver's fence) see every call, on both, in
    order; with ``tls`` the TCP port speaks TLS only. The methods named in ``lend`` get
    their large request bodies on the same-host socket lent, not copied (rpc/shm.py).
    """
    interceptors = list(interceptors)
    local = None
    if local_socket:
        local = LocalServer(local_socket, interceptors=interceptors, lend=lend)
        register(local)
        local.start()
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=SERVER_OPTIONS,
        interceptors=interceptors,
    )
    register(server)
    own_health = health_servicer is None
    health_servicer = health_servicer or health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_secure_port(address, tls) if tls else server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        if local is not None:
            local.stop()
        raise OSError(f"could not bind gRPC server to {address}")
    server.start()
    if own_health:
        set_serving(health_servicer, service_names, True)
    return Server(server, local), port


def set_serving(health_servicer: health.HealthServicer, names: list[str], serving: bool) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ["", *names]:
        health_servicer.set(name, status)


def channel(target: str, credentials: Credentials | None = None) -> Any:
    """A client channel with the same message limits as the servers: over the same-host
    socket for a ``local:/path`` target, else gRPC (``host:port``, TLS when
    ``credentials`` name a CA); sending their token (rpc.auth) with every call."""
    creds = credentials or Credentials()
    sent = metadata(creds)
    path = local_path(target)
    if path is not None:
        return LocalChannel(path, sent)
    if creds.tls_ca:
        tls = grpc.ssl_channel_credentials(creds.tls_ca, creds.tls_key, creds.tls_cert)
        return with_metadata(grpc.secure_channel(target, tls, options=GRPC_OPTIONS), sent)
    return with_metadata(grpc.insecure_channel(target, options=GRPC_OPTIONS), sent)
