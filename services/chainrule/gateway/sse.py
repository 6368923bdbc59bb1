"""A job's events as Server-Sent Events, read from its Redis event stream.

Each stream entry (:mod:`chainrule.store.events`) becomes one SSE event whose ``id:`` is
the entry id, so a client that reconnects with ``Last-Event-ID`` resumes exactly after
the last event it received. The read is a blocking ``XREAD`` in a worker thread, bounded
to a second so that a client that went away is noticed (the next write fails, or the
server cancels the generator) and so that a ``: ping`` comment can go out when nothing
happened for ``ping_s`` seconds. The stream ends after the ``end`` event.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator

import anyio
import anyio.to_thread

from chainrule.gateway.schemas import MetricPointOut, StatusEventData
from chainrule.store import JobStore
from chainrule.store.events import END, METRICS, STATUS, JobEvent

BLOCK_MS = 1000
PING = ": ping\n\n"


def format_event(event: JobEvent) -> str:
    """The SSE text of ``event``; a metric point gets every field, absent ones as null."""
    data = event.data
    if event.event == METRICS:
        data = MetricPointOut.model_validate_json(data).model_dump_json()
    elif event.event == STATUS:
        data = StatusEventData.model_validate_json(data).model_dump_json()
    return f"id: {event.id}\nevent: {event.event}\ndata: {data}\n\n"


async def job_events(
    store: JobStore,
    job_id: str,
    after: str,
    ping_s: float,
    limiter: anyio.CapacityLimiter,
) -> AsyncIterator[str]:
    """SSE text for the events of ``job_id`` after event id ``after``, until ``end``."""

    async def read(block_ms: int | None) -> list[JobEvent]:
        call = functools.partial(store.events, job_id, after, block_ms)
        return await anyio.to_thread.run_sync(call, limiter=limiter)

    block_ms = max(1, min(BLOCK_MS, int(ping_s * 1000)))
    quiet_since = time.monotonic()
    while True:
        events = await read(block_ms)
        if not events:
            if time.monotonic() - quiet_since >= ping_s:
                yield PING
                quiet_since = time.monotonic()
            status = await anyio.to_thread.run_sync(store.status, job_id, limiter=limiter)
            if status is None:
                return  # deleted meanwhile
            if status.value not in ("PENDING", "RUNNING"):
                # status and its events are written together: read what came with it
                events = await read(None)
                if not events:  # a job from before event streams: end it all the same
                    yield f'id: {after}\nevent: {END}\ndata: "{status.value}"\n\n'
                    return
        for event in events:
            yield format_event(event)
            after = event.id
            if event.event == END:
                return
        if events:
            quiet_since = time.monotonic()
