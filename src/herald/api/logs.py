"""The seed's log routes: all logs, an integration's logs, and a job's logs. Newest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import Field

from herald.api.auth import require_store
from herald.api.jobs import IntegrationRelation, JobRef
from herald.api.jsonapi import (
    BOOL_OPS,
    ORDERED_OPS,
    STORE_ERRORS,
    FilterField,
    JSONResponse,
    PageLinks,
    PageMeta,
    ResultCount,
    Strict,
    collection,
    errors,
    filter_clauses,
    list_parameters,
    not_found,
    page_params,
    parse_bool,
    parse_filter_string,
    parse_int,
    parse_time,
    resource_id,
)
from herald.db import integrations as integration_repo
from herald.db import jobs as job_repo
from herald.db import logs as repo
from herald.db.tables import logs as t
from herald.domain.ids import rfc3339

router = APIRouter(prefix="/v2/integrations", tags=["logs"], responses=errors(400, *STORE_ERRORS))

FILTERS = {
    "succeeded": FilterField(t.c.succeeded, parse_bool, BOOL_OPS),
    "status_code": FilterField(t.c.status_code, parse_int, ORDERED_OPS),
    "attempt": FilterField(t.c.attempt, parse_int, ORDERED_OPS),
    "created_at": FilterField(t.c.created_at, parse_time, ORDERED_OPS),
}


class JobRelation(Strict):
    data: JobRef


class LogRelationships(Strict):
    integration: IntegrationRelation
    job: JobRelation


class LogTimestamps(Strict):
    created_at: datetime


class LogMeta(Strict):
    timestamps: LogTimestamps


class Log(Strict):
    """One delivery attempt."""

    id: str
    type: Literal["integration-log"]
    succeeded: bool
    attempt: int
    processing_time: float = Field(description="Seconds the attempt took")
    body: str = Field(description="What the destination answered (cut short), or empty")
    status_code: int | None = Field(description="The HTTP status the destination answered; null when there was none")
    error_detail: str = Field(description="Why the attempt failed, or empty")
    relationships: LogRelationships
    meta: LogMeta


class LogList(Strict):
    """The logs lists' shape, as the Moltin logs API answers: `meta` is the page, `results` beside it."""

    data: list[Log]
    links: PageLinks
    meta: PageMeta
    results: ResultCount


def serialize(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": "integration-log",
        "succeeded": row["succeeded"],
        "attempt": row["attempt"],
        "processing_time": row["processing_time"],
        "body": row["body"],
        "status_code": row["status_code"],
        "error_detail": row["error_detail"],
        "relationships": {
            "integration": {"data": {"type": "integration", "id": row["integration_id"]}},
            "job": {"data": {"type": "integration-job", "id": row["job_id"]}},
        },
        "meta": {"timestamps": {"created_at": rfc3339(row["created_at"])}},
    }


async def _answer(request: Request, store_id: str, **scope: Any) -> JSONResponse:
    page = page_params(request)
    where = filter_clauses(request, FILTERS)
    scope["counted"] = _counted(request.query_params.get("filter"))
    for key in ("integration_id", "job_id"):
        if key in scope:
            resource_id(scope[key])
    async with request.app.state.db.read() as conn:
        if "integration_id" in scope and not await integration_repo.exists(conn, store_id, scope["integration_id"]):
            raise not_found()
        if "job_id" in scope and await job_repo.get(conn, store_id, scope["integration_id"], scope["job_id"]) is None:
            raise not_found()
        rows, total = await repo.page(conn, store_id, where, page.limit, page.offset, page.after, **scope)
    data = [serialize(r) for r in rows]
    return JSONResponse(
        collection(request, data, page, total, last_id=rows[-1]["id"] if rows else None, flat_meta=True)
    )


def _counted(raw: str | None) -> tuple[bool | None] | None:
    """(succeeded,) when the filters allow the total to come from the running totals, else None."""
    if not raw:
        return (None,)
    filters = parse_filter_string(raw)
    if len(filters) == 1 and filters[0][:2] == ("eq", "succeeded"):
        return (parse_bool(filters[0][2]),)
    return None


@router.get("/logs", summary="Get all logs", openapi_extra=list_parameters(FILTERS), response_model=LogList)
async def all_logs(request: Request) -> JSONResponse:
    store_id = await require_store(request)
    return await _answer(request, store_id)


@router.get(
    "/{integration_id}/logs", summary="Get the logs of an integration", openapi_extra=list_parameters(FILTERS),
    response_model=LogList, responses=errors(404),
)
async def integration_logs(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    return await _answer(request, store_id, integration_id=integration_id)


@router.get(
    "/{integration_id}/jobs/{job_id}/logs", summary="Get the logs of a job", openapi_extra=list_parameters(FILTERS),
    response_model=LogList, responses=errors(404),
)
async def job_logs(request: Request, integration_id: str, job_id: str) -> JSONResponse:
    store_id = await require_store(request)
    return await _answer(request, store_id, integration_id=integration_id, job_id=job_id)
