"""A Redis that needs a password, and one that speaks TLS only (``rediss://``), as managed
Redis services do: a private ``redis-server`` started by the test, the whole stack on its URL."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from chainrule.cli.stack import LocalStack, StackConfig, free_port
from tests.support.examples import example_spec as spec
from tests.support.jobs import run_job
from tests.support.pki import make_pki

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
PASSWORD = "s3cret-for-the-test"


@pytest.fixture(scope="module", params=["password", "password+tls"])
def protected_redis(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The URL of a private redis-server that needs a password; with TLS only (on a
    certificate of a test CA) for ``password+tls``: a ``rediss://`` URL."""
    port = free_port()
    where = tmp_path_factory.mktemp("redis")
    tls = request.param.endswith("tls")
    listen = ["--port", str(port)]
    client_tls: dict[str, str] = {}
    url = f"redis://:{PASSWORD}@127.0.0.1:{port}/0"
    if tls:
        if shutil.which("openssl") is None:
            pytest.skip("needs openssl")
        make_pki(where)
        listen = ["--port", "0", "--tls-port", str(port), "--tls-auth-clients", "no"]
        listen += ["--tls-cert-file", str(where / "server.pem")]
        listen += ["--tls-key-file", str(where / "server.key")]
        listen += ["--tls-ca-cert-file", str(where / "ca.pem")]
        client_tls = {"ssl": "true", "ssl_ca_certs": str(where / "ca.pem")}
        url = f"rediss://:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={where / 'ca.pem'}"
    proc = subprocess.Popen(
        ["redis-server", *listen, "--bind", "127.0.0.1", "--requirepass", PASSWORD,
         "--save", "", "--appendonly", "no", "--dir", str(where)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis.from_url(url, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "no redis-server"
                time.sleep(0.1)
        with pytest.raises(redis.AuthenticationError):  # it does need the password
            redis.Redis(port=port, ssl=tls, ssl_ca_certs=client_tls.get("ssl_ca_certs")).ping()
        if tls:  # and speaks TLS only
            with pytest.raises(redis.ConnectionError):
                redis.Redis(port=port, password=PASSWORD, socket_timeout=2).ping()
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_the_stack_trains_on_a_redis_that_needs_a_password(
    protected_redis: str, tmp_path: Path
) -> None:
    config = StackConfig.on_free_ports(workers=2, redis_url=protected_redis, log_dir=tmp_path)
    with LocalStack(config) as stack:
        job = run_job(stack.gateway_url, spec(training={"steps": 300}))
        logs = {name: stack.log(name) for name in stack.processes}
    assert job["status"] == "SUCCEEDED", job
    assert job["latest_metrics"]["eval_accuracy"] == 1.0
    client = redis.Redis.from_url(protected_redis)
    kept = [k.decode() for k in client.scan_iter(match="chainrule:*", count=1000)]
    assert any(job["id"] in k for k in kept), kept  # the job's record lives there
    for name, text in logs.items():  # the password never reaches a log
        assert PASSWORD not in text, name
