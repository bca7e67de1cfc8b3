"""The JSON:API-flavoured conventions of /v2: envelopes, errors, pagination, links and filters."""

from __future__ import annotations

import base64
import binascii
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema
from starlette.requests import Request
from starlette.responses import Response

from herald.domain.ids import is_id, parse_rfc3339

MAX_LIMIT = 100
MAX_INT = 2**63 - 1  # what both databases can compare with
MAX_INT32 = 2**31 - 1  # the integer columns that filters compare (status_code, attempt) are 32-bit on PostgreSQL


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


class APIError(Exception):
    """Any error answered in the Moltin form {"errors":[{status,title,detail,source?}]}."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        source: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.source = source
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.title, self.detail, self.source, self.headers)


def error_response(
    status: int,
    title: str,
    detail: str,
    source: str | None = None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    err: dict[str, Any] = {"status": status, "title": title, "detail": detail}
    if source:
        err["source"] = source
    err.update(extra)
    return JSONResponse({"errors": [err]}, status_code=status, headers=headers)


# --- OpenAPI ----------------------------------------------------------------------------------------------------


class Strict(BaseModel):
    """Base of the answer documents: their schema lists every field and allows no other."""

    model_config = ConfigDict(extra="forbid")


class ErrorObject(Strict):
    status: int = Field(description="The HTTP status code, again")
    title: str = Field(description="The status code's name, e.g. Unprocessable Entity")
    detail: str = Field(description="What is wrong, in a sentence")
    source: str | SkipJsonSchema[None] = Field(
        None, description="The field or parameter at fault, e.g. data.observes or page[limit], when there is one"
    )
    request_id: str | SkipJsonSchema[None] = Field(
        None, description="On a 500 only: the request's X-Request-Id, which identifies it in the logs"
    )


class ErrorDocument(Strict):
    """Every error Herald answers, in Moltin's form."""

    errors: list[ErrorObject] = Field(min_length=1)


STORE_ERRORS = (401, 403, 429, 500, 503)
"""What any route of a store's API may answer, whatever it does."""

_ERRORS = {
    400: "Malformed: a body that is not JSON, or a query parameter (page[...], filter) or header Herald cannot read",
    401: "No Authorization: Bearer header, or a token that is invalid or has expired",
    403: "An implicit token: integrations and events need a client_credentials token",
    404: "No such resource in this store",
    409: "The request conflicts with the resource's state",
    413: "The request body, or an event's payload, is larger than Herald accepts",
    422: "The body is JSON but not a valid request; `source` names the field",
    429: "This store is over HERALD_RATE_LIMIT; Retry-After says when to try again",
    500: "An unexpected failure; `request_id` identifies it in Herald's logs",
    503: "The database is not answering (it is restarting, unreachable or locked); Retry-After says when to try again",
}


def errors(*codes: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error answers of a route: each code with the error document's schema; a
    keyword such as `e409="..."` describes a code in the route's own words."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        out[code] = {"model": ErrorDocument, "description": described.get(f"e{code}", _ERRORS[code])}
    return out


def finish_openapi(spec: dict[str, Any]) -> dict[str, Any]:
    """The last touches to FastAPI's document: the request bodies of `request_body`; the bearer token that every
    /v2 route needs; no 422 with FastAPI's own HTTPValidationError body, which FastAPI adds to every route with
    a parameter: Herald's routes read their input themselves and each documents the errors it really answers."""
    components = spec.setdefault("components", {})
    components.setdefault("schemas", {}).update(SCHEMAS)
    components["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An access_token from POST /oauth/access_token (client_credentials; an implicit token is 403)",
    }}
    for path, operations in spec.get("paths", {}).items():
        for operation in operations.values():
            if path.startswith("/v2/"):
                operation["security"] = [{"bearer": []}]
            fastapi_422 = operation.get("responses", {}).get("422", {})
            if "HTTPValidationError" in orjson.dumps(fastapi_422).decode():
                del operation["responses"]["422"]
    for name in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(name, None)
    return spec


SCHEMAS: dict[str, Any] = {}
"""Component schemas of the request bodies that routes read themselves (see `request_body`); app.py adds them to
the OpenAPI document."""


