"""Calling a parameter server: plain Python in, plain Python out."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import Any

import grpc

from chainrule.nn import Params
from chainrule.paramserver.fence import is_deposed
from chainrule.paramserver.interface import ParamServer
from chainrule.paramserver.records import AppliedStep, LoggedStep, PlannedStep, ThetaStatus
from chainrule.rpc import PROTOCOL_VERSION, codec
from chainrule.rpc.auth import Credentials
from chainrule.rpc.local import local_path
from chainrule.rpc.retry import TRANSIENT, with_retries
from chainrule.rpc.server import channel
from chainrule.rpc.v1 import paramserver_pb2 as pb
from chainrule.rpc.v1 import paramserver_pb2_grpc

__all__ = ["ParamServerClient", "ParamServerUnavailableError", "ThetaStatus"]

SERVICE = pb.DESCRIPTOR.services_by_name["ParamServer"].full_name
RETRY_ATTEMPTS = 10
"""Tries of one RPC through transient failures (rpc.retry: about 11 s in all)."""


class ParamServerUnavailableError(grpc.RpcError):  # type: ignore[misc]
    """A parameter server that still did not answer after the client's retries: the
    last error's ``code()`` (UNAVAILABLE, DEADLINE_EXCEEDED) and ``details()``, and
    ``target``, the server's address as configured (CHAINRULE_PARAMSERVERS), which the
    details do not always say (gRPC names the IP address it resolved). The gRPC error
    is its ``__cause__``."""

    def __init__(
        self, target: str, code: grpc.StatusCode, details: str, unanswered_s: float = 0.0
    ) -> None:
        super().__init__(f"parameter server {target} said {code.name}: {details}")
        self.target = target
        self.unanswered_s = unanswered_s  # how long the retries lasted before giving up
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class ParamServerClient(ParamServer):
    """:class:`ParamServer` over gRPC (or the same-host socket) to one server."""

    def __init__(
        self,
        target: str,
        timeout: float = 30.0,
        credentials: Credentials | None = None,
        on_deposed: Callable[[str], None] | None = None,
        attempts: int = RETRY_ATTEMPTS,
    ) -> None:
        self.target = target  # host:port (gRPC), or local:PATH (rpc/local.py, same host)
        self.timeout = timeout
        self.attempts = attempts  # of each RPC while it fails transiently
        # called (before the error is raised) when the server refuses a call because
        # another scheduler leads now (paramserver.fence); the scheduler steps down
        self.on_deposed = on_deposed
        self._channel: grpc.Channel = channel(target, credentials)  # token, TLS: rpc.auth
        self._local = local_path(target) is not None
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

    def _call(self, method: str | grpc.UnaryUnaryMultiCallable, request: Any) -> Any:
        """One RPC, retried through transient failures (all of these RPCs are idempotent).
        One that still fails transiently raises :class:`ParamServerUnavailableError`
        naming this server's target; every other error is raised as it came."""
        rpc = getattr(self._stub, method) if isinstance(method, str) else method
        started = time.monotonic()
        try:
            return with_retries(lambda: rpc(request, timeout=self.timeout), self.attempts)
        except grpc.RpcError as e:
            if self.on_deposed is not None and is_deposed(e):
                self.on_deposed(str(e.details()))
            code = e.code() if hasattr(e, "code") else None
            if code in TRANSIENT and not isinstance(e, ParamServerUnavailableError):
                details = e.details() if hasattr(e, "details") else ""
                raise ParamServerUnavailableError(
                    self.target, code, str(details or ""), time.monotonic() - started
                ) from e
            raise

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
            pb.CreateJobRequest(
                job_id=job_id,
                params=codec.encode_all(params),
                optimizer=cfg,
                protocol=PROTOCOL_VERSION,
            ),
        )
        return reply.version, reply.created

    def pull(
        self, job_id: str, have_version: int = -1, min_version: int = 0, wait_seconds: float = 0.0
    ) -> tuple[int, Params | None]:
        request = pb.PullRequest(
            job_id=job_id,
            have_version=have_version,
            min_version=min_version,
            wait_seconds=wait_seconds,
        )
        return _pulled(self._call(self._framed_pull, request))

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
        header = pb.PushRequest(
            job_id=job_id, task_id=task_id, base_version=base_version, samples=samples, loss=loss
        )
        header.wait_seconds = wait_seconds  # a Push's header, and how long the server waits
        return _pulled(self._call(self._framed_push_pull, self._frame(header, grads)))

    def push(
        self, job_id: str, task_id: str, base_version: int, grads: Params, samples: int, loss: float
    ) -> bool:
        header = pb.PushRequest(
            job_id=job_id, task_id=task_id, base_version=base_version, samples=samples, loss=loss
        )
        reply = self._call(self._framed_push, self._frame(header, grads))
        return bool(reply.duplicate)

    def _frame(self, header: pb.PushRequest, grads: Params) -> Any:
        """A PushRequest frame: its buffers as they are for the same-host socket (which
        sends them without joining them), one bytes object for gRPC."""
        parts = codec.frame_parts(header, "grads", grads)
        return parts if self._local else b"".join(parts)

    def plan_run(
        self, job_id: str, plans: Sequence[PlannedStep], epoch: int = 0
    ) -> tuple[int, bool]:
        """The run as one PlanRequest: the first plan, the others in ``then``."""
        first, *rest = [pb.PlanRequest(job_id=job_id, epoch=epoch, **asdict(p)) for p in plans]
        first.then.extend(rest)
        reply = self._call("Plan", first)
        return reply.version, reply.duplicate

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

    def status(self, job_id: str, log: bool = False) -> ThetaStatus:
        reply = self._call("Status", pb.StatusRequest(job_id=job_id, log=log))
        return _status(reply)

    def restore(self, job_id: str, at_most: int | None = None) -> ThetaStatus:
        reply = self._call("Restore", pb.StatusRequest(job_id=job_id, at_most=at_most))
        return _status(reply)

    def drop_job(
        self, job_id: str, final_checkpoint: bool = False, scheduler_state: str = ""
    ) -> bool:
        request = pb.DropJobRequest(
            job_id=job_id, final_checkpoint=final_checkpoint, scheduler_state=scheduler_state
        )
        reply = self._call("DropJob", request)
        return bool(reply.dropped)


def _pulled(data: bytes) -> tuple[int, Params | None]:
    """(version, θ) of a PullReply frame; θ as views of ``data``, None if not sent."""
    reply, params = codec.read_frame(data, pb.PullReply, "params")
    return reply.version, params or None


def _status(reply: pb.StatusReply) -> ThetaStatus:
    applied = tuple(AppliedStep(a.step, a.loss, a.samples, a.tasks) for a in reply.applied)
    log = tuple(LoggedStep(e.step, e.epoch, tuple(e.task_ids)) for e in reply.log)
    return ThetaStatus(
        reply.version, reply.checkpoint_version, reply.scheduler_state, reply.restored, applied, log
    )
