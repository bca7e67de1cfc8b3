"""Logs as the API sees them: one row per delivery attempt, newest first."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db import counts
from herald.db.tables import logs as t

COLUMNS = (
    t.c.id, t.c.integration_id, t.c.job_id, t.c.succeeded, t.c.attempt, t.c.processing_time, t.c.body,
    t.c.status_code, t.c.error_detail, t.c.created_at,
)


async def page(
    conn: AsyncConnection,
    store_id: str,
    where: list[sa.ColumnElement[bool]],
    limit: int,
    offset: int,
    after: str | None,
    *,
    integration_id: str | None = None,
    job_id: str | None = None,
    counted: tuple[bool | None] | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """A page and the number of matching logs.

    `counted=(succeeded,)` says the filters are at most eq(succeeded, ...), so the total comes from the
    running totals in log_counts instead of counting rows.
    """
    cond = [t.c.store_id == store_id, *where]
    if integration_id is not None:
        cond.append(t.c.integration_id == integration_id)
    if job_id is not None:
        cond.append(t.c.job_id == job_id)
    if counted is not None and job_id is None:
        total = await counts.total(conn, store_id, integration_id=integration_id, succeeded=counted[0])
    else:
        total = (await conn.execute(sa.select(sa.func.count()).select_from(t).where(*cond))).scalar_one()
    query = sa.select(*COLUMNS).where(*cond).order_by(t.c.id.desc()).limit(limit)
    query = query.where(t.c.id < after) if after else query.offset(offset)
    return [dict(r) for r in (await conn.execute(query)).mappings()], total
