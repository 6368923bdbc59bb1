"""Starting real service processes for tests: free loopback ports, bounded waits,
guaranteed teardown."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from chainrule.cli.readiness import wait_grpc_healthy
from chainrule.cli.stack import free_port

__all__ = ["free_port", "service_process", "wait_for_grpc_health", "wait_for_health"]


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

    def check_alive() -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"service at {target} exited with code {proc.returncode}")

    wait_grpc_healthy(target, timeout, check_alive)


def wait_for_health(
    http: httpx.Client, proc: subprocess.Popen[bytes], log: Path, timeout: float
) -> None:
    """Block until the gateway answers /healthz (or fail with its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with code {proc.returncode}:\n{log.read_text()}")
        try:
            if http.get("/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"gateway not healthy after {timeout} s:\n{log.read_text()}")
