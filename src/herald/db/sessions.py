"""Dashboard sessions and one-time sign-in links. Only SHA-256 digests of their tokens are stored."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db.tables import dashboard_links as links
from herald.db.tables import dashboard_sessions as t

SESSION_TTL = timedelta(hours=12)
LINK_TTL = timedelta(minutes=5)


def digest(token: str) -> str:
    # 256 random bits: a fast digest is as strong as a slow one, and a stolen table opens no session
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Session:
    store_id: str
    csrf: str
    expires_at: datetime


async def create(conn: AsyncConnection, store_id: str, now: datetime) -> tuple[str, Session]:
    """A new session: (the cookie's token, the session)."""
    token = secrets.token_urlsafe(32)
    session = Session(store_id, secrets.token_urlsafe(32), now + SESSION_TTL)
    await conn.execute(t.insert().values(token_hash=digest(token), store_id=store_id, csrf=session.csrf,
                                         created_at=now, expires_at=session.expires_at))
    # a sign-in is a good moment to forget sessions that ended long ago
    await conn.execute(t.delete().where(t.c.expires_at < now - SESSION_TTL))
    return token, session


async def get(conn: AsyncConnection, token: str, now: datetime) -> Session | None:
    row = (await conn.execute(
        sa.select(t.c.store_id, t.c.csrf, t.c.expires_at).where(t.c.token_hash == digest(token), t.c.expires_at > now)
    )).first()
    return Session(row[0], row[1], row[2]) if row else None


async def end(conn: AsyncConnection, token: str) -> None:
    await conn.execute(t.delete().where(t.c.token_hash == digest(token)))


async def create_link(conn: AsyncConnection, store_id: str, now: datetime) -> tuple[str, datetime]:
    """A one-time sign-in token for the store, and when it expires."""
    token = secrets.token_urlsafe(32)
    expires = now + LINK_TTL
    await conn.execute(links.insert().values(token_hash=digest(token), store_id=store_id, expires_at=expires))
    await conn.execute(links.delete().where(links.c.expires_at < now - SESSION_TTL))
    return token, expires


async def use_link(conn: AsyncConnection, token: str, now: datetime) -> str | None:
    """The store a one-time link signs into, marking it used; None when unknown, used or expired. One UPDATE, so
    two holders racing for the same link cannot both win."""
    result = await conn.execute(
        links.update()
        .where(links.c.token_hash == digest(token), links.c.used_at.is_(None), links.c.expires_at > now)
        .values(used_at=now)
        .returning(links.c.store_id)
    )
    row = result.first()
    return row[0] if row else None
