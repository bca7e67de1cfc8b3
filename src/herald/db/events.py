"""Publishing: an event and one job per matching enabled integration, written in one transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db import integrations as integration_repo
from herald.db.driver_sql import Driver, Sql
from herald.db.notify import NOTIFY_SQL, jobs_due
from herald.db.tables import events, jobs
from herald.domain.events import matches
from herald.domain.ids import new_id


@dataclass(slots=True)
class PublishedEvent:
    id: str
    triggered_by: str
    created_at: datetime
    job_ids: list[str] = field(default_factory=list)
    payload: str | None = None


_INSERT_EVENTS = Sql("INSERT INTO events (id, store_id, triggered_by, payload, created_at) VALUES (?, ?, ?, ?, ?)")
_INSERT_JOBS = Sql(
    "INSERT INTO jobs (id, store_id, integration_id, event_id, triggered_by, status, attempts, max_attempts, run_at,"
    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?)"
)
_PG_EVENTS = (
    "INSERT INTO events (id, store_id, triggered_by, payload, created_at)"
    " SELECT u.*, %s FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[]) AS u"
)
# PostgreSQL: one round trip for the events, their jobs and the NOTIFY to the workers (sent at commit).
_PG_EVENTS_ONLY = Sql(None, _PG_EVENTS)
_PG_EVENTS_AND_JOBS = Sql(
    None,
    f"WITH e AS ({_PG_EVENTS}),"
    " j AS (INSERT INTO jobs (id, store_id, integration_id, event_id, triggered_by, status, attempts, max_attempts,"
    " run_at, created_at, updated_at) SELECT id, store_id, integration_id, event_id, triggered_by, 'pending', 0, %s,"
    " %s, %s, %s FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::text[])"
    " AS u(id, store_id, integration_id, event_id, triggered_by))"
    f" {NOTIFY_SQL}",
)


@dataclass(slots=True)
class Batch:
    """Rows of one or more publishes, written together by `Batch.write`."""

    max_attempts: int
    now: datetime
    events: list[tuple[str, str, str, str]] = field(default_factory=list)  # id, store, key, payload
    jobs: list[tuple[str, str, str, str, str]] = field(default_factory=list)  # id, store, integration, event, key
    _observers: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)

    async def add(self, conn: AsyncConnection, store_id: str, items: list[tuple[str, str]]) -> list[PublishedEvent]:
        """One event per item, one job per enabled integration of the store that observes it."""
        observers = self._observers.get(store_id)
        if observers is None:
            observers = self._observers[store_id] = await integration_repo.observers(conn, store_id)
        now = self.now
        published: list[PublishedEvent] = []
        for key, payload in items:
            event = PublishedEvent(new_id(), key, now)
            self.events.append((event.id, store_id, key, payload))
            for integration_id, observes in observers:
                if matches(observes, key):
                    job_id = new_id()
                    event.job_ids.append(job_id)
                    self.jobs.append((job_id, store_id, integration_id, event.id, key))
            published.append(event)
        return published

    async def write(self, conn: AsyncConnection) -> None:
        """Insert every row; on PostgreSQL in one statement, which also NOTIFYs the workers (sent at commit)."""
        db = Driver(conn)
        now = db.ts(self.now)
        if db.is_sqlite:
            await db.many(_INSERT_EVENTS, [row + (now,) for row in self.events])
            await db.many(_INSERT_JOBS, [row + (self.max_attempts, now, now, now) for row in self.jobs])
            if self.jobs:
                await jobs_due(conn)
        elif self.jobs:
            events = (now, *map(list, zip(*self.events, strict=True)))
            await db.all(
                _PG_EVENTS_AND_JOBS,
                (*events, self.max_attempts, now, now, now, *map(list, zip(*self.jobs, strict=True))),
            )
            await jobs_due(conn, notified=True)
        elif self.events:
            await db.run(_PG_EVENTS_ONLY, (now, *map(list, zip(*self.events, strict=True))))


async def publish(
    conn: AsyncConnection, store_id: str, items: list[tuple[str, str]], *, now: datetime, max_attempts: int
) -> list[PublishedEvent]:
    """`items` are (event key, payload JSON text). Call inside a write transaction."""
    batch = Batch(max_attempts, now)
    published = await batch.add(conn, store_id, items)
    await batch.write(conn)
    return published


async def get(conn: AsyncConnection, store_id: str, event_id: str) -> PublishedEvent | None:
    row = (
        await conn.execute(
            sa.select(events.c.id, events.c.triggered_by, events.c.created_at, events.c.payload).where(
                events.c.store_id == store_id, events.c.id == event_id
            )
        )
    ).first()
    if row is None:
        return None
    job_ids = (
        await conn.execute(sa.select(jobs.c.id).where(jobs.c.event_id == event_id).order_by(jobs.c.id))
    ).scalars().all()
    return PublishedEvent(row[0], row[1], row[2], list(job_ids), row[3])