def request_body(model: type[Any]) -> dict[str, Any]:
    """`openapi_extra` documenting `model` as the JSON body of a route that parses its body itself (for its
    Moltin-shaped errors), with the model and everything it refers to under components/schemas."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    SCHEMAS.update(schema.pop("$defs", {}))
    SCHEMAS[model.__name__] = schema
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


def not_found() -> APIError:
    return APIError(404, "Not Found", "The resource could not be found")


def resource_id(value: str) -> str:
    """A resource id from a path: anything that is not shaped like the ids Herald gives out (lower-case UUIDs)
    is no resource, and is answered 404 without asking the database (PostgreSQL could not even compare a
    NUL character)."""
    if not is_id(value):
        raise not_found()
    return value


def bad_request(detail: str, source: str | None = None) -> APIError:
    return APIError(400, "Bad Request", detail, source)


def unprocessable(detail: str, source: str | None = None) -> APIError:
    return APIError(422, "Unprocessable Entity", detail, source)


async def json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise bad_request("The request body is empty; a JSON document was expected")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"The request body is not valid JSON: {exc}") from None


# --- pagination -------------------------------------------------------------------------------


@dataclass(slots=True)
class Page:
    limit: int
    offset: int
    after: str | None  # a decoded cursor (the last id seen), or None in offset mode
    cursor_mode: bool


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} must be a whole number", name) from None
    if value < 0:
        raise bad_request(f"{name} must not be negative", name)
    if value > MAX_INT:
        raise bad_request(f"{name} is too large", name)
    return value


def encode_cursor(last_id: str) -> str:
    return base64.urlsafe_b64encode(last_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_request("page[after] is not a cursor this API gave out", "page[after]") from None
    if len(value) != 36:
        raise bad_request("page[after] is not a cursor this API gave out", "page[after]")
    return value


def page_params(request: Request) -> Page:
    limit = _int_param(request, "page[limit]", MAX_LIMIT)
    if limit == 0:
        raise bad_request("page[limit] must be at least 1", "page[limit]")
    limit = min(limit, MAX_LIMIT)
    offset = _int_param(request, "page[offset]", 0)
    after_raw = request.query_params.get("page[after]")
    if after_raw is None:
        return Page(limit, offset, None, False)
    if "page[offset]" in request.query_params:
        raise bad_request("page[after] and page[offset] cannot be combined", "page[after]")
    return Page(limit, 0, decode_cursor(after_raw) if after_raw else None, True)


def base_url(request: Request) -> str:
    public = request.app.state.settings.public_url
    return (public.rstrip("/") if public else str(request.base_url).rstrip("/"))


def _page_url(request: Request, **page: Any) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if not k.startswith("page[")]
    params += [(f"page[{k}]", str(v)) for k, v in page.items()]
    query = urlencode(params, safe="[]")
    return f"{base_url(request)}{request.url.path}" + (f"?{query}" if query else "")


class PageLinks(Strict):
    current: str
    first: str
    last: str | None = Field(description="null in cursor mode (page[after])")
    prev: str | None = Field(description="null on the first page, and in cursor mode")
    next: str | None = Field(description="null on the last page")


class PageMeta(Strict):
    limit: int = Field(description="The page size used (page[limit] above 100 is taken as 100)")
    offset: int
    current: int | None = Field(description="The page number; null in cursor mode")
    total: int = Field(description="The number of pages")


class ResultCount(Strict):
    total: int = Field(description="The number of matching resources")


class CollectionMeta(Strict):
    page: PageMeta
    results: ResultCount


PAGE_PARAMETERS: list[dict[str, Any]] = [
    {"name": "page[limit]", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "default": MAX_LIMIT},
     "description": f"Page size; a larger value is taken as {MAX_LIMIT}"},
    {"name": "page[offset]", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0},
     "description": "How many resources to skip (offset mode); not with page[after]"},
    {"name": "page[after]", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "Cursor mode: a cursor from links.next, or empty for the first page"},
]


def list_parameters(fields: Mapping[str, FilterField]) -> dict[str, Any]:
    """`openapi_extra` documenting the paging parameters and the `filter` of a list route."""
    names = ", ".join(f"{name} ({', '.join(spec.ops)})" for name, spec in fields.items())
    return {"parameters": [*PAGE_PARAMETERS, {
        "name": "filter", "in": "query", "required": False, "schema": {"type": "string"},
        "description": f"op(field,value) joined with `:`, e.g. eq(name,Orders). Fields and their operators: {names}",
    }]}


def collection(
    request: Request,
    data: list[dict[str, Any]],
    page: Page,
    total: int,
    *,
    last_id: str | None,
    flat_meta: bool,
) -> dict[str, Any]:
    """A list answer with links and meta; `flat_meta` is the logs lists' shape, as the Moltin logs API answers."""
    pages = math.ceil(total / page.limit)
    if page.cursor_mode:
        current: int | None = None
        more = last_id is not None and len(data) == page.limit
        nxt = _page_url(request, limit=page.limit, after=encode_cursor(last_id)) if more and last_id else None
        links = {
            "current": _page_url(request, limit=page.limit, after=encode_cursor(page.after) if page.after else ""),
            "first": _page_url(request, limit=page.limit, after=""),
            "last": None,
            "prev": None,
            "next": nxt,
        }
    else:
        current = page.offset // page.limit + 1
        last_offset = max(pages - 1, 0) * page.limit
        links = {
            "current": _page_url(request, limit=page.limit, offset=page.offset),
            "first": _page_url(request, limit=page.limit, offset=0),
            "last": _page_url(request, limit=page.limit, offset=last_offset),
            "prev": (
                _page_url(request, limit=page.limit, offset=max(page.offset - page.limit, 0))
                if page.offset > 0 else None
            ),
            "next": (
                _page_url(request, limit=page.limit, offset=page.offset + page.limit)
                if page.offset + page.limit < total else None
            ),
        }
    page_meta = {"limit": page.limit, "offset": page.offset, "current": current, "total": pages}
    if flat_meta:
        return {"data": data, "links": links, "meta": page_meta, "results": {"total": total}}
    return {"data": data, "links": links, "meta": {"page": page_meta, "results": {"total": total}}}


