"""Build the gateway app: Redis clients, the job and dataset stores and the settings on
app.state, routers mounted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI

from chainrule import __version__
from chainrule.gateway.api.main import api_router
from chainrule.gateway.api.routes import health
from chainrule.gateway.errors import install_error_handlers
from chainrule.gateway.limits import BodyLimit
from chainrule.gateway.settings import GatewaySettings
from chainrule.store import DatasetStore, JobStore, binary_client, connect

API_PREFIX = "/api/v1"


def create_app(settings: GatewaySettings, client: redis.Redis | None = None) -> FastAPI:
    """The app; it connects to ``settings.redis_url`` on start unless given ``client``.
    Datasets are binary, so they get a second client, one that returns bytes."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis_client = client if client is not None else connect(settings.redis_url)
        bytes_client = binary_client(settings.redis_url)
        app.state.redis = redis_client
        app.state.settings = settings
        app.state.job_store = JobStore(redis_client, prefix=settings.key_prefix)
        app.state.dataset_store = DatasetStore(bytes_client, prefix=settings.key_prefix)
        try:
            yield
        finally:
            bytes_client.close()
            if client is None:
                redis_client.close()

    app = FastAPI(title="chainrule gateway", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(
        BodyLimit, path=f"{API_PREFIX}/datasets", max_bytes=settings.max_upload_bytes
    )
    app.include_router(health.router)
    app.include_router(api_router, prefix=API_PREFIX)
    return app
