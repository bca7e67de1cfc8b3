"""Running totals of log rows per (store, integration, succeeded), kept in the same transaction as the logs.

Counting millions of rows for every page would cost more than the page itself; these totals make the
unfiltered and `succeeded`-filtered log lists answer `results.total` in constant time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db.driver_sql import Driver, Sql
from herald.db.tables import log_counts as t

if TYPE_CHECKING:
    from herald.db.logs import LogRow


_ADD = Sql(
    "INSERT INTO log_counts (store_id, integration_id, succeeded, count) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (store_id, integration_id, succeeded) DO UPDATE SET count = log_counts.count + excluded.count"
)


async def add(db: Driver, logs: Iterable[LogRow]) -> None:
    """Add new log rows to the totals (inside the transaction that inserts them)."""
    totals = Counter((log.store_id, log.integration_id, bool(log.succeeded)) for log in logs)
    # one order everywhere: no deadlocks between workers
    await db.many(_ADD, [(s, i, ok, n) for (s, i, ok), n in sorted(totals.items())])


async def total(
    conn: AsyncConnection, store_id: str, *, integration_id: str | None = None, succeeded: bool | None = None
) -> int:
    cond = [t.c.store_id == store_id]
    if integration_id is not None:
        cond.append(t.c.integration_id == integration_id)
    if succeeded is not None:
        cond.append(t.c.succeeded.is_(succeeded))
    value = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(t.c.count), 0)).where(*cond))).scalar_one()
    return int(value)
