"""Herald's own events about integrations (`integration.created`, `.updated`, `.deleted`), raised from one place.

Raised in the same transaction as the change, so a store observing them never misses one and never hears of a
change that rolled back. Links inside them are built by one rule, whoever made the change (an API request or a
worker disabling a failing integration): `HERALD_PUBLIC_URL` when set, otherwise paths relative to Herald.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db import events as event_repo
from herald.domain.ids import utcnow
from herald.domain.representations import integration_resource


def links_base(public_url: str | None) -> str:
    """The base of every link in Herald's own events."""
    return (public_url or "").rstrip("/")


class OperatorEvents:
    """Publishes integration.* events; one per process, made from the settings."""

    __slots__ = ("base_url", "max_attempts")

    def __init__(self, public_url: str | None, max_attempts: int) -> None:
        self.base_url = links_base(public_url)
        self.max_attempts = max_attempts

    async def integration_created(self, conn: AsyncConnection, row: dict[str, Any]) -> None:
        await self._raise(
            conn, row["store_id"], "integration.created", {"data": integration_resource(row, self.base_url)}
        )

    async def integration_updated(self, conn: AsyncConnection, row: dict[str, Any]) -> None:
        await self._raise(
            conn, row["store_id"], "integration.updated", {"data": integration_resource(row, self.base_url)}
        )

    async def integration_deleted(self, conn: AsyncConnection, store_id: str, integration_id: str) -> None:
        await self._raise(conn, store_id, "integration.deleted", {"type": "integration", "id": integration_id})

    async def _raise(self, conn: AsyncConnection, store_id: str, key: str, payload: dict[str, Any]) -> None:
        items = [(key, orjson.dumps(payload).decode())]
        await event_repo.publish(conn, store_id, items, now=utcnow(), max_attempts=self.max_attempts)
