"""A request-body limit for uploads, enforced while the body arrives.

The form parser would otherwise spool a body of any size to disk before the route could
look at it. :class:`BodyLimit` refuses a POST to ``path`` with 413 as soon as its
Content-Length, or the bytes received so far, exceed ``max_bytes`` plus
:data:`FORM_OVERHEAD` (the multipart boundaries and the small form fields). The route
then checks the file itself against ``max_bytes`` exactly.
"""

from __future__ import annotations

from fastapi import HTTPException, status
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

FORM_OVERHEAD = 64 * 1024


class BodyLimit:
    def __init__(self, app: ASGIApp, path: str, max_bytes: int) -> None:
        self.app, self.path, self.max_bytes = app, path, max_bytes

    def refusal(self) -> str:
        return (
            f"the upload is larger than the limit of {self.max_bytes} bytes "
            "(CHAINRULE_MAX_UPLOAD_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes + FORM_OVERHEAD
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            body = {"detail": self.refusal(), "row": None, "column": None}
            response = JSONResponse(body, status_code=status.HTTP_413_CONTENT_TOO_LARGE)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:  # raised inside the form parser; FastAPI passes it on
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=self.refusal())
            return message

        await self.app(scope, counted, send)
