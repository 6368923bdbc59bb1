"""The worker loop: long-poll a task, make sure data and θ are current, compute, push,
complete (which hands back the next task in the same round trip)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import grpc
import numpy as np

from chainrule.paramserver.client import ParamServerClient
from chainrule.rpc.server import channel
from chainrule.rpc.v1 import scheduler_pb2 as pb
from chainrule.rpc.v1 import scheduler_pb2_grpc
from chainrule.store.blobs import BlobStore
from chainrule.worker.compute import JobCache, build_cache, task_gradient

MAX_CACHED_JOBS = 4


class Worker:
    def __init__(
        self,
        worker_id: str,
        scheduler_target: str,
        paramserver: ParamServerClient,
        blobs: BlobStore,
        stop: threading.Event,
        poll_seconds: float = 2.0,
        log: Any = None,
    ) -> None:
        self.worker_id = worker_id
        self._channel = channel(scheduler_target)
        self.scheduler = scheduler_pb2_grpc.SchedulerStub(self._channel)
        self.paramserver, self.blobs, self.stop = paramserver, blobs, stop
        self.poll_seconds, self.log = poll_seconds, log
        self.cache: dict[str, JobCache] = {}

    def run(self) -> None:
        """Serve tasks until ``stop`` is set; a task in hand is finished first."""
        self._register()
        reply: pb.TaskReply | None = None
        while not self.stop.is_set():
            try:
                if reply is None or not reply.has_task:
                    reply = self.scheduler.NextTask(
                        pb.NextTaskRequest(
                            worker_id=self.worker_id, wait_seconds=self.poll_seconds
                        ),
                        timeout=self.poll_seconds + 10,
                    )
                    continue
                reply = self._do(reply.task)
            except grpc.RpcError as e:
                if self.log:
                    self.log.warning(
                        "rpc failed; retrying", code=str(e.code()), details=e.details()
                    )
                reply = None
                self.stop.wait(0.5)
                if e.code() == grpc.StatusCode.UNAVAILABLE:
                    self._register()
        self._channel.close()

    def _register(self) -> None:
        while not self.stop.is_set():
            try:
                self.scheduler.Register(
                    pb.RegisterRequest(worker_id=self.worker_id, host=socket.gethostname()),
                    timeout=5,
                )
                return
            except grpc.RpcError:
                self.stop.wait(0.5)

    def _do(self, task: pb.Task) -> pb.TaskReply:
        done = pb.CompleteRequest(
            worker_id=self.worker_id,
            task_id=task.task_id,
            job_id=task.job_id,
            step=task.step,
            wait_seconds=-1 if self.stop.is_set() else self.poll_seconds,  # -1: no next task
        )
        try:
            t0 = time.perf_counter()
            cache = self._job(task)
            if cache.version != task.base_version:
                version, params = self.paramserver.pull(task.job_id, cache.version)
                if params is not None:
                    cache.params = params
                cache.version = version
            t1 = time.perf_counter()
            result = task_gradient(cache, np.asarray(task.indices, dtype=np.int64))
            t2 = time.perf_counter()
            if np.isfinite(result.loss):
                self.paramserver.push(
                    task.job_id,
                    task.task_id,
                    task.base_version,
                    result.grads,
                    result.samples,
                    result.loss,
                )
            t3 = time.perf_counter()
        except (ValueError, KeyError, RuntimeError) as e:
            done.error = str(e)
            return self._complete(done)
        done.loss, done.samples = result.loss, result.samples
        done.pull_seconds, done.compute_seconds, done.push_seconds = t1 - t0, t2 - t1, t3 - t2
        for d in result.layers:
            done.layers.add(**{k: v for k, v in d.to_dict().items() if v is not None})
        return self._complete(done)

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
