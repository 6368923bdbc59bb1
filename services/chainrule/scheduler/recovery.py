"""When a job's slow work fails: θ not where the job thinks it is (a parameter server
restarted) resyncs it from the latest checkpoint, a parameter server that does not
answer is waited out within a budget (scheduler/outages.py), anything else fails the
job. A failure ends a job; it never hangs it."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from chainrule.rpc.retry import TRANSIENT
from chainrule.scheduler.ending import Ending
from chainrule.scheduler.job import ActiveJob
from chainrule.scheduler.outages import WAITING_PHASE
from chainrule.scheduler.ports import Jobs, ParamServer
from chainrule.scheduler.recording import Recorder, recovered_points
from chainrule.scheduler.state import SchedulerState, by_step

RESYNC_CODES = (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND)

CatchUp = Callable[[ActiveJob, Any], bool]
"""Record the steps a parameter server (``status``) applied without their reports
reaching this scheduler; False when its log does not cover them (stepping.py)."""


@dataclass(eq=False)
class Recovery:
    state: SchedulerState
    jobs: Jobs
    paramserver: ParamServer
    recorder: Recorder
    ending: Ending
    catch_up: CatchUp
    log: Any = None

    def guarded(self, job: ActiveJob, work: Callable[[], None]) -> None:
        """Run slow work for ``job`` one at a time; a failure ends the job, never hangs
        it: θ not where the job thinks resyncs it, a parameter server that does not
        answer is waited out (scheduler/outages.py), anything else fails the job."""
        try:
            with job.apply_lock:
                work()
        except grpc.RpcError as e:
            if e.code() in RESYNC_CODES:
                self.guarded(job, lambda: self.resync(job))
            elif e.code() in TRANSIENT:  # the client's error names the server (client.py)
                error = f"parameter server said {e.code().name}: {e.details()}"
                unanswered = float(getattr(e, "unanswered_s", 0.0) or 0.0)
                self._wait_out(job, error, str(getattr(e, "target", "") or ""), unanswered)
            else:
                self._fail_unexpectedly(job, e)
        except Exception as e:
            self._fail_unexpectedly(job, e)

    def fail_later(self, job: ActiveJob, error: BaseException) -> None:
        """Background work for ``job`` failed: resync or fail it through ``guarded``, on a
        thread of its own (the publisher must not wait for the job's lock)."""
        threading.Thread(target=self.guarded, args=(job, _raiser(error)), daemon=True).start()

    def waiting(
        self, job: ActiveJob, error: str, target: str = "", unanswered_s: float = 0.0
    ) -> None:
        """The job's parameter server (``target``, as configured, if known) did not
        answer (``error``): the job's phase says so when this begins an outage (and
        :meth:`refresh_waiting` keeps its seconds current), and the job FAILS once it
        lasts past the budget."""
        now = self.state.clock()
        with self.state.cond:
            if self.state.active.get(job.job_id) is not job:
                return  # ended (or rolled over) meanwhile
            began = job.outage.seen(error, now, target, unanswered_s)
            over = job.outage.over_budget(now)
            if over:
                self.state.active.pop(job.job_id)
                self.state.cond.notify_all()
        if over:
            reason = job.outage.reason(now)
            self.ending.end(job.job_id, job.message_id, "FAILED", reason=reason, job=job)
        elif began:
            if self.log:
                self.log.warning(
                    "parameter server unavailable; waiting",
                    job_id=job.job_id,
                    paramserver=target,
                    error=error,
                )
            self._write_waiting(job)

    def refresh_waiting(self) -> None:
        """Rewrite the waiting message (how long so far) of every job whose parameter
        server has not answered for :data:`~.outages.REFRESH_S` since it was written;
        called about once a second (SchedulerCore.publish_workers)."""
        with self.state.cond:
            now = self.state.clock()
            due = [j for j in self.state.active.values() if j.outage.refresh_due(now)]
        for job in due:
            self._write_waiting(job)

    def _write_waiting(self, job: ActiveJob) -> None:
        """The job's phase and message: waiting, for which server, for how long (if the
        outage still lasts and the job still runs here)."""
        with job.outage.phase_lock:
            with self.state.cond:
                now = self.state.clock()
                if job.outage.since is None or self.state.active.get(job.job_id) is not job:
                    return  # the server answered, or the job ended, meanwhile
                first = job.outage.written is None
                message, job.outage.written = job.outage.waiting_message(now), now
            with contextlib.suppress(ValueError, LookupError):  # the job ended meanwhile
                if first:  # the change of phase: a history entry and a status event
                    self.jobs.set_phase(job.job_id, WAITING_PHASE, message)
                else:  # how long so far: the message alone
                    self.jobs.refresh_message(job.job_id, WAITING_PHASE, message)

    def _wait_out(
        self, job: ActiveJob, error: str, target: str = "", unanswered_s: float = 0.0
    ) -> None:
        """The scheduler's own call for ``job`` found its parameter server unavailable:
        try again (a resync: what reached the server before it went is unknown) after a
        backoff, while the outage is within its budget. One retry pending at a time."""
        self.waiting(job, error, target, unanswered_s)
        with self.state.cond:
            if self.state.active.get(job.job_id) is not job or job.outage.retry_pending:
                return
            job.outage.retry_pending = True
            delay = job.outage.next_retry_s()

        def retry() -> None:
            job.outage.retry_pending = False
            self.guarded(job, lambda: self.resync(job))

        timer = threading.Timer(delay, retry)
        timer.daemon = True
        timer.start()

    def answered(self, job: ActiveJob) -> None:
        """The job's parameter server answers again (a step was recorded, or a resync
        reached it): say so."""
        with job.outage.phase_lock:  # after any waiting message being written
            with self.state.cond:
                lasted = job.outage.ended(self.state.clock())
            if lasted is not None:
                if self.log:
                    self.log.info("parameter server answers again", job_id=job.job_id, after=lasted)
                with contextlib.suppress(ValueError):
                    self.jobs.set_phase(
                        job.job_id,
                        "training",
                        message=(
                            f"training again: the parameter server answered after {lasted:.0f} s"
                        ),
                    )

    def _fail_unexpectedly(self, job: ActiveJob, e: BaseException) -> None:
        self.recorder.flush(job)
        if self.log:
            self.log.exception("job step failed", job_id=job.job_id, version=job.version)
        with self.state.cond:
            self.state.active.pop(job.job_id, None)
        reason = f"could not complete step {job.version}: {type(e).__name__}: {e}"
        self.ending.end(job.job_id, job.message_id, "FAILED", reason=reason)

    def resync(self, job: ActiveJob) -> None:
        """The parameter server's θ is not where this job thinks it is (it restarted):
        roll every shard back to the latest checkpoint and recompute from there."""
        self.recorder.flush(job)  # the steps rolled back stay in the series, as they happened
        try:
            try:
                status = self.paramserver.status(job.job_id)
            except grpc.RpcError as e:  # not held (dropped, or the server restarted empty)
                if e.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                status = self.paramserver.restore(job.job_id)  # from its latest checkpoint
            # it answers: an outage, if any, is over (no waiting message after this one)
            self.answered(job)
            if status.version > job.version and self.catch_up(job, status):
                return
            if status.version != job.version:
                status = self.paramserver.restore(job.job_id)
        except grpc.RpcError as e:
            if e.code() in TRANSIENT:
                raise  # not lost: the server does not answer (guarded waits it out)
            with self.state.cond:
                self.state.active.pop(job.job_id, None)
            reason = f"θ was lost at step {job.version} and no checkpoint holds it ({e.details()})"
            self.ending.end(job.job_id, job.message_id, "FAILED", reason=reason)
            return
        with self.state.cond:
            if status.version > job.version:  # θ came back at a checkpoint past the last
                # step recorded here (lost just after it): its steps' points from its log
                applied = by_step(status.applied)
                for point in recovered_points(job, applied, job.version, status.version):
                    job.unrecorded.append((point["step"], point, None))
            if status.version != job.version:
                job.resume(status.version, status.scheduler_state)
                job.restored_from = status.version
                self.jobs.set_phase(
                    job.job_id,
                    "training",
                    message=f"resumed from the checkpoint at step {status.version}",
                )
                if self.log:
                    self.log.warning("job rolled back", job_id=job.job_id, version=status.version)
            else:  # θ came back where the job is (it was lost at a checkpoint)
                job.clear_steps()
                if self.log:
                    self.log.info("job resynced", job_id=job.job_id, version=job.version)
            drawn = job.queue_step() if job.mode == "sync" else []
            self.state.cond.notify_all()
        self.recorder.flush(job)
        self.recorder.plan(job, drawn)


def _raiser(error: BaseException) -> Callable[[], None]:
    """Work that fails with ``error``: hands a background failure to ``guarded``."""

    def fail() -> None:
        raise error

    return fail
