"""Starting real service processes for tests: free loopback ports, bounded waits,
guaranteed teardown."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def service_process(
    module: str, env: dict[str, str], log_path: str
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m module`` with ``env`` added; terminated (then killed) on exit."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], env={**os.environ, **env}, stdout=log, stderr=log
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def wait_for_grpc_health(target: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """Block until the standard gRPC health check answers SERVING (or fail clearly)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"service at {target} exited with code {proc.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.1)
    raise TimeoutError(f"service at {target} not healthy after {timeout} s")
