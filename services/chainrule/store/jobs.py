"""Job records, the job queue and the metric series, in Redis.

Keys, for ``prefix="chainrule"`` and a job id such as ``3f9a2c71d04e8b15``::

    chainrule:job:{id}           hash    the record: id, name, status, phase, message,
                                         failure_reason, step, total_steps, created_at,
                                         started_at, ended_at (Unix seconds), spec (JSON)
    chainrule:job:{id}:history   list    status transitions, JSON objects, oldest first
    chainrule:job:{id}:metrics   stream  metric points (see chainrule.store.metrics)
    chainrule:jobs               zset    job ids scored by creation time
    chainrule:jobs:queue         stream  one {"job_id": id} entry per submitted job

A submitted job is written and queued in one MULTI/EXEC transaction, so the scheduler,
reading the queue with a consumer group, never sees a job without its record and no
record is left without its queue entry. Status changes are checked and written under
WATCH, so two processes racing to end a job cannot both win.
"""

from __future__ import annotations

import builtins
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import redis
from redis.client import Pipeline
from redis.typing import EncodableT, FieldT

from chainrule.spec import JobSpec, total_steps
from chainrule.store.metrics import MetricPoint, decode_point, encode_point


class JobStatus(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED})
# status -> the statuses it may move to; staying put changes only phase and message
TRANSITIONS: dict[JobStatus, tuple[JobStatus, ...]] = {
    JobStatus.PENDING: (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.STOPPED),
    JobStatus.RUNNING: (
        JobStatus.RUNNING,
        JobStatus.SUCCEEDED,
        JobStatus.FAILED,
        JobStatus.STOPPED,
    ),
}
# the phase a status change sets when the caller names none
DEFAULT_PHASES: dict[JobStatus, str] = {
    JobStatus.PENDING: "queued",
    JobStatus.RUNNING: "running",
    JobStatus.SUCCEEDED: "finished",
    JobStatus.FAILED: "failed",
    JobStatus.STOPPED: "stopped",
}
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # never a ':', so an id cannot reach other keys
_METRICS_PAGE = 10_000

# Writes the step only while the job runs and the step is in range; returns the record's
# status and total_steps either way (nil when there is no such job).
_SET_PROGRESS = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return false end
local total = redis.call('HGET', KEYS[1], 'total_steps')
if status == 'RUNNING' and tonumber(ARGV[1]) <= tonumber(total) then
  redis.call('HSET', KEYS[1], 'step', ARGV[1])
end
return {status, total}
"""
# XADD to the metrics stream only if the job exists, so no orphan streams appear
_APPEND_METRICS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV))
"""


class JobNotFoundError(LookupError):
    """No job with that id."""


@dataclass(frozen=True)
class StatusTransition:
    status: JobStatus
    phase: str
    message: str
    reason: str | None
    at: datetime


