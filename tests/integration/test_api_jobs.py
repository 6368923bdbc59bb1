"""The job routes of the real gateway process over loopback HTTP, with the real Redis:
idempotent submission, paged listing, the job detail, stop and delete."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from chainrule import __version__
from chainrule.spec import JobSpec
from chainrule.store.checkpoints import Checkpoint, CheckpointStore
from chainrule.store.diagnostics import DiagnosticsStore
from tests.support.api import Api, point, running_gateway, running_job, submit
from tests.support.examples import example_spec

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_gateway(redis_url, tmp_path_factory.mktemp("gateway")) as gateway:
        yield gateway


def missing_id() -> str:
    return uuid.uuid4().hex[:16]


# -- submit -----------------------------------------------------------------------------


def test_a_submission_id_makes_the_post_idempotent(api: Api) -> None:
    sid = f"nightly-{uuid.uuid4().hex[:8]}"
    first = api.http.post("/api/v1/jobs", json={**example_spec(), "submission_id": sid})
    again = api.http.post("/api/v1/jobs", json={**example_spec(), "submission_id": sid})

    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["submission_id"] == sid
    assert again.headers["location"].endswith(f"/api/v1/jobs/{first.json()['id']}")
    entries: list[Any] = api.client.xrange(api.store.queue_key) or []
    queued = [fields["job_id"] for _, fields in entries]
    assert queued.count(first.json()["id"]) == 1  # queued once


def test_the_same_submission_id_with_another_spec_is_409(api: Api) -> None:
    sid = f"run-{uuid.uuid4().hex[:8]}"
    created = submit(api, submission_id=sid)
    other = example_spec("xor", training={"steps": 10})
    count = api.store.count()

    reply = api.http.post("/api/v1/jobs", json={**other, "submission_id": sid})

    assert reply.status_code == 409
    assert (
        f"submission_id '{sid}' was already used for job {created['id']}" in reply.json()["detail"]
    )
    assert api.store.count() == count


@pytest.mark.parametrize("bad", ["", "x" * 65, "a b", "semi;colon", "ü"])
def test_a_malformed_submission_id_is_422(api: Api, bad: str) -> None:
    reply = api.http.post("/api/v1/jobs", json={**example_spec(), "submission_id": bad})
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "submission_id"]


def test_racing_submissions_with_one_id_make_one_job(api: Api) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import httpx

    sid = f"race-{uuid.uuid4().hex[:8]}"
    body = {**example_spec(), "submission_id": sid}

    def post(_: int) -> tuple[int, str]:
        with httpx.Client(base_url=api.base_url, timeout=10) as http:
            reply = http.post("/api/v1/jobs", json=body)
            return reply.status_code, reply.json()["id"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(8)))

    assert sorted(code for code, _ in results) == [200] * 7 + [201]
    assert len({job_id for _, job_id in results}) == 1


LIMIT = 1024 * 1024  # CHAINRULE_MAX_REQUEST_BYTES's default


def _keys(api: Api) -> set[str]:
    return set(api.client.scan_iter(match=f"{api.prefix}:*"))


def test_a_job_spec_over_the_request_limit_is_413_and_stores_nothing(api: Api) -> None:
    """A huge spec (here a 2 MB name) is refused from its Content-Length, before the
    gateway reads it, with the limit and the setting that raises it."""
    before = _keys(api)
    reply = api.http.post("/api/v1/jobs", json={**example_spec(), "name": "x" * (2 * LIMIT)})
    assert reply.status_code == 413
    assert reply.json()["detail"] == (
        f"the request body is larger than the limit of {LIMIT} bytes (CHAINRULE_MAX_REQUEST_BYTES)"
    )
    assert _keys(api) == before


def test_a_spec_needing_more_memory_than_allowed_is_422_and_stores_nothing(api: Api) -> None:
    """Valid, but ~160 GB in one task: refused at admission, naming the field, the
    estimate and the limit (admission.py); the gateway stays healthy."""
    before = _keys(api)
    oversized = example_spec(
        dataset={"name": "xor", "n_samples": 1_000_000, "holdout": 0.9},
        model={"layers": [2] + [8192, 1] * 16},
        training={"batch_size": 65536},
    )
    reply = api.http.post("/api/v1/jobs", json=oversized)
    assert reply.status_code == 422, reply.text
    [error] = reply.json()["detail"]
    assert error["loc"] == ["body", "training", "batch_size"] and error["input"] == 65536
    assert error["type"] == "too_much_memory"
    assert "needs about 163,865 MiB of memory" in error["msg"]
    assert "the limit is 2,048 MiB (CHAINRULE_MAX_TASK_MEMORY_MB)" in error["msg"]
    assert _keys(api) == before
    assert api.http.get("/readyz").status_code == 200


def test_a_streamed_body_without_a_length_is_cut_off_at_the_limit(api: Api) -> None:
    """Chunked (no Content-Length): counted as it arrives, refused once past the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"name": "'
        for _ in range(64):  # 8 MB if it were all read
            yield b"x" * (128 * 1024)
        yield b'"}'

    before = _keys(api)
    reply = api.http.post(
        "/api/v1/jobs", content=chunks(), headers={"content-type": "application/json"}
    )
    assert reply.status_code == 413
    assert "larger than the limit of 1048576 bytes" in reply.json()["detail"]
    assert _keys(api) == before


