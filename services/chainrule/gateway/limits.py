"""Request-body limits, enforced while the body arrives.

Without them a client could make the gateway hold a body of any size: the form parser
spools an upload to disk, and a JSON body (a job spec, a predict request) is read into
memory whole before pydantic looks at it. :class:`BodyLimit` refuses a request with 413
as soon as its Content-Length, or the bytes received so far, exceed the limit of the
first :class:`Limit` whose pattern matches its method and path (else the default's),
and says which setting raises it. A dataset upload's limit allows
:data:`FORM_OVERHEAD` more (the multipart boundaries and the small form fields); its
route then checks the file itself against the limit exactly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORM_OVERHEAD = 64 * 1024
_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


@dataclass(frozen=True)
class Limit:
    """At most ``max_bytes`` (plus ``overhead``) of body for requests whose
    ``METHOD path`` matches ``pattern`` in full; ``setting`` is the variable that sets it."""

    pattern: str
    max_bytes: int
    setting: str
    what: str = "the request body"
    overhead: int = 0

    def matches(self, method: str, path: str) -> bool:
        return re.fullmatch(self.pattern, f"{method} {path}") is not None

    def refusal(self) -> str:
        return f"{self.what} is larger than the limit of {self.max_bytes} bytes ({self.setting})"


class BodyLimit:
    def __init__(self, app: ASGIApp, limits: Sequence[Limit], default: Limit) -> None:
        self.app, self.limits, self.default = app, list(limits), default

    def limit(self, method: str, path: str) -> Limit:
        return next((x for x in self.limits if x.matches(method, path)), self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        rule = self.limit(scope["method"], scope["path"])
        limit = rule.max_bytes + rule.overhead
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            body = {"detail": rule.refusal(), "row": None, "column": None}
            response = JSONResponse(body, status_code=status.HTTP_413_CONTENT_TOO_LARGE)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # raised inside the body's reader; FastAPI passes it on
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=rule.refusal())
            return message

        await self.app(scope, counted, send)
