"""The worker loop: long-poll a task, make sure data and θ are current, compute, push,
complete (which hands back the next task in the same round trip)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from typing import Any

import grpc
import numpy as np

from chainrule import telemetry
from chainrule.paramserver.interface import ParamServer
from chainrule.rpc import PROTOCOL_VERSION, codec
from chainrule.rpc.auth import Credentials
from chainrule.rpc.server import channel
from chainrule.rpc.v1 import scheduler_pb2 as pb
from chainrule.rpc.v1 import scheduler_pb2_grpc
from chainrule.store.blobs import BlobStore
from chainrule.worker.compute import JobCache, build_cache, task_gradient

MAX_CACHED_JOBS = 4
THETA_WAIT_SECONDS = 10.0
"""How long a pull waits for θ to reach the version a task was made for."""


class StaleTaskError(grpc.RpcError):  # type: ignore[misc]
    """θ moved past the version a task was made for: the scheduler resynchronises."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.FAILED_PRECONDITION

    def details(self) -> str:
        return str(self)


class IncompatibleError(RuntimeError):
    """The scheduler refused to register this worker (another protocol version)."""


REFUSED = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
)


class WorkerReplacedError(RuntimeError):
    """The scheduler ended this incarnation: another process registered the same id."""


class Worker:
    def __init__(
        self,
        worker_id: str,
        scheduler_target: str,
        paramserver: ParamServer,
        blobs: BlobStore,
        stop: threading.Event,
        poll_seconds: float = 2.0,
        log: Any = None,
        task_delay_s: float = 0.0,
        credentials: Credentials | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.credentials = credentials  # the token (and TLS) for the scheduler: rpc.auth
        # new at every process start: a restart under the same id is a new incarnation,
        # and the scheduler requeues whatever the old one held
        self.incarnation = uuid.uuid4().hex[:16]
        # one or more schedulers, comma-separated: a standby answers UNAVAILABLE, so the
        # worker moves on to the next until it finds the leader
        self.scheduler_targets = [t.strip() for t in scheduler_target.split(",") if t.strip()]
        self._target = -1
        self._channel: grpc.Channel | None = None
        self._next_scheduler()
        self.paramserver, self.blobs, self.stop = paramserver, blobs, stop
        self.poll_seconds, self.log, self.task_delay_s = poll_seconds, log, task_delay_s
        self.cache: dict[str, JobCache] = {}
        self.lease_seconds = 10.0  # the scheduler's, from Register

    def run(self) -> None:
        """Serve tasks until ``stop`` is set; a task in hand is finished first."""
        self._register()
        beats = threading.Thread(target=self._heartbeats, name="heartbeat", daemon=True)
        beats.start()
        reply: pb.TaskReply | None = None
        while not self.stop.is_set():
            try:
                if reply is None or not reply.has_task:
                    reply = self.scheduler.NextTask(
                        pb.NextTaskRequest(
                            worker_id=self.worker_id,
                            wait_seconds=self.poll_seconds,
                            incarnation=self.incarnation,
                        ),
                        timeout=self.poll_seconds + 10,
                    )
                    continue
                reply = self._do(reply)
            except grpc.RpcError as e:
                _raise_if_replaced(e)
                if self.log:
                    self.log.warning(
                        "rpc failed; retrying", code=str(e.code()), details=e.details()
                    )
                reply = None
                self.stop.wait(0.5)
                # a scheduler gone, or one that stopped answering (paused, hung): register
                # again, with the next scheduler if this one does not answer that either
                if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    self._register()
        beats.join(timeout=10)
        if self._channel is not None:
            self._channel.close()

    def _heartbeats(self) -> None:
        """Every third of the lease, until stopped: the lease must not lapse while this
        worker computes a long task or a run (its calls are the scheduler's only sign)."""
        while not self.stop.wait(self.lease_seconds / 3):
            try:
                self.scheduler.Heartbeat(
                    pb.HeartbeatRequest(worker_id=self.worker_id, incarnation=self.incarnation),
                    timeout=5,
                )
            except grpc.RpcError as e:  # the main loop deals with a lost or new scheduler
                if self.log:
                    self.log.debug("heartbeat failed", code=str(e.code()))
            except ValueError:  # the channel was closed by a failover meanwhile
                pass

    def _next_scheduler(self) -> None:
        if self._channel is not None:
            self._channel.close()
        self._target = (self._target + 1) % len(self.scheduler_targets)
        self._channel = channel(self.scheduler_targets[self._target], self.credentials)
        self.scheduler = scheduler_pb2_grpc.SchedulerStub(self._channel)

    def _register(self) -> None:
        """Register with the first scheduler that leads (trying each in turn)."""
        while not self.stop.is_set():
            try:
                reply = self.scheduler.Register(
                    pb.RegisterRequest(
                        worker_id=self.worker_id,
                        host=socket.gethostname(),
                        incarnation=self.incarnation,
                        protocol=PROTOCOL_VERSION,
                    ),
                    timeout=5,
                )
                self.lease_seconds = reply.lease_seconds or self.lease_seconds
                return
            except grpc.RpcError as e:
                _raise_if_replaced(e)
                if e.code() in REFUSED:  # another protocol, a token not accepted
                    raise IncompatibleError(str(e.details())) from e
                self._next_scheduler()
                self.stop.wait(0.25)

    def _do(self, reply: pb.TaskReply) -> pb.TaskReply:
        """Compute and push a task, or each task of a run in turn; complete them in one
        call (with an error if one could not be done). A run ends early, handing back
        its tasks not started, when a step was not applied in time (its θ is not here
        to go on with) or when the worker is asked to stop."""
        run = [reply.task, *reply.following]
        results: list[pb.CompleteRequest] = []
        for i, task in enumerate(run):
            if i and self.stop.is_set():
                break
            done, applied = self._one(task)
            results.append(done)
            if done.error or not applied:
                break
        last = results[-1]
        last.earlier.extend(results[:-1])
        last.released.extend(t.task_id for t in run[len(results) :])
        # asked only now, so that a SIGTERM that came mid-task is honoured: -1 = no next task
        last.wait_seconds = -1 if self.stop.is_set() else self.poll_seconds
        return self._complete(last)

    def _one(self, task: pb.Task) -> tuple[pb.CompleteRequest, bool]:
        """One task's result, and whether θ is now the version after it (its step was
        applied within the push's wait), which the next task of a run needs."""
        done = pb.CompleteRequest(
            worker_id=self.worker_id,
            incarnation=self.incarnation,
            task_id=task.task_id,
            job_id=task.job_id,
            step=task.step,
        )
        started = time.perf_counter()
        try:
            self._compute_and_push(task, done)
        except grpc.RpcError as e:  # first: some gRPC errors are RuntimeErrors too
            # after retries, or a refusal; the scheduler resyncs or fails the job by code
            done.error = f"parameter server said {e.code().name}: {e.details()}"
            done.failure, done.paramserver_code = pb.TASK_FAILURE_PARAMSERVER, e.code().value[0]
            # which shard, as configured: a client's error after its retries says (client.py)
            done.paramserver_target = str(getattr(e, "target", "") or "")
            done.paramserver_unanswered_s = float(getattr(e, "unanswered_s", 0.0) or 0.0)
        except Exception as e:  # reported on the task: the scheduler retries it elsewhere
            known = isinstance(e, ValueError | KeyError | RuntimeError)  # say what they are
            done.error = str(e) if known else f"{type(e).__name__}: {e}"
            done.failure = pb.TASK_FAILURE_WORKER
        done.finished_unix = time.time()
        telemetry.record_task(time.perf_counter() - started, failed=bool(done.error))
        cache = self.cache.get(task.job_id)
        return done, cache is not None and cache.version == task.base_version + 1

    def _compute_and_push(self, task: pb.Task, done: pb.CompleteRequest) -> None:
        if self.task_delay_s:
            self.stop.wait(self.task_delay_s)  # a simulated straggler
        t0 = time.perf_counter()
        cache = self._job(task)
        if cache.version != task.base_version:
            # θ may still be one plan behind the step the scheduler handed out: wait for
            # it (FAILED_PRECONDITION, and a resync, if it does not come)
            version, params = self.paramserver.pull(
                task.job_id, cache.version, task.base_version, THETA_WAIT_SECONDS
            )
            if params is not None:
                cache.params = params
            cache.version = version
            if task.planned and version != task.base_version:  # stale: θ moved past it
                raise StaleTaskError(
                    f"task {task.task_id} is for θ version {task.base_version}; the "
                    f"parameter server is at {version}"
                )
        t1 = time.perf_counter()
        rows = codec.decode_rows(task.rows)
        result = task_gradient(cache, rows, diagnostics=task.diagnostics)
        t2 = time.perf_counter()
        done.loss, done.samples = result.loss, result.samples
        bad = [name for name, g in result.grads.items() if not np.isfinite(g).all()]
        if not np.isfinite(result.loss) or bad:
            done.error = f"diverged: loss {result.loss}, non-finite gradient in {bad or 'none'}"
            done.failure = pb.TASK_FAILURE_DIVERGED
            return
        pushed = (task.job_id, task.task_id, task.base_version, result.grads, result.samples)
        if task.planned:  # the next θ comes back in the same round trip
            # wait: the scheduler's (0 if this worker is needed for the rest of the step)
            version, params = self.paramserver.push_pull(
                *pushed, result.loss, task.push_wait_seconds
            )
            if params is not None:
                cache.params, cache.version = params, version
        else:
            self.paramserver.push(*pushed, result.loss)
        t3 = time.perf_counter()
        done.pull_seconds, done.compute_seconds, done.push_seconds = t1 - t0, t2 - t1, t3 - t2
        telemetry.record_task_stages(t1 - t0, t2 - t1, t3 - t2)
        for d in result.layers:
            done.layers.add(**{k: v for k, v in d.to_dict().items() if v is not None})

    def _complete(self, done: pb.CompleteRequest) -> pb.TaskReply:
        reply: pb.TaskReply = self.scheduler.Complete(done, timeout=self.poll_seconds + 10)
        return reply

    def _job(self, task: pb.Task) -> JobCache:
        cache = self.cache.get(task.job_id)
        if cache is None:
            if len(self.cache) >= MAX_CACHED_JOBS:
                self.cache.pop(next(iter(self.cache)))
            cache = build_cache(task.model_json, self.blobs.get(task.dataset_key))
            self.cache[task.job_id] = cache
        return cache


def _raise_if_replaced(e: grpc.RpcError) -> None:
    """The scheduler refuses an ended incarnation with FAILED_PRECONDITION: two processes
    share one worker id, and this one is the older; working on would only be refused."""
    if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
        raise WorkerReplacedError(str(e.details())) from e
