"""One compose stack on this host, as the README runs it: `docker compose up -d --build
--wait`, then 3 workers. On it, one after another (each leaves the stack as it found
it): health, users and file systems; XOR and digits over REST through the published
port; scaling to 5 workers during an async job; a crashed worker and a crashed parameter
server mid-job; a parameter-server outage and a Redis outage as a user sees them. And the
shard override (2 parameter servers, a stack of its own) against the same job on this one.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.support.compose import SCALE, SHARDS_UP, UP, Stack, compose_stack
from tests.support.examples import example_spec

pytestmark = pytest.mark.timeout(600)

SERVICES = ("redis", "paramserver", "scheduler", "worker", "gateway")
CHAINRULE_SERVICES = ("paramserver", "scheduler", "worker", "gateway")


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with compose_stack(UP, SCALE.format(n=3)) as stack:
        yield stack


@pytest.fixture(autouse=True)
def no_job_left_running(stack: Stack) -> Iterator[None]:
    """Whatever a test leaves running (it failed half-way) is stopped before the next one:
    two sync jobs of 3 would share the 3 workers."""
    yield
    jobs = stack.api.get("/api/v1/jobs").json()["data"]
    left = [j["id"] for j in jobs if j["status"] in ("PENDING", "RUNNING")]
    for job_id in left:
        stack.api.post(f"/api/v1/jobs/{job_id}/stop")
    for job_id in left:
        stack.run_to_end(job_id, timeout=60)


def long_sync_digits(steps: int) -> dict[str, Any]:
    return example_spec(
        "digits", training={"workers": 3, "steps": steps, "eval_every": 100, "checkpoint_every": 50}
    )


def assert_every_step_applied_once(stack: Stack, job: dict[str, Any]) -> None:
    """SUCCEEDED, θ's version equal to its steps, and a metric point for every step."""
    assert job["status"] == "SUCCEEDED", job
    assert job["step"] == job["total_steps"], job
    assert sorted(set(stack.steps_recorded(job["id"]))) == list(range(1, job["total_steps"] + 1))


def test_every_service_is_healthy_non_root_and_read_only(stack: Stack) -> None:
    for service in SERVICES:
        replicas = stack.containers(service)
        assert len(replicas) == (3 if service == "worker" else 1), (service, replicas)
        for container in replicas:
            state = stack.inspect(container)["State"]
            assert state["Health"]["Status"] == "healthy", (service, state)
    for service in CHAINRULE_SERVICES:
        info = stack.inspect(stack.containers(service)[0])
        assert info["Config"]["User"] == "10001:10001", service
        assert info["HostConfig"]["ReadonlyRootfs"] is True, service
    probe = (
        "import os\n"
        "print(os.getuid(), os.getgid())\n"
        "try:\n    open('/opt/venv/probe', 'w')\nexcept OSError as e:\n    print(e.errno)\n"
        "open('/tmp/probe', 'w').write('tmp is writable')\n"
    )
    out = stack.compose("exec", "-T", "gateway", "python", "-c", probe)
    uid_gid, errno = out.split("\n")[:2]
    assert uid_gid == "10001 10001"
    assert errno == "30", out  # EROFS: the root file system is read-only


def test_xor_and_digits_train_to_succeeded_over_rest_with_3_workers(stack: Stack) -> None:
    assert stack.api.get("/healthz").status_code == 200
    for name in ("xor", "digits"):  # one after the other: each is a gang of 3 workers
        job_id = stack.submit(example_spec(name, training={"workers": 3}))
        job = stack.run_to_end(job_id)
        assert_every_step_applied_once(stack, job)
        points = stack.points(job_id)
        accuracy = [p["eval_accuracy"] for p in points if p.get("eval_accuracy") is not None]
        assert accuracy[-1] >= (0.99 if name == "xor" else 0.9), (name, accuracy[-5:])
        assert max(p["active_workers"] for p in points) == 3, name
        print(f"{name}: {job['message']}")


