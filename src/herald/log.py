"""Log lines and request ids: one JSON object per line off a terminal, readable text on one.

Every line carries what is known of its context: `request_id` (the `X-Request-Id` of the request being answered),
`store_id`, and, from the worker, `integration_id` and `job_id`. Nothing else is added: payloads, secrets and tokens
are never passed to a log call, so they cannot end up in a line.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson

from herald.domain.ids import new_id

__all__ = ["RequestIdMiddleware", "configure", "request_id", "store_id"]

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("herald_request_id", default=None)
store_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("herald_store_id", default=None)

_CONTEXT = (("request_id", request_id), ("store_id", store_id))
_EXTRAS = ("store_id", "integration_id", "job_id")
_SANE_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
HEADER = b"x-request-id"


class JsonFormatter(logging.Formatter):
    """`{"ts","level","msg","logger",...context}`, one line each; an exception's traceback goes in `exc`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
            "logger": record.name,
        }
        for name, var in _CONTEXT:
            value = var.get()
            if value is not None:
                line[name] = value
        for name in _EXTRAS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line).decode()


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message [request_id=... job_id=...]` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        known = [f"{name}={var.get()}" for name, var in _CONTEXT if var.get() is not None]
        known += [f"{name}={record.__dict__[name]}" for name in _EXTRAS if record.__dict__.get(name) is not None]
        if not known:
            return text
        first, newline, rest = text.partition("\n")
        return f"{first} [{' '.join(known)}]{newline}{rest}"


def configure(level: str, log_format: str = "auto") -> None:
    """Root logging for a Herald process (uvicorn's loggers included): `json`, `text`, or `auto` (JSON unless
    stderr, where the lines go, is a terminal)."""
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per migration step is noise at start-up


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def _incoming(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == HEADER:
            text = value.decode("latin-1")
            return text if _SANE_ID.fullmatch(text) else None
    return None


class RequestIdMiddleware:
    """Every answer carries `X-Request-Id`: the caller's, when it is 1 to 128 characters of `A-Z a-z 0-9 . _ : -`,
    otherwise a new one. It is in `scope["herald.request_id"]` for the 500 handler, and in the log context."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = _incoming(scope) or new_id()
        scope["herald.request_id"] = rid
        # Not reset afterwards: each request runs in a task of its own, and the server's access log line, written
        # after the answer, should carry the id too.
        request_id.set(rid)
        header = (HEADER, rid.encode("latin-1"))

        async def sending(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, sending)