def test_a_predict_request_may_be_larger_than_a_job_spec(api: Api) -> None:
    """Predict carries rows, like an upload: a 2 MB one passes the body limit (and is
    then 404, for a job that does not exist)."""
    rows = [[0.5] * 100] * 4000  # ~2 MB of JSON
    reply = api.http.post(f"/api/v1/jobs/{missing_id()}/predict", json={"rows": rows})
    assert reply.status_code == 404, reply.text


# -- list -------------------------------------------------------------------------------


def test_listing_pages_through_every_job_once_even_while_jobs_arrive(api: Api) -> None:
    mine = {submit(api)["id"] for _ in range(5)}
    seen: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"page_token": token} if token else {})
        page = api.http.get("/api/v1/jobs", params=params).json()
        seen += [job["id"] for job in page["data"]]
        submit(api)  # a newer job: must not shift the pages after this one
        token = page["next_page_token"]
        if token is None:
            break
        assert len(page["data"]) == 2

    assert len(seen) == len(set(seen)) and mine <= set(seen)
    assert page["count"] >= len(seen)
    created = [api.store.get(i).created_at for i in seen]  # type: ignore[union-attr]
    assert created == sorted(created, reverse=True)


def test_listing_filters_by_status(api: Api) -> None:
    running = running_job(api)
    stopped = submit(api)["id"]
    api.store.set_status(stopped, "STOPPED")

    by_status = {
        s: [j["id"] for j in api.http.get("/api/v1/jobs", params={"status": s, "limit": 200}).json()["data"]]
        for s in ("PENDING", "RUNNING", "STOPPED")
    }  # fmt: skip
    reply = api.http.get("/api/v1/jobs", params={"status": "RUNNING"}).json()

    assert running in by_status["RUNNING"] and running not in by_status["PENDING"]
    assert stopped in by_status["STOPPED"] and stopped not in by_status["PENDING"]
    assert all(job["status"] == "RUNNING" for job in reply["data"])
    assert reply["count"] == api.client.zcard(f"{api.prefix}:jobs:status:RUNNING")


