"""The compose topology, run: every chainrule service of docker-compose.yml started as a
local process with the environment compose would give its containers (see
localcompose.py), a short XOR job trained through the gateway to SUCCEEDED, and every
Prometheus scrape target of deploy/prometheus/prometheus.yml answering. Redis is the real
one on 127.0.0.1:6379, under a key prefix of its own that is deleted afterwards."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import yaml

from tests.deploy import compose
from tests.deploy.common import COMPOSE_FILE, ROOT, RPC_TOKENS, SHARDS_FILE
from tests.deploy.localcompose import LocalCompose
from tests.support.examples import example_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

TOKEN = "smoke-test-token"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus" / "prometheus.yml"


@pytest.fixture(params=["base", "shards"])
def stack(
    request: pytest.FixtureRequest,
    redis_url: str,
    redis_client: redis.Redis,
    key_prefix: str,
    tmp_path: Path,
) -> Iterator[LocalCompose]:
    """The compose services on the real Redis, under ``key_prefix`` (whose keys
    ``redis_client`` deletes afterwards)."""
    files = [COMPOSE_FILE] if request.param == "base" else [COMPOSE_FILE, SHARDS_FILE]
    # what the user's shell (or .env) would hold: the required token, our own key prefix
    model = compose.load_project(
        files, {**RPC_TOKENS, "CHAINRULE_API_TOKENS": TOKEN, "CHAINRULE_KEY_PREFIX": key_prefix}
    )

    def redis_healthy() -> bool:
        try:
            return bool(redis_client.ping())
        except redis.RedisError:
            return False

    running = LocalCompose(
        model,
        tmp_path,
        external={"redis": redis_healthy},
        external_addresses={"redis:6379": urlsplit(redis_url).netloc},
    )
    with running:
        yield running


def run_job(gateway: str, spec: dict[str, Any], timeout: float = 150) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=gateway, headers=auth, timeout=10) as http:
        reply = http.post("/api/v1/jobs", json=spec)
        assert reply.status_code == 201, reply.text
        job_id = reply.json()["id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job: dict[str, Any] = http.get(f"/api/v1/jobs/{job_id}").json()
            if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
                return job
            time.sleep(0.2)
    raise TimeoutError(f"job {job_id} did not end within {timeout} s")


def test_the_compose_topology_trains_xor_and_every_scrape_target_answers(
    stack: LocalCompose,
) -> None:
    gateway = f"http://{stack.address('gateway', 8000)}"
    job = run_job(gateway, example_spec("xor", training={"steps": 300}))
    assert job["status"] == "SUCCEEDED", job
    assert job["latest_metrics"]["eval_accuracy"] == 1.0

    scraped = set()
    for job_config in yaml.safe_load(PROMETHEUS_FILE.read_text())["scrape_configs"]:
        path = job_config.get("metrics_path", "/metrics")
        for sd in job_config.get("dns_sd_configs", []):
            for service in (s for s in sd["names"] if s in stack.instances):
                for index, _ in enumerate(stack.instances[service]):
                    url = f"http://{stack.address(service, sd['port'], index)}{path}"
                    page = httpx.get(url, timeout=10)
                    assert page.status_code == 200, (url, page.text[:500])
                    assert "chainrule_build_info" in page.text, url
                    scraped.add(service)
    assert scraped == set(stack.instances), "every chainrule service is scraped"
