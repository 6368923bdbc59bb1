"""The workers the scheduler knows, as it last wrote them, for whoever shows them.

One Redis hash, ``{prefix}:workers``: field = worker id, value = JSON
``{"id", "incarnation", "host", "state", "current_job", "last_heartbeat", "tasks_done"}`` with
``state`` one of ``idle``, ``busy``, ``lost`` and ``last_heartbeat`` in Unix seconds.
The scheduler (the leader) replaces the whole hash with :meth:`WorkerRegistry.write`;
the gateway reads it with :meth:`WorkerRegistry.read`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis
from redis.typing import EncodableT, FieldT

STATES = ("idle", "busy", "lost")
MAX_ID = 256


def workers_key(prefix: str) -> str:
    return f"{prefix}:workers"


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    state: str  # idle, busy or lost
    current_job: str | None
    last_heartbeat: float  # Unix seconds
    tasks_done: int
    incarnation: str = ""  # new at every start of the worker process

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> WorkerInfo:
        """Checked: ValueError naming the field and the value if one is not acceptable."""

        def fail(name: str, allowed: str) -> ValueError:
            return ValueError(f"worker {name} must be {allowed}; got {raw.get(name)!r}")

        worker_id, host, state = raw.get("id"), raw.get("host", ""), raw.get("state")
        job, beat, done = raw.get("current_job"), raw.get("last_heartbeat"), raw.get("tasks_done")
        if not isinstance(worker_id, str) or not 1 <= len(worker_id) <= MAX_ID:
            raise fail("id", f"a string of 1 to {MAX_ID} characters")
        if not isinstance(host, str):
            raise fail("host", "a string")
        if state not in STATES:
            raise fail("state", f"one of {', '.join(STATES)}")
        if job is not None and not isinstance(job, str):
            raise fail("current_job", "a job id or null")
        number = isinstance(beat, (int, float)) and not isinstance(beat, bool)
        if not number or not math.isfinite(beat):  # type: ignore[arg-type]
            raise fail("last_heartbeat", "Unix seconds")
        if not isinstance(done, int) or isinstance(done, bool) or done < 0:
            raise fail("tasks_done", "an integer >= 0")
        incarnation = raw.get("incarnation", "")
        if not isinstance(incarnation, str) or len(incarnation) > MAX_ID:
            raise fail("incarnation", f"a string of at most {MAX_ID} characters")
        return cls(worker_id, host, str(state), job or None, float(beat), done, incarnation)  # type: ignore[arg-type]


class WorkerRegistry:
    """The ``{prefix}:workers`` hash."""

    def __init__(
        self, client: redis.Redis, prefix: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.client, self.key, self._clock = client, workers_key(prefix), clock

    def write(self, workers: Sequence[Mapping[str, Any]], lost_ttl_s: float) -> None:
        """Replace the list with ``workers`` (dicts as the module describes), in one
        transaction; lost workers whose last heartbeat is older than ``lost_ttl_s`` are
        left out. ValueError, and nothing written, if any entry is not acceptable."""
        if not (math.isfinite(lost_ttl_s) and lost_ttl_s >= 0):
            raise ValueError(f"lost_ttl_s must be a number of seconds >= 0; got {lost_ttl_s!r}")
        infos = [WorkerInfo.from_mapping(w) for w in workers]
        now = self._clock()
        kept: dict[FieldT, EncodableT] = {
            info.id: json.dumps(asdict(info))
            for info in infos
            if not (info.state == "lost" and now - info.last_heartbeat > lost_ttl_s)
        }
        with self.client.pipeline(transaction=True) as pipe:
            pipe.delete(self.key)
            if kept:
                pipe.hset(self.key, mapping=kept)
            pipe.execute()

    def read(self) -> list[WorkerInfo]:
        """The workers as last written, by id; an entry that does not parse is skipped."""
        raw: Mapping[Any, Any] = self.client.hgetall(self.key)
        out = []
        for value in raw.values():
            try:
                out.append(WorkerInfo.from_mapping(json.loads(value)))
            except (ValueError, TypeError, AttributeError):
                continue  # written by something else; showing the rest beats failing
        return sorted(out, key=lambda w: w.id)
