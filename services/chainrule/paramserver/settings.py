"""Configuration of the parameter server, from CHAINRULE_* environment variables."""

from chainrule.rpc.auth import RpcAuthSettings
from chainrule.settings import ServiceSettings


class ParamServerSettings(ServiceSettings, RpcAuthSettings):
    """CHAINRULE_KEY_PREFIX and CHAINRULE_METRICS_PORT come from the base
    (chainrule.settings), the tokens and TLS from RpcAuthSettings."""

    paramserver_listen: str = (
        "127.0.0.1:50051"  # CHAINRULE_PARAMSERVER_LISTEN; 0.0.0.0:50051 in a container
    )
    paramserver_shard: str = "0"  # CHAINRULE_PARAMSERVER_SHARD: names this shard's checkpoints
    # CHAINRULE_REDIS_URL: where checkpoints go; unset (or empty): none. Unlike the other
    # processes the parameter server runs without Redis, so it has no default address
    redis_url: str = ""
    # CHAINRULE_LOCAL_SOCKET: same host only — serve on this Unix socket too, in a
    # private (0700) directory (chainrule up sets one; clients use "local:PATH"); unset: TCP only
    local_socket: str | None = None
