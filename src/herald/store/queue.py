"""The jobs table is the queue: claim due jobs under a lease, then record each attempt exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.domain.ids import new_id
from herald.store import counts
from herald.store.tables import events, integrations, jobs, logs

# Written out literally (not as bound parameters) so that the planner can use the partial index ix_jobs_due,
# whose predicate is exactly this text.
DUE_STATUS = sa.text("status IN ('pending', 'delivering')")


@dataclass(slots=True)
class ClaimedJob:
    id: str
    store_id: str
    integration_id: str
    event_id: str
    triggered_by: str
    attempt: int  # the number of the attempt about to be made
    max_attempts: int
    lease_token: str
    payload: dict[str, Any]
    event_created_at: datetime
    integration: dict[str, Any]  # name, description, integration_type, configuration, secrets, deleted_at, enabled


@dataclass(slots=True)
class Outcome:
    """What the worker decided after one attempt: the job's next state and the log to keep."""

    job: ClaimedJob
    status: str  # pending | succeeded | failed
    run_at: datetime | None
    log: dict[str, Any]


async def claim(conn: AsyncConnection, limit: int, lease_seconds: float, now: datetime) -> list[ClaimedJob]:
    """Take up to `limit` due jobs (pending and due, or delivering with an expired lease)."""
    token = new_id()
    due = (
        sa.select(jobs.c.id)
        .where(DUE_STATUS, jobs.c.run_at <= now)
        .order_by(jobs.c.run_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    claimed = (
        await conn.execute(
            jobs.update()
            .where(jobs.c.id.in_(due.scalar_subquery()))
            .values(
                status="delivering",
                run_at=now + timedelta(seconds=lease_seconds),
                lease_token=token,
                updated_at=now,
            )
            .returning(
                jobs.c.id, jobs.c.store_id, jobs.c.integration_id, jobs.c.event_id, jobs.c.triggered_by,
                jobs.c.attempts, jobs.c.max_attempts,
            )
        )
    ).all()
    if not claimed:
        return []
    event_ids = list({r.event_id for r in claimed})
    integration_ids = list({r.integration_id for r in claimed})
    payloads = {
        r.id: (r.payload, r.created_at)
        for r in await conn.execute(
            sa.select(events.c.id, events.c.payload, events.c.created_at).where(events.c.id.in_(event_ids))
        )
    }
    found = {
        r["id"]: dict(r)
        for r in (
            await conn.execute(
                sa.select(
                    integrations.c.id, integrations.c.name, integrations.c.description, integrations.c.integration_type,
                    integrations.c.configuration, integrations.c.signing_secret, integrations.c.previous_signing_secret,
                    integrations.c.previous_secret_expires_at, integrations.c.deleted_at, integrations.c.enabled,
                ).where(integrations.c.id.in_(integration_ids))
            )
        ).mappings()
    }
    out = []
    for r in claimed:
        payload, created_at = payloads[r.event_id]
        out.append(
            ClaimedJob(
                r.id, r.store_id, r.integration_id, r.event_id, r.triggered_by, r.attempts + 1, r.max_attempts,
                token, orjson.loads(payload), created_at, found[r.integration_id],
            )
        )
    return out


async def record(conn: AsyncConnection, outcomes: list[Outcome], now: datetime) -> list[Outcome]:
    """Write each attempt's log and its job's next state, only where this worker still holds the lease.

    Returns the outcomes that were recorded; the others were taken over by another worker after the lease
    expired, and that worker's attempt is the one that counts.
    """
    await _cancel_retries_of_disabled(conn, outcomes)
    held_query = sa.select(jobs.c.id, jobs.c.lease_token).where(
        jobs.c.id.in_([o.job.id for o in outcomes]), jobs.c.status == "delivering"
    )
    if conn.dialect.name == "postgresql":
        held_query = held_query.with_for_update()  # a concurrent claim skips these rows until we commit
    held = {row.id: row.lease_token for row in await conn.execute(held_query)}
    kept = [o for o in outcomes if held.get(o.job.id) == o.job.lease_token]
    if kept:
        await conn.execute(
            _FINISH,
            [
                {"b_id": o.job.id, "b_status": o.status, "b_attempts": o.job.attempt, "b_run_at": o.run_at, "b_now": now}
                for o in kept
            ],
        )
        await conn.execute(logs.insert(), [o.log for o in kept])
        await counts.add(conn, [o.log for o in kept])
    return kept


_FINISH = (
    jobs.update()
    .where(jobs.c.id == sa.bindparam("b_id"))
    .values(
        status=sa.bindparam("b_status"),
        attempts=sa.bindparam("b_attempts"),
        run_at=sa.bindparam("b_run_at", type_=jobs.c.run_at.type),
        lease_token=None,
        updated_at=sa.bindparam("b_now", type_=jobs.c.updated_at.type),
    )
)


async def _cancel_retries_of_disabled(conn: AsyncConnection, outcomes: list[Outcome]) -> None:
    """A job whose integration was disabled or deleted during the attempt is cancelled, not rescheduled.

    FOR SHARE on PostgreSQL: a concurrent disable waits for this transaction, then cancels what it left pending.
    """
    retrying = {o.job.integration_id for o in outcomes if o.status == "pending"}
    if not retrying:
        return
    query = sa.select(integrations.c.id).where(
        integrations.c.id.in_(retrying), integrations.c.enabled.is_(True), integrations.c.deleted_at.is_(None)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(read=True)
    live = set((await conn.execute(query)).scalars())
    for o in outcomes:
        if o.status == "pending" and o.job.integration_id not in live:
            o.status, o.run_at = "cancelled", None


async def cancel(conn: AsyncConnection, job: ClaimedJob, now: datetime) -> None:
    """A job whose integration was deleted meanwhile: no attempt, just cancelled."""
    await conn.execute(
        jobs.update()
        .where(jobs.c.id == job.id, jobs.c.lease_token == job.lease_token)
        .values(status="cancelled", run_at=None, lease_token=None, updated_at=now)
    )


async def release(conn: AsyncConnection, tokens: list[str], now: datetime) -> int:
    """Give leased jobs back at shutdown so that another worker takes them at once."""
    if not tokens:
        return 0
    result = await conn.execute(
        jobs.update()
        .where(jobs.c.lease_token.in_(tokens), jobs.c.status == "delivering")
        .values(status="pending", run_at=now, lease_token=None, updated_at=now)
    )
    return result.rowcount


async def renew(conn: AsyncConnection, tokens: list[str], lease_seconds: float, now: datetime) -> int:
    """Extend the leases this worker still holds, so that a delivery slower than the lease is not taken over."""
    if not tokens:
        return 0
    result = await conn.execute(
        jobs.update()
        .where(jobs.c.lease_token.in_(tokens), jobs.c.status == "delivering")
        .values(run_at=now + timedelta(seconds=lease_seconds))
    )
    return result.rowcount


async def next_due(conn: AsyncConnection) -> datetime | None:
    return (
        await conn.execute(sa.select(sa.func.min(jobs.c.run_at)).where(DUE_STATUS))
    ).scalar_one_or_none()


async def mark_health(
    conn: AsyncConnection, succeeded: set[str], failed: set[str], now: datetime
) -> None:
    """Track since when every delivery of an integration has failed."""
    if succeeded:
        await conn.execute(
            integrations.update()
            .where(integrations.c.id.in_(succeeded), integrations.c.failing_since.is_not(None))
            .values(failing_since=None)
        )
    failing = failed - succeeded
    if failing:
        await conn.execute(
            integrations.update()
            .where(integrations.c.id.in_(failing), integrations.c.failing_since.is_(None))
            .values(failing_since=now)
        )


async def failing_too_long(conn: AsyncConnection, ids: set[str], before: datetime) -> list[str]:
    if not ids:
        return []
    rows = await conn.execute(
        sa.select(integrations.c.id).where(
            integrations.c.id.in_(ids),
            integrations.c.enabled.is_(True),
            integrations.c.failing_since.is_not(None),
            integrations.c.failing_since <= before,
        )
    )
    return [r[0] for r in rows]
