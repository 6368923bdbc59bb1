"""Reads of the jobs: records and listings, the metric series and the event stream.

:class:`JobReader` is what :class:`~chainrule.store.jobs.JobStore`, which writes them,
builds on; it names the keys through store/keys.py and writes nothing.
"""

from __future__ import annotations

import builtins
from typing import Any

import redis

import chainrule.store.keys as keys
from chainrule.store.events import JobEvent, decode_entries, valid_event_id
from chainrule.store.job_records import (
    JobPage,
    JobRecord,
    JobStatus,
    decode_cursor,
    encode_cursor,
    record_from_fields,
    text,
    text_fields,
    valid_job_id,
)
from chainrule.store.metrics import MetricPoint, decode_point
from chainrule.store.thinning import thinned_counts

_METRICS_PAGE = 10_000


class JobReader:
    """Reads of the job records, metric series and event streams under ``prefix``."""

    def __init__(self, client: redis.Redis, prefix: str = "chainrule") -> None:
        self._redis = client
        self.prefix = prefix

    # -- keys (store/keys.py) -----------------------------------------------------------

    @property
    def index_key(self) -> str:
        return keys.index_key(self.prefix)

    @property
    def queue_key(self) -> str:
        """The stream the scheduler reads submitted job ids from (field ``job_id``)."""
        return keys.queue_key(self.prefix)

    def status_index_key(self, status: JobStatus) -> str:
        return keys.status_index_key(self.prefix, status.value)

    @property
    def ended_index_key(self) -> str:
        """Ended jobs scored by when they ended (Unix seconds): what retention expires."""
        return keys.ended_index_key(self.prefix)

    def job_key(self, job_id: str) -> str:
        return keys.job_key(self.prefix, job_id)

    def history_key(self, job_id: str) -> str:
        return keys.history_key(self.prefix, job_id)

    def metrics_key(self, job_id: str) -> str:
        return keys.metrics_key(self.prefix, job_id)

    def events_key(self, job_id: str) -> str:
        return keys.events_key(self.prefix, job_id)

    def submission_key(self, submission_id: str) -> str:
        return keys.submission_key(self.prefix, submission_id)

    def owned_keys(self, job_id: str) -> builtins.list[str]:
        """Every key a job owns, the record first; checkpoints by a SCAN of their pattern."""
        # ids and prefixes hold no glob characters
        pattern = keys.checkpoint_key(self.prefix, job_id, "*")
        checkpoints = sorted(text(k) for k in self._redis.scan_iter(match=pattern, count=500))
        return [*keys.owned_keys(self.prefix, job_id), *checkpoints]

    # -- records ------------------------------------------------------------------------

    def get(self, job_id: str) -> JobRecord | None:
        """The job's record, or None if there is no job ``job_id``."""
        if not valid_job_id(job_id):
            return None
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.job_key(job_id))
            pipe.lrange(self.history_key(job_id), 0, -1)
            fields, history = pipe.execute()
        return record_from_fields(fields, history) if fields else None

    def list(self, limit: int = 50, offset: int = 0) -> builtins.list[JobRecord]:
        """Up to ``limit`` jobs, newest first, skipping the ``offset`` newest."""
        if limit < 1 or offset < 0:
            raise ValueError(f"limit must be >= 1 and offset >= 0; got {limit}, {offset}")
        ids = [text(i) for i in self._redis.zrevrange(self.index_key, offset, offset + limit - 1)]
        return self._records(ids)

    def page(
        self,
        status: JobStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
        owner: str | None = None,
    ) -> JobPage:
        """Up to ``limit`` jobs (in ``status``, if given; owned by ``owner``, if given),
        newest first, after ``cursor`` (a :attr:`JobPage.next_cursor`). Jobs submitted
        between pages do not shift the later ones; InvalidCursorError for a cursor this
        store did not make."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1; got {limit}")
        key = self.index_key if status is None else self.status_index_key(status)
        if owner is not None:
            return self._owned_page(key, owner, limit, cursor)
        pairs: builtins.list[tuple[str, float]]
        if cursor is None:
            reply: Any = self._redis.zrevrange(key, 0, limit, withscores=True)
            pairs = [(text(m), float(s)) for m, s in reply]
        else:
            score, last_id = decode_cursor(cursor)
            ties = int(self._redis.zcount(key, score, score))  # order within a score: by id
            reply = self._redis.zrevrangebyscore(
                key, score, "-inf", start=0, num=limit + 1 + ties, withscores=True
            )
            pairs = [(text(m), float(s)) for m, s in reply]
            pairs = [(m, s) for m, s in pairs if s < score or m < last_id]
        ids = [member for member, _ in pairs[:limit]]
        more = len(pairs) > limit
        next_cursor = encode_cursor(pairs[limit - 1][1], ids[-1]) if more else None
        return JobPage(self._records(ids), int(self._redis.zcard(key)), next_cursor)

    def _owned_page(self, key: str, owner: str, limit: int, cursor: str | None) -> JobPage:
        """:meth:`page` of ``owner``'s jobs in index ``key``. There is no index by owner:
        this reads every id in ``key`` and each one's owner (one pipelined round trip)."""
        reply: Any = self._redis.zrevrange(key, 0, -1, withscores=True)
        every = [(text(m), float(s)) for m, s in reply]
        owners = self.owners([member for member, _ in every])
        pairs = [pair for pair, of in zip(every, owners, strict=True) if of == owner]
        total = len(pairs)
        if cursor is not None:
            score, last_id = decode_cursor(cursor)  # order within a score: by id, descending
            pairs = [(m, s) for m, s in pairs if s < score or (s == score and m < last_id)]
        ids = [member for member, _ in pairs[:limit]]
        more = len(pairs) > limit
        next_cursor = encode_cursor(pairs[limit - 1][1], ids[-1]) if more else None
        return JobPage(self._records(ids), total, next_cursor)

    def in_status(self, status: JobStatus) -> builtins.list[JobRecord]:
        """Every job in ``status``, oldest first (by created_at): two round trips, the
        status index and then the records, pipelined."""
        ids = [text(i) for i in self._redis.zrange(self.status_index_key(status), 0, -1)]
        return self._records(ids) if ids else []

    def owners(self, ids: builtins.list[str]) -> builtins.list[str | None]:
        """The owner of each job in ``ids`` (None: no owner, or no such job)."""
        if not ids:
            return []
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(self.job_key(job_id), "owner")
            replies = pipe.execute()
        return [None if raw is None else text(raw) for raw in replies]

    def _records(self, ids: builtins.list[str]) -> builtins.list[JobRecord]:
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.job_key(job_id))
                pipe.lrange(self.history_key(job_id), 0, -1)
            replies = pipe.execute()
        pairs = zip(replies[::2], replies[1::2], strict=True)
        return [record_from_fields(fields, history) for fields, history in pairs if fields]

    def count(self) -> int:
        """How many jobs the index holds."""
        return int(self._redis.zcard(self.index_key))

    def ended_before(self, cutoff: float, limit: int = 100) -> builtins.list[str]:
        """Up to ``limit`` ids of jobs that ended before ``cutoff`` (Unix seconds),
        the longest ended first."""
        ids = self._redis.zrangebyscore(self.ended_index_key, "-inf", f"({cutoff!r}", 0, limit)
        return [text(job_id) for job_id in ids]

    def status(self, job_id: str) -> JobStatus | None:
        """The job's status alone (one HGET), or None if there is no such job."""
        raw = self._redis.hget(self.job_key(job_id), "status") if valid_job_id(job_id) else None
        return None if raw is None else JobStatus(text(raw))

    def stop_requested(self, job_id: str) -> bool:
        """Whether a stop was requested for the (RUNNING) job; False for an unknown one."""
        if not valid_job_id(job_id):
            return False
        return text(self._redis.hget(self.job_key(job_id), "stop_requested") or "") == "1"

    # -- metrics and events -------------------------------------------------------------

    def metrics(self, job_id: str) -> builtins.list[MetricPoint]:
        """The job's whole metric series, oldest first ([] for an unknown job)."""
        if not valid_job_id(job_id):
            return []
        key, start = self.metrics_key(job_id), "-"
        points: builtins.list[MetricPoint] = []
        while True:
            entries = self._redis.xrange(key, start, "+", count=_METRICS_PAGE) or []
            points += [decode_point(text_fields(fields or {})) for _, fields in entries]
            if len(entries) < _METRICS_PAGE:
                return points
            start = "(" + text(entries[-1][0])  # exclusive: after the last one read

    def recent_metrics(self, job_id: str, count: int) -> builtins.list[MetricPoint]:
        """The job's ``count`` most recent metric points, oldest first."""
        if not valid_job_id(job_id):
            return []
        entries = self._redis.xrevrange(self.metrics_key(job_id), "+", "-", count=count) or []
        return [decode_point(text_fields(fields or {})) for _, fields in reversed(entries)]

    def recent_metrics_of(
        self, ids: builtins.list[str], count: int
    ) -> builtins.list[builtins.list[MetricPoint]]:
        """:meth:`recent_metrics` of each job in ``ids``, in one pipelined round trip."""
        valid = [job_id for job_id in ids if valid_job_id(job_id)]
        if not valid:
            return [[] for _ in ids]
        with self._redis.pipeline(transaction=False) as pipe:
            for job_id in valid:
                pipe.xrevrange(self.metrics_key(job_id), "+", "-", count=count)
            replies = dict(zip(valid, pipe.execute(), strict=True))
        return [
            [decode_point(text_fields(f or {})) for _, f in reversed(replies.get(i) or [])]
            for i in ids
        ]

    def stored_metrics(self, job_id: str) -> int:
        """How many points the job's metric stream holds (recomputed steps included)."""
        return int(self._redis.xlen(self.metrics_key(job_id))) if valid_job_id(job_id) else 0

    def thinned(self, job_id: str) -> dict[str, int]:
        """Entries thinned out of each of the job's streams (store/thinning.py)."""
        if not valid_job_id(job_id):
            return {}
        return thinned_counts(self._redis.hgetall(keys.thinned_key(self.prefix, job_id)))

    def latest_metrics(self, job_id: str) -> MetricPoint | None:
        """The job's most recent metric point, or None if it has none yet."""
        recent = self.recent_metrics(job_id, 1)
        return recent[0] if recent else None

    def events(
        self, job_id: str, after: str = "0-0", block_ms: int | None = None, count: int = 500
    ) -> builtins.list[JobEvent]:
        """Up to ``count`` events of the job after event id ``after`` ("0-0": from the
        first), waiting up to ``block_ms`` for one if there is none yet (None: no wait)."""
        if not valid_event_id(after):
            raise ValueError(f"event id {after!r} is not of the form <ms>-<seq>")
        if not valid_job_id(job_id):
            return []
        reply = self._redis.xread({self.events_key(job_id): after}, count=count, block=block_ms)
        if not reply:
            return []
        streams = reply.values() if isinstance(reply, dict) else (s[1] for s in reply)
        return [event for entries in streams for event in decode_entries(list(entries))]
