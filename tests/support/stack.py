"""A whole local stack for a test: paramserver, scheduler, workers and gateway started by
the same launcher as ``chainrule up``, on free loopback ports, on the real Redis."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from chainrule.cli.stack import LocalStack, StackConfig
from tests.support.real_redis import delete_prefixed, unique_prefix

# a killed scheduler's leader lease lapses in 3 s, a killed worker's in 3 s
FAST_FAILOVER = {"CHAINRULE_LEADER_TTL_S": "3", "CHAINRULE_WORKER_LEASE_S": "3"}


@contextmanager
def running_stack(redis_url: str, log_dir: Path, **config: Any) -> Iterator[LocalStack]:
    """A started LocalStack, 2 workers unless ``workers`` says otherwise, under a key
    prefix of its own whose keys are deleted after it stops; ``config``: more
    StackConfig fields (``extra_env``, ``paramservers``, ``standby_scheduler_port``...)."""
    prefix = unique_prefix()
    settings = StackConfig.on_free_ports(
        **{"workers": 2, "redis_url": redis_url, "key_prefix": prefix, "log_dir": log_dir, **config}
    )
    try:
        with LocalStack(settings) as running:
            yield running
    finally:
        client = redis.Redis.from_url(redis_url)
        delete_prefixed(client, prefix)
        client.close()
