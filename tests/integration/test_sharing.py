"""Many jobs on one pool of workers (scheduler/sharing.py), real processes: sync jobs are
gangs that wait PENDING ``queued`` with their place in line rather than RUNNING without
progress; async jobs time-share the workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from chainrule.cli.stack import LocalStack
from tests.support.examples import example_spec
from tests.support.jobs import run_job_to_end
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[LocalStack]:
    with running_stack(redis_url, tmp_path, workers=2) as running:
        yield running


def submit(gateway: str, spec: dict[str, object]) -> str:
    reply = httpx.post(f"{gateway}/api/v1/jobs", json=spec, timeout=10)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def test_three_sync_jobs_on_two_workers_queue_instead_of_starving(stack: LocalStack) -> None:
    gateway = stack.gateway_url
    jobs = [
        submit(gateway, example_spec("digits", training={"workers": n, "steps": 300}))
        for n in (2, 1, 1)
    ]
    stalled = dict.fromkeys(jobs, 0.0)  # the longest time RUNNING without a new step
    last = {j: (None, time.monotonic()) for j in jobs}  # (step, since) while RUNNING
    queued_messages: set[str] = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        states = [httpx.get(f"{gateway}/api/v1/jobs/{j}", timeout=10).json() for j in jobs]
        now = time.monotonic()
        for job in states:
            if job["status"] == "PENDING" and job["phase"] == "queued" and job["message"]:
                queued_messages.add(job["message"])
            if job["status"] != "RUNNING":
                last[job["id"]] = (None, now)
                continue
            step, since = last[job["id"]]
            if step != job["step"]:
                last[job["id"]] = (job["step"], now)
            else:
                stalled[job["id"]] = max(stalled[job["id"]], now - since)
        if all(j["status"] in ("SUCCEEDED", "FAILED", "STOPPED") for j in states):
            break
        time.sleep(0.25)
    ended = [run_job_to_end(gateway, j, timeout=5) for j in jobs]
    print(f"longest RUNNING without progress: {[round(s, 1) for s in stalled.values()]} s;"
          f" queued said: {sorted(queued_messages)}")  # fmt: skip
    assert [j["status"] for j in ended] == ["SUCCEEDED"] * 3, ended
    assert max(stalled.values()) < 5.0, stalled
    assert "waiting for 1 worker slot; 0 free; 0 jobs ahead" in queued_messages
    assert "waiting for 1 worker slot; 0 free; 1 job ahead" in queued_messages


def test_six_async_jobs_on_two_workers_share_them(stack: LocalStack) -> None:
    gateway = stack.gateway_url
    spec = example_spec("xor", training={"mode": "async", "workers": 1, "steps": 1_000_000})
    jobs = [submit(gateway, {**spec, "name": f"share-{i}"}) for i in range(6)]
    try:
        deadline = time.monotonic() + 60
        while not all(
            httpx.get(f"{gateway}/api/v1/jobs/{j}", timeout=10).json()["status"] == "RUNNING"
            for j in jobs
        ):
            assert time.monotonic() < deadline, "the six jobs did not all start"
            time.sleep(0.2)
        first = [httpx.get(f"{gateway}/api/v1/jobs/{j}", timeout=10).json()["step"] for j in jobs]
        time.sleep(30)
        then = [httpx.get(f"{gateway}/api/v1/jobs/{j}", timeout=10).json()["step"] for j in jobs]
    finally:
        for j in jobs:
            httpx.post(f"{gateway}/api/v1/jobs/{j}/stop", timeout=10)
    steps = [b - a for a, b in zip(first, then, strict=True)]  # equal tasks: steps ∝ task-s
    print(f"steps of the six async jobs over 30 s: {steps}")
    assert min(steps) >= 0.6 * max(steps), steps
    for j in jobs:
        assert run_job_to_end(gateway, j, timeout=60)["status"] == "STOPPED"
