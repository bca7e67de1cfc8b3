"""Stores (tenants) and their API credentials. Client secrets are random and kept only as SHA-256 digests."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db.tables import meta, stores
from herald.domain.ids import new_id, utcnow


@dataclass(slots=True)
class NewStore:
    id: str
    name: str
    client_id: str
    client_secret: str  # shown once

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "client_id": self.client_id, "client_secret": self.client_secret}


@dataclass(slots=True)
class StoreRow:
    id: str
    name: str
    client_id: str
    created_at: datetime


def hash_secret(secret: str) -> str:
    # The secret is 256 random bits, so a fast digest is as strong as a slow one here.
    return hashlib.sha256(secret.encode()).hexdigest()


async def create(conn: AsyncConnection, name: str) -> NewStore:
    store = NewStore(new_id(), name, secrets.token_hex(20), secrets.token_urlsafe(32))
    await conn.execute(
        stores.insert().values(
            id=store.id,
            name=name,
            client_id=store.client_id,
            client_secret_hash=hash_secret(store.client_secret),
            created_at=utcnow(),
        )
    )
    return store


async def count(conn: AsyncConnection) -> int:
    return (await conn.execute(sa.select(sa.func.count()).select_from(stores))).scalar_one()


async def list_all(conn: AsyncConnection) -> list[StoreRow]:
    rows = await conn.execute(
        sa.select(stores.c.id, stores.c.name, stores.c.client_id, stores.c.created_at).order_by(stores.c.id)
    )
    return [StoreRow(*r) for r in rows]


async def get(conn: AsyncConnection, store_id: str) -> StoreRow | None:
    row = (await conn.execute(
        sa.select(stores.c.id, stores.c.name, stores.c.client_id, stores.c.created_at).where(stores.c.id == store_id)
    )).first()
    return StoreRow(*row) if row else None


async def find(conn: AsyncConnection, ref: str) -> list[StoreRow]:
    """The stores whose id, client_id or name is `ref` (an operator names a store by whichever they have)."""
    cols = (stores.c.id, stores.c.name, stores.c.client_id, stores.c.created_at)
    for column in (stores.c.id, stores.c.client_id, stores.c.name):
        rows = (await conn.execute(sa.select(*cols).where(column == ref).order_by(stores.c.id))).all()
        if rows:
            return [StoreRow(*r) for r in rows]
    return []


async def rotate_secret(conn: AsyncConnection, store_id: str) -> NewStore | None:
    """A new client secret for the store; the old one is refused from the moment this commits."""
    row = (await conn.execute(sa.select(stores.c.name, stores.c.client_id).where(stores.c.id == store_id))).first()
    if row is None:
        return None
    secret = secrets.token_urlsafe(32)
    await conn.execute(stores.update().where(stores.c.id == store_id).values(client_secret_hash=hash_secret(secret)))
    return NewStore(store_id, row[0], row[1], secret)


async def by_client_id(conn: AsyncConnection, client_id: str) -> tuple[str, str] | None:
    """(store id, secret hash) for a client_id."""
    if "\x00" in client_id:  # no store's; PostgreSQL cannot even compare one
        return None
    row = (
        await conn.execute(sa.select(stores.c.id, stores.c.client_secret_hash).where(stores.c.client_id == client_id))
    ).first()
    return (row[0], row[1]) if row else None


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


async def token_key(conn: AsyncConnection) -> str:
    """The key that signs access tokens when HERALD_SECRET_KEY is unset: made once, shared through the database."""
    row = (await conn.execute(sa.select(meta.c.value).where(meta.c.key == "token_key"))).first()
    if row:
        stored: str = row[0]
        return stored
    key = secrets.token_urlsafe(48)
    await conn.execute(meta.insert().values(key="token_key", value=key))
    return key
