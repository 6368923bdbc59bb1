"""TLS with a CA made by the test: gRPC (rpc.auth's CHAINRULE_TLS_*) on a real parameter
server process, HTTPS on a real gateway; plaintext and unverified clients get nowhere."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest

from chainrule.cli.stack import free_port
from chainrule.healthcheck import check_grpc
from chainrule.paramserver.client import ParamServerClient
from chainrule.rpc.auth import Credentials
from chainrule.rpc.server import channel
from chainrule.rpc.v1 import paramserver_pb2 as pb
from chainrule.rpc.v1.paramserver_pb2_grpc import ParamServerStub
from tests.support.pki import make_pki, needs_openssl
from tests.support.real_redis import unique_prefix

pytestmark = [
    pytest.mark.timeout(120),
    needs_openssl,
]
TOKEN = "tls-test-scheduler-token"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("pki")
    make_pki(where)
    return where


def start_paramserver(pki: Path, client_auth: bool) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "CHAINRULE_PARAMSERVER_LISTEN": f"127.0.0.1:{port}",
        "CHAINRULE_SCHEDULER_TOKENS": TOKEN,
        "CHAINRULE_WORKER_TOKENS": "tls-test-worker-token",
        "CHAINRULE_TLS_CERT": str(pki / "server.pem"),
        "CHAINRULE_TLS_KEY": str(pki / "server.key"),
        "CHAINRULE_TLS_CA": str(pki / "ca.pem"),
        "CHAINRULE_TLS_CLIENT_AUTH": "true" if client_auth else "false",
    }
    env.pop("CHAINRULE_REDIS_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainrule.paramserver"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return proc, f"127.0.0.1:{port}"


@pytest.fixture(params=[False, True], ids=["tls", "mtls"])
def server(request: pytest.FixtureRequest, pki: Path) -> Iterator[tuple[str, bool]]:
    proc, target = start_paramserver(pki, request.param)
    try:
        env = {"CHAINRULE_TLS_CA": str(pki / "ca.pem")}
        if request.param:
            env |= {"CHAINRULE_TLS_CERT": str(pki / "client.pem")}
            env |= {"CHAINRULE_TLS_KEY": str(pki / "client.key")}
        deadline = time.monotonic() + 30
        with pytest.MonkeyPatch.context() as mp:
            for k, v in env.items():
                mp.setenv(k, v)
            while check_grpc(target, timeout=1) is not None:  # the healthcheck speaks TLS
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the TLS paramserver did not come up"
                time.sleep(0.1)
        yield target, request.param
    finally:
        proc.kill()
        proc.wait(timeout=10)


def answer(target: str, credentials: Credentials) -> grpc.StatusCode:
    """The code a Status call through ``credentials`` gets (no retries): NOT_FOUND (of
    an unknown job) when it reached the servicer."""
    with channel(target, credentials) as ch:
        try:
            ParamServerStub(ch).Status(pb.StatusRequest(job_id="no-such-job"), timeout=5)
        except grpc.RpcError as e:
            code: grpc.StatusCode = e.code()
            return code
    return grpc.StatusCode.OK


def test_only_verified_tls_clients_reach_a_tls_server(server: tuple[str, bool], pki: Path) -> None:
    target, mutual = server
    ca = (pki / "ca.pem").read_bytes()
    other_ca = (pki / "other-ca.pem").read_bytes()
    client_cert = (pki / "client.pem").read_bytes(), (pki / "client.key").read_bytes()
    reached = grpc.StatusCode.NOT_FOUND

    assert answer(target, Credentials(TOKEN)) == grpc.StatusCode.UNAVAILABLE  # plaintext
    assert answer(target, Credentials(TOKEN, other_ca, *client_cert)) == grpc.StatusCode.UNAVAILABLE
    without_cert = answer(target, Credentials(TOKEN, ca))
    # with mTLS the server asks for a client certificate signed by the CA
    assert without_cert == (grpc.StatusCode.UNAVAILABLE if mutual else reached)
    assert answer(target, Credentials(TOKEN, ca, *client_cert)) == reached
    # TLS is no substitute for the token
    assert answer(target, Credentials(None, ca, *client_cert)) == grpc.StatusCode.UNAUTHENTICATED

    theta = {"w": np.arange(3, dtype=np.float32)}
    client = ParamServerClient(target, 5, Credentials(TOKEN, ca, *client_cert))
    assert client.create_job("tls-job", theta, "sgd") == (0, True)
    version, params = client.pull("tls-job")
    assert version == 0 and params is not None
    np.testing.assert_array_equal(params["w"], theta["w"])
    client.close()


def test_the_gateway_serves_https_only_when_given_a_certificate(pki: Path, redis_url: str) -> None:
    port = free_port()
    env = {
        **os.environ,
        "CHAINRULE_REDIS_URL": redis_url,
        "CHAINRULE_KEY_PREFIX": unique_prefix(),
        "CHAINRULE_GATEWAY_PORT": str(port),
        "CHAINRULE_GATEWAY_TLS_CERT": str(pki / "server.pem"),
        "CHAINRULE_GATEWAY_TLS_KEY": str(pki / "server.key"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "chainrule.gateway"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    trusting = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "the gateway exited"
            try:
                reply = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=trusting)
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline, "the HTTPS gateway did not come up"
                time.sleep(0.2)
        assert reply.status_code == 200
        with pytest.raises(httpx.HTTPError):  # plain HTTP gets no answer
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        with pytest.raises(httpx.ConnectError):  # nor does a client that cannot verify it
            httpx.get(f"https://127.0.0.1:{port}/healthz", timeout=5)
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_half_a_certificate_is_refused_at_start(pki: Path) -> None:
    env = {**os.environ, "CHAINRULE_GATEWAY_TLS_CERT": str(pki / "server.pem")}
    done = subprocess.run(
        [sys.executable, "-m", "chainrule.gateway"], env=env, capture_output=True, timeout=60
    )
    assert done.returncode != 0
    assert b"CHAINRULE_GATEWAY_TLS_KEY" in done.stderr
