"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Request
from pydantic import Field

from herald import __version__
from herald.api.jsonapi import JSONResponse, Strict

router = APIRouter(tags=["health"])


class Alive(Strict):
    status: Literal["ok"]
    version: str


class Ready(Strict):
    status: Literal["ok"]
    database: Literal["ok"]


class NotReady(Strict):
    status: Literal["unavailable"]
    database: str = Field(description="The kind of error the database check met")


@router.get("/healthz", summary="The process is up", response_model=Alive)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


@router.get(
    "/readyz", summary="The database answers", response_model=Ready,
    responses={503: {"model": NotReady, "description": "The database does not answer"}},
)
async def readyz(request: Request) -> JSONResponse:
    try:
        async with request.app.state.db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
