"""Errors that no route handles itself, turned into replies a person can act on."""

from __future__ import annotations

import redis
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from chainrule.data.uploads import DatasetError, DatasetTooLargeError
from chainrule.logs import get_logger

log = get_logger("gateway")


def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis_error", path=request.url.path, error=str(exc))
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": f"Redis is unavailable, try again shortly: {exc}"},
    )


def bad_dataset(request: Request, exc: Exception) -> JSONResponse:
    """A refused upload: 413 when over a size limit, else 422; where, when known."""
    assert isinstance(exc, DatasetError)
    too_large = isinstance(exc, DatasetTooLargeError)
    return JSONResponse(
        status_code=(
            status.HTTP_413_CONTENT_TOO_LARGE
            if too_large
            else status.HTTP_422_UNPROCESSABLE_CONTENT
        ),
        content={"detail": exc.message, "row": exc.row, "column": exc.column},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(redis.RedisError, redis_unavailable)
    app.add_exception_handler(DatasetError, bad_dataset)
