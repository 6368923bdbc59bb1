"""Bounded waits for a server to come up: the standard gRPC health check, or an HTTP
endpoint answering 200. Each polls until ``timeout`` and calls ``check_alive`` between
tries, so a process that died on the way fails at once, not at the deadline."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import httpx
from grpc_health.v1 import health_pb2, health_pb2_grpc


def wait_grpc_healthy(target: str, timeout: float, check_alive: Callable[[], None]) -> None:
    """Block until ``target`` answers the standard gRPC health check with SERVING;
    ``check_alive`` raises if the process behind it has died meanwhile."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            check_alive()
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                time.sleep(0.1)
    raise TimeoutError(f"{target} was not healthy within {timeout:.0f} s")


def wait_http_healthy(name: str, url: str, timeout: float, check_alive: Callable[[], None]) -> None:
    """Block until ``url`` answers 200; ``check_alive`` raises if server ``name`` (as the
    error names it) has died meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        check_alive()
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{name} at {url} was not healthy within {timeout:.0f} s")
