"""The line of pending jobs, from the real gateway process over loopback HTTP with the real
Redis: ``GET /api/v1/queue`` and the job detail's ``queue``. The jobs, their phases and
reasons, the running sync jobs' metrics and the worker list are written as the scheduler
writes them (through the store, sharing.queue_reason for the reasons)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from chainrule.scheduler.sharing import queue_reason
from chainrule.store import JobStatus
from chainrule.store.workers import WorkerRegistry
from tests.support.api import Api, point, running_gateway
from tests.support.examples import example_spec

pytestmark = pytest.mark.timeout(60)

STEPS = 1000
TOLERANCE_S = 5.0  # the estimate is now + ETA, both read a moment apart
PRINCIPALS = "alice:alice-token, bob:bob-token, root:root-token:admin"
ALICE = {"Authorization": "Bearer alice-token"}
BOB = {"Authorization": "Bearer bob-token"}
ROOT = {"Authorization": "Bearer root-token"}


@pytest.fixture(scope="module")
def gateway(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_gateway(redis_url, tmp_path_factory.mktemp("gw-queue")) as gw:
        yield gw


@pytest.fixture
def api(gateway: Api) -> Iterator[Api]:
    """The gateway, with every job it has left STOPPED afterwards: each test's line is
    its own."""
    yield gateway
    for status in (JobStatus.PENDING, JobStatus.RUNNING):
        for record in gateway.store.in_status(status):
            gateway.store.set_status(record.id, "STOPPED")
    WorkerRegistry(gateway.client, gateway.prefix).write([], lost_ttl_s=0)


@pytest.fixture(scope="module")
def private(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    log_dir = tmp_path_factory.mktemp("gw-queue-private")
    with running_gateway(redis_url, log_dir, api_tokens=PRINCIPALS, auth_reads="true") as gw:
        yield gw


def spec(mode: str = "sync", workers: int = 1, priority: str = "normal") -> dict[str, Any]:
    training = {"mode": mode, "workers": workers, "priority": priority, "steps": STEPS}
    return example_spec("xor", training=training)


def submit(api: Api, body: dict[str, Any], headers: dict[str, str] | None = None) -> str:
    reply = api.http.post("/api/v1/jobs", json=body, headers=headers or {})
    assert reply.status_code == 201, reply.text
    job_id: str = reply.json()["id"]
    return job_id


def workers(api: Api, live: int, lost: int = 0) -> None:
    """The worker list as the scheduler writes it: ``live`` idle ones, ``lost`` lost."""
    now = time.time()
    entries = [
        {
            "id": f"w{i}",
            "host": "h",
            "state": "idle" if i < live else "lost",
            "current_job": None,
            "last_heartbeat": now,
            "tasks_done": 0,
        }
        for i in range(live + lost)
    ]
    WorkerRegistry(api.client, api.prefix).write(entries, lost_ttl_s=60)


def running_sync(api: Api, slots: int, eta_s: float | None) -> str:
    """A RUNNING sync job holding ``slots`` with ``eta_s`` seconds left (1 step a second
    over its recent points); None: too few points for an ETA."""
    job_id = submit(api, spec(workers=slots))
    api.store.set_status(job_id, "RUNNING", phase="training", message="training (sync)")
    if eta_s is None:
        return job_id
    now = time.time()
    for step in range(11):
        api.store.append_metrics(job_id, point(step, time=now - 10 + step))
    api.store.set_progress(job_id, STEPS - int(eta_s))
    return job_id


def queued(api: Api, job_id: str, need: int, free: int, ahead: int) -> str:
    """PENDING ``queued`` with the reason, as scheduler/admission.py writes it."""
    api.store.set_phase(job_id, "waiting_for_workers", message="waiting for workers to register")
    reason = queue_reason(need, free, ahead)
    api.store.set_phase(job_id, "queued", message=reason)
    return reason


def seconds_from(start: str | None, t0: float) -> float | None:
    return None if start is None else datetime.fromisoformat(start).timestamp() - t0


def test_the_queue_is_in_line_order_with_reasons_and_estimated_starts(api: Api) -> None:
    workers(api, live=5, lost=2)  # the lost ones hold nothing and free nothing
    running_sync(api, 2, eta_s=100)
    running_sync(api, 1, eta_s=40)
    running_sync(api, 1, eta_s=150)  # 5 live, 4 held: 1 free
    api.store.set_status(submit(api, spec("async", 2)), "RUNNING", phase="training")  # no slots

    low = submit(api, spec(workers=1, priority="low"))
    normal = submit(api, spec(workers=2))
    short = submit(api, spec(workers=8))  # more than are live
    high = submit(api, spec(workers=2, priority="high"))
    api.store.set_phase(short, "waiting_for_workers", message="waiting for workers to register")
    reasons = {
        high: queued(api, high, 2, 1, 0),
        normal: queued(api, normal, 2, 1, 1),
        low: queued(api, low, 1, 1, 2),
    }
    # the figures change: rewritten without a history entry, as the scheduler does
    reasons[low] = queue_reason(1, 0, 2)
    assert api.store.refresh_message(low, "queued", reasons[low])

    t0 = time.time()
    reply = api.http.get("/api/v1/queue")
    assert reply.status_code == 200, reply.text
    body = reply.json()

    line = body["data"]
    assert [j["id"] for j in line] == [high, normal, short, low]
    assert [j["position"] for j in line] == [0, 1, 2, 3]
    assert [j["priority"] for j in line] == ["high", "normal", "normal", "low"]
    assert [j["phase"] for j in line] == ["queued", "queued", "waiting_for_workers", "queued"]
    assert [j["workers"] for j in line] == [2, 2, 8, 1]
    assert {j["mode"] for j in line} == {"sync"} and {j["name"] for j in line} == {"xor-tanh"}
    by_id = {j["id"]: j for j in line}
    for job_id, reason in reasons.items():
        assert by_id[job_id]["reason"] == reason
    assert by_id[short]["reason"] == "waiting for workers to register"
    assert by_id[low]["reason"] == "waiting for 1 worker slot; 0 free; 2 jobs ahead"
    assert all(0 <= j["waited_seconds"] < 30 and j["owner"] is None for j in line)
    # 1 free: high takes it with the slot freed at 40 s; normal the 2 freed at 100 s;
    # low the one freed at 150 s; the one waiting for workers has no estimate
    starts = [seconds_from(j["estimated_start"], t0) for j in line]
    assert starts[0] == pytest.approx(40, abs=TOLERANCE_S)
    assert starts[1] == pytest.approx(100, abs=TOLERANCE_S)
    assert starts[2] is None
    assert starts[3] == pytest.approx(150, abs=TOLERANCE_S)
    assert body["summary"] == {"total": 4, "by_priority": {"high": 1, "normal": 2, "low": 1}}


def test_a_running_gang_without_an_eta_leaves_the_start_unknown(api: Api) -> None:
    workers(api, live=2)
    running_sync(api, 2, eta_s=None)
    waiting = submit(api, spec(workers=1))
    queued(api, waiting, 1, 0, 0)
    async_job = submit(api, spec("async", 2))
    api.store.set_phase(async_job, "preparing", message="preparing xor")

    line = api.http.get("/api/v1/queue").json()["data"]

    assert [j["id"] for j in line] == [waiting, async_job]
    assert line[0]["estimated_start"] is None
    assert line[1]["mode"] == "async" and line[1]["phase"] == "preparing"
    assert seconds_from(line[1]["estimated_start"], time.time()) == pytest.approx(0, abs=5)


def test_the_detail_of_a_pending_job_has_its_place_in_line(api: Api) -> None:
    workers(api, live=2)
    running = running_sync(api, 2, eta_s=60)
    first = submit(api, spec(workers=2))
    second = submit(api, spec(workers=1))
    queued(api, first, 2, 0, 0)
    reason = queued(api, second, 1, 0, 1)

    t0 = time.time()
    detail = api.http.get(f"/api/v1/jobs/{second}").json()

    assert detail["status"] == "PENDING"
    assert detail["queue"]["position"] == 1 and detail["queue"]["reason"] == reason
    assert reason == "waiting for 1 worker slot; 0 free; 1 job ahead"
    # the 2 slots freed at 60 s go to the head of the line first: nothing is left
    assert detail["queue"]["estimated_start"] is None
    head = api.http.get(f"/api/v1/jobs/{first}").json()["queue"]
    assert head["position"] == 0
    assert seconds_from(head["estimated_start"], t0) == pytest.approx(60, abs=TOLERANCE_S)
    assert api.http.get(f"/api/v1/jobs/{running}").json()["queue"] is None
    listed = api.http.get("/api/v1/queue").json()["data"]
    assert {k: listed[1][k] for k in ("position", "reason", "estimated_start")} == detail["queue"]

    api.store.set_status(first, "STOPPED")
    assert api.http.get(f"/api/v1/jobs/{first}").json()["queue"] is None
    assert api.http.get(f"/api/v1/jobs/{second}").json()["queue"]["position"] == 0


def test_an_empty_queue(api: Api) -> None:
    body = api.http.get("/api/v1/queue").json()
    assert body == {
        "data": [],
        "summary": {"total": 0, "by_priority": {"high": 0, "normal": 0, "low": 0}},
    }


def test_with_auth_reads_a_user_sees_only_its_own_jobs_in_line(private: Api) -> None:
    bobs = submit(private, spec(), BOB)
    alices = submit(private, spec(priority="high"), ALICE)
    admins = submit(private, spec(priority="low"), ROOT)
    for job_id in (bobs, alices, admins):
        private.store.set_phase(job_id, "waiting_for_workers", message="waiting for workers")

    assert private.http.get("/api/v1/queue").status_code == 401
    mine = private.http.get("/api/v1/queue", headers=BOB).json()
    everyone = private.http.get("/api/v1/queue", headers=ROOT).json()
    alice = private.http.get("/api/v1/queue", headers=ALICE).json()

    assert [(j["id"], j["owner"], j["position"]) for j in mine["data"]] == [(bobs, "bob", 1)]
    assert mine["summary"] == {"total": 1, "by_priority": {"high": 0, "normal": 1, "low": 0}}
    assert [j["id"] for j in alice["data"]] == [alices]
    assert [j["id"] for j in everyone["data"]] == [alices, bobs, admins]
    assert everyone["summary"]["total"] == 3
    assert private.http.get(f"/api/v1/jobs/{bobs}", headers=BOB).json()["queue"]["position"] == 1
    assert private.http.get(f"/api/v1/jobs/{alices}", headers=BOB).status_code == 404
