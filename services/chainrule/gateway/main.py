"""Build the gateway app: one Redis client and JobStore on app.state, routers mounted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI

from chainrule import __version__
from chainrule.gateway.api.main import api_router
from chainrule.gateway.api.routes import health
from chainrule.gateway.errors import install_error_handlers
from chainrule.gateway.settings import GatewaySettings
from chainrule.store import JobStore, connect

API_PREFIX = "/api/v1"


def create_app(settings: GatewaySettings, client: redis.Redis | None = None) -> FastAPI:
    """The app; it connects to ``settings.redis_url`` on start unless given ``client``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis_client = client if client is not None else connect(settings.redis_url)
        app.state.redis = redis_client
        app.state.job_store = JobStore(redis_client, prefix=settings.key_prefix)
        try:
            yield
        finally:
            if client is None:
                redis_client.close()

    app = FastAPI(title="chainrule gateway", version=__version__, lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(api_router, prefix=API_PREFIX)
    return app