@dataclass(frozen=True)
class JobRecord:
    """A job as stored: what was asked (``spec``) and where it stands."""

    id: str
    name: str
    status: JobStatus
    phase: str
    message: str
    failure_reason: str | None
    step: int
    total_steps: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    spec: JobSpec
    status_transitions: tuple[StatusTransition, ...]

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class JobStore:
    """Job records, queue and metrics under ``prefix``; the client comes from the caller."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "chainrule",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = client
        self.prefix = prefix
        self._clock = clock
        self._set_progress = client.register_script(_SET_PROGRESS)
        self._append_metrics = client.register_script(_APPEND_METRICS)

    # -- keys ---------------------------------------------------------------------------

    @property
    def index_key(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def queue_key(self) -> str:
        """The stream the scheduler reads submitted job ids from (field ``job_id``)."""
        return f"{self.prefix}:jobs:queue"

    def job_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def history_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:history"

    def metrics_key(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:metrics"

    # -- records ------------------------------------------------------------------------

    def submit(self, spec: JobSpec) -> JobRecord:
        """Store a new PENDING job and queue it, atomically; returns its record."""
        job_id = secrets.token_hex(8)
        now = self._clock()
        phase = DEFAULT_PHASES[JobStatus.PENDING]
        fields: dict[FieldT, EncodableT] = {
            "id": job_id,
            "name": spec.name,
            "status": JobStatus.PENDING.value,
            "phase": phase,
            "message": "",
            "step": "0",
            "total_steps": str(total_steps(spec)),
            "created_at": repr(now),
            "spec": spec.model_dump_json(),
        }
        transition = _transition_json(JobStatus.PENDING, phase, "", None, now)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.job_key(job_id), mapping=fields)
            pipe.rpush(self.history_key(job_id), transition)
            pipe.zadd(self.index_key, {job_id: now})
            pipe.xadd(self.queue_key, {"job_id": job_id})
            pipe.execute()
        return _record(fields, [transition])

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if there is no job ``job_id``."""
        if not _valid(job_id):
            return None
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.job_key(job_id))
            pipe.lrange(self.history_key(job_id), 0, -1)
            fields, history = pipe.execute()
        return _record(fields, history) if fields else None

    def list(self, limit: int = 50, offset: int = 0) -> list[JobRecord]:
        """Up to ``limit`` jobs, newest first, skipping the ``offset`` newest."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be >= 1 and offset >= 0; got {limit}, {offset}")
        ids = [_text(i) for i in self._redis.zrevrange(self.index_key, offset, offset + limit - 1)]
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.job_key(job_id))
                pipe.lrange(self.history_key(job_id), 0, -1)
            replies = pipe.execute()
        pairs = zip(replies[::2], replies[1::2], strict=True)
        return [_record(fields, history) for fields, history in pairs if fields]

    def count(self) -> int:
        """How many jobs the index holds."""
        return int(self._redis.zcard(self.index_key))

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
        return self._move(job_id, target, phase, message, reason)

    def set_phase(self, job_id: str, phase: str, message: str | None = None) -> JobRecord:
        """Change phase (and message) of a PENDING or RUNNING job, keeping its status."""
        return self._move(job_id, None, phase, message, None)

    def _move(
        self,
        job_id: str,
        target: JobStatus | None,
        phase: str | None,
        message: str | None,
        reason: str | None,
    ) -> JobRecord:
        if not _valid(job_id):
            raise JobNotFoundError(f"no job {job_id!r}")
        key = self.job_key(job_id)

        def check_and_write(pipe: Pipeline) -> None:
            raw = pipe.hmget(key, ["status", "phase", "started_at"])
            if raw[0] is None:
                raise JobNotFoundError(f"no job {job_id!r}")
            current = JobStatus(_text(raw[0]))
            new = current if target is None else target
            if new not in TRANSITIONS.get(current, ()):
                raise ValueError(_illegal_move(job_id, current, new))
            now = self._clock()
            new_phase = phase if phase is not None else _default_phase(current, new, raw[1])
            updates: dict[FieldT, EncodableT] = {
                "status": new.value,
                "phase": new_phase,
                "message": message or "",
            }
            if reason is not None:
                updates["failure_reason"] = reason
            if new is JobStatus.RUNNING and raw[2] is None:
                updates["started_at"] = repr(now)
            if new in TERMINAL:
                updates["ended_at"] = repr(now)
            pipe.multi()
            pipe.hset(key, mapping=updates)
            transition = _transition_json(new, new_phase, message or "", reason, now)
            pipe.rpush(self.history_key(job_id), transition)

        self._redis.transaction(check_and_write, key)
        record = self.get(job_id)
        assert record is not None, "jobs are never deleted while their status changes"
        return record

    def set_progress(self, job_id: str, step: int) -> None:
        """Record that a RUNNING job has completed ``step`` of its total_steps."""
        if not isinstance(step, int) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step must be an integer >= 0; got {step!r}")
        if not _valid(job_id):
            raise JobNotFoundError(f"no job {job_id!r}")
        reply = self._set_progress(keys=[self.job_key(job_id)], args=[step])
        if reply is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        status, total = _text(reply[0]), int(reply[1])
        if status != JobStatus.RUNNING:
            raise ValueError(f"job {job_id} is {status}; progress is recorded only while RUNNING")
        if step > total:
            raise ValueError(f"step must lie in [0, {total}] for job {job_id}; got {step}")

    # -- metrics ------------------------------------------------------------------------

    def append_metrics(self, job_id: str, point: Mapping[str, object]) -> str:
        """Add one point to the job's metric series; returns the stream entry id.

        ``point`` has step, loss, lr, samples_per_s, active_workers, optionally time
        (Unix seconds, default now), eval_loss and eval_accuracy; ValueError otherwise.
        """
        fields = encode_point(point, self._clock())
        if not _valid(job_id):
            raise JobNotFoundError(f"no job {job_id!r}")
        args = [item for pair in fields.items() for item in pair]
        entry_id = self._append_metrics(
            keys=[self.job_key(job_id), self.metrics_key(job_id)], args=args
        )
        if entry_id is None:
            raise JobNotFoundError(f"no job {job_id!r}")
        return _text(entry_id)

    def metrics(self, job_id: str) -> builtins.list[MetricPoint]:
        """The job's whole metric series, oldest first ([] for an unknown job)."""
        if not _valid(job_id):
            return []
        key, start = self.metrics_key(job_id), "-"
        points: builtins.list[MetricPoint] = []
        while True:
            entries = self._redis.xrange(key, start, "+", count=_METRICS_PAGE) or []
            points += [decode_point(_text_fields(fields or {})) for _, fields in entries]
            if len(entries) < _METRICS_PAGE:
                return points
            start = "(" + _text(entries[-1][0])  # exclusive: after the last one read

    def latest_metrics(self, job_id: str) -> MetricPoint | None:
        """The job's most recent metric point, or None if it has none yet."""
        if not _valid(job_id):
            return None
        entries = self._redis.xrevrange(self.metrics_key(job_id), "+", "-", count=1)
        return decode_point(_text_fields(entries[0][1] or {})) if entries else None


