"""The real gateway process (``python -m chainrule.gateway``) over loopback HTTP, with the
real Redis behind it."""

from __future__ import annotations

import copy
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from chainrule.gateway.schemas import MetricPointOut
from chainrule.spec import JobSpec
from chainrule.store import JobStore
from tests.support.api import running_gateway
from tests.support.examples import example_spec
from tests.support.processes import free_port, service_process, wait_for_health
from tests.support.real_redis import unique_prefix

pytestmark = pytest.mark.timeout(60)


@dataclass
class Gateway:
    http: httpx.Client
    store: JobStore  # the same keys the gateway reads, as the scheduler would write them
    client: redis.Redis


@pytest.fixture(scope="module")
def gateway(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(redis_url, tmp_path_factory.mktemp("gateway")) as api:
        yield Gateway(api.http, api.store, api.client)


def submit(gateway: Gateway, spec: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = gateway.http.post("/api/v1/jobs", json=spec or example_spec())
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def with_field(path: tuple[str, ...], value: object) -> dict[str, Any]:
    spec: dict[str, Any] = copy.deepcopy(example_spec())
    target = spec
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return spec


def test_the_gateway_is_healthy_ready_and_documented(gateway: Gateway) -> None:
    assert gateway.http.get("/healthz").json()["status"] == "ok"
    assert gateway.http.get("/readyz").json() == {"status": "ok", "redis": "ok"}
    assert gateway.http.get("/docs").status_code == 200
    paths = gateway.http.get("/openapi.json").json()["paths"]
    assert {"/api/v1/jobs", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/metrics"} <= set(paths)


def test_a_valid_spec_becomes_a_pending_queued_job(gateway: Gateway) -> None:
    reply = gateway.http.post("/api/v1/jobs", json=example_spec())

    assert reply.status_code == 201
    created = reply.json()
    assert created["status"] == "PENDING" and created["phase"] == "queued"
    assert reply.headers["location"].endswith(f"/api/v1/jobs/{created['id']}")

    job = gateway.http.get(f"/api/v1/jobs/{created['id']}").json()
    expected_spec = JobSpec.model_validate(example_spec()).model_dump(mode="json")
    assert job["status"] == "PENDING" and job["spec"] == expected_spec
    assert (job["step"], job["total_steps"], job["latest_metrics"]) == (0, 2000, None)
    assert job["created_at"] and job["started_at"] is None and job["ended_at"] is None

    queued = gateway.client.xrange(gateway.store.queue_key) or []
    assert {"job_id": created["id"]} in [fields for _, fields in queued]
    listed = gateway.http.get("/api/v1/jobs", params={"limit": 1}).json()
    assert listed["data"][0]["id"] == created["id"] and listed["count"] >= 1


@pytest.mark.parametrize(
    ("path", "value", "loc", "says"),
    [
        (("training", "steps"), 0, ["training", "steps"], "between 1 and 1000000; got 0"),
        (("model", "activation"), "relu6", ["model", "activation"], "unknown activation 'relu6'"),
        (("training", "mode"), "ssp", ["training", "max_staleness"], "'ssp' needs max_staleness"),
        (("model", "layers"), [3, 8, 1], ["model", "layers", 0], "dataset 'xor' has 2 input"),
        (("model", "output"), "softmax", ["model", "loss"], "does not go with loss 'bce'"),
        (("training", "optimizer", "momentum"), 1.5, ["training", "optimizer", "momentum"],
         "momentum must lie in [0, 1); got 1.5"),
        (("training", "stepz"), 10, ["training", "stepz"], "Extra inputs are not permitted"),
    ],
)  # fmt: skip
def test_an_invalid_spec_gets_422_naming_the_field_and_stores_nothing(
    gateway: Gateway, path: tuple[str, ...], value: object, loc: list[str], says: str
) -> None:
    jobs_before = gateway.store.count()

    reply = gateway.http.post("/api/v1/jobs", json=with_field(path, value))

    assert reply.status_code == 422
    errors = reply.json()["detail"]
    assert [e["loc"] for e in errors] == [["body", *loc]]
    assert says in errors[0]["msg"]
    assert gateway.store.count() == jobs_before


def test_unknown_jobs_are_404_with_a_message(gateway: Gateway) -> None:
    missing = uuid.uuid4().hex[:16]
    for path in (f"/api/v1/jobs/{missing}", f"/api/v1/jobs/{missing}/metrics"):
        reply = gateway.http.get(path)
        assert reply.status_code == 404
        assert reply.json() == {"detail": f"no job '{missing}'"}


def test_the_api_shows_what_the_scheduler_writes(gateway: Gateway) -> None:
    job_id = submit(gateway)["id"]
    gateway.store.set_status(job_id, "RUNNING", phase="training")
    points: list[dict[str, Any]] = [
        {"step": s, "time": 100.0 + s, "loss": 0.7 / s, "lr": 0.5, "samples_per_s": 512.0,
         "active_workers": 2}
        for s in (1, 2, 3)
    ]  # fmt: skip
    points[1] |= {"eval_loss": 0.3, "eval_accuracy": 0.75}
    points[2]["loss"] = math.nan  # diverged: JSON has no NaN, so it comes back null
    for point in points:
        gateway.store.append_metrics(job_id, point)
    gateway.store.set_progress(job_id, 3)

    series = gateway.http.get(f"/api/v1/jobs/{job_id}/metrics").json()
    job = gateway.http.get(f"/api/v1/jobs/{job_id}").json()

    optional = {k: None for k, f in MetricPointOut.model_fields.items() if not f.is_required()}
    expected = [optional | p for p in points]
    expected[2]["loss"] = None
    assert {k: series[k] for k in ("job_id", "count", "points")} == {
        "job_id": job_id, "count": 3, "points": expected}  # fmt: skip
    assert series["latest"] == expected[2] and series["next_start_step"] is None
    assert (job["status"], job["phase"], job["step"]) == ("RUNNING", "training", 3)
    assert job["started_at"] is not None and job["latest_metrics"] == expected[2]
    assert [t["status"] for t in job["status_transitions"]] == ["PENDING", "RUNNING"]


def test_without_redis_the_gateway_stays_up_and_answers_503(tmp_path: Path) -> None:
    port, dead_redis = free_port(), free_port()  # nothing listens on the second one
    env = {
        "CHAINRULE_REDIS_URL": f"redis://127.0.0.1:{dead_redis}/0",
        "CHAINRULE_KEY_PREFIX": unique_prefix(),
        "CHAINRULE_GATEWAY_PORT": str(port),
    }
    log = tmp_path / "gateway.log"
    with (
        service_process("chainrule.gateway", env, str(log)) as proc,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as http,
    ):
        wait_for_health(http, proc, log, timeout=30.0)

        ready = http.get("/readyz")
        submitted = http.post("/api/v1/jobs", json=example_spec())

    assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
    assert submitted.status_code == 503
    assert submitted.json()["detail"].startswith("Redis is unavailable, try again shortly")
