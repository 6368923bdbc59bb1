"""Configuration of the parameter server, from CHAINRULE_* environment variables."""

from pydantic_settings import BaseSettings, SettingsConfigDict


class ParamServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHAINRULE_")

    paramserver_listen: str = (
        "127.0.0.1:50051"  # CHAINRULE_PARAMSERVER_LISTEN; 0.0.0.0:50051 in a container
    )
    paramserver_shard: str = "0"  # CHAINRULE_PARAMSERVER_SHARD: names this shard's checkpoints
    redis_url: str | None = None  # CHAINRULE_REDIS_URL; unset: no checkpoints
    key_prefix: str = "chainrule"  # CHAINRULE_KEY_PREFIX
    # CHAINRULE_SHM_DIR: same host only — tensor payloads through files in this private
    # (0700) tmpfs directory instead of gRPC (chainrule up sets one); unset: TCP only
    shm_dir: str | None = None
    metrics_port: int | None = None  # CHAINRULE_METRICS_PORT: Prometheus /metrics; unset: off