@pytest.mark.parametrize(
    ("params", "where", "says"),
    [
        ({"status": "DONE"}, "status", "PENDING"),
        ({"limit": 0}, "limit", "greater than or equal to 1"),
        ({"limit": 201}, "limit", "less than or equal to 200"),
        ({"page_token": "bm90LWEtdG9rZW4"}, "page_token", "not one this API handed out"),
        ({"page_token": "%%%"}, "page_token", "not one this API handed out"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_parameter(
    api: Api, params: dict[str, Any], where: str, says: str
) -> None:
    reply = api.http.get("/api/v1/jobs", params=params)
    assert reply.status_code == 422
    error = reply.json()["detail"][0]
    assert error["loc"] == ["query", where] and says in error["msg"]


# -- detail -----------------------------------------------------------------------------


def test_the_detail_has_progress_eta_workers_and_transitions(api: Api) -> None:
    job_id = submit(api)["id"]
    pending = api.http.get(f"/api/v1/jobs/{job_id}").json()
    api.store.set_status(job_id, "RUNNING", phase="training")
    api.store.set_workers(job_id, active=2, lost=1)
    now = time.time()
    for step in (10, 20, 30, 40):  # 10 steps every 2 s
        api.store.append_metrics(job_id, point(step, time=now - 8 + (step - 10) / 5))
    api.store.set_progress(job_id, 40)

    job = api.http.get(f"/api/v1/jobs/{job_id}").json()

    assert pending["progress"] == {
        "step": 0,
        "total_steps": 2000,
        "percent": 0.0,
        "eta_seconds": None,
    }
    assert pending["workers"] == {"active": 0, "lost": 0} and pending["status_transitions"]
    assert job["progress"]["step"] == 40 and job["progress"]["percent"] == 2.0
    assert job["progress"]["eta_seconds"] == pytest.approx((2000 - 40) / 5, rel=1e-3)
    assert job["workers"] == {"active": 2, "lost": 1}
    assert job["latest_metrics"]["step"] == 40 and job["stop_requested"] is False
    assert [t["status"] for t in job["status_transitions"]] == ["PENDING", "RUNNING"]
    assert JobSpec.model_validate(job["spec"]) == JobSpec.model_validate(example_spec())
    for key in ("id", "name", "status", "phase", "message", "failure_reason", "created_at",
                "started_at", "ended_at"):  # fmt: skip
        assert key in job


def test_an_ended_job_has_no_eta(api: Api) -> None:
    job_id = running_job(api)
    for step in (1, 2):
        api.store.append_metrics(job_id, point(step))
    api.store.set_status(job_id, "FAILED", reason="diverged: loss became nan at step 2")

    job = api.http.get(f"/api/v1/jobs/{job_id}").json()

    assert job["progress"]["eta_seconds"] is None
    assert job["failure_reason"] == "diverged: loss became nan at step 2"
    assert job["ended_at"] is not None


# -- stop -------------------------------------------------------------------------------


def test_stop_ends_a_pending_job_at_once(api: Api) -> None:
    job_id = submit(api)["id"]

    reply = api.http.post(f"/api/v1/jobs/{job_id}/stop")

    assert reply.status_code == 200
    assert (reply.json()["status"], reply.json()["phase"]) == ("STOPPED", "stopped")
    assert reply.json()["ended_at"] is not None


def test_stop_asks_the_scheduler_to_end_a_running_job(api: Api) -> None:
    job_id = running_job(api)
    assert api.store.stop_requested(job_id) is False

    first = api.http.post(f"/api/v1/jobs/{job_id}/stop").json()
    again = api.http.post(f"/api/v1/jobs/{job_id}/stop").json()

    assert (first["status"], first["phase"], first["stop_requested"]) == (
        "RUNNING",
        "stopping",
        True,
    )
    assert api.store.stop_requested(job_id) is True
    assert len(again["status_transitions"]) == len(first["status_transitions"])  # no-op
    api.store.set_status(job_id, "STOPPED", phase="ended")  # what the scheduler then does
    assert api.http.get(f"/api/v1/jobs/{job_id}").json()["status"] == "STOPPED"


def test_stop_leaves_an_ended_job_as_it_is(api: Api) -> None:
    job_id = running_job(api)
    ended = api.store.set_status(job_id, "SUCCEEDED")

    reply = api.http.post(f"/api/v1/jobs/{job_id}/stop")

    assert reply.status_code == 200 and reply.json()["status"] == "SUCCEEDED"
    assert len(reply.json()["status_transitions"]) == len(ended.status_transitions)


# -- delete -----------------------------------------------------------------------------


def test_deleting_an_ended_job_removes_everything_it_owns(api: Api) -> None:
    sid = f"del-{uuid.uuid4().hex[:8]}"
    job_id = submit(api, submission_id=sid)["id"]
    api.store.set_status(job_id, "RUNNING")
    api.store.append_metrics(job_id, point(1))
    DiagnosticsStore(api.client, api.prefix).append(job_id, 1, [{"layer": "dense1"}])
    ckpt = Checkpoint(params={}, opt_state={}, version=1, optimizer="sgd")
    for shard in ("0", "1"):
        CheckpointStore(api.blobs, api.prefix, shard).save(job_id, ckpt)
    for blob in ("model", "data", "preprocess"):
        api.blobs.set(f"{api.prefix}:job:{job_id}:{blob}", b"bytes")
    api.store.set_status(job_id, "SUCCEEDED")
    # 8 + per shard its checkpoint and the hash of the versions it keeps
    assert len(list(api.client.scan_iter(match=f"{api.prefix}:job:{job_id}*"))) == 12

    reply = api.http.delete(f"/api/v1/jobs/{job_id}")

    assert reply.status_code == 204 and reply.content == b""
    assert list(api.client.scan_iter(match=f"{api.prefix}:job:{job_id}*")) == []
    assert api.client.zscore(api.store.index_key, job_id) is None
    assert api.client.zscore(f"{api.prefix}:jobs:status:SUCCEEDED", job_id) is None
    assert api.client.exists(api.store.submission_key(sid)) == 0
    assert api.http.get(f"/api/v1/jobs/{job_id}").status_code == 404
    assert api.http.delete(f"/api/v1/jobs/{job_id}").status_code == 404
    # the submission_id is free again
    assert (
        api.http.post("/api/v1/jobs", json={**example_spec(), "submission_id": sid}).status_code
        == 201
    )


@pytest.mark.parametrize("status", ["PENDING", "RUNNING"])
def test_deleting_a_live_job_is_409_and_keeps_it(api: Api, status: str) -> None:
    job_id = submit(api)["id"]
    if status == "RUNNING":
        api.store.set_status(job_id, "RUNNING")

    reply = api.http.delete(f"/api/v1/jobs/{job_id}")

    assert reply.status_code == 409
    assert f"job {job_id} is {status}; only an ended job" in reply.json()["detail"]
    assert api.http.get(f"/api/v1/jobs/{job_id}").status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", ""), ("POST", "/stop"), ("DELETE", ""), ("GET", "/metrics"),
     ("GET", "/metrics/loss"), ("GET", "/diagnostics"), ("GET", "/events"),
     ("GET", "/model"), ("POST", "/predict")],
)  # fmt: skip
def test_every_job_route_is_404_for_an_unknown_job(api: Api, method: str, path: str) -> None:
    job_id = missing_id()
    body = {"rows": [[0.0, 0.0]]} if path == "/predict" else None

    reply = api.http.request(method, f"/api/v1/jobs/{job_id}{path}", json=body)

    assert reply.status_code == 404
    assert reply.json() == {"detail": f"no job '{job_id}'"}


# -- the rest ---------------------------------------------------------------------------


def test_version_and_probes(api: Api) -> None:
    assert api.http.get("/api/version").json() == {"version": __version__, "api": "v1"}
    assert api.http.get("/healthz").json() == {"status": "ok", "redis": None}
    assert api.http.get("/readyz").json() == {"status": "ok", "redis": "ok"}


def test_workers_are_listed_as_the_scheduler_wrote_them(api: Api) -> None:
    from chainrule.store.workers import WorkerRegistry

    now = time.time()
    workers: list[dict[str, Any]] = [
        {"id": "w-2", "host": "node-b", "state": "busy", "current_job": "3f9a2c71d04e8b15",
         "last_heartbeat": now, "tasks_done": 12, "incarnation": "5d1e0f3a9b2c4d6e"},
        {"id": "w-1", "host": "node-a", "state": "idle", "current_job": None,
         "last_heartbeat": now - 1, "tasks_done": 0},
        {"id": "w-3", "host": "node-c", "state": "lost", "current_job": None,
         "last_heartbeat": now - 5, "tasks_done": 3},
        {"id": "w-old", "host": "node-d", "state": "lost", "current_job": None,
         "last_heartbeat": now - 600, "tasks_done": 1},
    ]  # fmt: skip
    WorkerRegistry(api.client, api.prefix).write(workers, lost_ttl_s=60)

    listed = api.http.get("/api/v1/workers").json()["data"]

    assert [w["id"] for w in listed] == ["w-1", "w-2", "w-3"]  # w-old: lost too long ago
    assert listed[1] | {"last_heartbeat": None} == workers[0] | {"last_heartbeat": None}
    assert listed[1]["last_heartbeat"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(now)))
    with pytest.raises(ValueError, match="worker state must be one of idle, busy, lost"):
        WorkerRegistry(api.client, api.prefix).write([{**workers[0], "state": "gone"}], 60)
    assert len(api.http.get("/api/v1/workers").json()["data"]) == 3  # nothing written
