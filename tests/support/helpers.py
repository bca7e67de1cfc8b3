"""Helpers shared by the in-process API tests."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from herald.settings import Settings


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "allow_private_networks": True,
        "retry_schedule": "0.2,0.2",
        "delivery_timeout": 5.0,
        "worker_poll_interval": 0.2,
        # tests fail receivers on purpose; the circuit breaker is tested where it is set (test_fairness)
        "breaker_failures": 1000,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class StoreCreds:
    id: str
    client_id: str
    client_secret: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def new_store(app: object, client: httpx.AsyncClient, name: str = "Test store") -> StoreCreds:
    from herald.db import stores

    async with app.state.db.write() as conn:  # type: ignore[attr-defined]
        created = await stores.create(conn, name)
    r = await client.post(
        "/oauth/access_token",
        data={
            "grant_type": "client_credentials",
            "client_id": created.client_id,
            "client_secret": created.client_secret,
        },
    )
    assert r.status_code == 200, r.text
    return StoreCreds(created.id, created.client_id, created.client_secret, r.json()["access_token"])


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    """The one error of a JSON:API error answer with this status (the shape checked on the way)."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"errors"}
    assert body["errors"][0]["status"] == status
    result: dict[str, Any] = body["errors"][0]
    return result


def webhook_body(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "type": "integration",
        "name": "Order paid",
        "observes": ["order.paid"],
        "configuration": {"url": "https://example.com/hook", "secret_key": "topsecretvalue"},
    }
    data.update(overrides)
    return {"data": data}


@asynccontextmanager
async def app_without_logs_table(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, StoreCreds]]:
    """A real failure inside Herald: a client and a store on a database whose logs table is gone (a 500)."""
    from herald.app import create_app
    from herald.db.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'broken.db'}"
    upgrade(url)
    with sqlite3.connect(tmp_path / "broken.db") as conn:
        conn.execute("DROP TABLE logs")
    application = create_app(make_settings(url))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client:
            yield client, await new_store(application, client)
