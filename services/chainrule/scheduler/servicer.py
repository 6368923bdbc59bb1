"""gRPC shell around :class:`SchedulerCore`."""

from __future__ import annotations

import grpc

from chainrule.rpc import codec, protocol_mismatch
from chainrule.rpc.v1 import scheduler_pb2 as pb
from chainrule.rpc.v1 import scheduler_pb2_grpc
from chainrule.scheduler.core import Completion, EndedIncarnationError, SchedulerCore, Task
from chainrule.scheduler.job import Failure

MAX_RUN_RESULTS = 64  # a run is at most job.RUN_STEPS tasks; this bounds a request
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}
_LAYER_FIELDS = ("mean_abs_derivative", "saturated_fraction", "dead_fraction")


def task_reply(task: Task | None) -> pb.TaskReply:
    if task is None:
        return pb.TaskReply(has_task=False)
    return pb.TaskReply(
        has_task=True, task=_task(task), following=[_task(t) for t in task.following]
    )


def _task(task: Task) -> pb.Task:
    return pb.Task(
        task_id=task.task_id,
        job_id=task.job_id,
        step=task.step,
        base_version=task.base_version,
        dataset_key=task.dataset_key,
        model_json=task.model_json,
        rows=codec.encode_rows(task.indices),
        planned=task.planned,
        diagnostics=task.diagnostics,
        push_wait_seconds=task.push_wait_s,
    )


def layer_dict(stats: pb.LayerStats) -> dict[str, object]:
    out: dict[str, object] = {
        "layer": stats.layer,
        "activation": stats.activation,
        "grad_norm": stats.grad_norm,
        "activation_mean": stats.activation_mean,
        "activation_std": stats.activation_std,
    }
    for name in _LAYER_FIELDS:
        out[name] = getattr(stats, name) if stats.HasField(name) else None
    return out


class SchedulerServicer(scheduler_pb2_grpc.SchedulerServicer):  # type: ignore[misc]
    def __init__(self, core: SchedulerCore) -> None:
        self.core = core

    def _standby(self, context: grpc.ServicerContext) -> None:
        if not self.core.state.leading:
            context.abort(
                grpc.StatusCode.UNAVAILABLE, "this scheduler is on standby; try the leader"
            )

    def Register(
        self, request: pb.RegisterRequest, context: grpc.ServicerContext
    ) -> pb.RegisterReply:
        self._standby(context)
        if not request.worker_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "worker_id must not be empty")
        mismatch = protocol_mismatch(request.protocol, "scheduler")
        if mismatch:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, mismatch)
        try:
            self.core.register(request.worker_id, request.host, request.incarnation)
        except EndedIncarnationError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        return pb.RegisterReply(lease_seconds=self.core.lease_seconds)

    def Heartbeat(
        self, request: pb.HeartbeatRequest, context: grpc.ServicerContext
    ) -> pb.RegisterReply:
        self._standby(context)
        if not request.worker_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "worker_id must not be empty")
        try:
            self.core.heartbeat(request.worker_id, request.incarnation)
        except EndedIncarnationError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        return pb.RegisterReply(lease_seconds=self.core.lease_seconds)

    def NextTask(self, request: pb.NextTaskRequest, context: grpc.ServicerContext) -> pb.TaskReply:
        self._standby(context)
        if not request.worker_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "worker_id must not be empty")
        try:
            task = self.core.next_task(request.worker_id, request.wait_seconds, request.incarnation)
        except EndedIncarnationError as e:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        return task_reply(task)

    def Complete(self, request: pb.CompleteRequest, context: grpc.ServicerContext) -> pb.TaskReply:
        self._standby(context)
        if not request.worker_id or not request.task_id:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "worker_id and task_id must be set")
        if len(request.earlier) > MAX_RUN_RESULTS:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"a Complete carries at most {MAX_RUN_RESULTS} earlier results; "
                f"got {len(request.earlier)}",
            )
        try:
            # a run's results in order, then the tasks it did not start
            for result in [*request.earlier, request]:
                self.core.complete(_completion(request, result))
            if request.released:
                self.core.release(request.worker_id, list(request.released))
            if request.wait_seconds < 0:  # the worker is shutting down
                return task_reply(None)
            task = self.core.next_task(request.worker_id, request.wait_seconds, request.incarnation)
        except EndedIncarnationError as e:  # its task was requeued; the late result is dropped
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
        return task_reply(task)


def _completion(request: pb.CompleteRequest, result: pb.CompleteRequest) -> Completion:
    """One task's result (``result``: the request itself or one of its ``earlier``)."""
    return Completion(
        worker_id=request.worker_id,
        task_id=result.task_id,
        job_id=result.job_id,
        step=result.step,
        loss=result.loss,
        samples=result.samples,
        error=result.error,
        failure=Failure(result.failure),
        paramserver_code=_STATUS_CODES.get(result.paramserver_code)
        if result.failure == pb.TASK_FAILURE_PARAMSERVER
        else None,
        paramserver_target=result.paramserver_target,
        paramserver_unanswered_s=result.paramserver_unanswered_s,
        layers=[layer_dict(s) for s in result.layers],
        incarnation=request.incarnation,
        finished_unix=result.finished_unix,
    )
