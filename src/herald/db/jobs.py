"""Jobs as the API sees them: listing, detail, cancelling and manual retries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db.notify import jobs_due
from herald.db.tables import jobs as t

COLUMNS = (
    t.c.id, t.c.integration_id, t.c.event_id, t.c.triggered_by, t.c.status, t.c.attempts, t.c.run_at,
    t.c.created_at, t.c.updated_at,
)
RETRYABLE = ("failed", "succeeded", "cancelled")


async def page(
    conn: AsyncConnection,
    store_id: str,
    integration_id: str,
    where: list[sa.ColumnElement[bool]],
    limit: int,
    offset: int,
    after: str | None,
) -> tuple[list[dict[str, Any]], int]:
    cond = sa.and_(t.c.integration_id == integration_id, t.c.store_id == store_id, *where)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(t).where(cond))).scalar_one()
    query = sa.select(*COLUMNS).where(cond).order_by(t.c.id.desc()).limit(limit)
    query = query.where(t.c.id < after) if after else query.offset(offset)
    return [dict(r) for r in (await conn.execute(query)).mappings()], total


async def get(conn: AsyncConnection, store_id: str, integration_id: str, job_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            sa.select(*COLUMNS).where(t.c.store_id == store_id, t.c.integration_id == integration_id, t.c.id == job_id)
        )
    ).mappings().first()
    return dict(row) if row else None


async def cancel_pending(conn: AsyncConnection, integration_id: str, now: datetime) -> int:
    result = await conn.execute(
        t.update()
        .where(t.c.integration_id == integration_id, t.c.status == "pending")
        .values(status="cancelled", run_at=None, updated_at=now)
    )
    return result.rowcount


async def retry(conn: AsyncConnection, store_id: str, integration_id: str, job_id: str, now: datetime) -> bool:
    """Grant one more attempt, due now; False when the job is missing or cannot be retried in its status."""
    result = await conn.execute(
        t.update()
        .where(
            t.c.store_id == store_id,
            t.c.integration_id == integration_id,
            t.c.id == job_id,
            t.c.status.in_(RETRYABLE),
        )
        .values(status="pending", max_attempts=t.c.attempts + 1, run_at=now, updated_at=now)
    )
    if result.rowcount:
        await jobs_due(conn)
    return bool(result.rowcount)


async def retry_many(
    conn: AsyncConnection, store_id: str, integration_id: str, status: str, since: datetime | None, now: datetime
) -> int:
    cond = [t.c.store_id == store_id, t.c.integration_id == integration_id, t.c.status == status]
    if since is not None:
        cond.append(t.c.created_at >= since)
    result = await conn.execute(
        t.update().where(*cond).values(status="pending", max_attempts=t.c.attempts + 1, run_at=now, updated_at=now)
    )
    if result.rowcount:
        await jobs_due(conn)
    return result.rowcount


def _retry_filter(
    store_id: str, status: str, ended_since: datetime | None, integration_id: str | None
) -> list[sa.ColumnElement[bool]]:
    cond = [t.c.store_id == store_id, t.c.status == status]
    if ended_since is not None:
        cond.append(t.c.updated_at >= ended_since)
    if integration_id is not None:
        cond.append(t.c.integration_id == integration_id)
    return cond


async def count_retryable(
    conn: AsyncConnection, store_id: str, status: str, ended_since: datetime | None, integration_id: str | None
) -> int:
    """How many of a store's jobs `retry_batch` would go through: in `status`, ended since a time."""
    cond = _retry_filter(store_id, status, ended_since, integration_id)
    return int((await conn.execute(sa.select(sa.func.count()).select_from(t).where(*cond))).scalar_one())


async def retry_batch(
    conn: AsyncConnection,
    store_id: str,
    status: str,
    ended_since: datetime | None,
    integration_id: str | None,
    after: str,
    now: datetime,
    limit: int = 500,
) -> tuple[int, str | None]:
    """Grant one more attempt, due now, to the next `limit` matching jobs after the job id `after`.

    Returns (jobs retried, the last id looked at; None when there are no more). A bulk retry is a series of these,
    one transaction each, so that it never holds many rows locked and can show its progress."""
    cond = _retry_filter(store_id, status, ended_since, integration_id)
    ids = list((await conn.execute(sa.select(t.c.id).where(*cond, t.c.id > after).order_by(t.c.id).limit(limit)))
               .scalars())
    if not ids:
        return 0, None
    result = await conn.execute(
        t.update()
        .where(t.c.id.in_(ids), t.c.status == status)
        .values(status="pending", max_attempts=t.c.attempts + 1, run_at=now, updated_at=now)
    )
    if result.rowcount:
        await jobs_due(conn)
    return result.rowcount, ids[-1]


async def find(conn: AsyncConnection, store_id: str, job_id: str) -> dict[str, Any] | None:
    """A store's job by its id alone."""
    row = (await conn.execute(sa.select(*COLUMNS).where(t.c.store_id == store_id, t.c.id == job_id))).mappings().first()
    return dict(row) if row else None


async def count_by_status(conn: AsyncConnection, store_id: str, integration_id: str) -> dict[str, int]:
    """An integration's jobs per status (most first)."""
    rows = await conn.execute(
        sa.select(t.c.status, sa.func.count())
        .where(t.c.store_id == store_id, t.c.integration_id == integration_id)
        .group_by(t.c.status)
    )
    return dict(sorted(((s, int(n)) for s, n in rows), key=lambda item: -item[1]))
