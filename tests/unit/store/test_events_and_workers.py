"""Event stream entries and worker entries, without Redis."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from chainrule.store.events import (
    decode_entries,
    end_fields,
    metrics_data,
    status_fields,
    valid_event_id,
)
from chainrule.store.workers import WorkerInfo

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("good", ["0-0", "1-0", "1764326400123-7", f"{2**64 - 1}-{2**64 - 1}"])
def test_stream_ids_are_recognised(good: str) -> None:
    assert valid_event_id(good)


@pytest.mark.parametrize("bad", ["", "1", "1-", "-1", "01-1", "1-2-3", "a-b", f"{2**64}-0", " 1-0"])
def test_other_strings_are_not_stream_ids(bad: str) -> None:
    assert not valid_event_id(bad)


def test_entries_encode_status_end_and_a_finite_point() -> None:
    status = status_fields("FAILED", "failed", "boom", "diverged", 7)
    assert status["event"] == "status"
    assert json.loads(status["data"]) == {
        "status": "FAILED", "phase": "failed", "message": "boom", "failure_reason": "diverged",
        "step": 7}  # fmt: skip
    assert end_fields("FAILED") == {"event": "end", "data": '"FAILED"'}
    assert json.loads(metrics_data({"step": 3, "loss": math.nan, "lr": math.inf, "x": 1.5})) == {
        "step": 3, "loss": None, "lr": None, "x": 1.5}  # fmt: skip


def test_entries_decode_from_bytes_or_str() -> None:
    events = decode_entries([(b"1-0", {b"event": b"end", b"data": b'"STOPPED"'}), ("2-0", None)])
    assert [(e.id, e.event, e.data) for e in events] == [
        ("1-0", "end", '"STOPPED"'),
        ("2-0", "", ""),
    ]


WORKER: dict[str, Any] = {
    "id": "w1", "host": "node-a", "state": "busy", "current_job": "abc",
    "last_heartbeat": 1700000000.5, "tasks_done": 4,
}  # fmt: skip


def test_a_worker_entry_is_checked_field_by_field() -> None:
    assert WorkerInfo.from_mapping(WORKER) == WorkerInfo(
        "w1", "node-a", "busy", "abc", 1700000000.5, 4
    )
    assert WorkerInfo.from_mapping({**WORKER, "current_job": ""}).current_job is None


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [("id", "", "worker id must be a string"), ("state", "asleep", "one of idle, busy, lost"),
     ("last_heartbeat", math.nan, "Unix seconds"), ("last_heartbeat", True, "Unix seconds"),
     ("tasks_done", -1, "integer >= 0"), ("current_job", 5, "job id or null"),
     ("host", None, "host must be a string")],
)  # fmt: skip
def test_a_bad_worker_entry_is_refused_naming_the_field(field: str, value: Any, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        WorkerInfo.from_mapping({**WORKER, field: value})
