"""Configuration of a worker, from CHAINRULE_* environment variables."""

import os
import socket

from pydantic import Field

from chainrule.rpc.auth import RpcAuthSettings
from chainrule.settings import ServiceSettings


class WorkerSettings(ServiceSettings, RpcAuthSettings):
    """CHAINRULE_REDIS_URL (the blobs), CHAINRULE_KEY_PREFIX and CHAINRULE_METRICS_PORT come
    from the base (chainrule.settings), the tokens and TLS from RpcAuthSettings."""

    # CHAINRULE_SCHEDULER, CHAINRULE_PARAMSERVERS: host:port (gRPC), or local:PATH for a
    # server's same-host socket (chainrule up); comma-separated
    scheduler: str = "127.0.0.1:50052"
    paramservers: str = "127.0.0.1:50051"
    worker_id: str = f"{socket.gethostname()}-{os.getpid()}"  # CHAINRULE_WORKER_ID
    poll_seconds: float = 2.0  # CHAINRULE_POLL_SECONDS: long-poll length
    # CHAINRULE_TASK_DELAY_S: sleep this long before each task — a simulated straggler,
    # for testing timeouts and quorums (0 in production)
    task_delay_s: float = 0.0
    # CHAINRULE_BLAS_THREADS: BLAS threads for this worker's matrix products. Workers
    # scale by processes, one or more per core; each using every core's BLAS thread would
    # oversubscribe the host (on 2 cores, 2 workers with 2 threads each ran 1.5x slower)
    blas_threads: int = Field(default=1, ge=1, le=256)
