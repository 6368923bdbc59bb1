"""What a job is, as stored: its status and lifecycle, its record, and how a record
and a page position are read back from Redis. :mod:`chainrule.store.jobs` reads and
writes them."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from chainrule.spec import JobSpec


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
        JobStatus.PENDING,  # preempted by a job of higher priority: it resumes later
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
STOPPING_PHASE = "stopping"
JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # never a ':', so an id cannot reach other keys
SUBMISSION_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class JobNotFoundError(LookupError):
    """No job with that id."""


class JobActiveError(ValueError):
    """The job is PENDING or RUNNING, and the operation needs one that has ended."""


class SubmissionConflictError(ValueError):
    """A submission_id already names a job with a different spec."""

    def __init__(self, message: str, job_id: str) -> None:
        super().__init__(message)
        self.job_id = job_id


class InvalidCursorError(ValueError):
    """A page cursor that this store did not hand out."""


@dataclass(frozen=True)
class OwnerLimits:
    """How many PENDING (queued) and RUNNING jobs one owner may have when it submits
    another; 0: no limit."""

    max_queued: int = 0
    max_running: int = 0

    def by_status(self) -> list[tuple[JobStatus, int]]:
        """(status, limit) for each limit that is set."""
        pairs = [(JobStatus.PENDING, self.max_queued), (JobStatus.RUNNING, self.max_running)]
        return [(status, limit) for status, limit in pairs if limit > 0]


class OwnerLimitError(ValueError):
    """A submission would take its owner past one of its :class:`OwnerLimits`."""

    def __init__(self, owner: str, status: JobStatus, limit: int, count: int) -> None:
        kind = "queued (PENDING)" if status is JobStatus.PENDING else "RUNNING"
        super().__init__(f"{owner} has {count} {kind} jobs; the limit is {limit}")
        self.owner = owner
        self.status = status
        self.limit = limit
        self.count = count


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
    submission_id: str | None = None
    workers_active: int = 0  # as the scheduler last counted them (set_workers)
    workers_lost: int = 0
    stop_requested: bool = False
    owner: str | None = None  # the principal that submitted it; None: the admins'

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class JobPage:
    """One page of a listing: the records, how many match in all, and the cursor of the
    next page (None on the last)."""

    records: list[JobRecord]
    total: int
    next_cursor: str | None


@dataclass(frozen=True)
class CurrentState:
    """What a status change is decided on, read under WATCH."""

    status: JobStatus
    phase: str | None
    started: bool
    created_at: float
    step: int
    stop_requested: bool


@dataclass(frozen=True)
class Change:
    status: JobStatus
    phase: str
    message: str
    reason: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)  # more hash fields to set


def valid_job_id(job_id: str) -> bool:
    return bool(JOB_ID.fullmatch(job_id))


def text(value: bytes | str | Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def text_fields(fields: Mapping[Any, Any]) -> dict[str, str]:
    return {text(k): text(v) for k, v in fields.items()}


def utc_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(float(value), UTC)


def moving_to(
    job_id: str,
    target: JobStatus | None,
    phase: str | None,
    message: str | None,
    reason: str | None,
) -> Callable[[CurrentState], Change]:
    """The change to ``target`` (None: the current status), refused if the lifecycle
    forbids it."""

    def decide(current: CurrentState) -> Change:
        new = current.status if target is None else target
        if new not in TRANSITIONS.get(current.status, ()):
            raise ValueError(illegal_move(job_id, current.status, new))
        if phase is not None:
            new_phase = phase
        elif new is current.status and current.phase is not None:
            new_phase = current.phase
        else:
            new_phase = DEFAULT_PHASES[new]
        return Change(new, new_phase, message or "", reason)

    return decide


def illegal_move(job_id: str, current: JobStatus, new: JobStatus) -> str:
    if current in TERMINAL:
        return f"job {job_id} has ended as {current}; it cannot move to {new}"
    allowed = ", ".join(TRANSITIONS[current])
    return f"job {job_id} is {current}; it cannot move to {new} (allowed: {allowed})"


def transition_json(
    status: JobStatus, phase: str, message: str, reason: str | None, at: float
) -> str:
    entry = {"status": status.value, "phase": phase, "message": message, "reason": reason}
    return json.dumps({**entry, "at": at})


def encode_cursor(score: float, job_id: str) -> str:
    """The position after (creation time, id), as an opaque URL-safe token."""
    raw = f"{score!r}:{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    refusal = f"page token {cursor[:80]!r} is not one this API handed out"
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        score_text, job_id = raw.split(":", 1)
        score = float(score_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursorError(refusal) from None
    if not (valid_job_id(job_id) and score == score and abs(score) != float("inf")):
        raise InvalidCursorError(refusal)
    return score, job_id


def record_from_fields(raw_fields: Mapping[Any, Any], raw_history: list[Any]) -> JobRecord:
    fields = text_fields(raw_fields)
    transitions = []
    for raw in raw_history:
        entry = json.loads(text(raw))
        transitions.append(
            StatusTransition(
                status=JobStatus(entry["status"]),
                phase=entry["phase"],
                message=entry["message"],
                reason=entry["reason"],
                at=datetime.fromtimestamp(entry["at"], UTC),
            )
        )
    created_at = utc_time(fields["created_at"])
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
        started_at=utc_time(fields.get("started_at")),
        ended_at=utc_time(fields.get("ended_at")),
        spec=JobSpec.model_validate_json(fields["spec"]),
        status_transitions=tuple(transitions),
        submission_id=fields.get("submission_id"),
        workers_active=int(fields.get("workers_active", 0)),
        workers_lost=int(fields.get("workers_lost", 0)),
        stop_requested=fields.get("stop_requested") == "1",
        owner=fields.get("owner"),
    )
