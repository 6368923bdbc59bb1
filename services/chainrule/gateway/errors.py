"""Errors that no route handles itself, turned into replies a person can act on."""

from __future__ import annotations

import redis
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse

from chainrule.logs import get_logger

log = get_logger("gateway")


def redis_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("redis_error", path=request.url.path, error=str(exc))
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": f"Redis is unavailable, try again shortly: {exc}"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(redis.RedisError, redis_unavailable)
