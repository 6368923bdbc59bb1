"""Job records, the job queue and the metric series, in Redis: :class:`JobStore`, which
writes them (the keys: store/keys.py; the reads: store/job_reads.py).

A submitted job is written and queued in one MULTI/EXEC transaction, so the scheduler,
reading the queue with a consumer group, never sees a job without its record and no
record is left without its queue entry; a submission_id is claimed in the same
transaction, under WATCH, so one id makes at most one job. Status changes are checked and
written under WATCH, so two processes racing to end a job cannot both win, and each one
writes its history entry, status index move and event in the same transaction.
"""

from __future__ import annotations

import builtins
import secrets
import time
from collections.abc import Callable, Mapping, Sequence

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from chainrule.spec import JobSpec
from chainrule.store.events import end_fields, metrics_data, status_fields
from chainrule.store.fencing import Fence
from chainrule.store.job_reads import JobReader
from chainrule.store.job_records import (
    DEFAULT_PHASES,
    STOPPING_PHASE,
    SUBMISSION_ID,
    TERMINAL,
    TRANSITIONS,
    Change,
    CurrentState,
    InvalidCursorError,
    JobActiveError,
    JobNotFoundError,
    JobPage,
    JobRecord,
    JobStatus,
    OwnerLimitError,
    OwnerLimits,
    StatusTransition,
    SubmissionConflictError,
    moving_to,
    record_from_fields,
    text,
    transition_json,
    valid_job_id,
)
from chainrule.store.keys import thinned_key
from chainrule.store.metrics import decode_point, encode_point
from chainrule.store.scripts import JobScripts
from chainrule.store.submissions import claimed, new_job_fields, owned_count
from chainrule.store.thinning import DEFAULT_MAX_POINTS

__all__ = [  # the record types are defined in job_records and offered here too
    "DEFAULT_PHASES",
    "STOPPING_PHASE",
    "SUBMISSION_ID",
    "TERMINAL",
    "TRANSITIONS",
    "InvalidCursorError",
    "JobActiveError",
    "JobNotFoundError",
    "JobPage",
    "JobRecord",
    "JobStatus",
    "JobStore",
    "OwnerLimitError",
    "OwnerLimits",
    "StatusTransition",
    "SubmissionConflictError",
]


