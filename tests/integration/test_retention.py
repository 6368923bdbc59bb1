"""Retention of a job's streams against the real Redis: a cap kept by thinning (the first
points, a thinned middle and a recent window stay), reported by the API, and reads of the
most recent points that read only those."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis

from chainrule.store.diagnostics import DiagnosticsStore, diagnostics_key
from chainrule.store.jobs import JobStore
from chainrule.store.thinning import thinned_counts, thinned_key
from tests.integration.api_support import Api, point, running_gateway, running_job

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
