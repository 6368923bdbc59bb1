"""Retrying idempotent calls through transient failures (a server restarting, a dropped
connection). Every parameter-server RPC is idempotent, so a retry is always safe."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import grpc

TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
T = TypeVar("T")


def with_retries(
    call: Callable[[], T], attempts: int = 10, pause: float = 0.1, max_pause: float = 2.0
) -> T:
    """``call()``, again after a doubling pause (at most ``max_pause``) while it fails
    transiently; other errors, and the last transient one, are raised. The defaults
    ride out about 11 s of unavailability: a restarting server."""
    for attempt in range(attempts):
        try:
            return call()
        except grpc.RpcError as e:
            if e.code() not in TRANSIENT or attempt == attempts - 1:
                raise
            time.sleep(min(pause * 2**attempt, max_pause))
    raise AssertionError("unreachable")
