"""Failed sign-ins counted in the database, so that every API process on one PostgreSQL database sees the same
counts: a fixed-window counter per key (its window opens with the key's first failure and lasts the sign-in
window), read with one SELECT and bumped with one upsert. The statements work on SQLite too."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db.tables import sign_in_failures as t


async def windows(
    conn: AsyncConnection, keys: Sequence[str], now: float, window: float
) -> dict[str, tuple[float, int]]:
    """{key: (window start, failures)} for the keys whose window is still open at `now`."""
    rows = await conn.execute(
        sa.select(t.c.key, t.c.window_start, t.c.count).where(t.c.key.in_(keys), t.c.window_start > now - window)
    )
    return {key: (start, count) for key, start, count in rows}


async def add(conn: AsyncConnection, keys: Sequence[str], now: float, window: float) -> None:
    """One more failure for each key: a window that has ended starts again at `now` with one."""
    insert = postgresql.insert(t) if conn.dialect.name == "postgresql" else sqlite.insert(t)
    # sorted: concurrent transactions lock the rows in one order, so two failures never deadlock
    statement = insert.values([{"key": key, "window_start": now, "count": 1} for key in sorted(set(keys))])
    ended = t.c.window_start <= now - window
    await conn.execute(statement.on_conflict_do_update(
        index_elements=[t.c.key],
        set_={
            "count": sa.case((ended, 1), else_=t.c.count + 1),
            "window_start": sa.case((ended, statement.excluded.window_start), else_=t.c.window_start),
        },
    ))


async def forget_ended(conn: AsyncConnection, now: float, window: float) -> int:
    """Delete the counters whose window has ended; how many there were."""
    result = await conn.execute(t.delete().where(t.c.window_start <= now - window))
    return result.rowcount
