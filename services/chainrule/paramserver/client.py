"""Calling a parameter server: plain Python in, plain Python out."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from chainrule.nn import Params
from chainrule.rpc import codec, shm
from chainrule.rpc.retry import with_retries
from chainrule.rpc.server import channel
from chainrule.rpc.v1 import paramserver_pb2 as pb
from chainrule.rpc.v1 import paramserver_pb2_grpc


@dataclass(frozen=True)
class JobStatus:
    version: int
    checkpoint_version: int  # -1: no checkpoint
    scheduler_state: str
    restored: bool


SERVICE = pb.DESCRIPTOR.services_by_name["ParamServer"].full_name


class ParamServerClient:
    def __init__(self, target: str, timeout: float = 30.0, shm_dir: str | None = None) -> None:
        self.target = target
        self.timeout = timeout
        # same host: payloads through segments in this directory (rpc/shm.py); None: inline
        self.shm_dir = shm.check_dir(shm_dir) if shm_dir else None
        self._thetas = shm.SegmentReader(shm_dir) if shm_dir else None
        self._gradients: shm.Segment | None = None  # made on the first push
        self._push_lock = threading.Lock()
        self._channel: grpc.Channel = channel(target)
        self._stub = paramserver_pb2_grpc.ParamServerStub(self._channel)
        # Push and Pull travel as frames (codec.frame): bytes in, bytes out, no copies
        # by protobuf; the generated stub's methods would copy each tensor twice more
        self._framed_push = self._channel.unary_unary(
            f"/{SERVICE}/Push", response_deserializer=pb.PushReply.FromString
        )
        self._framed_pull = self._channel.unary_unary(
            f"/{SERVICE}/Pull", request_serializer=pb.PullRequest.SerializeToString
        )
        self._framed_push_pull = self._channel.unary_unary(f"/{SERVICE}/PushPull")

    def close(self) -> None:
        self._channel.close()
        if self._gradients is not None:
            self._gradients.close()

    def _call(self, method: str | grpc.UnaryUnaryMultiCallable, request: Any) -> Any:
        """One RPC, retried through transient failures (all of these RPCs are idempotent)."""
        rpc = getattr(self._stub, method) if isinstance(method, str) else method
        return with_retries(lambda: rpc(request, timeout=self.timeout))

    def create_job(
        self,
        job_id: str,
        params: Params,
        optimizer: str,
        hyper: Mapping[str, float] | None = None,
        flags: Mapping[str, bool] | None = None,
    ) -> tuple[int, bool]:
        cfg = pb.OptimizerConfig(name=optimizer, hyper=dict(hyper or {}), flags=dict(flags or {}))
        reply = self._call(
            "CreateJob",
            pb.CreateJobRequest(job_id=job_id, params=codec.encode_all(params), optimizer=cfg),
        )
        return reply.version, reply.created

    def pull(
        self, job_id: str, have_version: int = -1, min_version: int = 0, wait_seconds: float = 0.0
    ) -> tuple[int, Params | None]:
        """(version, θ) or (version, None) when ``have_version`` is current. With
        ``min_version``, waits up to ``wait_seconds`` for θ to get there (FAILED_PRECONDITION
        if it does not)."""
        request = pb.PullRequest(
            job_id=job_id,
            have_version=have_version,
            min_version=min_version,
            wait_seconds=wait_seconds,
        )
        request.shm = self.shm_dir is not None
        return self._pulled(self._call(self._framed_pull, request), request)

    def push_pull(
        self,
        job_id: str,
        task_id: str,
        base_version: int,
        grads: Params,
        samples: int,
        loss: float,
        wait_seconds: float,
    ) -> tuple[int, Params | None]:
        """Push a gradient of a planned step and wait up to ``wait_seconds`` for the step
        to be applied: (version, θ) when θ moved past ``base_version``, else (version, None)."""
        header = pb.PushRequest(
            job_id=job_id,
            task_id=task_id,
            base_version=base_version,
            samples=samples,
            loss=loss,
            wait_seconds=wait_seconds,
            shm=self.shm_dir is not None,
        )
        data = self._send_gradient(self._framed_push_pull, header, grads)
        return self._pulled(data, pb.PullRequest(job_id=job_id, have_version=base_version))

    def plan(
        self,
        job_id: str,
        step: int,
        task_ids: list[str],
        lr: float,
        quorum: int = 0,
        checkpoint: bool = False,
        scheduler_state: str = "",
        epoch: int = 0,
    ) -> tuple[int, bool]:
        """Register sync step ``step``'s plan: applied by the server when its gradients are in."""
        request = pb.PlanRequest(
            job_id=job_id,
            step=step,
            task_ids=task_ids,
            lr=lr,
            quorum=quorum,
            checkpoint=checkpoint,
            scheduler_state=scheduler_state,
            epoch=epoch,
        )
        reply = self._call("Plan", request)
        return reply.version, reply.duplicate

    def push(
        self, job_id: str, task_id: str, base_version: int, grads: Params, samples: int, loss: float
    ) -> bool:
        header = pb.PushRequest(
            job_id=job_id, task_id=task_id, base_version=base_version, samples=samples, loss=loss
        )
        reply = self._send_gradient(self._framed_push, header, grads)
        return bool(reply.duplicate)

    def _send_gradient(self, method: Any, header: pb.PushRequest, grads: Params) -> Any:
        """A Push or PushPull: the payload through this client's gradient segment when it
        has a shared-memory directory, else inline. A server without one answers
        UNIMPLEMENTED, and this client sends inline from then on."""
        if self.shm_dir is None:
            return self._call(method, codec.frame(header, "grads", grads))
        inline = pb.PushRequest()
        inline.CopyFrom(header)
        with self._push_lock:  # the segment holds one payload until the server copied it
            if self._gradients is None:
                self._gradients = shm.Segment(self.shm_dir, "grad")
            header.shm_file = self._gradients.write(codec.describe(header, "grads", grads))
            try:
                return self._call(method, header.SerializeToString())
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNIMPLEMENTED:
                    raise
        self.shm_dir = None
        inline.shm = False
        return self._call(method, codec.frame(inline, "grads", grads))

    def _pulled(self, data: bytes, request: pb.PullRequest) -> tuple[int, Params | None]:
        """Decode a PullReply frame; θ in a shared-memory segment is copied out of it,
        and if that fails (a rewrite raced the copy), θ is pulled inline instead."""
        reply, payload = codec.unframe(data, pb.PullReply)
        if not reply.params:
            return reply.version, None
        if reply.shm_file:
            try:
                assert self._thetas is not None
                payload = self._thetas.read(reply.shm_file)
            except shm.ShmError:
                request.shm = False
                request.min_version = reply.version
                return self._pulled(self._call(self._framed_pull, request), request)
        return reply.version, codec.decode_framed(reply.params, payload)

    def apply(
        self,
        job_id: str,
        step: int,
        task_ids: list[str],
        lr: float,
        checkpoint: bool = False,
        scheduler_state: str = "",
    ) -> tuple[int, bool]:
        request = pb.ApplyRequest(
            job_id=job_id,
            step=step,
            task_ids=task_ids,
            lr=lr,
            checkpoint=checkpoint,
            scheduler_state=scheduler_state,
        )
        reply = self._call("Apply", request)
        return reply.version, reply.duplicate

    def discard(self, job_id: str, task_ids: list[str]) -> int:
        reply = self._call("Discard", pb.DiscardRequest(job_id=job_id, task_ids=task_ids))
        return int(reply.discarded)

    def status(self, job_id: str) -> JobStatus:
        """Version and latest checkpoint (restoring the job from it if this server had lost it)."""
        reply = self._call("Status", pb.StatusRequest(job_id=job_id))
        return JobStatus(
            reply.version, reply.checkpoint_version, reply.scheduler_state, reply.restored
        )

    def restore(self, job_id: str) -> JobStatus:
        """Reload the latest checkpoint, throwing away later steps."""
        reply = self._call("Restore", pb.StatusRequest(job_id=job_id))
        return JobStatus(
            reply.version, reply.checkpoint_version, reply.scheduler_state, reply.restored
        )

    def drop_job(self, job_id: str) -> bool:
        reply = self._call("DropJob", pb.DropJobRequest(job_id=job_id))
        return bool(reply.dropped)
