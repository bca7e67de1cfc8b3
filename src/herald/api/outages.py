"""503 with Retry-After, never a hang or a 500, while the database is away.

PostgreSQL killed our connections, is restarting or cannot be reached; SQLite's file is locked by another process
past the wait, or its disk is full: every such error, wherever a request meets it, is answered
`503 Service Unavailable` in the JSON error shape with `Retry-After`, and the connection pool starts afresh (a
disconnect invalidates every pooled connection), so requests succeed again as soon as the database is back."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.responses import Response

from herald.api.jsonapi import error_response

log = logging.getLogger("herald.api")
RETRY_AFTER = "2"
OUTAGES: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError, psycopg.InterfaceError, sqlite3.OperationalError, ConnectionError, TimeoutError,
)
# errors of these kinds that are not outages but a database Herald cannot use: a 500 that says so in the logs
_NOT_OUTAGES = ("no such table", "no such column", "does not exist", "syntax error")


def is_outage(exc: BaseException) -> bool:
    if not isinstance(exc, OUTAGES):
        return False
    text = str(exc).lower()
    return not any(marker in text for marker in _NOT_OUTAGES)


class _Quiet:
    """One warning line per interval, however many requests meet the outage."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self.last = 0.0
        self.hidden = 0

    def warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.hidden += 1
            return
        more = f" ({self.hidden} more since the last line)" if self.hidden else ""
        log.warning("the database is unavailable: %s: %s%s", type(exc).__name__,
                    str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "", more)
        self.last, self.hidden = now, 0


def install(app: FastAPI, html: Callable[[Request, str], Response | None] | None = None) -> None:
    """`html(request, retry_after)`: a page instead of the JSON answer, for the requests it answers (the
    dashboard's)."""
    quiet = _Quiet()

    async def unavailable(request: Request, exc: Exception) -> Response:
        if not is_outage(exc):
            raise exc  # the generic handler answers 500 with a request id
        quiet.warn(exc)
        if html is not None and (shown := html(request, RETRY_AFTER)) is not None:
            return shown
        return error_response(503, "Service Unavailable",
                              "The database is not answering; try again in a few seconds",
                              headers={"Retry-After": RETRY_AFTER})

    for kind in OUTAGES:
        app.add_exception_handler(kind, unavailable)

