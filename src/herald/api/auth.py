"""POST /oauth/access_token and the bearer-token check every /v2 route depends on."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import jwt
import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from starlette.datastructures import FormData

from herald import log as log_context
from herald.api.jsonapi import APIError, JSONResponse, errors
from herald.api.limits import SignInCounter, StoreRates
from herald.db import stores as store_repo

router = APIRouter(tags=["auth"])

GRANTS = ("client_credentials", "implicit")


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int = Field(description="Seconds the token lives")
    expires: int = Field(description="Unix time (seconds) when it expires")
    identifier: str = Field(description="The grant type: client_credentials or implicit")


class TokenRequest(BaseModel):
    grant_type: str = Field(description="client_credentials or implicit")
    client_id: str
    client_secret: str | None = Field(None, description="Required for client_credentials")


@dataclass(slots=True)
class Caller:
    store_id: str
    grant: str


async def _token_form(request: Request) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/json"):
        try:
            body = orjson.loads(await request.body() or b"{}")
        except orjson.JSONDecodeError:
            raise APIError(400, "Bad Request", "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise APIError(400, "Bad Request", "The request body must be an object")
        return body
    form: FormData = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


@router.post(
    "/oauth/access_token",
    response_model=AccessToken,
    summary="Get an access token",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {"schema": TokenRequest.model_json_schema()},
                "application/json": {"schema": TokenRequest.model_json_schema()},
            },
        }
    },
    responses=errors(400, 401, 413, 422, 429, 500, 503, e401="Wrong credentials",
                     e429="Too many failed sign-ins for this client_id or from this address; see Retry-After"),
)
async def access_token(request: Request) -> JSONResponse:
    state = request.app.state
    body = await _token_form(request)
    grant = body.get("grant_type")
    client_id = body.get("client_id")
    if grant not in GRANTS:
        raise APIError(422, "Unprocessable Entity", "grant_type must be client_credentials or implicit", "grant_type")
    if not isinstance(client_id, str) or not client_id:
        raise APIError(422, "Unprocessable Entity", "client_id is required", "client_id")
    secret = body.get("client_secret")
    store_id = await authenticate(request, client_id, secret, need_secret=grant == "client_credentials")
    ttl = state.settings.token_ttl
    now = int(time.time())
    token = jwt.encode(
        {"sub": store_id, "grant": grant, "iat": now, "exp": now + ttl},
        state.token_key,
        algorithm="HS256",
    )
    return JSONResponse(
        {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "expires": now + ttl, "identifier": grant}
    )


async def authenticate(request: Request, client_id: str, secret: object, *, need_secret: bool = True) -> str:
    """The store whose credentials these are, for a token or a dashboard sign-in alike: 429 while the client id
    (alone, or from this address) or the address has failed too often in the window, 401 for wrong credentials
    (counted; see `herald.api.limits.sign_in_keys`)."""
    state = request.app.state
    remote = request.client.host if request.client else "unknown"
    limiter: SignInCounter = state.sign_ins
    wait = await limiter.retry_after(client_id, remote)
    if wait is not None:
        raise APIError(
            429, "Too Many Requests", "Too many failed sign-ins; try again later", headers={"Retry-After": str(wait)}
        )
    async with state.db.read() as conn:
        found = await store_repo.by_client_id(conn, client_id)
    ok = found is not None
    if found is not None and need_secret:
        ok = isinstance(secret, str) and store_repo.secret_matches(secret, found[1])
    if found is None or not ok:
        await limiter.failed(client_id, remote)
        raise APIError(401, "Unauthorized", "Invalid client credentials")
    return found[0]


class TokenCache:
    """Verified tokens, so that a client sending the same token on every request is checked once.

    Only valid tokens are kept, with their expiry, which is still checked on every use.
    """

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._known: dict[str, tuple[Caller, int]] = {}

    def get(self, token: str) -> Caller | None:
        hit = self._known.get(token)
        if hit is None:
            return None
        if hit[1] <= time.time():
            self._known.pop(token, None)
            return None
        return hit[0]

    def put(self, token: str, caller: Caller, exp: int) -> None:
        if len(self._known) >= self.size:
            self._known.clear()
        self._known[token] = (caller, exp)


def _caller(request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, "Unauthorized", "An Authorization: Bearer <token> header is required")
    cache: TokenCache = request.app.state.tokens
    caller = cache.get(token)
    if caller is not None:
        return caller
    try:
        claims = jwt.decode(
            token, request.app.state.token_key, algorithms=["HS256"], options={"require": ["exp", "sub"]}
        )
    except jwt.ExpiredSignatureError:
        raise APIError(401, "Unauthorized", "The access token has expired") from None
    except jwt.PyJWTError:
        raise APIError(401, "Unauthorized", "The access token is invalid") from None
    caller = Caller(store_id=claims["sub"], grant=claims.get("grant", "implicit"))
    cache.put(token, caller, int(claims["exp"]))
    return caller


async def require_store(request: Request) -> str:
    """The store behind a client_credentials token; implicit tokens may not manage integrations (403); a store
    over HERALD_RATE_LIMIT gets 429 with Retry-After.

    Every store route calls it first. It is not a FastAPI dependency: resolving one cost more per request than
    the check itself (a third of a publish request's CPU), and it would add nothing to the OpenAPI document."""
    caller = _caller(request)
    if caller.grant != "client_credentials":
        raise APIError(
            403, "Forbidden", "An implicit token cannot access integrations or events; use client_credentials"
        )
    log_context.store_id.set(caller.store_id)
    rates: StoreRates | None = request.app.state.rates
    if rates is not None:
        wait = rates.wait(caller.store_id)
        if wait:
            raise APIError(
                429, "Too Many Requests", f"This store may make {rates.rate:g} requests per second; slow down",
                headers={"Retry-After": str(max(1, math.ceil(wait)))},
            )
    return caller.store_id

