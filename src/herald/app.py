"""create_app(settings) -> the ASGI app: routers, error handlers, and the lifespan that owns the database."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from herald import __version__, dashboard
from herald.api import auth, events, health, integrations, jobs, limits, logs, metrics, outages
from herald.api import dashboard as dashboard_links
from herald.api.jsonapi import APIError, error_response, finish_openapi
from herald.db import stores as store_repo
from herald.db.database import Database
from herald.db.operator_events import OperatorEvents
from herald.db.publisher import Publisher
from herald.domain.ids import new_id
from herald.log import RequestIdMiddleware
from herald.metrics import Metrics, MetricsMiddleware
from herald.settings import Settings

log = logging.getLogger("herald")

_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity",
           429: "Too Many Requests"}


async def _token_key(db: Database, settings: Settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    for _ in range(3):
        try:
            async with db.write() as conn:
                return await store_repo.token_key(conn)
        except IntegrityError:  # another process made it first
            continue
    raise RuntimeError("could not read or create the token signing key")


def settle_heap() -> None:
    """Once started: freeze the start-up objects (routes, models, statements) so that collections never scan
    them again, and collect the youngest generation less often. Each delivery allocates a few hundred short-lived
    objects; at the default threshold (700) the collector ran every few deliveries and cost about 15 % of a
    worker's CPU. Reference cycles are still collected, only in larger batches."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


def create_app(settings: Settings | None = None, *, worker: bool = False) -> FastAPI:
    """The API; with `worker=True` a delivery worker runs inside the same process (herald serve)."""
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.database_url)
        app.state.db = db
        app.state.token_key = await _token_key(db, settings)
        app.state.sign_ins = limits.sign_in_counter(settings, db)
        app.state.publisher = Publisher(db, settings.max_attempts)
        app.state.operator_events = OperatorEvents(settings.public_url, settings.max_attempts)
        runner = None
        if worker:
            from herald.delivery.worker import Worker

            runner = Worker(settings, db)
            app.state.metrics.watch(runner)
            await runner.start()
        if settings.metrics_port:
            app.state.metrics.serve(settings.metrics_port)
        settle_heap()
        try:
            yield
        finally:
            if runner is not None:
                await runner.stop()
            await app.state.publisher.close()
            await db.dispose()

    app = FastAPI(
        title="Herald",
        version=__version__,
        summary="Self-hosted webhooks and integrations, compatible with the Moltin Integrations API v2.",
        lifespan=lifespan,
        # Herald configures no OpenTelemetry provider; FastAPI would otherwise look for one on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.rates = limits.StoreRates.from_settings(settings)  # None: no rate limit
    app.state.tokens = auth.TokenCache()
    # events first: routes are matched in order, and publishing is the busiest; logs before integrations:
    # /v2/integrations/logs must not be taken for an integration id
    for module in (events, health, metrics, auth, logs, jobs, integrations, dashboard_links):
        app.include_router(module.router)
    dashboard.install(app)  # after the API: no API request pays for matching the dashboard's routes
    _error_handlers(app)
    outages.install(app, html=dashboard.web.outage_page)  # the database away: 503 with Retry-After, not a hang or a 500
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.state.metrics = Metrics()
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # it counts the 413s too
    app.add_middleware(RequestIdMiddleware)  # outermost of ours: every answer gets its X-Request-Id
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, finished by `jsonapi.finish_openapi` (request bodies, the bearer scheme, no FastAPI 422)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
        finish_openapi(spec)
        app.openapi_schema = spec
    return app.openapi_schema


def _allowed_methods(request: Request) -> set[str]:
    """Every method some route offers on this path (Starlette names only the first route's)."""

    def walk(routes: Any) -> set[str]:
        found: set[str] = set()
        for route in routes:
            if hasattr(route, "routes") and not hasattr(route, "methods"):
                found |= walk(route.routes)
                continue
            for method in ("GET", "POST", "PUT", "DELETE"):
                if route.matches({**request.scope, "method": method})[0] == Match.FULL:
                    found.add(method)
        return found

    return walk(request.app.router.routes)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> Any:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        if exc.status_code == 404:
            return error_response(404, "Not Found", "The resource could not be found")
        if exc.status_code == 405:
            allowed = sorted(_allowed_methods(request))
            return error_response(
                405, "Method Not Allowed", f"{request.method} is not allowed on {request.url.path}",
                headers={"Allow": ", ".join(allowed)},
            )
        title = _TITLES.get(exc.status_code, "Error")
        return error_response(exc.status_code, title, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
        status = 400 if first.get("type") == "json_invalid" or "query" in first.get("loc", ()) else 422
        return error_response(status, _TITLES[status], first.get("msg", "Invalid request"), ".".join(loc) or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Any:
        # answered outside the middlewares (Starlette's outermost layer): the X-Request-Id header is set here
        request_id = request.scope.get("herald.request_id") or new_id()
        log.error(
            "unexpected error on %s %s (request_id=%s)", request.method, request.url.path, request_id, exc_info=exc
        )
        return error_response(
            500, "Internal Server Error", "Something went wrong; the request_id identifies it in the logs",
            headers={"X-Request-Id": request_id}, request_id=request_id,
        )


class BodyTooLarge(APIError):
    """Raised to a handler that reads past HERALD_MAX_BODY_BYTES (its client has had its 413 already)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "Payload Too Large", f"The request body is larger than {limit} bytes")


class BodyLimit:
    """413 for a body larger than any request can legitimately be (pure ASGI).

    A Content-Length over the limit is answered before the body is read; a body without one (chunked) is counted
    as it arrives, and the moment it passes the limit the 413 is sent and the handler's reads fail with
    `BodyTooLarge`: whatever the handler does next, nothing else is sent. A request with a Content-Length within
    the limit passes untouched (the server reads no more than it says), so publishing pays nothing for this."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = None
        framed = True
        for name, value in scope["headers"]:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                framed = False
        if length is not None and framed and length.isdigit():
            if int(length) > self.limit:
                await BodyTooLarge(self.limit).response()(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        counted = _CountedBody(self.limit, scope, receive, send)
        await self.app(scope, counted.receive, counted.send)


class _CountedBody:
    """One request's receive and send, counting the body's bytes (see BodyLimit)."""

    __slots__ = ("limit", "scope", "_receive", "_send", "received", "started", "answered")

    def __init__(self, limit: int, scope: Any, receive: Any, send: Any) -> None:
        self.limit = limit
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.started = False  # the handler has begun its answer
        self.answered = False  # we have answered 413

    async def receive(self) -> Any:
        if self.answered:
            raise BodyTooLarge(self.limit)
        message = await self._receive()
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if self.received > self.limit:
                if not self.started:
                    self.answered = True
                    await BodyTooLarge(self.limit).response()(self.scope, self._receive, self._send)
                raise BodyTooLarge(self.limit)
        return message

    async def send(self, message: Any) -> None:
        if self.answered:
            return  # the handler's own answer, after our 413
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
