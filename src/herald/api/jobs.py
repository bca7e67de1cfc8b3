"""/v2/integrations/:id/jobs: list, detail, and manual retries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from herald.api.auth import require_store
from herald.api.jsonapi import (
    ORDERED_OPS,
    STORE_ERRORS,
    STR_OPS,
    APIError,
    CollectionMeta,
    FilterField,
    JSONResponse,
    PageLinks,
    Strict,
    collection,
    errors,
    filter_clauses,
    json_body,
    list_parameters,
    not_found,
    page_params,
    parse_str,
    parse_time,
    request_body,
    resource_id,
    unprocessable,
)
from herald.db import integrations as integration_repo
from herald.db import jobs as repo
from herald.db.tables import jobs as t
from herald.domain.ids import parse_rfc3339, rfc3339, utcnow

router = APIRouter(prefix="/v2/integrations", tags=["jobs"], responses=errors(*STORE_ERRORS))

FILTERS = {
    "status": FilterField(t.c.status, parse_str, ("eq",)),
    "triggered_by": FilterField(t.c.triggered_by, parse_str, STR_OPS),
    "created_at": FilterField(t.c.created_at, parse_time, ORDERED_OPS),
}


class IntegrationRef(Strict):
    type: Literal["integration"]
    id: str


class JobRef(Strict):
    type: Literal["integration-job"]
    id: str


class EventRef(Strict):
    type: Literal["event"]
    id: str


class IntegrationRelation(Strict):
    data: IntegrationRef


class EventRelation(Strict):
    data: EventRef


class JobRelationships(Strict):
    integration: IntegrationRelation
    event: EventRelation


class JobTimestamps(Strict):
    created_at: datetime
    updated_at: datetime


class JobMeta(Strict):
    timestamps: JobTimestamps


class Job(Strict):
    id: str
    type: Literal["integration-job"]
    status: Literal["pending", "delivering", "succeeded", "failed", "cancelled"]
    triggered_by: str
    attempts: int
    next_attempt_at: datetime | None = Field(description="When a pending job is next tried; null otherwise")
    relationships: JobRelationships
    meta: JobMeta


class JobDocument(Strict):
    data: Job


class JobList(Strict):
    data: list[Job]
    links: PageLinks
    meta: CollectionMeta


class RetriedCount(Strict):
    count: int = Field(description="How many jobs were made pending again")


class RetriedDocument(Strict):
    meta: RetriedCount


class RetryFilter(BaseModel):
    status: str = Field(
        "failed", description="The status of the jobs to retry", json_schema_extra={"enum": list(repo.RETRYABLE)}
    )
    since: datetime | None = Field(None, description="Only the jobs created at or after this time")


class RetryJobsBody(BaseModel):
    data: RetryFilter


def serialize(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "type": "integration-job",
        "status": row["status"],
        "triggered_by": row["triggered_by"],
        "attempts": row["attempts"],
        "next_attempt_at": rfc3339(row["run_at"]) if row["status"] == "pending" else None,
        "relationships": {
            "integration": {"data": {"type": "integration", "id": row["integration_id"]}},
            "event": {"data": {"type": "event", "id": row["event_id"]}},
        },
        "meta": {"timestamps": {"created_at": rfc3339(row["created_at"]), "updated_at": rfc3339(row["updated_at"])}},
    }


async def _require_integration(conn: Any, store_id: str, integration_id: str) -> None:
    resource_id(integration_id)
    if not await integration_repo.exists(conn, store_id, integration_id):
        raise not_found()


@router.get(
    "/{integration_id}/jobs", summary="List the jobs of an integration", openapi_extra=list_parameters(FILTERS),
    response_model=JobList, responses=errors(400, 404),
)
async def list_jobs(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    page = page_params(request)
    where = filter_clauses(request, FILTERS)
    async with request.app.state.db.read() as conn:
        await _require_integration(conn, store_id, integration_id)
        rows, total = await repo.page(conn, store_id, integration_id, where, page.limit, page.offset, page.after)
    data = [serialize(r) for r in rows]
    return JSONResponse(
        collection(request, data, page, total, last_id=rows[-1]["id"] if rows else None, flat_meta=False)
    )


@router.get("/{integration_id}/jobs/{job_id}", summary="Get a job", response_model=JobDocument, responses=errors(404))
async def get_job(request: Request, integration_id: str, job_id: str) -> JSONResponse:
    store_id = await require_store(request)
    resource_id(integration_id)
    resource_id(job_id)
    async with request.app.state.db.read() as conn:
        row = await repo.get(conn, store_id, integration_id, job_id)
    if row is None:
        raise not_found()
    return JSONResponse({"data": serialize(row)})


@router.post(
    "/{integration_id}/jobs/{job_id}/retry", status_code=202, summary="Retry a job now (one more attempt)",
    response_model=JobDocument, responses=errors(404, 409, e409="The job is pending or being delivered"),
)
async def retry_job(request: Request, integration_id: str, job_id: str) -> JSONResponse:
    store_id = await require_store(request)
    resource_id(integration_id)
    resource_id(job_id)
    now = utcnow()
    async with request.app.state.db.write() as conn:
        row = await repo.get(conn, store_id, integration_id, job_id)
        if row is None:
            raise not_found()
        if row["status"] not in repo.RETRYABLE:
            raise APIError(
                409, "Conflict", f"The job is {row['status']}; only failed, succeeded or cancelled jobs can be retried"
            )
        await repo.retry(conn, store_id, integration_id, job_id, now)
        row = await repo.get(conn, store_id, integration_id, job_id)
    return JSONResponse({"data": serialize(row)}, status_code=202)  # type: ignore[arg-type]


@router.post(
    "/{integration_id}/jobs/retry", status_code=202, summary="Retry every job of a status (since a time)",
    openapi_extra=request_body(RetryJobsBody), response_model=RetriedDocument, responses=errors(400, 404, 413, 422),
)
async def retry_jobs(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    body = await json_body(request)
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise unprocessable("The request body must be an object with a `data` object", "data")
    status = data.get("status", "failed")
    if status not in repo.RETRYABLE:
        raise unprocessable(f"status must be one of {', '.join(repo.RETRYABLE)}", "data.status")
    since = None
    if data.get("since") is not None:
        try:
            since = parse_rfc3339(str(data["since"]))
        except ValueError:
            raise unprocessable("since must be an RFC 3339 timestamp", "data.since") from None
    async with request.app.state.db.write() as conn:
        await _require_integration(conn, store_id, integration_id)
        count = await repo.retry_many(conn, store_id, integration_id, status, since, utcnow())
    return JSONResponse({"meta": {"count": count}}, status_code=202)
