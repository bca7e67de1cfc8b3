"""/v2/integrations: create, list, read, update, delete, and the signing secret."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, create_model
from starlette.responses import Response

from herald.api.auth import require_store
from herald.api.jsonapi import (
    BOOL_OPS,
    STORE_ERRORS,
    STR_OPS,
    APIError,
    CollectionMeta,
    FilterField,
    JSONResponse,
    PageLinks,
    Strict,
    base_url,
    collection,
    errors,
    filter_clauses,
    json_body,
    list_parameters,
    not_found,
    page_params,
    parse_bool,
    parse_str,
    request_body,
    resource_id,
    unprocessable,
)
from herald.db import integrations as repo
from herald.db.operator_events import OperatorEvents
from herald.db.tables import integrations as t
from herald.domain.destinations import DESTINATIONS, Destination, ValidationFailed
from herald.domain.events import EVENT_KEYS, RESOURCES
from herald.domain.ids import utcnow
from herald.domain.integrations import validate_create, validate_update
from herald.domain.representations import integration_resource

router = APIRouter(prefix="/v2/integrations", tags=["integrations"], responses=errors(*STORE_ERRORS))

FILTERS = {
    "name": FilterField(t.c.name, parse_str, STR_OPS),
    "enabled": FilterField(t.c.enabled, parse_bool, BOOL_OPS),
    "integration_type": FilterField(t.c.integration_type, parse_str, STR_OPS),
}
SECRET_GRACE = timedelta(hours=24)
OBSERVABLE = ["*", *sorted(f"{resource}.*" for resource in RESOURCES), *sorted(EVENT_KEYS)]
"""Everything `observes` may hold."""


class _IntegrationFields(BaseModel):
    type: Literal["integration"]
    name: str | None = Field(None, description="Required on create")
    description: str | None = Field(None, description="Defaults to an empty string")
    enabled: bool | None = Field(None, description="Defaults to false")
    observes: list[Annotated[str, Field(json_schema_extra={"enum": OBSERVABLE})]] | None = Field(
        None, description="Event keys such as order.paid; `order.*` and `*` wildcards. Required on create"
    )


def _typed_body(kind: Destination) -> type[BaseModel]:
    """The body of one integration type: its own `configuration` model, shown by /docs."""
    title = "".join(part.title() for part in kind.name.split("_"))
    # Both field types are made at run time from the registry: to mypy they are values, not type expressions.
    name_type: Any = Literal[kind.name]
    configuration_type: Any = kind.model | None
    return create_model(
        f"{title}Integration",
        __base__=_IntegrationFields,
        __doc__=kind.summary,
        integration_type=(name_type, Field(description="Defaults to webhook on create")),
        configuration=(
            configuration_type,
            Field(
                None,
                description="Required on create. Secrets are answered masked; sending a masked value back keeps the "
                "stored secret; null removes an optional key. On update, the fields sent are merged into the stored "
                "configuration unless integration_type changes.",
            ),
        ),
    )


if TYPE_CHECKING:
    IntegrationBody = BaseModel  # statically: each member of the union below is one
else:
    IntegrationBody = Annotated[
        Union[tuple(_typed_body(kind) for kind in DESTINATIONS.values())],  # noqa: UP007
        Field(discriminator="integration_type"),
    ]


class IntegrationEnvelope(BaseModel):
    data: IntegrationBody


class IntegrationLinks(Strict):
    self: str


class Timestamps(Strict):
    created_at: datetime
    updated_at: datetime


class IntegrationMeta(Strict):
    timestamps: Timestamps


class Integration(Strict):
    id: str
    type: Literal["integration"]
    name: str
    description: str
    enabled: bool
    integration_type: str = Field(json_schema_extra={"enum": list(DESTINATIONS)})
    observes: list[str]
    configuration: dict[str, Any] = Field(
        description="The integration type's configuration (see the request bodies), its secrets masked"
    )
    links: IntegrationLinks
    meta: IntegrationMeta


class IntegrationDocument(Strict):
    data: Integration


class IntegrationList(Strict):
    data: list[Integration]
    links: PageLinks
    meta: CollectionMeta


class SigningSecret(Strict):
    key: str = Field(description="The key deliveries are signed with (Standard Webhooks)")


class SigningSecretDocument(Strict):
    data: SigningSecret


def serialize(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return integration_resource(row, base_url(request))


def _events(request: Request) -> OperatorEvents:
    events: OperatorEvents = request.app.state.operator_events
    return events


def _validation(exc: ValidationFailed) -> APIError:
    return unprocessable(exc.detail if not exc.source else f"{exc.source.split('.')[-1]} {exc.detail}", exc.source)


@router.post(
    "", status_code=201, summary="Create an integration", openapi_extra=request_body(IntegrationEnvelope),
    response_model=IntegrationDocument, responses=errors(400, 413, 422),
)
async def create_integration(request: Request) -> JSONResponse:
    store_id = await require_store(request)
    body = await json_body(request)
    try:
        values = validate_create(body)
    except ValidationFailed as exc:
        raise _validation(exc) from None
    async with request.app.state.db.write() as conn:
        row = await repo.create(conn, store_id, values, utcnow(), _events(request))
    return JSONResponse({"data": serialize(request, row)}, status_code=201)


@router.get(
    "", summary="List integrations", openapi_extra=list_parameters(FILTERS), response_model=IntegrationList,
    responses=errors(400),
)
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


@router.get(
    "/{integration_id}", summary="Get an integration", response_model=IntegrationDocument, responses=errors(404)
)
async def get_integration(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    resource_id(integration_id)
    async with request.app.state.db.read() as conn:
        row = await repo.get(conn, store_id, integration_id)
    if row is None:
        raise not_found()
    return JSONResponse({"data": serialize(request, row)})


@router.put(
    "/{integration_id}", summary="Update an integration (partial)", openapi_extra=request_body(IntegrationEnvelope),
    response_model=IntegrationDocument, responses=errors(400, 404, 413, 422),
)
async def update_integration(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    body = await json_body(request)
    resource_id(integration_id)
    now = utcnow()
    async with request.app.state.db.write() as conn:
        stored = await repo.get(conn, store_id, integration_id)
        if stored is None:
            raise not_found()
        try:
            values = validate_update(body, stored)
        except ValidationFailed as exc:
            raise _validation(exc) from None
        row = await repo.change(conn, stored, values, now, _events(request))
    return JSONResponse({"data": serialize(request, row)})


@router.delete(
    "/{integration_id}", status_code=204, summary="Delete an integration", response_class=Response,
    responses=errors(404),
)
async def delete_integration(request: Request, integration_id: str) -> Response:
    store_id = await require_store(request)
    resource_id(integration_id)
    async with request.app.state.db.write() as conn:
        if not await repo.delete(conn, store_id, integration_id, utcnow(), _events(request)):
            raise not_found()
    return Response(status_code=204)


@router.get(
    "/{integration_id}/signing-secret", summary="Get the signing secret of an integration",
    response_model=SigningSecretDocument, responses=errors(404),
)
async def get_signing_secret(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    resource_id(integration_id)
    async with request.app.state.db.read() as conn:
        secrets = await repo.signing_secrets(conn, store_id, integration_id)
    if secrets is None:
        raise not_found()
    return JSONResponse({"data": {"key": secrets["signing_secret"]}})


@router.post(
    "/{integration_id}/signing-secret/rotate", summary="Rotate the signing secret (old key signs 24 h more)",
    response_model=SigningSecretDocument, responses=errors(404),
)
async def rotate_signing_secret(request: Request, integration_id: str) -> JSONResponse:
    store_id = await require_store(request)
    resource_id(integration_id)
    now = utcnow()
    async with request.app.state.db.write() as conn:
        key = await repo.rotate_secret(conn, store_id, integration_id, now, now + SECRET_GRACE)
    if key is None:
        raise not_found()
    return JSONResponse({"data": {"key": key}})
