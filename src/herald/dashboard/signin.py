"""Signing in (client id and secret, or a one-time link), and out. The same failed sign-in limits as
/oauth/access_token apply: both go through `herald.api.auth.authenticate`."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response

from herald.api.auth import authenticate
from herald.api.jsonapi import APIError
from herald.dashboard.web import (
    COOKIE,
    SIGN_IN_COOKIE,
    PageError,
    form_with_csrf,
    page,
    redirect,
    safe_next,
    secure,
    sign_in_token,
    visitor,
)
from herald.db import sessions
from herald.domain.ids import utcnow

router = APIRouter(prefix="/dashboard", include_in_schema=False)


def _form(request: Request, *, status: int = 200, error: str | None = None, client_id: str = "",
          next_url: str | None = None, headers: dict[str, str] | None = None) -> Response:
    token, fresh = sign_in_token(request)
    response = page(request, "sign_in.html", status=status, headers=headers, csrf=token, error=error,
                    client_id=client_id, next=safe_next(next_url or request.query_params.get("next")), visitor=None)
    if fresh:
        response.set_cookie(SIGN_IN_COOKIE, token, httponly=True, samesite="lax", secure=secure(request),
                            path="/dashboard")
    return response


def _signed_in(request: Request, token: str, target: str) -> Response:
    response = redirect(target)
    response.set_cookie(COOKIE, token, max_age=int(sessions.SESSION_TTL.total_seconds()), httponly=True,
                        samesite="lax", secure=secure(request), path="/dashboard")
    response.delete_cookie(SIGN_IN_COOKIE, path="/dashboard")
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    return _form(request)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not expected or not hmac.compare_digest(fields.get("csrf", ""), expected):
        raise PageError(403, "Forbidden", "The sign-in form had expired. Reload it and sign in again.")
    client_id = fields.get("client_id", "").strip()
    target = safe_next(fields.get("next"))
    if not client_id:
        return _form(request, status=422, error="Enter the store's client id and secret.", next_url=target)
    try:
        store_id = await authenticate(request, client_id, fields.get("client_secret", ""))
    except APIError as exc:
        if exc.status == 429:
            return _form(request, status=429, error="Too many failed sign-ins. Wait a few minutes and try again.",
                         client_id=client_id, next_url=target, headers=exc.headers)
        return _form(request, status=401, error="That client id and secret do not match a store.",
                     client_id=client_id, next_url=target)
    async with request.app.state.db.write() as conn:
        token, _ = await sessions.create(conn, store_id, utcnow())
    return _signed_in(request, token, target)


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    who = await visitor(request)
    await form_with_csrf(request, who.session.csrf)
    async with request.app.state.db.write() as conn:
        await sessions.end(conn, request.cookies.get(COOKIE, ""))
    response = redirect("/dashboard/sign-in")
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


@router.get("/links/{token}")
async def use_link(request: Request, token: str) -> Response:
    now = utcnow()
    async with request.app.state.db.write() as conn:
        store_id = await sessions.use_link(conn, token, now)
        if store_id is None:
            raise PageError(410, "This link cannot be used", "This sign-in link was used already or has expired. "
                                                             "Ask for a new one, or sign in with the store's "
                                                             "client id and secret.")
        session_token, _ = await sessions.create(conn, store_id, now)
    return _signed_in(request, session_token, "/dashboard")
