"""A job's event stream: what a live view needs, in the order it happened.

One Redis stream per job, ``{prefix}:job:{id}:events``, with entries of two fields,
``event`` and ``data`` (JSON text):

- ``status``: ``{"status", "phase", "message", "failure_reason", "step"}``, written by
  :class:`~chainrule.store.JobStore` in the same transaction as every change of status
  or phase (the first one at submission);
- ``metrics``: one metric point (:class:`~chainrule.store.MetricPoint`, non-finite values
  as ``null``), written with the point itself by ``JobStore.append_metrics``;
- ``end``: the final status (a JSON string), right after the terminal ``status`` entry
  and in the same transaction; nothing follows it.

The stream entry ids (``<ms>-<seq>``) order the events totally, so a reader that
remembers the last id it saw resumes exactly after it (``XREAD ... STREAMS key <id>``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

STATUS = "status"
METRICS = "metrics"
END = "end"
KINDS = (STATUS, METRICS, END)

# a stream entry id as Redis writes it; "0-0" reads a stream from its start
_EVENT_ID = re.compile(r"(0|[1-9][0-9]{0,19})-(0|[1-9][0-9]{0,19})")
_MAX_ID_PART = 2**64 - 1


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event stream; ``data`` is JSON text."""

    id: str
    event: str
    data: str


def valid_event_id(value: str) -> bool:
    """Whether ``value`` is a stream entry id (``<ms>-<seq>``, each a 64-bit integer)."""
    match = _EVENT_ID.fullmatch(value)
    return match is not None and all(int(part) <= _MAX_ID_PART for part in match.groups())


def status_fields(
    status: str, phase: str, message: str, failure_reason: str | None, step: int
) -> dict[str, str]:
    data = {
        "status": status,
        "phase": phase,
        "message": message,
        "failure_reason": failure_reason,
        "step": step,
    }
    return {"event": STATUS, "data": json.dumps(data)}


def end_fields(status: str) -> dict[str, str]:
    return {"event": END, "data": json.dumps(status)}


def metrics_data(point: Mapping[str, object]) -> str:
    """The point as JSON, a NaN or infinite value (a diverged loss) as ``null``."""
    finite = {
        name: None if isinstance(value, float) and not math.isfinite(value) else value
        for name, value in point.items()
    }
    return json.dumps(finite, allow_nan=False)


def decode_entries(entries: list[Any]) -> list[JobEvent]:
    """``XRANGE``/``XREAD`` entries ``[(id, {field: value})]`` as events."""
    out = []
    for entry_id, fields in entries:
        decoded = {_text(k): _text(v) for k, v in (fields or {}).items()}
        out.append(JobEvent(_text(entry_id), decoded.get("event", ""), decoded.get("data", "")))
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
