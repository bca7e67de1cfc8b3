"""GET /metrics: this process's Prometheus metrics (no token: bind it to a private address, or scrape it through
HERALD_METRICS_PORT on a network only Prometheus reaches)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from herald.metrics import CONTENT_TYPE_LATEST, Metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics", summary="Prometheus metrics of this process", response_class=Response,
    responses={200: {"description": "The Prometheus text exposition format",
                     "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    found: Metrics = request.app.state.metrics
    await found.refresh(request.app.state.db)
    return Response(found.exposition(), media_type=CONTENT_TYPE_LATEST)
