"""Retention: logs older than a cutoff, finished jobs with no log left, and events no job needs, removed in small
batches so that neither deliveries nor the log pages wait behind a long delete.

Ids are UUIDv7, ordered by creation time, so "older than the cutoff" is a range of the primary key (`id < B`,
with B the smallest id of the cutoff's millisecond): each batch reads the oldest rows first, by index, at the
same cost on 10 million rows as on 1,000. The running totals behind `results.total` are reduced in the same
transaction as the logs they count.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db.driver_sql import Driver, Sql

if TYPE_CHECKING:
    from herald.db.database import Database

BATCH = 1000  # rows of each kind per transaction
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


def boundary_id(cutoff: datetime) -> str:
    """The smallest UUIDv7 of `cutoff`'s millisecond: every id below it was made before the cutoff."""
    hex_ms = f"{int(cutoff.timestamp() * 1000):012x}"
    return f"{hex_ms[:8]}-{hex_ms[8:]}-7000-8000-000000000000"


_LOGS = Sql(
    "DELETE FROM logs WHERE id IN (SELECT id FROM logs WHERE id < ? ORDER BY id LIMIT ?)"
    " RETURNING store_id, integration_id, succeeded"
)
_UNCOUNT = Sql(
    "UPDATE log_counts SET count = count - ? WHERE store_id = ? AND integration_id = ? AND succeeded = ?"
)
_JOBS = Sql(
    "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs j WHERE id < ? AND status IN " + _FINISHED
    + " AND updated_at < ? AND NOT EXISTS (SELECT 1 FROM logs l WHERE l.job_id = j.id) ORDER BY id LIMIT ?)"
)
_EVENTS = Sql(
    "DELETE FROM events WHERE id IN (SELECT id FROM events e WHERE id < ?"
    " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.event_id = e.id) ORDER BY id LIMIT ?)"
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


async def purge_batch(conn: AsyncConnection, cutoff: datetime, limit: int = BATCH) -> Purged | None:
    """One transaction's worth: up to `limit` logs, then jobs, then events. None when another process holds the
    PostgreSQL purge lock (it is purging already)."""
    db = Driver(conn)
    if not db.is_sqlite and not (await db.all(_LOCK))[0][0]:
        return None
    boundary = boundary_id(cutoff)
    removed = await db.all(_LOGS, (boundary, limit))
    if removed:
        totals = Counter((store, integration, bool(ok)) for store, integration, ok in removed)
        await db.many(_UNCOUNT, [(n, s, i, ok) for (s, i, ok), n in sorted(totals.items())])
    jobs = await db.run(_JOBS, (boundary, db.ts(cutoff), limit))
    events = await db.run(_EVENTS, (boundary, limit))
    return Purged(len(removed), jobs, events)


async def would_purge(conn: AsyncConnection, cutoff: datetime) -> Purged:
    """What a purge at `cutoff` would remove now (nothing is changed)."""
    db = Driver(conn)
    b, at = boundary_id(cutoff), db.ts(cutoff)
    logs = (await db.all(_COUNT_LOGS, (b,)))[0][0]
    jobs = (await db.all(_COUNT_JOBS, (b, at, b)))[0][0]
    events = (await db.all(_COUNT_EVENTS, (b, b, at, b)))[0][0]
    return Purged(int(logs), int(jobs), int(events))


async def purge(
    db: Database,
    cutoff: datetime,
    *,
    limit: int = BATCH,
    progress: Callable[[Purged], None] | None = None,
    stop: asyncio.Event | None = None,
) -> Purged:
    """Remove everything older than `cutoff`, one batch per transaction, yielding to other work between batches.
    Stops early when another process holds the purge lock, or when `stop` is set."""
    done = Purged()
    while stop is None or not stop.is_set():
        async with db.write() as conn:
            batch = await purge_batch(conn, cutoff, limit)
        if batch is None or not batch.total:
            break
        done.add(batch)
        if progress is not None:
            progress(batch)
        await asyncio.sleep(0)  # deliveries and API requests get the loop (and on SQLite the write lock) between
    return done
