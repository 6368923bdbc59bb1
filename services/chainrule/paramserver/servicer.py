"""gRPC shell around :class:`ParameterStore`: unpack, call, pack; errors as gRPC status."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from google.protobuf import message_factory

from chainrule import telemetry
from chainrule.nn import Params
from chainrule.paramserver import fence
from chainrule.paramserver.records import JobState, PlannedStep
from chainrule.paramserver.state import OutOfOrderError, ParameterStore, ThetaNotFoundError
from chainrule.rpc import codec, protocol_mismatch, shm
from chainrule.rpc.v1 import paramserver_pb2 as pb
from chainrule.rpc.v1 import paramserver_pb2_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["ParamServer"].full_name
FRAMED_IN = ("Push", "PushPull")  # requests read with codec.read_frame
FRAMED_OUT = ("Pull", "PushPull")  # replies written with codec.frame


def add_to_server(servicer: ParamServerServicer, server: grpc.Server) -> None:
    """Register every method of ``servicer``, the framed ones without protobuf
    (de)serialization of their tensors (the generated helper would parse them)."""
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["ParamServer"].methods:
        request = message_factory.GetMessageClass(method.input_type)
        reply = message_factory.GetMessageClass(method.output_type)
        handlers[method.name] = grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=None if method.name in FRAMED_IN else request.FromString,
            response_serializer=None if method.name in FRAMED_OUT else reply.SerializeToString,
        )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))


@contextmanager
def grpc_errors(context: grpc.ServicerContext) -> Iterator[None]:
    """Turn domain errors into status codes a caller can act on."""
    try:
        yield
    except ThetaNotFoundError as e:
        context.abort(grpc.StatusCode.NOT_FOUND, str(e))
    except OutOfOrderError as e:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(e))
    except ValueError as e:  # codec.TensorError included
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))


class ParamServerServicer(paramserver_pb2_grpc.ParamServerServicer):  # type: ignore[misc]
    def __init__(self, store: ParameterStore) -> None:
        self.store = store

    def CreateJob(
        self, request: pb.CreateJobRequest, context: grpc.ServicerContext
    ) -> pb.CreateJobReply:
        mismatch = protocol_mismatch(request.protocol, "parameter server")
        if mismatch:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, mismatch)
        with grpc_errors(context):
            cfg = request.optimizer
            options = {**dict(cfg.hyper), **dict(cfg.flags)}
            params = codec.decode_all(request.params)
            version, created = self.store.create(request.job_id, params, cfg.name or "sgd", options)
            return pb.CreateJobReply(version=version, created=created)
        raise AssertionError  # abort raised

    def Pull(self, request: pb.PullRequest, context: grpc.ServicerContext) -> bytes:
        """A PullReply frame; θ is framed once per version, however many pull it."""
        with telemetry.paramserver_rpc("Pull", context), grpc_errors(context):
            job = self.store.job(request.job_id)
            with job.lock:  # encode under the lock: a consistent θ of one version
                if request.min_version > job.version and not job.wait_for(
                    request.min_version, request.wait_seconds
                ):
                    raise OutOfOrderError(
                        f"job {request.job_id!r} is at version {job.version}; version "
                        f"{request.min_version} was not reached within "
                        f"{request.wait_seconds:g} s"
                    )
                return pull_reply(job, request.have_version)
        raise AssertionError

    def PushPull(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        """A Push frame in; a PullReply frame out, with θ if the push's step (or any)
        was applied within the request's wait."""
        with telemetry.paramserver_rpc("PushPull", context), grpc_errors(context):
            request, grads = self._unframe(data)
            try:
                self._store(request, grads)
                job = self.store.job(request.job_id)
                with job.lock:
                    job.wait_for(request.base_version + 1, request.wait_seconds)
                    return pull_reply(job, request.base_version)
            finally:
                if shm.is_lent(data):  # the caller's memory again once this returns
                    self.store.own(request.job_id, request.task_id)
        raise AssertionError

    def Plan(self, request: pb.PlanRequest, context: grpc.ServicerContext) -> pb.PlanReply:
        with telemetry.paramserver_rpc("Plan", context), grpc_errors(context):
            plans = [  # a run's plans, in step order: all checked before any is kept
                PlannedStep(
                    p.step, list(p.task_ids), p.lr, p.quorum, p.checkpoint, p.scheduler_state
                )
                for p in [request, *request.then]
            ]
            version, duplicate = self.store.plan_run(request.job_id, plans, request.epoch)
            return pb.PlanReply(version=version, duplicate=duplicate)
        raise AssertionError

    def Push(self, data: bytes, context: grpc.ServicerContext) -> pb.PushReply:
        with telemetry.paramserver_rpc("Push", context), grpc_errors(context):
            _, duplicate = self._push(data)
            return pb.PushReply(duplicate=duplicate)
        raise AssertionError

    def _push(self, data: bytes) -> tuple[pb.PushRequest, bool]:
        """Buffer the gradient of a PushRequest frame (read as views of ``data``)."""
        request, grads = self._unframe(data)
        return request, self._store(request, grads)

    @staticmethod
    def _unframe(data: bytes) -> tuple[pb.PushRequest, Params]:
        return codec.read_frame(data, pb.PushRequest, "grads")

    def _store(self, request: pb.PushRequest, grads: Params) -> bool:
        telemetry.record_gradient_bytes(grads)
        return self.store.push(
            request.job_id,
            request.task_id,
            request.base_version,
            grads,
            request.samples,
            request.loss,
        )

    def Apply(self, request: pb.ApplyRequest, context: grpc.ServicerContext) -> pb.ApplyReply:
        with telemetry.paramserver_rpc("Apply", context), grpc_errors(context):
            epoch = fence.epoch_of(context.invocation_metadata())  # as the fence let it in
            version, duplicate = self.store.apply(
                request.job_id,
                request.step,
                list(request.task_ids),
                request.lr,
                checkpoint=request.checkpoint,
                scheduler_state=request.scheduler_state,
                epoch=epoch,
            )
            if duplicate:
                job = self.store.job(request.job_id)
                with job.lock:
                    epoch = self.store.applied_epoch(job, request.step) or 0
            return pb.ApplyReply(version=version, duplicate=duplicate, epoch=epoch)
        raise AssertionError

    def DropJob(self, request: pb.DropJobRequest, context: grpc.ServicerContext) -> pb.DropJobReply:
        dropped = self.store.drop(request.job_id, request.final_checkpoint, request.scheduler_state)
        return pb.DropJobReply(dropped=dropped)

    def Discard(self, request: pb.DiscardRequest, context: grpc.ServicerContext) -> pb.DiscardReply:
        with grpc_errors(context):
            return pb.DiscardReply(
                discarded=self.store.discard(request.job_id, list(request.task_ids))
            )
        raise AssertionError

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusReply:
        with grpc_errors(context):
            job, restored = self.store.restore(request.job_id, only_if_missing=True)
            return status_reply(job, restored, log=request.log)
        raise AssertionError

    def Restore(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusReply:
        with grpc_errors(context):
            at_most = request.at_most if request.HasField("at_most") else None
            job, restored = self.store.restore(request.job_id, at_most=at_most)
            return status_reply(job, restored)
        raise AssertionError


def pull_reply(job: JobState, have_version: int) -> bytes:
    """θ as a PullReply frame, or only the version when the caller has it (lock held).
    The frame is made once per version, however many pull it."""
    if have_version == job.version:
        return bytes(pb.PullReply(version=job.version).SerializeToString())
    telemetry.record_params_sent(job.params)
    if job.framed_version != job.version:
        job.framed = codec.frame(pb.PullReply(version=job.version), "params", job.params)
        job.framed_version = job.version
    return job.framed


def status_reply(job: JobState, restored: bool, log: bool = False) -> pb.StatusReply:
    with job.lock:
        return pb.StatusReply(
            log=[pb.LoggedStep(step=e.step, epoch=e.epoch, task_ids=e.task_ids) for e in job.log]
            if log
            else [],
            version=job.version,
            checkpoint_version=job.checkpoint_version,
            scheduler_state=job.scheduler_state,
            restored=restored,
            applied=[
                pb.AppliedStep(step=a.step, loss=a.loss, samples=a.samples, tasks=a.tasks)
                for a in job.applied_steps
            ],
        )
