"""Deliveries per store, integration, minute and outcome, kept in the same transaction as the logs.

The dashboard's chart (deliveries per minute for the last hour or day) and its 24-hour health figures sum at most
1,440 rows per integration and outcome, however many millions of logs the day had."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db.driver_sql import Driver, Sql
from herald.db.tables import log_minutes as t

if TYPE_CHECKING:
    from herald.db.logs import LogRow

_UPSERT = (
    " ON CONFLICT (store_id, minute, integration_id, succeeded)"
    " DO UPDATE SET count = log_minutes.count + excluded.count"
)
_ADD = Sql(
    "INSERT INTO log_minutes (store_id, minute, integration_id, succeeded, count) VALUES (?, ?, ?, ?, ?)" + _UPSERT
)
PG_ADD_FROM_LOGGED = (
    # the PostgreSQL record statement's CTE over the rows it logged (`logged` returns these columns)
    "INSERT INTO log_minutes (store_id, minute, integration_id, succeeded, count)"
    " SELECT store_id, date_trunc('minute', created_at), integration_id, succeeded, count(*) FROM logged"
    " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4" + _UPSERT
)


def minute_of(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


async def add(db: Driver, logs: Iterable[LogRow]) -> None:
    """Add new logs to their minutes (SQLite; PostgreSQL does it inside its record statement)."""
    totals = Counter((log.store_id, minute_of(log.created_at), log.integration_id, bool(log.succeeded)) for log in logs)
    await db.many(_ADD, [(s, db.ts(m), i, ok, n) for (s, m, i, ok), n in sorted(totals.items())])


@dataclass(slots=True)
class Minute:
    at: datetime
    succeeded: int = 0
    failed: int = 0


async def series(
    conn: AsyncConnection, store_id: str, since: datetime, until: datetime, *, step: timedelta = timedelta(minutes=1)
) -> list[Minute]:
    """Deliveries per `step` from `since` to `until` (both rounded down to the minute), gaps filled with zeros."""
    start, end = minute_of(since), minute_of(until)
    rows = await conn.execute(
        sa.select(t.c.minute, t.c.succeeded, sa.func.sum(t.c.count))
        .where(t.c.store_id == store_id, t.c.minute >= start, t.c.minute <= end)
        .group_by(t.c.minute, t.c.succeeded)
    )
    buckets: list[Minute] = []
    at = start
    while at <= end:
        buckets.append(Minute(at))
        at += step
    for minute, ok, n in rows:
        index = int((minute - start) / step)
        if 0 <= index < len(buckets):
            if ok:
                buckets[index].succeeded += int(n)
            else:
                buckets[index].failed += int(n)
    return buckets


async def totals(
    conn: AsyncConnection, store_id: str, integration_ids: list[str], since: datetime
) -> dict[str, tuple[int, int]]:
    """(deliveries, succeeded) of each integration since a time (to the minute)."""
    found = dict.fromkeys(integration_ids, (0, 0))
    if not integration_ids:
        return found
    rows = await conn.execute(
        sa.select(t.c.integration_id, t.c.succeeded, sa.func.sum(t.c.count))
        .where(t.c.store_id == store_id, t.c.minute >= minute_of(since), t.c.integration_id.in_(integration_ids))
        .group_by(t.c.integration_id, t.c.succeeded)
    )
    for integration_id, ok, n in rows:
        total, good = found[integration_id]
        found[integration_id] = (total + int(n), good + (int(n) if ok else 0))
    return found


async def purge_before(conn: AsyncConnection, cutoff: datetime) -> int:
    """Remove minutes older than the log retention (they describe logs that are gone)."""
    result = await conn.execute(t.delete().where(t.c.minute < minute_of(cutoff)))
    return int(result.rowcount or 0)
