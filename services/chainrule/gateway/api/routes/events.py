"""A job's status changes and metric points, live, as Server-Sent Events."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from chainrule.gateway.api.deps import JobDep, JobStoreDep, SettingsDep
from chainrule.gateway.schemas import Message
from chainrule.gateway.sse import job_events
from chainrule.store.events import valid_event_id

router = APIRouter(prefix="/jobs", tags=["events"])

EVENT_STREAM_DOC = """\
`text/event-stream`. Events, each with an `id:`:

- `event: status`, data `{"status", "phase", "message", "failure_reason", "step"}`, on
  submission and on every change of status or phase;
- `event: metrics`, data a metric point (as in `GET .../metrics`);
- `event: end`, data the final status (a JSON string), after which the stream closes.

A `: ping` comment goes out after ~10 s without events. A client that reconnects with
the header `Last-Event-ID` gets exactly the events after that one.
"""


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": EVENT_STREAM_DOC,
        },
        204: {"description": "the job has ended and the client has seen its last event"},
        404: {"model": Message, "description": "no job with that id"},
    },
)
async def stream_events(
    job: JobDep,
    store: JobStoreDep,
    settings: SettingsDep,
    request: Request,
    last_event_id: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=41,
            description="resume after this event (the browser's EventSource sends it)",
        ),
    ] = None,
) -> Response:
    """Follow one job: its status changes and metric points as they are written, from
    the first (or after ``Last-Event-ID``) to the ``end`` event. A job that has already
    ended replays everything, then ``end``."""
    after = last_event_id if last_event_id is not None else "0-0"
    if not valid_event_id(after):
        message = f"Last-Event-ID {after!r} is not an event id (<ms>-<seq>) this API sent"
        error = {"type": "value_error", "loc": ("header", "Last-Event-ID"), "msg": message}
        raise RequestValidationError([{**error, "input": last_event_id}])
    if job.terminal and not await anyio.to_thread.run_sync(store.events, job.id, after, None, 1):
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    limiter = request.app.state.sse_limiter
    return StreamingResponse(
        job_events(store, job.id, after, settings.sse_ping_s, limiter),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
