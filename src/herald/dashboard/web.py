"""What every dashboard page shares: templates, the session behind a request, CSRF, security headers, errors.

Pages are server-rendered (Jinja2, autoescaped). A strict Content-Security-Policy goes with each of them: scripts
and styles only from /dashboard/static, nothing inline, no frames."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from herald.db import sessions, stores
from herald.db.sessions import Session
from herald.db.stores import StoreRow
from herald.domain.ids import rfc3339, utcnow

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
COOKIE = "herald_session"
SIGN_IN_COOKIE = "herald_sign_in"  # the sign-in form's CSRF token (double submit: no session exists yet)
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class PageError(Exception):
    """An error answered as a page (404 for what is not there or not this store's, 403 for a bad CSRF token)."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


class SignInNeeded(Exception):
    """No valid session: pages redirect to the sign-in form, fragments answer 401."""


@dataclass(frozen=True, slots=True)
class Visitor:
    """A signed-in dashboard request: its store and its session."""

    store: StoreRow
    session: Session


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def visitor(request: Request) -> Visitor:
    token = request.cookies.get(COOKIE)
    if not token:
        raise SignInNeeded
    async with request.app.state.db.read() as conn:
        session = await sessions.get(conn, token, utcnow())
        store = await stores.get(conn, session.store_id) if session else None
    if session is None or store is None:
        raise SignInNeeded
    return Visitor(store, session)


async def form_with_csrf(request: Request, expected: str) -> dict[str, str]:
    """The posted form, once its CSRF token (field `csrf` or header X-CSRF-Token) matches; 403 otherwise."""
    form = await request.form()
    sent = form.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not isinstance(sent, str) or not expected or not hmac.compare_digest(sent, expected):
        raise PageError(403, "Forbidden", "This form has expired or did not come from this dashboard. "
                                          "Go back, reload the page and try again.")
    return {k: v for k, v in form.items() if isinstance(v, str)}


def page(request: Request, name: str, status: int = 200, headers: dict[str, str] | None = None,
         **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(SECURITY_HEADERS)
    if headers:
        response.headers.update(headers)
    return response


def fragment(request: Request, name: str, headers: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """A piece of a page that the page's script fetches and puts in place."""
    return page(request, name, headers=headers, **context)


def redirect(url: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.headers.update(SECURITY_HEADERS)
    return response


def safe_next(target: str | None) -> str:
    """Only a path inside the dashboard is followed after signing in (no open redirect)."""
    if target and target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


def sign_in_url(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/dashboard/sign-in?next={quote(here, safe='')}"


def sign_in_token(request: Request) -> tuple[str, bool]:
    """The sign-in form's CSRF token, and whether it must be set as a cookie now."""
    token = request.cookies.get(SIGN_IN_COOKIE)
    if token and len(token) >= 32:
        return token, False
    return secrets.token_urlsafe(32), True


def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "–"


def iso(value: datetime | None) -> str:
    return rfc3339(value) or ""


templates.env.filters["when"] = when
templates.env.filters["iso"] = iso


async def page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    return page(request, "error.html", status=exc.status, title=exc.title, message=exc.message, visitor=None)


def outage_page(request: Request, retry_after: str) -> Response | None:
    """The dashboard's answer while the database is away (None outside the dashboard: the API's JSON 503). A
    page a person can read; a live fragment gets a bare 503, and the page's script tries again at its next tick."""
    if not request.url.path.startswith("/dashboard"):
        return None
    headers = {**SECURITY_HEADERS, "Retry-After": retry_after}
    if request.headers.get("x-herald-fragment"):
        return Response(status_code=503, headers=headers)
    return page(request, "error.html", status=503, headers=headers, title="Service unavailable",
                message="Herald's database is not answering just now. Reload this page in a few seconds.",
                visitor=None)


async def sign_in_needed(request: Request, exc: Exception) -> Response:
    if request.headers.get("x-herald-fragment"):
        return Response(status_code=401, headers=SECURITY_HEADERS)
    return redirect(sign_in_url(request))