def test_scaling_to_5_workers_during_an_async_job(stack: Stack) -> None:
    others = {
        c: stack.inspect(c)["State"]["StartedAt"]
        for service in SERVICES
        for c in stack.containers(service)
    }
    # an async job starts once `training.workers` are live, then takes every free worker
    spec = example_spec("xor", training={"mode": "async", "workers": 3, "steps": 1_000_000})
    job_id = stack.submit(spec)
    try:
        stack.wait(job_id, lambda j: j["workers"]["active"] == 3, "served by 3 workers")
        started = time.monotonic()
        stack.sh(SCALE.format(n=5))
        stack.wait(job_id, lambda j: j["workers"]["active"] == 5, "served by 5 workers", 120)
        print(f"5 active workers {time.monotonic() - started:.0f} s after the scale command")
        for container, started_at in others.items():  # nothing else restarted
            assert stack.inspect(container)["State"]["StartedAt"] == started_at, container
        assert len(stack.containers("worker")) == 5
    finally:
        stack.api.post(f"/api/v1/jobs/{job_id}/stop")
        stack.sh(SCALE.format(n=3))
    assert stack.run_to_end(job_id)["status"] == "STOPPED"


@pytest.mark.parametrize("service", ["worker", "paramserver"])
def test_a_crashed_container_mid_job_and_the_job_succeeds(stack: Stack, service: str) -> None:
    job_id = stack.submit(long_sync_digits(steps=1500))
    stack.wait(job_id, lambda j: j["step"] >= 200, "at step 200")
    stack.crash(stack.containers(service)[0])
    at_crash = stack.job(job_id)["step"]
    job = stack.run_to_end(job_id)
    assert_every_step_applied_once(stack, job)
    assert job["step"] > at_crash
    print(f"{service} crashed at step {at_crash}; {job['message']}")


def test_a_paramserver_outage_is_shown_and_waited_out(stack: Stack) -> None:
    job_id = stack.submit(long_sync_digits(steps=1200))
    stack.wait(job_id, lambda j: j["step"] >= 100 and j["workers"]["active"] == 3, "training")
    stack.compose("stop", "paramserver")
    try:
        job = stack.wait(
            job_id, lambda j: j["phase"] == "waiting_for_paramserver", "waiting", timeout=60
        )
        assert job["status"] == "RUNNING"
        assert "paramserver:50051" in job["message"], job["message"]
        seen = []
        for _ in range(10):  # 15 s into the outage: the counts hold still
            job = stack.job(job_id)
            seen.append((job["phase"], job["workers"]["active"], job["workers"]["lost"]))
            time.sleep(1.5)
        assert set(seen) == {("waiting_for_paramserver", 3, 0)}, seen
        print(f"during the outage: {job['message']!r}")
    finally:
        stack.compose("start", "paramserver")
    job = stack.run_to_end(job_id)
    assert_every_step_applied_once(stack, job)


def test_a_redis_outage_is_a_503_and_waited_out(stack: Stack) -> None:
    job_id = stack.submit(long_sync_digits(steps=1200))
    stack.wait(job_id, lambda j: j["step"] >= 100, "at step 100")
    stack.compose("stop", "redis")
    try:
        reply = stack.api.get(f"/api/v1/jobs/{job_id}")
        assert reply.status_code == 503, reply.text
        assert "Redis is unavailable" in reply.json()["detail"], reply.text
        assert stack.api.get("/readyz").status_code == 503
        time.sleep(5)
    finally:
        stack.compose("start", "redis")
    job = stack.run_to_end(job_id)
    assert_every_step_applied_once(stack, job)


def final_theta(stack: Stack, job_id: str) -> dict[str, np.ndarray]:
    reply = stack.api.get(f"/api/v1/jobs/{job_id}/model")
    assert reply.status_code == 200, reply.text
    with np.load(io.BytesIO(reply.content)) as npz:
        return {k: npz[k] for k in npz.files if k.startswith("dense")}


def test_two_paramserver_shards_train_to_the_same_theta_as_one(stack: Stack) -> None:
    spec = example_spec("digits", training={"workers": 2, "steps": 300, "seed": 3})
    one = stack.run_to_end(stack.submit(spec))
    assert one["status"] == "SUCCEEDED", one
    with compose_stack(SHARDS_UP) as sharded:
        assert len(sharded.containers("paramserver-1")) == 1
        two = sharded.run_to_end(sharded.submit(spec))
        assert_every_step_applied_once(sharded, two)
        theta_two = final_theta(sharded, two["id"])
    theta_one = final_theta(stack, one["id"])
    assert theta_one.keys() == theta_two.keys()
    worst = max(float(np.max(np.abs(theta_one[k] - theta_two[k]))) for k in theta_one)
    print(f"1 vs 2 shards, digits 300 sync steps: max |Δθ| = {worst:.2e}")
    for k in theta_one:
        np.testing.assert_allclose(theta_two[k], theta_one[k], rtol=1e-5, atol=1e-6, err_msg=k)
