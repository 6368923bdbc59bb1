"""How a job ends: its last points written, its final θ kept as its model, its record
closed, θ dropped from the parameter server (as one final checkpoint) and its queue
message acknowledged, in that order. Stop requests end a job here too."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import redis

from chainrule import telemetry
from chainrule.npz import npz_bytes
from chainrule.scheduler.job import ActiveJob
from chainrule.scheduler.ports import Jobs, ParamServer
from chainrule.scheduler.publisher import Publisher
from chainrule.scheduler.recording import Recorder
from chainrule.scheduler.state import SchedulerState
from chainrule.store.blobs import BlobStore, dataset_key, model_key
from chainrule.store.fencing import DeposedError
from chainrule.store.job_records import JobStatus


@dataclass(eq=False)
class Ending:
    state: SchedulerState
    jobs: Jobs
    blobs: BlobStore
    paramserver: ParamServer
    publisher: Publisher
    recorder: Recorder
    prefix: str
    ack: Callable[[str], None]  # acknowledges a job's queue message
    log: Any = None

    def stops_after_run(self, job: ActiveJob, now: float) -> bool:
        """A stop request for a sync job in the middle of a run waits for the run's end
        (its steps are planned on the parameter server, and workers holding its tasks
        push them still: stopping now would keep a θ ahead of the recorded step), up to
        a worker lease; then, or for any other job, it is honoured at once."""
        with self.state.cond:
            if job.mode != "sync" or not job.ahead:
                return False
            if job.stop_asked is None:
                job.stop_asked = now
            return now - job.stop_asked < self.state.lease_seconds

    def stopped_while_preempted(self, job: ActiveJob, message_id: str) -> None:
        """A preempted (parked) job that was stopped while PENDING, its record STOPPED
        already: θ as it was parked is kept as its model, then released."""
        self._keep_model(job.job_id, JobStatus.STOPPED)
        self._release(job.job_id, job)
        telemetry.record_job_ended(JobStatus.STOPPED)
        self.ack(message_id)

    def _keep_model(self, job_id: str, status: str) -> None:
        try:
            if status in (JobStatus.SUCCEEDED, JobStatus.STOPPED):  # θ is worth keeping
                _, params = self.paramserver.pull(job_id, -1)
                if params is not None:
                    self.blobs.put(model_key(self.prefix, job_id), npz_bytes(params))
        except grpc.RpcError as e:  # θ is lost with its server; the record still ends
            if self.log:
                self.log.warning("could not save θ", job_id=job_id, code=str(e.code()))

    def _release(self, job_id: str, job: ActiveJob | None) -> None:
        """θ and the job's copy of its dataset, once its end is recorded."""
        try:  # θ and its optimizer state as they end become the job's one checkpoint
            state = job.scheduler_state() if job is not None else ""
            self.paramserver.drop_job(job_id, final_checkpoint=True, scheduler_state=state)
        except grpc.RpcError as e:
            if self.log:
                self.log.warning("could not drop θ", job_id=job_id, code=str(e.code()))
        try:  # its copy of the dataset: done with
            self.blobs.delete(dataset_key(self.prefix, job_id))
        except (redis.RedisError, DeposedError) as e:  # left behind, as DELETE would remove
            if self.log:
                self.log.warning("could not delete the dataset copy", job_id=job_id, error=str(e))

    def stop(self, job: ActiveJob) -> None:
        """A stop request for a running job: it ends STOPPED, keeping θ as its model."""
        with self.state.cond:
            if self.state.active.pop(job.job_id, None) is None:
                return
        with job.apply_lock:  # not in the middle of an Apply
            self.recorder.flush(job)
            message = f"stopped by request at step {job.version}"
            self.end(job.job_id, job.message_id, "STOPPED", message=message)

    def end(
        self,
        job_id: str,
        message_id: str,
        status: str,
        reason: str | None = None,
        message: str | None = None,
        job: ActiveJob | None = None,
    ) -> None:
        """Record the end; ``job``: its state, if it has left ``active`` already."""
        with self.state.cond:
            job = self.state.active.pop(job_id, None) or job
            counts = self.state.worker_counts(job, self.state.clock()) if job is not None else None
            self.state.cond.notify_all()
        self.publisher.drain()  # the job's last points are written before its end
        if counts is not None:  # as they ended, whenever publish_workers last ran
            self.jobs.set_workers(job_id, *counts)
        self._keep_model(job_id, status)
        # the end is recorded before θ is dropped: a scheduler that dies in between leaves
        # θ behind, never a job that a successor would re-admit without its θ
        self.jobs.set_status(
            job_id, status, phase="ended", message=message or reason, reason=reason
        )
        self._release(job_id, job)
        telemetry.record_job_ended(status)
        self.ack(message_id)
        if self.log:
            self.log.info("job ended", job_id=job_id, status=status, reason=reason, message=message)
