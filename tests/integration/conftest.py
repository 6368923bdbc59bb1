"""Fixtures of the integration tests; the Redis ones (``redis_url``, ``key_prefix``,
``redis_client``) come from tests/support/real_redis.py through tests/conftest.py."""

from __future__ import annotations

import pytest
import redis

from chainrule.store import JobStore
from tests.support.examples import example_spec


@pytest.fixture
def job_store(redis_client: redis.Redis, key_prefix: str) -> JobStore:
    return JobStore(redis_client, prefix=key_prefix)


@pytest.fixture
def spec_json() -> dict[str, object]:
    """The spec from the design brief: a tanh MLP on XOR, two sync workers."""
    return example_spec("xor")