class JobStore(JobReader):
    """Job records, queue and metrics under ``prefix``; the client comes from the caller.
    The reads are :class:`~chainrule.store.job_reads.JobReader`'s.

    With a ``fence`` (the leading scheduler's), every write of job state is checked
    against the leader lease in the same round trip (store/fencing.py); without one,
    nothing is checked (the gateway's writes: submissions, stop requests, deletes)."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "chainrule",
        clock: Callable[[], float] = time.time,
        fence: Fence | None = None,
        max_points: int = DEFAULT_MAX_POINTS,
    ) -> None:
        super().__init__(client, prefix)
        self.max_points = max_points  # per metric and event stream (store/thinning.py)
        self._clock = clock
        self.fence = fence or Fence.none(prefix)
        self._scripts = JobScripts.register(client)

    # -- records ------------------------------------------------------------------------

    def submit(
        self, spec: JobSpec, submission_id: str | None = None, owner: str | None = None
    ) -> JobRecord:
        """Store a new PENDING job and queue it, atomically; returns its record. With a
        ``submission_id`` already used, see :meth:`submit_once`."""
        record, _ = self.submit_once(spec, submission_id, owner)
        return record

    def submit_once(
        self,
        spec: JobSpec,
        submission_id: str | None = None,
        owner: str | None = None,
        limits: OwnerLimits | None = None,
    ) -> tuple[JobRecord, bool]:
        """(record, created): a new PENDING job, queued, unless ``submission_id`` already
        names a job, which comes back as it is (created False) if its spec is ``spec``;
        SubmissionConflictError if it is another spec.

        The job belongs to ``owner`` (None: to no one, that is to the admins). With
        ``limits`` (and an owner), OwnerLimitError and nothing stored if the owner already
        has as many PENDING, or RUNNING, jobs as a limit allows: counted under WATCH of
        the status indexes, so two submissions racing past a limit cannot both succeed."""
        if submission_id is not None and not SUBMISSION_ID.fullmatch(submission_id):
            raise ValueError(
                f"submission_id {submission_id!r} must be 1 to 64 letters, digits, '.', '_' or '-'"
            )
        job_id, now = secrets.token_hex(8), self._clock()
        phase, spec_json = DEFAULT_PHASES[JobStatus.PENDING], spec.model_dump_json()
        fields = new_job_fields(job_id, spec, spec_json, now, submission_id, owner)
        checked = [] if owner is None or limits is None else limits.by_status()
        transition = transition_json(JobStatus.PENDING, phase, "", None, now)

        def write(pipe: Pipeline) -> str | None:
            if submission_id is not None:
                existing = claimed(self, pipe, submission_id, spec_json)
                if existing is not None:
                    return existing
            for status, limit in checked:
                count = owned_count(self, pipe, status, owner or "")
                if count >= limit:
                    raise OwnerLimitError(owner or "", status, limit, count)
            pipe.multi()
            pipe.hset(self.job_key(job_id), mapping=fields)
            pipe.rpush(self.history_key(job_id), transition)
            pipe.zadd(self.index_key, {job_id: now})
            pipe.zadd(self.status_index_key(JobStatus.PENDING), {job_id: now})
            pipe.xadd(self.events_key(job_id), status_fields("PENDING", phase, "", None, 0))  # type: ignore[arg-type]
            pipe.xadd(self.queue_key, {"job_id": job_id})
            if submission_id is not None:
                pipe.set(self.submission_key(submission_id), job_id)
            return None

        watches = [] if submission_id is None else [self.submission_key(submission_id)]
        existing = self._redis.transaction(write, *watches, value_from_callable=True)  # type: ignore[arg-type]
        if isinstance(existing, str):
            record = self.get(existing)
            if record is not None:
                return record, False
            return self.submit_once(spec, submission_id, owner, limits)  # deleted meanwhile
        return record_from_fields(fields, [transition]), True

    def delete(self, job_id: str) -> None:
        """Remove an ended job and everything it owns (record, history, metrics, events,
        diagnostics, checkpoints, model, prepared data, preprocessing, index entries, its
        submission_id), atomically. JobNotFoundError for an unknown job, JobActiveError
        for a PENDING or RUNNING one."""
        if not valid_job_id(job_id):
            raise JobNotFoundError(f"no job {job_id!r}")
        key = self.job_key(job_id)
        owned = self.owned_keys(job_id)

        def check_and_delete(pipe: Pipeline) -> None:
            status, submission_id = pipe.hmget(key, ["status", "submission_id"])
            if status is None:
                raise JobNotFoundError(f"no job {job_id!r}")
            current = JobStatus(text(status))
            if current not in TERMINAL:
                raise JobActiveError(
                    f"job {job_id} is {current}; only an ended job (SUCCEEDED, FAILED or "
                    "STOPPED) can be deleted, so stop it first and delete it once it has ended"
                )
            pipe.multi()
            pipe.delete(*owned)
            pipe.zrem(self.index_key, job_id)
            pipe.zrem(self.ended_index_key, job_id)
            for each in JobStatus:
                pipe.zrem(self.status_index_key(each), job_id)
            if submission_id is not None:
                pipe.delete(self.submission_key(text(submission_id)))

        self._redis.transaction(check_and_delete, key)

    def unindex_ended(self, job_id: str) -> None:
        """Take a job out of the ended index (one deleted meanwhile, or running again)."""
        self._redis.zrem(self.ended_index_key, job_id)

    # -- status -------------------------------------------------------------------------

    def set_status(
        self,
        job_id: str,
        status: JobStatus | str,
        phase: str | None = None,
        message: str | None = None,
        reason: str | None = None,
    ) -> JobRecord:
        """Move the job to ``status`` and record the transition; returns the new record.

        ``phase`` defaults to the status's own (``queued``, ``running``, ...) on a change
        of status and stays as it was otherwise; ``message`` replaces the old one (None
        clears it). FAILED needs a ``reason``, and only FAILED takes one. Raises
        JobNotFoundError for an unknown job and ValueError for a move the lifecycle
        forbids (anything out of SUCCEEDED, FAILED or STOPPED; RUNNING back to PENDING).
        """
        try:
            target = JobStatus(status)
        except ValueError:
            allowed = ", ".join(JobStatus)
            raise ValueError(f"unknown status {status!r}; expected one of: {allowed}") from None
        if target is JobStatus.FAILED and not reason:
            raise ValueError("a FAILED job needs a reason (diverged, no workers, bad dataset...)")
        if reason is not None and target is not JobStatus.FAILED:
            raise ValueError(f"only FAILED takes a reason; got reason {reason!r} for {target}")
        return self._move(job_id, moving_to(job_id, target, phase, message, reason))

    def set_phase(self, job_id: str, phase: str, message: str | None = None) -> JobRecord:
        """Change phase (and message) of a PENDING or RUNNING job, keeping its status."""
        return self._move(job_id, moving_to(job_id, None, phase, message, None))

    def refresh_message(self, job_id: str, phase: str, message: str) -> bool:
        """Rewrite the message of a job still in ``phase`` (a figure in it that moves, as
        how long an outage has lasted), without a history entry or a status event: the
        change to that phase had them. False (nothing written) once it has moved on."""
        if not valid_job_id(job_id):
            raise JobNotFoundError(f"no job {job_id!r}")
        key, written = self.job_key(job_id), [False]

        def check_and_write(pipe: Pipeline) -> None:
            self.fence.check(pipe)
            written[0] = text(pipe.hget(key, "phase") or "") == phase
            if written[0]:
                pipe.multi()
                pipe.hset(key, "message", message)

        self._redis.transaction(check_and_write, key, *self.fence.watched)
        return written[0]

    def request_stop(self, job_id: str) -> JobRecord:
        """Stop the job: a PENDING one becomes STOPPED at once; a RUNNING one gets
        ``stop_requested`` and phase ``stopping``, and the scheduler, which polls
        :meth:`stop_requested`, ends it STOPPED; an ended job is left as it is."""

        def decide(current: CurrentState) -> Change | None:
            if current.status is JobStatus.PENDING:
                return Change(
                    JobStatus.STOPPED,
                    DEFAULT_PHASES[JobStatus.STOPPED],
                    "stopped before it started",
                )
            if current.status is JobStatus.RUNNING and not current.stop_requested:
                message = "stop requested; the job ends after the step in progress"
                return Change(
                    JobStatus.RUNNING, STOPPING_PHASE, message, None, {"stop_requested": "1"}
                )
            return None

        return self._move(job_id, decide)

    def set_workers(self, job_id: str, active: int, lost: int) -> None:
        """Record how many workers the job has now (``active``) and has lost so far."""
        for name, value in (("active", active), ("lost", lost)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
        written = valid_job_id(job_id) and self.fence.run(
            self._scripts.set_workers, [self.job_key(job_id)], [active, lost]
        )
        if not written:
            raise JobNotFoundError(f"no job {job_id!r}")

    def _move(self, job_id: str, decide: Callable[[CurrentState], Change | None]) -> JobRecord:
        """Read the job's state under WATCH, let ``decide`` pick the change (None: none),
        and write it with its history entry, index move and events in one transaction."""
        if not valid_job_id(job_id):
            raise JobNotFoundError(f"no job {job_id!r}")
        key = self.job_key(job_id)

        def check_and_write(pipe: Pipeline) -> None:
            self.fence.check(pipe)
            names = ["status", "phase", "started_at", "created_at", "step", "stop_requested"]
            raw = pipe.hmget(key, names)
            if raw[0] is None:
                raise JobNotFoundError(f"no job {job_id!r}")
            current = CurrentState(
                status=JobStatus(text(raw[0])),
                phase=None if raw[1] is None else text(raw[1]),
                started=raw[2] is not None,
                created_at=float(text(raw[3])),
                step=int(raw[4] or 0),
                stop_requested=text(raw[5] or "") == "1",
            )
            change = decide(current)
            if change is None:
                return
            now = self._clock()
            updates: dict[FieldT, EncodableT] = {
                "status": change.status.value,
                "phase": change.phase,
                "message": change.message,
            }
            updates.update(change.fields)
            if change.reason is not None:
                updates["failure_reason"] = change.reason
            if change.status is JobStatus.RUNNING and not current.started:
                updates["started_at"] = repr(now)
            if change.status in TERMINAL:
                updates["ended_at"] = repr(now)
            pipe.multi()
            pipe.hset(key, mapping=updates)
            transition = transition_json(
                change.status, change.phase, change.message, change.reason, now
            )
            pipe.rpush(self.history_key(job_id), transition)
            if change.status is not current.status:
                pipe.zrem(self.status_index_key(current.status), job_id)
                pipe.zadd(self.status_index_key(change.status), {job_id: current.created_at})
            if change.status in TERMINAL:
                pipe.zadd(self.ended_index_key, {job_id: now})
            elif current.status in TERMINAL:
                pipe.zrem(self.ended_index_key, job_id)
            event = status_fields(
                change.status.value, change.phase, change.message, change.reason, current.step
            )
            pipe.xadd(self.events_key(job_id), event)  # type: ignore[arg-type]
            if change.status in TERMINAL:
                pipe.xadd(self.events_key(job_id), end_fields(change.status.value))  # type: ignore[arg-type]

        self._redis.transaction(check_and_write, key, *self.fence.watched)
        record = self.get(job_id)
        if record is None:
            raise JobNotFoundError(f"no job {job_id!r}")  # deleted right after the change
        return record

    def set_progress(self, job_id: str, step: int) -> None:
        """Record that a RUNNING job has completed ``step`` of its total_steps."""
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step must be an integer >= 0; got {step!r}")
        if not valid_job_id(job_id):
            raise JobNotFoundError(f"no job {job_id!r}")
        reply = self.fence.run(self._scripts.set_progress, [self.job_key(job_id)], [step])
        if reply is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        status, total = text(reply[0]), int(reply[1])
        if status != JobStatus.RUNNING:
            raise ValueError(f"job {job_id} is {status}; progress is recorded only while RUNNING")
        if step > total:
            raise ValueError(f"step must lie in [0, {total}] for job {job_id}; got {step}")

    # -- metrics and events -------------------------------------------------------------

    def append_metrics(
        self, job_id: str, point: Mapping[str, object], progress: int | None = None
    ) -> str:
        """Add one point to the job's metric series (and, while the job has not ended, to
        its events); returns the metric stream entry id. With ``progress``, a RUNNING
        job's step is set to it in the same round trip (ignored if it exceeds the total).

        ``point`` has step, loss, lr, samples_per_s, active_workers, optionally time
        (Unix seconds, default now), eval_loss and eval_accuracy; ValueError otherwise.
        """
        return self.append_metrics_many(job_id, [point], progress)[0]

    def append_metrics_many(
        self, job_id: str, points: Sequence[Mapping[str, object]], progress: int | None = None
    ) -> builtins.list[str]:
        """:meth:`append_metrics` for several points in order, in one script call;
        ``progress`` is set with the last. All are checked before any is sent."""
        if not valid_job_id(job_id):
            raise JobNotFoundError(f"no job {job_id!r}")
        if progress is not None and (not isinstance(progress, int) or progress < 0):
            raise ValueError(f"progress must be an integer >= 0; got {progress!r}")
        encoded = [encode_point(point, self._clock()) for point in points]
        if not encoded:
            return []
        keys = [self.job_key(job_id), self.metrics_key(job_id), self.events_key(job_id)]
        keys.append(thinned_key(self.prefix, job_id))
        args: builtins.list[EncodableT] = ["" if progress is None else str(progress)]
        args.append(self.max_points)
        for fields in encoded:
            args += [metrics_data(decode_point(fields)), 2 * len(fields)]
            args += [item for pair in fields.items() for item in pair]
        entry_ids = self.fence.run(self._scripts.append_metrics, keys, args)
        if not entry_ids:
            raise JobNotFoundError(f"no job {job_id!r}")
        return [text(entry_id) for entry_id in entry_ids]
