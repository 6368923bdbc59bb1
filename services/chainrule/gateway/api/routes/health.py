"""Liveness and readiness probes, and the version."""

from __future__ import annotations

import redis
from fastapi import APIRouter, Response, status

from chainrule import __version__
from chainrule.gateway.api.deps import RedisDep
from chainrule.gateway.schemas import Health, VersionOut

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> Health:
    """The process serves requests (liveness); says nothing about Redis."""
    return Health(status="ok")


@router.get("/readyz", responses={503: {"model": Health, "description": "Redis unreachable"}})
def readyz(client: RedisDep, response: Response) -> Health:
    """Redis answers, so the API can work (readiness): 200, or 503 with the error."""
    try:
        client.ping()
    except redis.RedisError as exc:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Health(status="unavailable", redis=f"error: {exc}")
    return Health(status="ok", redis="ok")


@router.get("/api/version")
def version() -> VersionOut:
    """The chainrule version this gateway runs and the REST API version."""
    return VersionOut(version=__version__, api="v1")