# -- (de)serialisation ---------------------------------------------------------------------


def _valid(job_id: str) -> bool:
    return bool(_JOB_ID.fullmatch(job_id))


def _text(value: bytes | str | Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text_fields(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in fields.items()}


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


def _default_phase(current: JobStatus, new: JobStatus, old_phase: bytes | str | None) -> str:
    if new is current and old_phase is not None:
        return _text(old_phase)
    return DEFAULT_PHASES[new]


def _illegal_move(job_id: str, current: JobStatus, new: JobStatus) -> str:
    if current in TERMINAL:
        return f"job {job_id} has ended as {current}; it cannot move to {new}"
    allowed = ", ".join(TRANSITIONS[current])
    return f"job {job_id} is {current}; it cannot move to {new} (allowed: {allowed})"


def _transition_json(
    status: JobStatus, phase: str, message: str, reason: str | None, at: float
) -> str:
    entry = {"status": status.value, "phase": phase, "message": message, "reason": reason}
    return json.dumps({**entry, "at": at})


def _record(raw_fields: Mapping[Any, Any], raw_history: list[Any]) -> JobRecord:
    fields = _text_fields(raw_fields)
    transitions = []
    for raw in raw_history:
        entry = json.loads(_text(raw))
        transitions.append(
            StatusTransition(
                status=JobStatus(entry["status"]),
                phase=entry["phase"],
                message=entry["message"],
                reason=entry["reason"],
                at=datetime.fromtimestamp(entry["at"], UTC),
            )
        )
    created_at = _time(fields["created_at"])
    assert created_at is not None
    return JobRecord(
        id=fields["id"],
        name=fields["name"],
        status=JobStatus(fields["status"]),
        phase=fields["phase"],
        message=fields["message"],
        failure_reason=fields.get("failure_reason"),
        step=int(fields["step"]),
        total_steps=int(fields["total_steps"]),
        created_at=created_at,
        started_at=_time(fields.get("started_at")),
        ended_at=_time(fields.get("ended_at")),
        spec=JobSpec.model_validate_json(fields["spec"]),
        status_transitions=tuple(transitions),
    )
