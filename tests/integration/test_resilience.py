"""Training that survives the real world, on real processes and a real Redis: async and
bounded-staleness modes, workers that die, join or straggle."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from chainrule.cli.stack import LocalStack
from chainrule.scheduler.dispatch import MAX_TASK_ATTEMPTS
from chainrule.store.blobs import dataset_key
from tests.support.examples import example_spec as spec
from tests.support.jobs import (
    metric_series,
    run_job,
    run_job_to_end,
    submit_and_wait_for_step,
    wait_for_step,
)
from tests.support.stack import FAST_FAILOVER, running_stack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def make_stack(redis_url: str, tmp_path: Path) -> Iterator[Any]:
    """Start stacks on free ports with the given workers; all stop after the test."""
    with ExitStack() as stacks:
        started = 0

        def start(workers: int) -> LocalStack:
            nonlocal started
            log_dir = tmp_path / f"stack{started}"
            started += 1
            return stacks.enter_context(
                running_stack(redis_url, log_dir, workers=workers, extra_env=FAST_FAILOVER)
            )

        yield start


def digits(**training: Any) -> dict[str, Any]:
    # stops at the target; the cap leaves room for a loaded machine. Momentum 0.5, not
    # the example's 0.9: with 3 asynchronous workers, momentum 0.9 at lr 0.1 took 100 to
    # 1,900 steps to reach the target and, in 2 of about 14 runs (on the code before and
    # after the shared-memory transport alike), never did in 6,000 (stuck at 0.82, or
    # diverged to 0.09): staleness acts as extra momentum. 0.5 took 150-450 steps.
    base = {
        "steps": 6000,
        "eval_every": 50,
        "target": {"eval_accuracy": 0.95},
        "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.5},
    }
    return spec("digits", training={**base, **training})


@pytest.mark.parametrize(
    "training",
    [
        {"mode": "async", "staleness_lr": "inverse"},
        {"mode": "ssp", "max_staleness": 2},
    ],
    ids=["async", "ssp"],
)
def test_async_and_ssp_reach_the_target_on_digits(
    make_stack: Any, training: dict[str, Any]
) -> None:
    stack = make_stack(3)
    job = run_job(stack.gateway_url, digits(workers=3, **training))
    assert job["status"] == "SUCCEEDED", job
    assert job["latest_metrics"]["eval_accuracy"] >= 0.95
    assert "target reached" in job["message"]
    points = metric_series(stack.gateway_url, job["id"])
    assert [p["step"] for p in points] == list(range(1, len(points) + 1))  # one per gradient
    assert all(p["staleness"] is not None and p["staleness"] >= 0 for p in points)
    assert max(p["staleness"] for p in points) >= 1  # three workers do race


def test_ssp_rejects_and_counts_gradients_beyond_max_staleness(make_stack: Any) -> None:
    stack = make_stack(3)
    job = run_job(
        stack.gateway_url,
        spec(training={"mode": "ssp", "max_staleness": 0, "workers": 3, "steps": 150}),
    )
    assert job["status"] == "SUCCEEDED", job
    points = metric_series(stack.gateway_url, job["id"])
    assert all(p["staleness"] == 0 for p in points)  # nothing staler was applied
    assert points[-1]["rejected_stale"] > 0, points[-1]
    counts = [p["rejected_stale"] for p in points]
    assert counts == sorted(counts)  # a running count


def test_a_sigkilled_worker_costs_only_its_task_and_a_new_one_gets_work(make_stack: Any) -> None:
    stack = make_stack(3)
    job_spec = spec(training={"workers": 3, "steps": 1500})
    job_id = submit_and_wait_for_step(stack.gateway_url, job_spec, 100)
    at_kill = metric_series(stack.gateway_url, job_id)[-1]["step"]  # all steps before it had 3
    stack.processes["worker-0"].kill()
    wait_for_step(stack.gateway_url, job_id, at_kill + 200)
    newcomer = stack.add_worker()
    job = run_job_to_end(stack.gateway_url, job_id)
    assert job["status"] == "SUCCEEDED", job
    points = metric_series(stack.gateway_url, job_id)
    assert [p["step"] for p in points] == list(range(1, 1501))  # θ's version counts steps
    active = [p["active_workers"] for p in points]
    # before the kill three workers serve the steps (a free worker may take a slot whose
    # worker is late, so now and then a step is served by two)
    assert active[:at_kill].count(3) >= 0.8 * at_kill, (at_kill, active[: at_kill + 20])
    assert 2 in active[at_kill:]  # the metrics show the worker leaving...
    assert active[-1] == 3, active[-20:]  # ...and the newcomer doing its share
    assert points[-1]["reassigned"] >= 1  # the dead worker's task went to another
    assert stack.processes[newcomer].poll() is None


@pytest.mark.parametrize(
    ("training", "counter"),
    [({"step_timeout_s": 0.5}, "reassigned"), ({"quorum": 1}, "dropped_late")],
    ids=["timeout", "quorum"],
)
def test_a_straggler_does_not_stall_a_sync_job(
    make_stack: Any, training: dict[str, Any], counter: str
) -> None:
    """One of two workers takes 60 s per task. Waiting for it, 40 steps would take 40
    minutes and the test's 5-minute timeout would fail it; with a step timeout or a
    quorum the fast worker carries the job."""
    stack = make_stack(1)
    stack.add_worker({"CHAINRULE_TASK_DELAY_S": "60"})
    job = run_job(stack.gateway_url, spec(training={"workers": 2, "steps": 40, **training}))
    assert job["status"] == "SUCCEEDED", job
    assert metric_series(stack.gateway_url, job["id"])[-1][counter] >= 1


def test_a_task_three_times_longer_than_the_lease_is_not_reassigned(make_stack: Any) -> None:
    """Workers send heartbeats while they compute: a 9 s task under a 3 s lease
    (FAST_FAILOVER) keeps its worker, and nobody computes it twice."""
    stack = make_stack(0)
    for _ in range(2):
        stack.add_worker({"CHAINRULE_TASK_DELAY_S": "9"})
    job = run_job(stack.gateway_url, spec(training={"workers": 2, "steps": 2}), timeout=120)
    assert job["status"] == "SUCCEEDED", job
    points = metric_series(stack.gateway_url, job["id"])
    assert [p["step"] for p in points] == [1, 2]
    assert points[-1]["reassigned"] == 0
    assert job["workers"]["lost"] == 0


def test_a_task_that_kills_every_worker_that_takes_it_fails_the_job(make_stack: Any) -> None:
    """The out-of-memory killer's pattern: the worker holding the task dies without a
    word, the task goes to the next, which dies too. After MAX_TASK_ATTEMPTS lost
    holders the job FAILS with a reason naming them, instead of staying RUNNING while
    every worker dies in turn. (Here the test kills each holder; its task takes 600 s.)"""
    stack = make_stack(0)
    for _ in range(MAX_TASK_ATTEMPTS + 1):
        stack.add_worker({"CHAINRULE_TASK_DELAY_S": "600"})
    reply = httpx.post(
        f"{stack.gateway_url}/api/v1/jobs", json=spec(training={"workers": 1}), timeout=10
    )
    job_id = reply.json()["id"]
    killed: list[str] = []
    for _ in range(MAX_TASK_ATTEMPTS):
        holder = _holder(stack, job_id, exclude=killed, timeout=60)
        stack.processes[holder.removeprefix(f"{socket.gethostname()}-")].kill()
        killed.append(holder)
    job = run_job_to_end(stack.gateway_url, job_id, timeout=60)
    assert job["status"] == "FAILED", job
    reason = job["failure_reason"]
    assert reason.startswith(f"step 0 could not be computed in {MAX_TASK_ATTEMPTS} attempts")
    for worker in killed:
        assert f"worker {worker}: lost while it held the task" in reason


def _holder(stack: LocalStack, job_id: str, exclude: list[str], timeout: float) -> str:
    """The id of the worker busy with ``job_id`` (not one in ``exclude``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = httpx.get(f"{stack.gateway_url}/api/v1/workers", timeout=10).json()["data"]
        busy = [
            w["id"]
            for w in workers
            if w["state"] == "busy" and w["current_job"] == job_id and w["id"] not in exclude
        ]
        if busy:
            return str(busy[0])
        time.sleep(0.2)
    raise AssertionError(f"no worker took job {job_id}'s task within {timeout:g} s")


def test_a_task_that_raises_on_every_worker_fails_the_job_naming_the_error(
    make_stack: Any, redis_url: str
) -> None:
    """The job's prepared data vanishes from Redis before any worker has read it: each
    worker that takes the task reports the error, the task is retried on another, and
    after MAX_TASK_ATTEMPTS the job FAILS naming the error and the workers."""
    stack = make_stack(0)
    for _ in range(MAX_TASK_ATTEMPTS):
        stack.add_worker({"CHAINRULE_TASK_DELAY_S": "2"})  # reads the data 2 s in
    job_id = httpx.post(
        f"{stack.gateway_url}/api/v1/jobs", json=spec(training={"workers": 1}), timeout=10
    ).json()["id"]
    key = dataset_key(stack.config.key_prefix, job_id)
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 30
    while not client.delete(key):  # as soon as the scheduler has written it
        assert time.monotonic() < deadline, "the job's data was never prepared"
        time.sleep(0.01)
    job = run_job_to_end(stack.gateway_url, job_id, timeout=60)
    assert job["status"] == "FAILED", job
    reason = job["failure_reason"]
    assert reason.startswith(f"step 0 could not be computed in {MAX_TASK_ATTEMPTS} attempts")
    assert reason.count(f"nothing stored at '{key}'") == MAX_TASK_ATTEMPTS
    assert len(set(re.findall(r"worker (\S+): ", reason))) == MAX_TASK_ATTEMPTS, reason
