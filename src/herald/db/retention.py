"""Retention: logs older than a cutoff, finished jobs with no log left, and events no job needs, removed in small
batches so that neither deliveries nor the log pages wait behind a long delete.

Ids are UUIDv7, ordered by creation time, so "older than the cutoff" is a range of the primary key (`id < B`,
with B the smallest id of the cutoff's millisecond). A pass walks that range three times, each time with a
cursor on the primary key: the logs first, then the jobs, then the events. Each batch reads the next `limit`
rows after the cursor, by index, and decides them alone: its cost does not depend on how many rows the tables
hold, nor on how many the pass removed before it (rows removed but not yet vacuumed are behind the cursor).
A job is judged only once every old log is gone, and an event once the jobs are, so nothing is left for the
next pass that this one could have removed. The running totals behind `results.total` are reduced in the same
transaction as the logs they count.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db import minutes
from herald.db.driver_sql import Driver, Sql
from herald.domain.ids import floor_id

if TYPE_CHECKING:
    from herald.db.database import Database

BATCH = 1000  # rows per transaction
# After each batch a pass waits PAUSE times as long as the batch took: it takes at most half of one connection's
# time, and less of a busy machine, whose batches take longer.
PAUSE = 1.0
_clock = time.monotonic
_sleep = asyncio.sleep
_FINISHED = "('succeeded', 'failed', 'cancelled')"
PG_LOCK = 0x6865_7261_6C64 + 1  # one purging worker at a time on PostgreSQL (migrations use the key below it)


@dataclass(slots=True)
class Purged:
    logs: int = 0
    jobs: int = 0
    events: int = 0

    def add(self, other: Purged) -> None:
        self.logs += other.logs
        self.jobs += other.jobs
        self.events += other.events

    @property
    def total(self) -> int:
        return self.logs + self.jobs + self.events


@dataclass(slots=True)
class Cursor:
    """Where a pass is: the table it walks (logs, jobs, events, then done) and the last id it has decided."""

    table: str = "logs"
    after: str = ""  # every id sorts above the empty string

    @property
    def done(self) -> bool:
        return self.table == "done"

    def next_table(self) -> None:
        self.table = {"logs": "jobs", "jobs": "events", "events": "done"}[self.table]
        self.after = ""


def _window(table: str, columns: str = "id") -> str:
    """The next rows of the pass: at most `limit` ids after the cursor and below the boundary, in id order. A
    LIMIT in a subquery bounds the rows read whatever the planner guesses about the conditions applied to them
    (asked for the first 1000 old jobs with no log, PostgreSQL would otherwise hash the whole logs table)."""
    return f"(SELECT {columns} FROM {table} WHERE id > ? AND id < ? ORDER BY id LIMIT ?) w"  # params: after, B, n


_LAST = {table: Sql("SELECT max(id) FROM " + _window(table)) for table in ("logs", "jobs", "events")}  # the cursor
_LOGS = Sql(  # params: after, B, n
    "DELETE FROM logs WHERE id IN (SELECT id FROM " + _window("logs") + ")"
    " RETURNING store_id, integration_id, succeeded"
)
_UNCOUNT = Sql(
    "UPDATE log_counts SET count = count - ? WHERE store_id = ? AND integration_id = ? AND succeeded = ?"
)
_JOBS = Sql(  # params: after, B, n, cutoff
    "DELETE FROM jobs WHERE id IN (SELECT id FROM " + _window("jobs", "id, status, updated_at")
    + " WHERE status IN " + _FINISHED + " AND updated_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM logs l WHERE l.job_id = w.id))"
)
_EVENTS = Sql(  # params: after, B, n
    "DELETE FROM events WHERE id IN (SELECT id FROM " + _window("events")
    + " WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.event_id = w.id))"
)
_LOCK = Sql(None, f"SELECT pg_try_advisory_xact_lock({PG_LOCK})")

# --dry-run: what a purge would remove now (jobs: finished, old, with no log that stays; events: no job that stays)
_COUNT_LOGS = Sql("SELECT count(*) FROM logs WHERE id < ?")
_JOB_GOES = (  # params: boundary, cutoff, boundary
    "j.id < ? AND j.status IN " + _FINISHED + " AND j.updated_at < ?"
    " AND NOT EXISTS (SELECT 1 FROM logs l WHERE l.job_id = j.id AND l.id >= ?)"
)
_COUNT_JOBS = Sql(f"SELECT count(*) FROM jobs j WHERE {_JOB_GOES}")
_COUNT_EVENTS = Sql(
    f"SELECT count(*) FROM events e WHERE e.id < ?"
    f" AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.event_id = e.id AND NOT ({_JOB_GOES}))"
)


async def purge_batch(conn: AsyncConnection, cutoff: datetime, cursor: Cursor, limit: int = BATCH) -> Purged | None:
    """One transaction's worth: the next `limit` rows of the pass, after `cursor` (moved on here). None when another
    process holds the PostgreSQL purge lock (it is purging already)."""
    db = Driver(conn)
    if not db.is_sqlite and not (await db.all(_LOCK))[0][0]:
        return None
    boundary = floor_id(cutoff)
    while not cursor.done:
        window = (cursor.after, boundary, limit)
        last = (await db.all(_LAST[cursor.table], window))[0][0]
        if last is None:
            cursor.next_table()  # this table is done: the next one starts in the same transaction
            continue
        cursor.after = last
        if cursor.table == "logs":
            removed = await db.all(_LOGS, window)
            totals = Counter((store, integration, bool(ok)) for store, integration, ok in removed)
            await db.many(_UNCOUNT, [(n, s, i, ok) for (s, i, ok), n in sorted(totals.items())])
            return Purged(logs=len(removed))
        if cursor.table == "jobs":
            return Purged(jobs=await db.run(_JOBS, (*window, db.ts(cutoff))))
        return Purged(events=await db.run(_EVENTS, window))
    return Purged()


async def would_purge(conn: AsyncConnection, cutoff: datetime) -> Purged:
    """What a purge at `cutoff` would remove now (nothing is changed)."""
    db = Driver(conn)
    b, at = floor_id(cutoff), db.ts(cutoff)
    logs = (await db.all(_COUNT_LOGS, (b,)))[0][0]
    jobs = (await db.all(_COUNT_JOBS, (b, at, b)))[0][0]
    events = (await db.all(_COUNT_EVENTS, (b, b, at, b)))[0][0]
    return Purged(int(logs), int(jobs), int(events))


async def purge(
    db: Database,
    cutoff: datetime,
    *,
    limit: int = BATCH,
    pause: float = PAUSE,
    progress: Callable[[Purged], None] | None = None,
    stop: asyncio.Event | None = None,
) -> Purged:
    """Remove everything older than `cutoff`, one batch per transaction, and between batches wait `pause` times as
    long as the batch took (deliveries and API requests get the loop, the database and, on SQLite, the write lock).
    Stops early when another process holds the purge lock, or when `stop` is set."""
    done = Purged()
    cursor = Cursor()
    while not cursor.done and (stop is None or not stop.is_set()):
        moved = Cursor(cursor.table, cursor.after)
        started = _clock()
        async with db.write() as conn:
            batch = await purge_batch(conn, cutoff, moved, limit)
        if batch is None:
            break
        cursor = moved  # only once the batch is committed
        done.add(batch)
        if progress is not None and batch.total:
            progress(batch)
        await _sleep(pause * (_clock() - started))
    if cursor.done:
        # the per-minute totals of the logs that are gone (at most 1,440 rows a day per integration and outcome)
        async with db.write() as conn:
            await minutes.purge_before(conn, cutoff)
    return done
