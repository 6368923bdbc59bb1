"""Build and start a parameter server."""

from __future__ import annotations

from chainrule.paramserver.fence import FenceInterceptor
from chainrule.paramserver.servicer import ParamServerServicer, add_to_server
from chainrule.paramserver.state import ParameterStore
from chainrule.rpc.auth import RpcAuthSettings, server_auth
from chainrule.rpc.server import Server, start_server
from chainrule.rpc.v1 import paramserver_pb2

SERVICE = paramserver_pb2.DESCRIPTOR.services_by_name["ParamServer"]
SERVICE_NAME = SERVICE.full_name


WORKER_METHODS = ("Pull", "Push", "PushPull")
"""What a worker's token may call (rpc.auth); the scheduler's may call every method."""
CONTROL_METHODS = [m.name for m in SERVICE.methods if m.name not in WORKER_METHODS]
"""The scheduler's calls: fenced by its leader epoch (paramserver.fence)."""


def serve(
    address: str,
    store: ParameterStore | None = None,
    local_socket: str | None = None,
    auth: RpcAuthSettings | None = None,
) -> tuple[Server, int]:
    """Serve on ``address`` (TCP), and on the same-host socket ``local_socket`` if given;
    with ``auth``'s tokens, if any, checked on every call (ValueError: none, beyond
    loopback)."""
    servicer = ParamServerServicer(store or ParameterStore())
    security = auth or RpcAuthSettings()
    return start_server(
        lambda s: add_to_server(servicer, s),
        [SERVICE_NAME],
        address,
        max_workers=64,  # PushPulls wait for their step in a thread each
        local_socket=local_socket,
        interceptors=[
            *server_auth(security, address, SERVICE_NAME, WORKER_METHODS),
            FenceInterceptor(f"/{SERVICE_NAME}/{m}" for m in CONTROL_METHODS),
        ],
        tls=security.server_tls(),
        lend=[f"/{SERVICE_NAME}/PushPull"],  # applied in place; copied if kept (servicer)
    )
