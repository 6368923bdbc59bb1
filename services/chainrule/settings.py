"""What every process's settings share: the ``CHAINRULE_`` prefix, the Redis they meet in,
the prefix of its keys and, for the gRPC processes, their Prometheus port.

Each process still has one settings class, read only in its ``__main__``:

- ``GatewaySettings`` is a :class:`ChainruleSettings`;
- ``SchedulerSettings``, ``WorkerSettings`` and ``ParamServerSettings`` are
  :class:`ServiceSettings` and :class:`~chainrule.rpc.auth.RpcAuthSettings` (tokens, TLS).

The gateway has no ``metrics_port``: it serves ``/metrics`` on its own HTTP port.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

CHAINRULE_ENV = SettingsConfigDict(env_prefix="CHAINRULE_")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_KEY_PREFIX = "chainrule"
KEY_PREFIX_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"


class ChainruleSettings(BaseSettings):
    """The fields every process reads, with the same defaults and checks everywhere:
    the processes of one deployment must agree on them."""

    model_config = CHAINRULE_ENV

    redis_url: str = DEFAULT_REDIS_URL  # CHAINRULE_REDIS_URL; unix:///path for a socket
    key_prefix: str = Field(  # CHAINRULE_KEY_PREFIX: every Redis key starts "<prefix>:"
        default=DEFAULT_KEY_PREFIX, pattern=KEY_PREFIX_PATTERN
    )


class ServiceSettings(ChainruleSettings):
    """A gRPC process (scheduler, worker, parameter server): it serves Prometheus on a
    port of its own, when one is set."""

    metrics_port: int | None = None  # CHAINRULE_METRICS_PORT: Prometheus /metrics; unset: off
