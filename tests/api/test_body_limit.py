"""HERALD_MAX_BODY_BYTES holds for chunked bodies too (no Content-Length): 413 as soon as the limit is passed,
whatever the handler does, and nothing stored; in-process and against a real `herald serve`."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from herald.app import BodyLimit, create_app
from herald.db.migrate import upgrade
from herald.db.tables import events
from herald.settings import Settings
from tests.support import server
from tests.support.databases import dedicated_database
from tests.support.helpers import error, make_settings, new_store

LIMIT = 4096


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client:
            yield application, client


def event_chunks(size: int, consumed: list[int] | None = None, chunk: int = 512) -> Iterator[bytes]:
    """A valid event document of about `size` bytes, in chunks (sent without a Content-Length)."""
    padding = "p" * max(0, size - 100)
    body = orjson.dumps({"data": {"type": "event", "triggered_by": "order.paid", "payload": {"pad": padding}}})
    for start in range(0, len(body), chunk):
        if consumed is not None:
            consumed.append(start)
        yield body[start:start + chunk]


async def _achunks(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for piece in chunks:
        yield piece


async def _events_of(app: Any, store_id: str) -> int:
    async with app.state.db.read() as conn:
        return int((await conn.execute(
            sa.select(sa.func.count()).select_from(events).where(events.c.store_id == store_id))).scalar_one())


async def test_a_chunked_body_over_the_limit_is_413_and_nothing_is_stored(database_url: str) -> None:
    async with running(make_settings(database_url, max_body_bytes=LIMIT)) as (app, c):
        store = await new_store(app, c, "Chunked")
        consumed: list[int] = []
        r = await c.post("/v2/events", content=_achunks(event_chunks(200 * LIMIT, consumed)), headers=store.headers)
        assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
        assert error(r, 413)["detail"] == f"The request body is larger than {LIMIT} bytes"
        assert "x-request-id" in r.headers
        assert len(consumed) <= LIMIT // 512 + 2  # answered when the limit was passed, not at the end of the body
        assert await _events_of(app, store.id) == 0
        # the same, under the limit, is published
        r = await c.post("/v2/events", content=_achunks(event_chunks(LIMIT // 2)), headers=store.headers)
        assert r.status_code == 202, r.text
        assert await _events_of(app, store.id) == 1


async def test_the_413_holds_whatever_the_handler_does() -> None:
    sent: list[dict[str, Any]] = []

    async def stubborn(scope: Any, receive: Any, send: Any) -> None:
        """Reads on after a failure, then answers 200 anyway."""
        for _ in range(3):
            try:
                await receive()
            except Exception:  # noqa: BLE001
                continue
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"stored!"})

    pieces = iter([b"x" * 60, b"x" * 60, b"x" * 60])

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": next(pieces), "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"transfer-encoding", b"chunked")]}
    await BodyLimit(stubborn, limit=100)(scope, receive, send)
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 413
    assert orjson.loads(sent[1]["body"])["errors"][0]["status"] == 413


@pytest.fixture(params=["sqlite", "postgresql"])
def serve_url(request: pytest.FixtureRequest) -> Iterator[str]:
    with dedicated_database(request, request.param, "body") as url:
        upgrade(url)
        yield url


def _stored_events(url: str) -> int:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
        assert row is not None
        return int(row[0])


def test_a_real_server_answers_413_to_a_chunked_body_and_stores_nothing(serve_url: str, tmp_path) -> None:
    process = server.serve(serve_url, tmp_path, HERALD_MAX_BODY_BYTES=str(LIMIT))
    try:
        token = server.token(process.url, process.credentials["client_id"], process.credentials["client_secret"])
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        with httpx.Client(base_url=process.url, timeout=10) as c:
            r = c.post("/v2/events", content=event_chunks(16 * LIMIT), headers=headers)
            assert r.request.headers["transfer-encoding"] == "chunked"
            assert error(r, 413)["detail"] == f"The request body is larger than {LIMIT} bytes"
            assert _stored_events(serve_url) == 0
            r = c.post("/v2/events", content=event_chunks(LIMIT // 2), headers=headers)
            assert r.status_code == 202, r.text
        assert _stored_events(serve_url) == 1
    finally:
        process.stop()
