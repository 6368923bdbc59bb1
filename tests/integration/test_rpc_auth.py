"""Every gRPC call between the services carries a token of a role (rpc.auth): tried on
a running stack, over TCP and over the same-host sockets, while a job trains."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chainrule.cli.stack import HOST, LocalStack
from chainrule.paramserver.client import ParamServerClient
from chainrule.paramserver.records import PlannedStep
from chainrule.rpc.auth import SCHEDULER, WORKER, Credentials
from chainrule.rpc.server import channel
from chainrule.rpc.v1 import scheduler_pb2 as spb
from chainrule.rpc.v1 import scheduler_pb2_grpc
from tests.support.examples import example_spec as spec
from tests.support.jobs import metric_series, run_job_to_end, submit_and_wait_for_step
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(redis_url, tmp_path_factory.mktemp("s")) as running:
        yield running


def refused(call: Callable[..., Any], *args: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args)
    code: grpc.StatusCode = caught.value.code()
    return code


def transports(stack: LocalStack, name: str, port: int | None = None) -> list[str]:
    tcp = f"{HOST}:{port}" if port else stack.paramserver_target(name)
    return [tcp, f"local:{stack.socket_path(name)}"]


def test_no_call_without_the_right_token_reaches_theta_and_the_job_trains_on(
    stack: LocalStack,
) -> None:
    steps = 4000
    job_id = submit_and_wait_for_step(stack.gateway_url, spec(training={"steps": steps}), 20)
    theta = {"w": np.ones(2, np.float32)}
    worker_token, scheduler_token = stack.token(WORKER), stack.token(SCHEDULER)
    assert worker_token != scheduler_token
    theta_moves: list[Callable[[ParamServerClient], Any]] = [
        lambda c: c.push(job_id, "intruder-0", 0, theta, 1, 0.0),
        lambda c: c.apply(job_id, 0, ["intruder-0"], 1.0),
        lambda c: c.drop_job(job_id),
        lambda c: c.create_job("intruder-job", theta, "sgd"),
        lambda c: c.pull(job_id),
    ]
    control: list[Callable[[ParamServerClient, int], Any]] = [
        lambda c, v: c.apply(job_id, v, ["intruder-1"], 1.0),
        lambda c, v: c.drop_job(job_id),
        lambda c, v: c.plan_run(job_id, [PlannedStep(v + 1, ["intruder-1"], 1.0)]),
        lambda c, v: c.create_job("intruder-job", theta, "sgd"),
        lambda c, v: c.discard(job_id, ["anything"]),
        lambda c, v: c.status(job_id),
    ]
    for target in transports(stack, "paramserver"):
        for token in (None, "not-a-token", worker_token[:-1]):
            anonymous = ParamServerClient(target, 5, Credentials(token))
            for move in theta_moves:
                assert refused(move, anonymous) == grpc.StatusCode.UNAUTHENTICATED, target
            anonymous.close()
        worker = ParamServerClient(target, 5, Credentials(worker_token))
        version, params = worker.pull(job_id)  # a worker's own call
        assert params is not None and version > 0
        for call in control:
            assert refused(call, worker, version) == grpc.StatusCode.PERMISSION_DENIED, target
        worker.close()

    intruder = "intruder"
    scheduler_calls: list[Callable[[Any], Any]] = [
        lambda s: s.Register(spb.RegisterRequest(worker_id=intruder), timeout=5),
        lambda s: s.NextTask(spb.NextTaskRequest(worker_id=intruder), timeout=5),
        lambda s: s.Complete(spb.CompleteRequest(worker_id=intruder), timeout=5),
        lambda s: s.Heartbeat(spb.HeartbeatRequest(worker_id=intruder), timeout=5),
    ]
    for target in transports(stack, "scheduler", stack.config.scheduler_port):
        ch = channel(target)  # no token
        stub = scheduler_pb2_grpc.SchedulerStub(ch)
        for rpc in scheduler_calls:
            assert refused(rpc, stub) == grpc.StatusCode.UNAUTHENTICATED, target
        ch.close()
        if not target.startswith("local:"):  # probes need no token
            with grpc.insecure_channel(target) as probe:
                reply = health_pb2_grpc.HealthStub(probe).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING

    detail = httpx.get(f"{stack.gateway_url}/api/v1/jobs/{job_id}", timeout=10).json()
    assert detail["status"] == "RUNNING", detail  # all of the above happened mid-job
    job = run_job_to_end(stack.gateway_url, job_id)
    assert job["status"] == "SUCCEEDED", job
    assert job["latest_metrics"]["eval_accuracy"] == 1.0
    assert job["step"] == steps
    # one metric point per applied step, 1 .. steps: no intruder's step was applied
    assert [p["step"] for p in metric_series(stack.gateway_url, job_id)] == list(
        range(1, steps + 1)
    )


def test_a_worker_whose_token_is_refused_exits_saying_so(stack: LocalStack) -> None:
    name = stack.add_worker({"CHAINRULE_WORKER_TOKENS": "wrong"})
    code = stack.processes[name].wait(timeout=60)
    assert code == 4
    assert "needs a chainrule RPC token" in stack.log(name)
