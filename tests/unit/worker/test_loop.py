"""The worker loop's report of a parameter server that did not answer: the code and
which server (shard), as the scheduler's servicer reads them into a Completion."""

from __future__ import annotations

import threading

import grpc
import pytest

from chainrule.paramserver.client import ParamServerUnavailableError
from chainrule.rpc.v1 import scheduler_pb2 as pb
from chainrule.scheduler.job import Failure
from chainrule.scheduler.servicer import _completion
from chainrule.worker.loop import Worker
from tests.support.scheduler_sim import FakeParamServer


def test_a_push_to_a_shard_that_does_not_answer_is_reported_with_its_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = Worker("w1", "127.0.0.1:1", FakeParamServer(), None, threading.Event())  # type: ignore[arg-type]

    def unanswered(task: pb.Task, done: pb.CompleteRequest) -> None:
        raise ParamServerUnavailableError(
            "paramserver-1:50051", grpc.StatusCode.UNAVAILABLE, "connection refused", 11.5
        )

    monkeypatch.setattr(worker, "_compute_and_push", unanswered)
    done, _ = worker._one(pb.Task(task_id="t1", job_id="j1", step=3))
    assert done.failure == pb.TASK_FAILURE_PARAMSERVER
    assert done.paramserver_code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert done.paramserver_target == "paramserver-1:50051"
    assert done.paramserver_unanswered_s == 11.5
    assert done.error == "parameter server said UNAVAILABLE: connection refused"

    completion = _completion(done, done)
    assert completion.failure is Failure.PARAMSERVER
    assert completion.paramserver_code is grpc.StatusCode.UNAVAILABLE
    assert completion.paramserver_target == "paramserver-1:50051"
    assert completion.paramserver_unanswered_s == 11.5
