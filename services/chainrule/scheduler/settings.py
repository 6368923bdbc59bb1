"""Configuration of the scheduler, from CHAINRULE_* environment variables."""

import socket

from pydantic import Field

from chainrule.rpc.auth import RpcAuthSettings
from chainrule.scheduler.outages import DEFAULT_BUDGET_S
from chainrule.settings import ServiceSettings
from chainrule.store.thinning import DEFAULT_MAX_POINTS, MIN_MAX_POINTS


class SchedulerSettings(ServiceSettings, RpcAuthSettings):
    """CHAINRULE_REDIS_URL, CHAINRULE_KEY_PREFIX and CHAINRULE_METRICS_PORT come from the
    base (chainrule.settings), the tokens and TLS from RpcAuthSettings."""

    scheduler_listen: str = "127.0.0.1:50052"  # CHAINRULE_SCHEDULER_LISTEN
    # CHAINRULE_LOCAL_SOCKET: same host only — serve workers on this Unix socket too
    # (chainrule up sets one; workers use "local:PATH"); unset: TCP only
    local_socket: str | None = None
    paramservers: str = "127.0.0.1:50051"  # CHAINRULE_PARAMSERVERS (comma-separated: shards)
    scheduler_id: str = socket.gethostname()  # CHAINRULE_SCHEDULER_ID: the consumer name
    worker_lease_s: float = 10.0  # CHAINRULE_WORKER_LEASE_S
    leader_ttl_s: float = 10.0  # CHAINRULE_LEADER_TTL_S: a dead leader's lease lapses after this
    # CHAINRULE_OUTAGE_BUDGET_S: how long a job waits for a parameter server that does not
    # answer before it FAILS with the reason (scheduler/outages.py)
    outage_budget_s: float = Field(default=DEFAULT_BUDGET_S, gt=0)
    # CHAINRULE_MAX_SERIES_POINTS: entries kept per job in each of its metric, event and
    # diagnostics streams, by thinning (store/thinning.py)
    max_series_points: int = Field(default=DEFAULT_MAX_POINTS, ge=MIN_MAX_POINTS)
    # CHAINRULE_RETENTION_DAYS: ended jobs (records, metrics, models, everything DELETE
    # removes) are deleted this long after they ended; 0 keeps them (store/retention.py)
    retention_days: float = Field(default=0.0, ge=0)
