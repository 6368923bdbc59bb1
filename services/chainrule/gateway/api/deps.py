"""Dependencies of the routes, as ``Annotated`` aliases; the objects live on app.state."""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request

from chainrule.store import JobStore


def get_job_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.job_store
    return store


def get_redis(request: Request) -> redis.Redis:
    client: redis.Redis = request.app.state.redis
    return client


JobStoreDep = Annotated[JobStore, Depends(get_job_store)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
