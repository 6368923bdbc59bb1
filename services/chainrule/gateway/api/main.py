"""All versioned API routers, mounted by the app under /api/v1."""

from fastapi import APIRouter

from chainrule.gateway.api.routes import datasets, jobs

api_router = APIRouter()
api_router.include_router(jobs.router)
api_router.include_router(datasets.router)
