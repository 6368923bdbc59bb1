"""``GET /metrics``: the gateway's Prometheus metrics, in the text exposition format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from chainrule.gateway.prometheus import app_registry

router = APIRouter(tags=["prometheus"])


# plain def: counting jobs by state reads Redis, so it runs in the thread pool
@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text format (OpenMetrics when the scraper asks for it)."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(app_registry(request.app)), media_type=content_type)
