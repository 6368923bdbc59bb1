"""Many jobs on one pool of workers (scheduler/sharing.py), real processes: sync jobs are
gangs that wait PENDING ``queued`` with their place in line rather than RUNNING without
progress; async jobs time-share the workers."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from chainrule.cli.stack import LocalStack
from tests.support.examples import example_spec
from tests.support.jobs import metric_series, run_job_to_end, wait_for_step
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


def final_theta(gateway: str, job_id: str) -> dict[str, np.ndarray]:
    reply = httpx.get(f"{gateway}/api/v1/jobs/{job_id}/model", timeout=30)
    assert reply.status_code == 200, reply.text
    with np.load(io.BytesIO(reply.content)) as npz:
        return {k: npz[k] for k in npz.files if k.startswith("dense")}


def test_a_high_priority_job_preempts_and_the_preempted_one_resumes_exactly(
    stack: LocalStack,
) -> None:
    gateway = stack.gateway_url
    low_spec = example_spec("digits", training={"workers": 2, "steps": 600, "seed": 7})
    high_spec = example_spec("xor", training={"workers": 2, "steps": 300, "priority": "high"})
    low = submit(gateway, low_spec)
    wait_for_step(gateway, low, 50)
    high = submit(gateway, high_spec)
    at_submit = httpx.get(f"{gateway}/api/v1/jobs/{low}", timeout=10).json()["step"]
    deadline = time.monotonic() + 60
    while httpx.get(f"{gateway}/api/v1/jobs/{high}", timeout=10).json()["status"] != "RUNNING":
        assert time.monotonic() < deadline, "the high-priority job did not start"
        time.sleep(0.05)
    parked = httpx.get(f"{gateway}/api/v1/jobs/{low}", timeout=10).json()
    advanced = parked["step"] - at_submit
    assert advanced < 20, parked
    assert (parked["status"], parked["phase"]) == ("PENDING", "preempted"), parked

    assert run_job_to_end(gateway, high, timeout=120)["status"] == "SUCCEEDED"
    done = run_job_to_end(gateway, low, timeout=180)
    assert done["status"] == "SUCCEEDED" and done["step"] == 600, done
    stored = httpx.get(f"{gateway}/api/v1/jobs/{low}/metrics", params={"last": 10000}, timeout=10)
    assert stored.json()["count"] == 600  # one point per step: no gap, no repeat
    assert [p["step"] for p in metric_series(gateway, low)] == list(range(1, 601))

    alone = run_job_to_end(gateway, submit(gateway, low_spec), timeout=180)
    assert alone["status"] == "SUCCEEDED"
    preempted, uninterrupted = final_theta(gateway, low), final_theta(gateway, alone["id"])
    worst = max(float(np.max(np.abs(preempted[k] - uninterrupted[k]))) for k in preempted)
    print(f"preempted at step {parked['step']} ({advanced} steps after the high job's "
          f"submission); max |Δθ| against the uninterrupted run: {worst:.2e}")  # fmt: skip
    for k in uninterrupted:
        np.testing.assert_allclose(preempted[k], uninterrupted[k], rtol=1e-5, err_msg=k)
