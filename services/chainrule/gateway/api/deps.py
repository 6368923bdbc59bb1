"""Dependencies of the routes, as ``Annotated`` aliases; the objects live on app.state."""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request

from chainrule.gateway.settings import GatewaySettings
from chainrule.store import DatasetStore, JobStore


def get_job_store(request: Request) -> JobStore:
    store: JobStore = request.app.state.job_store
    return store


def get_dataset_store(request: Request) -> DatasetStore:
    store: DatasetStore = request.app.state.dataset_store
    return store


def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


def get_redis(request: Request) -> redis.Redis:
    client: redis.Redis = request.app.state.redis
    return client


JobStoreDep = Annotated[JobStore, Depends(get_job_store)]
DatasetStoreDep = Annotated[DatasetStore, Depends(get_dataset_store)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
RedisDep = Annotated[redis.Redis, Depends(get_redis)]
