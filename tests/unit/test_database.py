"""Database.write: a cancelled transaction stays a cancellation, and only a commit wakes the workers."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from herald.db.database import Database
from herald.db.notify import jobs_due


async def test_a_write_cancelled_inside_a_statement_raises_cancelled(database_url: str) -> None:
    """Cancelled while the driver waits (shutdown): the caller must see CancelledError, not a pending-rollback
    error from the connection, or a loop catching Exception would carry on instead of stopping."""
    db = Database(database_url)
    started = asyncio.Event()

    async def slow() -> None:
        async with db.write() as conn:
            started.set()
            if db.is_sqlite:
                await asyncio.sleep(10)  # inline SQLite statements never wait: cancel between them
            else:
                await conn.execute(sa.text("SELECT pg_sleep(10)"))

    task = asyncio.create_task(slow())
    await asyncio.wait_for(started.wait(), 5)
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with db.write() as conn:  # the pool is fine afterwards
        assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
    await db.dispose()


async def test_only_a_committed_write_that_made_jobs_due_wakes(database_url: str) -> None:
    db = Database(database_url)
    async with db.write() as conn:
        await conn.execute(sa.text("SELECT 1"))
    assert await db.notifier.wait(0) is False
    with pytest.raises(RuntimeError):
        async with db.write() as conn:
            await jobs_due(conn)
            raise RuntimeError("rolled back")
    assert await db.notifier.wait(0) is False
    async with db.write() as conn:
        await jobs_due(conn)
    assert await db.notifier.wait(0) is True
    await db.dispose()
