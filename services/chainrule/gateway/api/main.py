"""All versioned API routers, mounted by the app under /api/v1."""

from fastapi import APIRouter

from chainrule.gateway.api.routes import (
    datasets,
    events,
    job_metrics,
    jobs,
    models,
    queue,
    workers,
)

api_router = APIRouter()
api_router.include_router(jobs.router)
api_router.include_router(job_metrics.router)
api_router.include_router(events.router)
api_router.include_router(models.router)
api_router.include_router(workers.router)
api_router.include_router(datasets.router)
api_router.include_router(queue.router)
