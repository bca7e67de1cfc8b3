"""/v2/integrations: create, list, read, update, delete, and the signing secret."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.api.auth import require_store
from herald.api.jsonapi import (
    BOOL_OPS,
    STR_OPS,
    APIError,
    FilterField,
    JSONResponse,
    base_url,
    collection,
    filter_clauses,
    json_body,
    not_found,
    page_params,
    parse_bool,
    parse_str,
    unprocessable,
)
from herald.domain.ids import utcnow
from herald.domain.integrations import ValidationFailed, validate_create, validate_update
from herald.domain.representations import integration_resource
from herald.db import events as event_repo
from herald.db import integrations as repo
from herald.db import jobs as job_repo
from herald.db.tables import integrations as t

router = APIRouter(prefix="/v2/integrations", tags=["integrations"])

FILTERS = {
    "name": FilterField(t.c.name, parse_str, STR_OPS),
    "enabled": FilterField(t.c.enabled, parse_bool, BOOL_OPS),
    "integration_type": FilterField(t.c.integration_type, parse_str, STR_OPS),
}
SECRET_GRACE = timedelta(hours=24)


class IntegrationBody(BaseModel):
    type: Literal["integration"]
    name: str | None = Field(None, description="Required on create")
    description: str | None = Field(None, description="Defaults to an empty string")
    enabled: bool | None = Field(None, description="Defaults to false")
    integration_type: Literal["webhook", "aws_sqs", "stomp"] | None = Field(None, description="Defaults to webhook")
    observes: list[str] | None = Field(
        None, description="Event keys such as order.paid; `order.*` and `*` wildcards. Required on create"
    )
    configuration: dict[str, Any] | None = Field(
        None,
        description="webhook: url, secret_key?; aws_sqs: url, aws_access_key_id, aws_secret_access_key, region, "
        "endpoint_url?; stomp: addresses, destination, username, password. Secrets are answered masked; "
        "sending a masked value back keeps the stored secret; null removes an optional key.",
    )


class IntegrationEnvelope(BaseModel):
    data: IntegrationBody


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


def serialize(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return integration_resource(row, base_url(request))


async def raise_event(request: Request, conn: AsyncConnection, store_id: str, key: str, payload: dict[str, Any]) -> None:
    """Herald's own integration.* events, in the same transaction as the change."""
    settings = request.app.state.settings
    published = await event_repo.publish(
        conn, store_id, [(key, orjson.dumps(payload).decode())], now=utcnow(), max_attempts=settings.max_attempts
    )
    if any(e.job_ids for e in published):
        request.state.wake_workers = True


def wake_workers(request: Request) -> None:
    """After commit: tell the in-process worker that new jobs may be due (PostgreSQL also gets NOTIFY)."""
    if getattr(request.state, "wake_workers", False):
        request.app.state.notifier.wake()


def _validation(exc: ValidationFailed) -> APIError:
    return unprocessable(exc.detail if not exc.source else f"{exc.source.split('.')[-1]} {exc.detail}", exc.source)


@router.post("", status_code=201, summary="Create an integration", openapi_extra=_body_doc(IntegrationEnvelope))
async def create_integration(request: Request) -> JSONResponse:
    store_id = await require_store(request)
    body = await json_body(request)
    try:
        values = validate_create(body)
    except ValidationFailed as exc:
        raise _validation(exc) from None
    now = utcnow()
    async with request.app.state.db.write() as conn:
        row = await repo.create(conn, store_id, values, now)
        data = serialize(request, row)
        await raise_event(request, conn, store_id, "integration.created", {"data": data})
    wake_workers(request)
    return JSONResponse({"data": data}, status_code=201)


@router.get("", summary="List integrations")
async def list_integrations(request: Request) -> JSONResponse:
    store_id = await require_store(request)
    page = page_params(request)
    where = filter_clauses(request, FILTERS)
    async with request.app.state.db.read() as conn:
        rows, total = await repo.page(conn, store_id, where, page.limit, page.offset, page.after)
    data = [serialize(request, r) for r in rows]
    return JSONResponse(
        collection(request, data, page, total, last_id=rows[-1]["id"] if rows else None, flat_meta=False)
    )


@router.get("/{integration_id}", summary="Get an integration")
async def get_integration(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    async with request.app.state.db.read() as conn:
        row = await repo.get(conn, store_id, integration_id)
    if row is None:
        raise not_found()
    return JSONResponse({"data": serialize(request, row)})


@router.put("/{integration_id}", summary="Update an integration (partial)", openapi_extra=_body_doc(IntegrationEnvelope))
async def update_integration(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    body = await json_body(request)
    now = utcnow()
    async with request.app.state.db.write() as conn:
        stored = await repo.get(conn, store_id, integration_id)
        if stored is None:
            raise not_found()
        try:
            values = validate_update(body, stored)
        except ValidationFailed as exc:
            raise _validation(exc) from None
        await repo.update(conn, store_id, integration_id, values, now)
        if values.get("enabled") is False and stored["enabled"]:
            await job_repo.cancel_pending(conn, integration_id, now)
        row = {**stored, **values, "updated_at": now}
        data = serialize(request, row)
        await raise_event(request, conn, store_id, "integration.updated", {"data": data})
    wake_workers(request)
    return JSONResponse({"data": data})


@router.delete("/{integration_id}", status_code=204, summary="Delete an integration")
async def delete_integration(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    now = utcnow()
    async with request.app.state.db.write() as conn:
        if not await repo.soft_delete(conn, store_id, integration_id, now):
            raise not_found()
        await job_repo.cancel_pending(conn, integration_id, now)
        await raise_event(request, conn, store_id, "integration.deleted", {"type": "integration", "id": integration_id})
    wake_workers(request)
    return Response(status_code=204)


@router.get("/{integration_id}/signing-secret", summary="Get the signing secret of an integration")
async def get_signing_secret(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    async with request.app.state.db.read() as conn:
        secrets = await repo.signing_secrets(conn, store_id, integration_id)
    if secrets is None:
        raise not_found()
    return JSONResponse({"data": {"key": secrets["signing_secret"]}})


@router.post("/{integration_id}/signing-secret/rotate", summary="Rotate the signing secret (old key signs 24 h more)")
async def rotate_signing_secret(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    now = utcnow()
    async with request.app.state.db.write() as conn:
        key = await repo.rotate_secret(conn, store_id, integration_id, now, now + SECRET_GRACE)
    if key is None:
        raise not_found()
    return JSONResponse({"data": {"key": key}})
