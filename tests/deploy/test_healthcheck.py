"""``python -m chainrule.healthcheck`` against real servers on loopback: a gRPC server with
the standard health service, and a small HTTP server."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from chainrule.cli.stack import free_port
from chainrule.healthcheck import main

pytestmark = pytest.mark.timeout(60)
SCHEDULER = "chainrule.rpc.v1.Scheduler"


@pytest.fixture
def grpc_server() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(grace=None)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # the http.server protocol
        status = 200 if self.path == "/healthz" else 503
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_serving_is_healthy_and_not_serving_is_not(
    grpc_server: tuple[str, health.HealthServicer], capsys: pytest.CaptureFixture[str]
) -> None:
    target, servicer = grpc_server
    serving, not_serving = (
        health_pb2.HealthCheckResponse.SERVING,
        health_pb2.HealthCheckResponse.NOT_SERVING,
    )
    servicer.set("", serving)
    assert main([target]) == 0
    servicer.set("", not_serving)  # a standby scheduler
    assert main([target]) == 1
    assert f"unhealthy: {target}: NOT_SERVING" in capsys.readouterr().err
    servicer.set(SCHEDULER, serving)
    assert main([target, SCHEDULER]) == 0
    assert main([target, "chainrule.rpc.v1.Nothing"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_nothing_listening_is_unhealthy_within_the_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([f"127.0.0.1:{free_port()}", "--timeout", "0.5"]) == 1
    assert "UNAVAILABLE" in capsys.readouterr().err or "DEADLINE" in capsys.readouterr().err


def test_http_2xx_is_healthy_and_anything_else_is_not(
    http_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--http", f"{http_server}/healthz"]) == 0
    assert main(["--http", f"{http_server}/readyz"]) == 1
    assert "HTTP 503" in capsys.readouterr().err
    assert main(["--http", f"http://127.0.0.1:{free_port()}/healthz", "--timeout", "1"]) == 1
    assert "unreachable" in capsys.readouterr().err
    assert main(["--http", "file:///etc/passwd"]) == 1
    assert "not an http(s) URL" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv", [[], ["127.0.0.1:1", "--http", "http://x"], ["a:1", "--timeout", "0"]]
)
def test_a_wrong_invocation_is_a_usage_error(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_it_runs_as_a_module(grpc_server: tuple[str, health.HealthServicer]) -> None:
    target, servicer = grpc_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    command = [sys.executable, "-m", "chainrule.healthcheck", target]
    assert subprocess.run(command, timeout=30, check=False).returncode == 0
