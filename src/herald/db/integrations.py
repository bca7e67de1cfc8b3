"""The integrations repository, and the one path every change of an integration takes.

`create`, `change`, `delete` and `disable` keep the side effects of a change together, whoever asks for it (the
API, a worker after 410 Gone or a long run of failures): pending jobs of a disabled or deleted integration are
cancelled, and the matching integration.* event is raised, all in the caller's transaction."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.domain.ids import new_id
from herald.domain.signatures import generate_secret

if TYPE_CHECKING:  # operator_events publishes through db.events, which reads this module's observers
    from herald.db.operator_events import OperatorEvents
from herald.db import jobs as job_repo
from herald.db.driver_sql import Driver, Sql
from herald.db.tables import integrations as t

COLUMNS = (
    t.c.id, t.c.store_id, t.c.name, t.c.description, t.c.enabled, t.c.integration_type, t.c.observes,
    t.c.configuration, t.c.created_at, t.c.updated_at,
)


def _live(store_id: str) -> sa.ColumnElement[bool]:
    return sa.and_(t.c.store_id == store_id, t.c.deleted_at.is_(None))


async def create(
    conn: AsyncConnection, store_id: str, values: dict[str, Any], now: datetime, events: OperatorEvents
) -> dict[str, Any]:
    """A new integration (integration.created is raised)."""
    row = {
        "id": new_id(),
        "store_id": store_id,
        "signing_secret": generate_secret(),
        "created_at": now,
        "updated_at": now,
        **values,
    }
    await conn.execute(t.insert().values(**row))
    created = {c.name: row[c.name] for c in COLUMNS}
    await events.integration_created(conn, created)
    return created


async def get(conn: AsyncConnection, store_id: str, integration_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(*COLUMNS).where(_live(store_id), t.c.id == integration_id))).mappings().first()
    return dict(row) if row else None


async def exists(conn: AsyncConnection, store_id: str, integration_id: str, *, include_deleted: bool = False) -> bool:
    cond = t.c.store_id == store_id if include_deleted else _live(store_id)
    return (await conn.execute(sa.select(t.c.id).where(cond, t.c.id == integration_id))).first() is not None


async def page(
    conn: AsyncConnection,
    store_id: str,
    where: list[sa.ColumnElement[bool]],
    limit: int,
    offset: int,
    after: str | None,
) -> tuple[list[dict[str, Any]], int]:
    cond = sa.and_(_live(store_id), *where)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(t).where(cond))).scalar_one()
    query = sa.select(*COLUMNS).where(cond).order_by(t.c.id.desc()).limit(limit)
    query = query.where(t.c.id < after) if after else query.offset(offset)
    rows = (await conn.execute(query)).mappings().all()
    return [dict(r) for r in rows], total


async def enabled_of_types(conn: AsyncConnection, types: list[str]) -> list[dict[str, Any]]:
    """Every store's enabled integrations of these types (what `herald doctor` checks brokers for)."""
    query = sa.select(t.c.id, t.c.store_id, t.c.integration_type, t.c.configuration).where(
        t.c.deleted_at.is_(None), t.c.enabled.is_(True), t.c.integration_type.in_(types)
    )
    return [dict(r) for r in (await conn.execute(query.order_by(t.c.id))).mappings()]


async def names(conn: AsyncConnection, store_id: str) -> list[tuple[str, str]]:
    """(id, name) of every integration the store has had, deleted ones included (their logs remain)."""
    rows = await conn.execute(sa.select(t.c.id, t.c.name).where(t.c.store_id == store_id).order_by(t.c.id))
    return [(r[0], r[1]) for r in rows]


async def every(conn: AsyncConnection, store_id: str, page_size: int = 500) -> list[dict[str, Any]]:
    """Every live integration of the store, newest first, read page by page (no cap)."""
    rows: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        found, _ = await page(conn, store_id, [], page_size, 0, after)
        rows.extend(found)
        if len(found) < page_size:
            return rows
        after = found[-1]["id"]


async def get_any(conn: AsyncConnection, store_id: str, integration_id: str) -> dict[str, Any] | None:
    """An integration even when deleted (its jobs and logs outlive it)."""
    query = sa.select(*COLUMNS, t.c.deleted_at).where(t.c.store_id == store_id, t.c.id == integration_id)
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def change(
    conn: AsyncConnection, stored: dict[str, Any], values: dict[str, Any], now: datetime, events: OperatorEvents
) -> dict[str, Any]:
    """Apply `values` to the integration `stored` (as `get` read it); a disable cancels its pending jobs.
    Raises integration.updated; returns the integration as it now is."""
    await conn.execute(
        t.update().where(_live(stored["store_id"]), t.c.id == stored["id"]).values(**values, updated_at=now)
    )
    if values.get("enabled") is False and stored["enabled"]:
        await job_repo.cancel_pending(conn, stored["id"], now)
    row = {**stored, **values, "updated_at": now}
    await events.integration_updated(conn, row)
    return row


async def disable(
    conn: AsyncConnection, store_id: str, integration_id: str, now: datetime, events: OperatorEvents
) -> dict[str, Any] | None:
    """Disable an enabled integration (410 Gone, failing for too long); None when it is gone or already off."""
    stored = await get(conn, store_id, integration_id)
    if stored is None or not stored["enabled"]:
        return None
    return await change(conn, stored, {"enabled": False}, now, events)


async def delete(
    conn: AsyncConnection, store_id: str, integration_id: str, now: datetime, events: OperatorEvents
) -> bool:
    """Soft-delete (the logs keep pointing at it), cancel its pending jobs, raise integration.deleted."""
    result = await conn.execute(
        t.update()
        .where(_live(store_id), t.c.id == integration_id)
        .values(deleted_at=now, enabled=False, updated_at=now)
    )
    if not result.rowcount:
        return False
    await job_repo.cancel_pending(conn, integration_id, now)
    await events.integration_deleted(conn, store_id, integration_id)
    return True


async def signing_secrets(conn: AsyncConnection, store_id: str, integration_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            sa.select(t.c.signing_secret, t.c.previous_signing_secret, t.c.previous_secret_expires_at).where(
                _live(store_id), t.c.id == integration_id
            )
        )
    ).mappings().first()
    return dict(row) if row else None


async def rotate_secret(
    conn: AsyncConnection, store_id: str, integration_id: str, now: datetime, grace_until: datetime
) -> str | None:
    current = await signing_secrets(conn, store_id, integration_id)
    if current is None:
        return None
    key = generate_secret()
    await conn.execute(
        t.update()
        .where(t.c.id == integration_id)
        .values(
            signing_secret=key,
            previous_signing_secret=current["signing_secret"],
            previous_secret_expires_at=grace_until,
            updated_at=now,
        )
    )
    return key


_OBSERVERS = Sql(
    "SELECT id, observes FROM integrations WHERE store_id = ? AND deleted_at IS NULL AND enabled = 1",
    # FOR SHARE makes a concurrent disable or delete wait for this publish to commit, so that its cancelling
    # of pending jobs sees the jobs this publish creates.
    "SELECT id, observes FROM integrations WHERE store_id = %s AND deleted_at IS NULL AND enabled FOR SHARE",
)


async def observers(conn: AsyncConnection, store_id: str) -> list[tuple[str, list[str]]]:
    """(id, observes) of the store's enabled integrations: who gets a job for a new event."""
    return [(r[0], orjson.loads(r[1])) for r in await Driver(conn).all(_OBSERVERS, (store_id,))]
