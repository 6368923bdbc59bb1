"""The live event stream (Server-Sent Events) of the real gateway process: events arrive
as they are written, a client that reconnects with Last-Event-ID misses none and gets
none twice, keep-alive pings, and the end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import httpx
import pytest

from tests.support.api import Api, Sse, point, read_sse, running_gateway, submit

pytestmark = pytest.mark.timeout(60)

PING_S = 0.5


@pytest.fixture(scope="module")
def api(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    log_dir = tmp_path_factory.mktemp("gateway")
    with running_gateway(redis_url, log_dir, sse_ping_s=str(PING_S)) as gateway:
        yield gateway


@contextmanager
def events(api: Api, job_id: str, last_event_id: str | None = None) -> Iterator[Iterator[Sse]]:
    """The job's event stream, events only (pings skipped), with a bounded read timeout."""
    headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
    timeout = httpx.Timeout(10.0, read=5.0)
    with api.http.stream(
        "GET", f"/api/v1/jobs/{job_id}/events", headers=headers, timeout=timeout
    ) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"].startswith("text/event-stream")
        yield (e for e in read_sse(reply.iter_lines()) if e.comment is None)


def take(stream: Iterator[Sse], n: int) -> list[Sse]:
    return [next(stream) for _ in range(n)]


def stored_ids(api: Api, job_id: str) -> list[str]:
    entries: list[Any] = api.client.xrange(api.store.events_key(job_id)) or []
    return [entry_id for entry_id, _ in entries]


def test_a_client_that_reconnects_with_last_event_id_misses_nothing(api: Api) -> None:
    job_id = submit(api)["id"]  # event 1: PENDING
    api.store.set_status(job_id, "RUNNING", phase="training")  # 2
    for step in (1, 2, 3):  # 3..5
        api.store.append_metrics(job_id, point(step))

    with events(api, job_id) as stream:
        first = take(stream, 5)
        api.store.append_metrics(job_id, point(4))  # written while the stream is open
        first += take(stream, 1)
    # disconnected: what happens now must come after the reconnect
    api.store.append_metrics(job_id, point(5))
    api.store.set_phase(job_id, "checkpointing", message="saving θ")
    api.store.append_metrics(job_id, point(6))

    with events(api, job_id, last_event_id=first[-1].id) as stream:
        second = take(stream, 3)
        api.store.append_metrics(job_id, point(7))
        api.store.set_status(job_id, "SUCCEEDED", phase="ended", message="done")
        second += list(stream)  # until the server closes the stream after `end`

    received = first + second
    assert [e.id for e in received] == stored_ids(api, job_id)  # none missed, none twice
    assert [e.event for e in received] == [
        "status", "status", "metrics", "metrics", "metrics", "metrics",
        "metrics", "status", "metrics", "metrics", "status", "end"]  # fmt: skip
    metric_steps = [json.loads(e.data)["step"] for e in received if e.event == "metrics"]
    assert metric_steps == [1, 2, 3, 4, 5, 6, 7]
    phases = [json.loads(e.data) for e in received if e.event == "status"]
    assert phases[2] == {"status": "RUNNING", "phase": "checkpointing", "message": "saving θ",
                         "failure_reason": None, "step": 0}  # fmt: skip
    assert phases[-1]["status"] == "SUCCEEDED" and json.loads(received[-1].data) == "SUCCEEDED"


def test_metric_events_carry_the_whole_point(api: Api) -> None:
    job_id = submit(api)["id"]
    api.store.set_status(job_id, "RUNNING")
    api.store.append_metrics(job_id, point(1, loss=float("nan"), eval_accuracy=0.5))
    api.store.set_status(job_id, "FAILED", reason="diverged: loss became nan at step 1")

    with events(api, job_id) as stream:
        received = list(stream)

    metric = json.loads(received[2].data)
    assert metric["loss"] is None and metric["eval_accuracy"] == 0.5 and metric["eval_r2"] is None
    status = json.loads(received[3].data)
    assert status["failure_reason"] == "diverged: loss became nan at step 1"
    assert [e.event for e in received] == ["status", "status", "metrics", "status", "end"]


def test_an_ended_job_replays_everything_then_ends(api: Api) -> None:
    job_id = submit(api)["id"]
    api.store.set_status(job_id, "STOPPED")

    with events(api, job_id) as stream:
        received = list(stream)
    end_id, status_id = str(received[-1].id), str(received[-2].id)
    after_end = api.http.get(f"/api/v1/jobs/{job_id}/events", headers={"Last-Event-ID": end_id})
    after_status = api.http.get(
        f"/api/v1/jobs/{job_id}/events", headers={"Last-Event-ID": status_id}
    )

    assert [e.event for e in received] == ["status", "status", "end"]
    assert all(e.id for e in received)
    assert after_end.status_code == 204  # nothing left: the client should not reconnect
    assert list(read_sse(iter(after_status.text.splitlines())))[-1].event == "end"


def test_metrics_written_after_the_end_are_not_streamed(api: Api) -> None:
    job_id = submit(api)["id"]
    api.store.set_status(job_id, "RUNNING")
    api.store.set_status(job_id, "SUCCEEDED")
    api.store.append_metrics(job_id, point(9))  # a late point: kept in the series only

    with events(api, job_id) as stream:
        received = list(stream)

    assert received[-1].event == "end" and "metrics" not in [e.event for e in received]
    assert api.http.get(f"/api/v1/jobs/{job_id}/metrics").json()["count"] == 1


def test_a_quiet_stream_gets_keep_alive_pings(api: Api) -> None:
    job_id = submit(api)["id"]
    comments: list[str] = []
    started = time.monotonic()
    with api.http.stream("GET", f"/api/v1/jobs/{job_id}/events", timeout=5.0) as reply:
        for entry in read_sse(reply.iter_lines()):
            if entry.comment is not None:
                comments.append(entry.comment)
            if len(comments) == 2:
                break
    elapsed = time.monotonic() - started

    assert comments == ["ping", "ping"]
    assert PING_S * 2 <= elapsed < 5


def test_a_stream_closes_when_its_job_is_deleted(api: Api) -> None:
    job_id = submit(api)["id"]
    with events(api, job_id) as stream:
        take(stream, 1)
        api.store.set_status(job_id, "STOPPED")
        take(stream, 2)  # status, end: the server closes the stream
        assert list(stream) == []
    api.store.delete(job_id)
    assert api.http.get(f"/api/v1/jobs/{job_id}/events").status_code == 404


@pytest.mark.parametrize("bad", ["latest", "12", "1-2-3", "99999999999999999999999-0", "-1-0"])
def test_a_malformed_last_event_id_is_422(api: Api, bad: str) -> None:
    job_id = submit(api)["id"]
    reply = api.http.get(f"/api/v1/jobs/{job_id}/events", headers={"Last-Event-ID": bad})
    assert reply.status_code == 422
    error: dict[str, Any] = reply.json()["detail"][0]
    assert error["loc"] == ["header", "Last-Event-ID"]


def test_many_clients_follow_one_job(api: Api) -> None:
    job_id = submit(api)["id"]
    api.store.set_status(job_id, "RUNNING")
    with ExitStack() as stack:
        streams = [stack.enter_context(events(api, job_id)) for _ in range(5)]
        for stream in streams:
            take(stream, 2)
        api.store.append_metrics(job_id, point(1))
        api.store.set_status(job_id, "SUCCEEDED")
        tails = [[e.event for e in stream] for stream in streams]

    assert tails == [["metrics", "status", "end"]] * 5
