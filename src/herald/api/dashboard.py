"""POST /v2/dashboard/links: a one-time URL that signs its holder into the store's dashboard, for embedding the
dashboard in a store's own admin."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import Field

from herald.api.auth import require_store
from herald.api.jsonapi import STORE_ERRORS, JSONResponse, Strict, errors
from herald.db import sessions
from herald.domain.ids import rfc3339, utcnow

router = APIRouter(prefix="/v2/dashboard", tags=["dashboard"])


class DashboardLink(Strict):
    type: Literal["dashboard_link"]
    url: str = Field(description="Opens the store's dashboard, signed in. Works once, for 5 minutes.")
    expires_at: datetime


class DashboardLinkEnvelope(Strict):
    data: DashboardLink


@router.post(
    "/links", status_code=201, response_model=DashboardLinkEnvelope, summary="Make a one-time dashboard sign-in link",
    responses=errors(*STORE_ERRORS),
)
async def create_link(request: Request) -> JSONResponse:
    store_id = await require_store(request)
    async with request.app.state.db.write() as conn:
        token, expires = await sessions.create_link(conn, store_id, utcnow())
    base = (request.app.state.settings.public_url or str(request.base_url)).rstrip("/")
    return JSONResponse({"data": {"type": "dashboard_link", "url": f"{base}/dashboard/links/{token}",
                                  "expires_at": rfc3339(expires)}}, status_code=201)
