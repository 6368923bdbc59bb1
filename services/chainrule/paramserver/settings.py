"""Configuration of the parameter server, from CHAINRULE_* environment variables."""

from pydantic_settings import SettingsConfigDict

from chainrule.rpc.auth import RpcAuthSettings


class ParamServerSettings(RpcAuthSettings):
    model_config = SettingsConfigDict(env_prefix="CHAINRULE_")

    paramserver_listen: str = (
        "127.0.0.1:50051"  # CHAINRULE_PARAMSERVER_LISTEN; 0.0.0.0:50051 in a container
    )
    paramserver_shard: str = "0"  # CHAINRULE_PARAMSERVER_SHARD: names this shard's checkpoints
    redis_url: str | None = None  # CHAINRULE_REDIS_URL; unset: no checkpoints
    key_prefix: str = "chainrule"  # CHAINRULE_KEY_PREFIX
    # CHAINRULE_LOCAL_SOCKET: same host only — serve on this Unix socket too, in a
    # private (0700) directory (chainrule up sets one; clients use "local:PATH"); unset: TCP only
    local_socket: str | None = None
    metrics_port: int | None = None  # CHAINRULE_METRICS_PORT: Prometheus /metrics; unset: off
