"""A worker that dies and comes back under the same id (a restarted container or pod)
is a new incarnation: the dead one's task goes back to the queue at once, and the job
counts one loss and the return. Real processes, real Redis, no Docker."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chainrule.cli.stack import LocalStack
from tests.support.examples import example_spec as spec
from tests.support.jobs import metric_series, run_job_to_end, wait_for_step
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(240)
# a lease far longer than the restart: only the new incarnation can free the task
LONG_LEASE = {"CHAINRULE_WORKER_LEASE_S": "60"}


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[LocalStack]:
    """One worker started normally; the test adds the second (the one it restarts)."""
    with running_stack(redis_url, tmp_path, workers=0, extra_env=LONG_LEASE) as running:
        running.add_worker()
        yield running


def job_view(gateway: str, job_id: str) -> dict[str, Any]:
    return dict(httpx.get(f"{gateway}/api/v1/jobs/{job_id}", timeout=10).json())


def submit(gateway: str, steps: int) -> str:
    job_spec = spec("digits", training={"workers": 2, "steps": steps, "eval_every": 100})
    reply = httpx.post(f"{gateway}/api/v1/jobs", json=job_spec, timeout=10)
    assert reply.status_code == 201, reply.text
    return str(reply.json()["id"])


def wait_for_workers(gateway: str, job_id: str, want: dict[str, int], timeout: float) -> None:
    """Until the job's ``workers`` figures are ``want`` (fails with the last ones seen)."""
    deadline = time.monotonic() + timeout
    seen: Any = None
    while time.monotonic() < deadline:
        seen = job_view(gateway, job_id).get("workers")
        if seen == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} workers stayed {seen}, expected {want}")


def assert_trained_through_the_restart(gateway: str, job_id: str, steps: int) -> None:
    job = run_job_to_end(gateway, job_id, timeout=150)
    assert job["status"] == "SUCCEEDED", job
    assert job["step"] == steps
    points = metric_series(gateway, job_id)
    assert [p["step"] for p in points] == list(range(1, steps + 1))  # θ's version = steps
    assert job["workers"]["lost"] == 1, job["workers"]  # one incarnation lost...
    assert points[-1]["active_workers"] == 2, points[-20:]  # ...and the return serving it


def test_a_worker_sigkilled_and_restarted_under_its_id_does_not_hang_the_job(
    stack: LocalStack,
) -> None:
    restarted = stack.add_worker()
    job_id = submit(stack.gateway_url, steps=1200)
    wait_for_step(stack.gateway_url, job_id, 300)
    wait_for_workers(stack.gateway_url, job_id, {"active": 2, "lost": 0}, timeout=10)
    stack.restart(restarted)  # SIGKILL mid-step, back under the same id within a second
    wait_for_workers(stack.gateway_url, job_id, {"active": 2, "lost": 1}, timeout=30)
    assert_trained_through_the_restart(stack.gateway_url, job_id, 1200)


def test_a_task_held_by_a_worker_killed_before_its_push_goes_to_a_live_worker(
    stack: LocalStack,
) -> None:
    """The worker to be restarted sleeps 600 s on each task before computing it: it is
    killed while it holds a task that nobody computes, and comes back without the delay."""
    restarted = stack.add_worker({"CHAINRULE_TASK_DELAY_S": "600"})
    job_id = submit(stack.gateway_url, steps=200)
    deadline = time.monotonic() + 60
    while not any(
        w["state"] == "busy" and w["id"].endswith(restarted)
        for w in httpx.get(f"{stack.gateway_url}/api/v1/workers", timeout=10).json()["data"]
    ):
        assert time.monotonic() < deadline, "the slow worker never took a task"
        time.sleep(0.1)
    assert job_view(stack.gateway_url, job_id)["step"] == 0  # the step waits for its task
    stack.restart(restarted, env={})  # back without the delay
    assert_trained_through_the_restart(stack.gateway_url, job_id, 200)


def test_peers_of_another_protocol_version_are_refused_naming_both(stack: LocalStack) -> None:
    """A worker or scheduler of another release must not half-understand this one."""
    import grpc
    import numpy as np

    from chainrule.rpc import PROTOCOL_VERSION
    from chainrule.rpc.auth import SCHEDULER, WORKER
    from chainrule.rpc.server import channel
    from chainrule.rpc.v1 import paramserver_pb2, scheduler_pb2, scheduler_pb2_grpc

    scheduler = scheduler_pb2_grpc.SchedulerStub(
        channel(f"127.0.0.1:{stack.config.scheduler_port}", stack.credentials(WORKER))
    )
    old = scheduler_pb2.RegisterRequest(worker_id="old-worker", host="h", incarnation="x")
    with pytest.raises(grpc.RpcError) as refused:
        scheduler.Register(old, timeout=5)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"speaks chainrule protocol {PROTOCOL_VERSION}" in refused.value.details()
    assert "old-worker" not in httpx.get(f"{stack.gateway_url}/api/v1/workers").text

    ps = channel(stack.paramserver_target("paramserver"), stack.credentials(SCHEDULER))
    create = ps.unary_unary(
        "/chainrule.rpc.v1.ParamServer/CreateJob",
        request_serializer=paramserver_pb2.CreateJobRequest.SerializeToString,
        response_deserializer=paramserver_pb2.CreateJobReply.FromString,
    )
    from chainrule.rpc import codec

    request = paramserver_pb2.CreateJobRequest(
        job_id="old-job",
        params=codec.encode_all({"W": np.zeros(2, np.float32)}),
        protocol=PROTOCOL_VERSION + 1,
    )
    with pytest.raises(grpc.RpcError) as newer:
        create(request, timeout=5)
    assert newer.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"the caller speaks {PROTOCOL_VERSION + 1}" in newer.value.details()

    stack.add_worker()  # the stack's own workers (of this version) train as usual
    job = run_job_to_end(stack.gateway_url, submit(stack.gateway_url, 20))
    assert job["status"] == "SUCCEEDED", job
