"""Errors that no route handles itself, turned into replies a person can act on."""

from __future__ import annotations

import math
from typing import Any

import redis
from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from chainrule.data.uploads import DatasetError, DatasetTooLargeError
from chainrule.logs import get_logger

log = get_logger("gateway")


def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis_error", path=request.url.path, error=str(exc))
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return JSONResponse(  # maxmemory reached between the storage check and the write
            status_code=status.HTTP_507_INSUFFICIENT_STORAGE,
            content={"detail": f"Redis is full (maxmemory), nothing was stored: {exc}"},
        )
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


def invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's usual 422, but able to echo a NaN or infinite input (JSON bodies may
    carry them, JSON replies may not): such a value is sent as its name, "nan" or "inf"."""
    assert isinstance(exc, RequestValidationError)
    errors = _finite_json(jsonable_encoder(exc.errors()))
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": errors}
    )


def _finite_json(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_finite_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    return value


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(redis.RedisError, redis_unavailable)
    app.add_exception_handler(DatasetError, bad_dataset)
