"""Build the gateway app: Redis clients, the job and dataset stores and the settings on
app.state, routers mounted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import redis
from fastapi import FastAPI

from chainrule import __version__
from chainrule.gateway.api.deps import AUTH_ERRORS, READ_ACCESS
from chainrule.gateway.api.main import api_router
from chainrule.gateway.api.routes import health, prometheus
from chainrule.gateway.api.routes.dashboard import router as dashboard_router
from chainrule.gateway.errors import install_error_handlers
from chainrule.gateway.limits import FORM_OVERHEAD, BodyLimit, Limit
from chainrule.gateway.models import ModelSource
from chainrule.gateway.prometheus import HttpMetrics
from chainrule.gateway.settings import GatewaySettings
from chainrule.gateway.storage import StorageGuard
from chainrule.store import REQUEST_RETRIES, DatasetStore, JobStore, binary_client, connect
from chainrule.store.diagnostics import DiagnosticsStore
from chainrule.store.workers import WorkerRegistry

API_PREFIX = "/api/v1"
SSE_READERS = 100  # event streams reading Redis at once; more wait their turn


def body_limits(settings: GatewaySettings) -> list[Limit]:
    """The request bodies allowed more than :func:`body_limit`: those that carry data."""
    return [
        Limit(
            f"POST {API_PREFIX}/datasets",
            settings.max_upload_bytes,
            "CHAINRULE_MAX_UPLOAD_BYTES",
            "the upload",
            FORM_OVERHEAD,
        ),
        Limit(
            f"POST {API_PREFIX}/jobs/[^/]+/predict",
            settings.max_upload_bytes,
            "CHAINRULE_MAX_UPLOAD_BYTES",
            "the predict request",
        ),
    ]


def body_limit(settings: GatewaySettings) -> Limit:
    """Every other request body: a job spec and the like."""
    return Limit(".*", settings.max_request_bytes, "CHAINRULE_MAX_REQUEST_BYTES")


def create_app(settings: GatewaySettings, client: redis.Redis | None = None) -> FastAPI:
    """The app; it connects to ``settings.redis_url`` on start unless given ``client``.
    Datasets are binary, so they get a second client, one that returns bytes.
    TokenConfigError, before anything starts, if CHAINRULE_API_TOKENS has a bad entry."""
    tokens = settings.token_table()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis_client = (
            client if client is not None else connect(settings.redis_url, REQUEST_RETRIES)
        )
        bytes_client = binary_client(settings.redis_url, REQUEST_RETRIES)
        app.state.redis = redis_client
        app.state.settings = settings
        app.state.job_store = JobStore(redis_client, prefix=settings.key_prefix)
        app.state.dataset_store = DatasetStore(bytes_client, prefix=settings.key_prefix)
        app.state.diagnostics_store = DiagnosticsStore(redis_client, prefix=settings.key_prefix)
        app.state.model_source = ModelSource(bytes_client, prefix=settings.key_prefix)
        app.state.worker_registry = WorkerRegistry(redis_client, prefix=settings.key_prefix)
        app.state.sse_limiter = anyio.CapacityLimiter(SSE_READERS)
        app.state.storage = StorageGuard(redis_client, settings.storage_refuse_at)
        try:
            yield
        finally:
            bytes_client.close()
            if client is None:
                redis_client.close()

    app = FastAPI(title="chainrule gateway", version=__version__, lifespan=lifespan)
    app.state.tokens = tokens
    install_error_handlers(app)
    app.add_middleware(BodyLimit, limits=body_limits(settings), default=body_limit(settings))
    app.add_middleware(HttpMetrics)  # outermost: counts and times every request
    app.include_router(health.router)
    app.include_router(prometheus.router)
    # with CHAINRULE_AUTH_READS, every /api/v1 route needs a token (writes need one anyway),
    # and the OpenAPI document says every route may answer 401 and 403
    reads_guarded = settings.auth_reads and bool(tokens)
    app.include_router(
        api_router,
        prefix=API_PREFIX,
        dependencies=READ_ACCESS if reads_guarded else [],
        responses=AUTH_ERRORS if reads_guarded else {},
    )
    app.include_router(dashboard_router)
    return app