# --- filters ----------------------------------------------------------------------------------

OPS = ("eq", "like", "gt", "ge", "lt", "le")
_COMPARE = {"eq": operator.eq, "gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


@dataclass(slots=True)
class FilterField:
    column: sa.ColumnElement[Any]
    parse: Callable[[str], Any]
    ops: tuple[str, ...]


def parse_filter_string(raw: str) -> list[tuple[str, str, str]]:
    """`op(field,value):op(field,"va,l)ue")` -> [(op, field, value)]; parsed by brackets so values may hold `:`."""
    out: list[tuple[str, str, str]] = []
    i, n = 0, len(raw)
    while i < n:
        open_at = raw.find("(", i)
        if open_at < 0:
            raise bad_request(f"Invalid filter near {raw[i:]!r}: expected op(field,value)", "filter")
        op = raw[i:open_at].strip()
        comma = raw.find(",", open_at)
        if comma < 0:
            raise bad_request(f"Invalid filter near {raw[i:]!r}: expected op(field,value)", "filter")
        field = raw[open_at + 1 : comma].strip()
        j = comma + 1
        if j < n and raw[j] == '"':
            end = raw.find('"', j + 1)
            if end < 0 or end + 1 >= n or raw[end + 1] != ")":
                raise bad_request("Invalid filter: unterminated quoted value", "filter")
            value, close = raw[j + 1 : end], end + 1
        else:
            close = raw.find(")", j)
            if close < 0:
                raise bad_request(f"Invalid filter near {raw[i:]!r}: missing `)`", "filter")
            value = raw[j:close]
        out.append((op, field, value))
        i = close + 1
        if i < n:
            if raw[i] != ":":
                raise bad_request(f"Invalid filter near {raw[i:]!r}: filters are joined with `:`", "filter")
            i += 1
    return out


def filter_clauses(request: Request, fields: dict[str, FilterField]) -> list[sa.ColumnElement[bool]]:
    raw = request.query_params.get("filter")
    if not raw:
        return []
    clauses: list[sa.ColumnElement[bool]] = []
    for op, name, value in parse_filter_string(raw):
        if op not in OPS:
            raise bad_request(f"Unknown filter operator {op!r}; use one of {', '.join(OPS)}", "filter")
        spec = fields.get(name)
        if spec is None:
            raise bad_request(f"Cannot filter on {name!r}; filterable fields: {', '.join(fields)}", "filter")
        if op not in spec.ops:
            raise bad_request(f"Operator {op!r} cannot be used on {name!r}; use one of {', '.join(spec.ops)}", "filter")
        if "\x00" in value:
            raise bad_request(f"Invalid value for {name}: a NUL character cannot be compared", "filter")
        if op == "like":
            pattern = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
            clauses.append(spec.column.ilike(pattern, escape="\\"))
            continue
        try:
            parsed = spec.parse(value)
        except ValueError as exc:
            raise bad_request(f"Invalid value {value!r} for {name}: {exc}", "filter") from None
        clauses.append(_COMPARE[op](spec.column, parsed))
    return clauses


def parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise ValueError("expected true or false")


def parse_int(value: str) -> int:
    number = int(value)
    if abs(number) > MAX_INT32:
        raise ValueError("the number is too large")
    return number


def parse_time(value: str) -> datetime:
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise ValueError("expected an RFC 3339 timestamp such as 2026-11-01T00:00:00Z") from None


def parse_str(value: str) -> str:
    return value


STR_OPS = ("eq", "like")
BOOL_OPS = ("eq",)
ORDERED_OPS = ("eq", "gt", "ge", "lt", "le")
