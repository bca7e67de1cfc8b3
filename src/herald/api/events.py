"""/v2/events: publish one event or a batch, with Idempotency-Key; read an event back."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any, Literal

import orjson
import sqlalchemy as sa
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.exc import IntegrityError

from herald.api.auth import require_store
from herald.api.jobs import JobRef
from herald.api.jsonapi import (
    STORE_ERRORS,
    APIError,
    JSONResponse,
    Strict,
    errors,
    json_body,
    not_found,
    request_body,
    resource_id,
    unprocessable,
)
from herald.db import events as repo
from herald.db.tables import idempotency_keys
from herald.domain.events import EVENT_KEYS
from herald.domain.ids import rfc3339, utcnow

router = APIRouter(prefix="/v2/events", tags=["events"], responses=errors(*STORE_ERRORS))

MAX_BATCH = 1000


class EventBody(BaseModel):
    type: Literal["event"]
    triggered_by: str = Field(
        description="An observable event key, e.g. order.paid", json_schema_extra={"enum": [*sorted(EVENT_KEYS)]}
    )
    payload: dict[str, Any] = Field(description="A JSON object; for *.deleted events {type, id}")


class EventEnvelope(BaseModel):
    data: EventBody | list[EventBody] = Field(description="One event, or a batch of up to 1000")


class JobsRelation(Strict):
    data: list[JobRef] = Field(description="One job per integration that observes the event")


class EventRelationships(Strict):
    jobs: JobsRelation


class EventTimestamps(Strict):
    created_at: datetime


class EventMeta(Strict):
    timestamps: EventTimestamps


class Event(Strict):
    id: str
    type: Literal["event"]
    triggered_by: str
    relationships: EventRelationships
    meta: EventMeta


class EventWithPayload(Event):
    payload: dict[str, Any] | SkipJsonSchema[None] = Field(None, description="The payload as published")


class PublishedDocument(Strict):
    data: Event | list[Event] = Field(description="The event, or the batch's events in the order sent")


class EventDocument(Strict):
    data: EventWithPayload


def serialize(event: repo.PublishedEvent, *, with_payload: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": event.id,
        "type": "event",
        "triggered_by": event.triggered_by,
        "relationships": {"jobs": {"data": [{"type": "integration-job", "id": j} for j in event.job_ids]}},
        "meta": {"timestamps": {"created_at": rfc3339(event.created_at)}},
    }
    if with_payload and event.payload is not None:
        out["payload"] = orjson.loads(event.payload)
    return out


def _items(body: Any, max_bytes: int) -> tuple[list[tuple[str, str]], bool]:
    if not isinstance(body, dict) or "data" not in body:
        raise unprocessable("The request body must be an object with `data`", "data")
    data = body["data"]
    batch = isinstance(data, list)
    entries = data if batch else [data]
    if batch and not entries:
        raise unprocessable("A batch needs at least one event", "data")
    if len(entries) > MAX_BATCH:
        raise unprocessable(f"A batch holds at most {MAX_BATCH} events", "data")
    items: list[tuple[str, str]] = []
    for i, entry in enumerate(entries):
        at = f"data[{i}]" if batch else "data"
        if not isinstance(entry, dict):
            raise unprocessable("must be an event object", at)
        if entry.get("type") != "event":
            raise unprocessable("type must be `event`", f"{at}.type")
        key = entry.get("triggered_by")
        if not isinstance(key, str) or key not in EVENT_KEYS:
            raise unprocessable(f"{key!r} is not an observable event", f"{at}.triggered_by")
        payload = entry.get("payload")
        if not isinstance(payload, dict):
            raise unprocessable("payload must be a JSON object", f"{at}.payload")
        text = orjson.dumps(payload)
        if len(text) > max_bytes:
            raise APIError(413, "Payload Too Large", f"The payload is larger than {max_bytes} bytes", f"{at}.payload")
        items.append((key, text.decode()))
    return items, batch


async def _replay(conn: Any, store_id: str, key: str, digest: str, ttl: int) -> JSONResponse | None:
    row = (
        await conn.execute(
            sa.select(idempotency_keys.c.request_hash, idempotency_keys.c.status_code, idempotency_keys.c.response,
                      idempotency_keys.c.created_at)
            .where(idempotency_keys.c.store_id == store_id, idempotency_keys.c.key == key)
        )
    ).first()
    if row is None:
        return None
    if row[3] < utcnow() - timedelta(seconds=ttl):
        await conn.execute(
            idempotency_keys.delete().where(idempotency_keys.c.store_id == store_id, idempotency_keys.c.key == key)
        )
        return None
    if row[0] != digest:
        raise unprocessable("This Idempotency-Key was used with a different request body", "Idempotency-Key")
    return JSONResponse(orjson.loads(row[2]), status_code=row[1], headers={"Idempotent-Replayed": "true"})


@router.post(
    "",
    status_code=202,
    summary="Publish an event or a batch of events",
    response_model=PublishedDocument,
    responses=errors(
        400, 409, 413, 422, e409="A request with the same Idempotency-Key is still being processed",
        e400="The body is not JSON, or the Idempotency-Key is not 1 to 255 characters",
    ),
    openapi_extra={
        **request_body(EventEnvelope),
        "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                        "description": "The same key within 24 h answers the first response again"}],
    },
)
async def publish(request: Request) -> JSONResponse:
    store_id = await require_store(request)
    settings = request.app.state.settings
    raw = await request.body()
    body = await json_body(request)
    items, batch = _items(body, settings.max_payload_bytes)
    key = request.headers.get("idempotency-key")
    if key is not None and not (0 < len(key) <= 255):
        raise APIError(400, "Bad Request", "Idempotency-Key must be 1 to 255 characters", "Idempotency-Key")
    if key is None:
        published = await request.app.state.publisher.publish(store_id, items)
        data = [serialize(e) for e in published]
        return JSONResponse({"data": data if batch else data[0]}, status_code=202)
    digest = hashlib.sha256(raw).hexdigest()
    for _ in range(2):
        try:
            async with request.app.state.db.write() as conn:
                replay = await _replay(conn, store_id, key, digest, settings.idempotency_ttl)
                if replay is not None:
                    return replay
                now = utcnow()
                published = await repo.publish(conn, store_id, items, now=now, max_attempts=settings.max_attempts)
                data = [serialize(e) for e in published]
                answer = {"data": data if batch else data[0]}
                await conn.execute(
                    idempotency_keys.insert().values(
                        store_id=store_id, key=key, request_hash=digest, status_code=202,
                        response=orjson.dumps(answer).decode(), created_at=now,
                    )
                )
            break
        except IntegrityError:
            continue  # a concurrent request with the same key won: answer its response
    else:
        raise APIError(409, "Conflict", "A concurrent request with this Idempotency-Key is still being processed")
    return JSONResponse(answer, status_code=202)


@router.get(
    "/{event_id}", summary="Get an event, its payload and its jobs", response_model=EventDocument,
    responses=errors(404),
)
async def get_event(request: Request, event_id: str) -> JSONResponse:
    store_id = await require_store(request)
    resource_id(event_id)
    async with request.app.state.db.read() as conn:
        event = await repo.get(conn, store_id, event_id)
    if event is None:
        raise not_found()
    return JSONResponse({"data": serialize(event, with_payload=True)})
