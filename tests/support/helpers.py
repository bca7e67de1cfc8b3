"""Helpers shared by the in-process API tests."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from herald.settings import Settings


def make_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "allow_private_networks": True,
        "retry_schedule": "0.2,0.2",
        "delivery_timeout": 5.0,
        "worker_poll_interval": 0.2,
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


def webhook_body(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "type": "integration",
        "name": "Order paid",
        "observes": ["order.paid"],
        "configuration": {"url": "https://example.com/hook", "secret_key": "topsecretvalue"},
    }
    data.update(overrides)
    return {"data": data}
