"""Logs: one row per delivery attempt. `LogRow` spells the columns once; the API reads them newest first."""

from __future__ import annotations

import dataclasses
import operator
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db import counts, minutes
from herald.db.tables import logs as t
from herald.domain.ids import floor_id


@dataclass(slots=True)
class LogRow:
    """One attempt as it is stored. The field order is the column order of every statement that writes logs."""

    id: str
    store_id: str
    integration_id: str
    job_id: str
    succeeded: bool
    attempt: int
    processing_time: float
    body: str
    status_code: int | None
    error_detail: str
    created_at: datetime


_PG_TYPES = {str: "text", bool: "bool", int: "int", float: "float8", datetime: "timestamptz"}


def _pg_type(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return _PG_TYPES[args[0] if args else hint]


_HINTS = typing.get_type_hints(LogRow)
LOG_COLUMNS: tuple[tuple[str, str], ...] = tuple((f.name, _pg_type(_HINTS[f.name])) for f in dataclasses.fields(LogRow))
"""(name, PostgreSQL type) of every logs column, in `LogRow`'s order."""
LOG_COLUMN_NAMES = tuple(name for name, _ in LOG_COLUMNS)
TIMESTAMP_COLUMNS = frozenset(name for name, kind in LOG_COLUMNS if kind == "timestamptz")
log_values: Callable[[LogRow], tuple[Any, ...]] = operator.attrgetter(*LOG_COLUMN_NAMES)
"""A log's values in column order (dataclasses.astuple deep-copies, far slower on the recording path)."""

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


def _filters(
    store_id: str, integration_id: str | None, succeeded: bool | None
) -> list[sa.ColumnElement[bool]]:
    cond = [t.c.store_id == store_id]
    if integration_id is not None:
        cond.append(t.c.integration_id == integration_id)
    if succeeded is not None:
        cond.append(t.c.succeeded.is_(succeeded))
    return cond


async def recent(
    conn: AsyncConnection, store_id: str, limit: int, *, integration_id: str | None = None,
    succeeded: bool | None = None,
) -> list[dict[str, Any]]:
    """The newest `limit` logs, newest first."""
    if limit <= 0:
        return []
    query = sa.select(*COLUMNS).where(*_filters(store_id, integration_id, succeeded)).order_by(t.c.id.desc())
    return [dict(r) for r in (await conn.execute(query.limit(limit))).mappings()]


async def newest_id(conn: AsyncConnection, store_id: str) -> str:
    """The id of the store's newest log ("" when it has none): where following new logs starts."""
    query = sa.select(t.c.id).where(t.c.store_id == store_id).order_by(t.c.id.desc()).limit(1)
    return (await conn.execute(query)).scalar() or ""


async def newer(
    conn: AsyncConnection,
    store_id: str,
    after: str,
    *,
    integration_id: str | None = None,
    succeeded: bool | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Logs made after the log `after` (an id; "" for the first), oldest first: what a follower prints next."""
    cond = [*_filters(store_id, integration_id, succeeded), t.c.id > after]
    query = sa.select(*COLUMNS).where(*cond).order_by(t.c.id).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


@dataclass(slots=True)
class Health:
    """An integration's deliveries since a time, and its last success and failure whenever they were."""

    deliveries: int = 0
    succeeded: int = 0
    last_success: datetime | None = None
    last_failure: datetime | None = None

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.deliveries if self.deliveries else None


async def health(
    conn: AsyncConnection, store_id: str, integration_ids: list[str], since: datetime
) -> dict[str, Health]:
    """`Health` of each integration: deliveries since a time (to the minute, from log_minutes: constant cost
    however many logs there are), and the last success and failure from the (integration, succeeded, id) index:
    one probe each, all in one statement per 200 integrations (SQLite allows 500 terms in a compound select)."""
    totals = await minutes.totals(conn, store_id, integration_ids, since)
    found = {i: Health(*totals[i]) for i in integration_ids}
    for start in range(0, len(integration_ids), 200):
        probes = [
            sa.select(sub)
            for integration_id in integration_ids[start:start + 200]
            for ok in (True, False)
            for sub in [
                sa.select(t.c.integration_id, t.c.succeeded, t.c.created_at)
                .where(t.c.integration_id == integration_id, t.c.succeeded.is_(ok))
                .order_by(t.c.id.desc()).limit(1).subquery()
            ]
        ]
        for integration_id, ok, created_at in (await conn.execute(sa.union_all(*probes))).all():
            item = found[integration_id]
            if ok:
                item.last_success = created_at
            else:
                item.last_failure = created_at
    return found


async def browse(
    conn: AsyncConnection,
    store_id: str,
    *,
    integration_id: str | None = None,
    succeeded: bool | None = None,
    status_code: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: str | None = None,
    after: str | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Logs newest first, by the dashboard's filters. Time bounds are id bounds (ids are time-ordered), so every
    filter but the status code walks an index; `before`/`after` are cursors (log ids)."""
    cond = _filters(store_id, integration_id, succeeded)
    if status_code is not None:
        cond.append(t.c.status_code == status_code)
    if since is not None:
        cond.append(t.c.id >= floor_id(since))
    if until is not None:
        cond.append(t.c.id < floor_id(until))
    if before is not None:
        cond.append(t.c.id < before)
    if after is not None:
        cond.append(t.c.id > after)
    query = sa.select(*COLUMNS).where(*cond).order_by(t.c.id.desc()).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def of_job(conn: AsyncConnection, store_id: str, job_id: str, limit: int = 1000) -> list[dict[str, Any]]:
    """A job's attempts, oldest first."""
    query = sa.select(*COLUMNS).where(t.c.store_id == store_id, t.c.job_id == job_id).order_by(t.c.id).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]
