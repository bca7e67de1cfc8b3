"""Running totals of log rows per (store, integration, succeeded), kept in the same transaction as the logs.

Counting millions of rows for every page would cost more than the page itself; these totals make the
unfiltered and `succeeded`-filtered log lists answer `results.total` in constant time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.store.tables import log_counts as t


async def add(conn: AsyncConnection, logs: Iterable[dict[str, Any]]) -> None:
    totals = Counter((log["store_id"], log["integration_id"], bool(log["succeeded"])) for log in logs)
    if not totals:
        return
    rows = [
        {"store_id": s, "integration_id": i, "succeeded": ok, "count": n}
        for (s, i, ok), n in sorted(totals.items())  # one order everywhere: no deadlocks between workers
    ]
    insert = postgresql.insert(t) if conn.dialect.name == "postgresql" else sqlite.insert(t)
    stmt = insert.on_conflict_do_update(
        index_elements=[t.c.store_id, t.c.integration_id, t.c.succeeded],
        set_={"count": t.c.count + insert.excluded.count},
    )
    await conn.execute(stmt, rows)


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
