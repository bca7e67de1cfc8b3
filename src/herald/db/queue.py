"""The jobs table is the queue: claim due jobs under a lease, then record each attempt exactly once."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db import counts, minutes
from herald.db.driver_sql import Driver, Sql
from herald.db.logs import LOG_COLUMN_NAMES, LOG_COLUMNS, TIMESTAMP_COLUMNS, LogRow, log_values
from herald.db.tables import jobs
from herald.domain.ids import new_id
from herald.domain.signatures import active_secrets


@dataclass(slots=True)
class IntegrationSnapshot:
    """The integration of a claimed job, as it was when the job was claimed. Field order = `_INTEGRATION_COLUMNS`."""

    id: str
    name: str
    description: str
    integration_type: str
    configuration: dict[str, Any]  # unmasked
    signing_secret: str
    previous_signing_secret: str | None
    previous_secret_expires_at: datetime | None
    deleted_at: datetime | None
    enabled: bool

    def signing_secrets(self, now: datetime) -> list[str]:
        return active_secrets(self.signing_secret, self.previous_signing_secret, self.previous_secret_expires_at, now)


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
    payload: str  # the event's JSON text, as stored
    event_created_at: datetime
    integration: IntegrationSnapshot


@dataclass(slots=True)
class Outcome:
    """What the worker decided after one attempt: the job's next state and the log to keep."""

    job: ClaimedJob
    status: str  # pending | succeeded | failed (| cancelled, when its integration was disabled meanwhile)
    run_at: datetime | None
    log: LogRow


log = logging.getLogger("herald.worker")
_INTEGRATION_COLUMNS = tuple(f.name for f in dataclasses.fields(IntegrationSnapshot))
# Which integrations have open jobs: a loose index scan (one probe of ix_jobs_open_integration per integration,
# however deep each backlog is), with each one's oldest due time, the jobs workers hold now, its breaker and store.
_OPEN = (
    "WITH RECURSIVE open(iid) AS ("
    " SELECT (SELECT integration_id FROM jobs WHERE status IN ('pending', 'delivering') ORDER BY integration_id"
    " LIMIT 1)"
    " UNION ALL SELECT (SELECT integration_id FROM jobs WHERE status IN ('pending', 'delivering')"
    " AND integration_id > open.iid ORDER BY integration_id LIMIT 1) FROM open WHERE open.iid IS NOT NULL)"
    " SELECT open.iid,"
    " (SELECT run_at FROM jobs WHERE integration_id = open.iid AND status IN ('pending', 'delivering')"
    " ORDER BY run_at LIMIT 1),"
    " (SELECT count(*) FROM jobs WHERE integration_id = open.iid AND status = 'delivering' AND run_at > {p}),"
    " i.consecutive_failures, i.breaker_until, i.store_id"
    " FROM open LEFT JOIN integrations i ON i.id = open.iid WHERE open.iid IS NOT NULL"
)
_OPEN_INTEGRATIONS = Sql(_OPEN.format(p="?"), _OPEN.format(p="%s"))
_DUE_OF = Sql(
    "SELECT id FROM jobs WHERE integration_id = ? AND status IN ('pending', 'delivering') AND run_at <= ?"
    " ORDER BY run_at LIMIT ?"
)
_CLAIM = Sql(
    "UPDATE jobs SET status = 'delivering', run_at = ?, lease_token = ?, updated_at = ?"
    " WHERE id IN (SELECT value FROM json_each(?)) AND status IN ('pending', 'delivering')"
    " RETURNING id, store_id, integration_id, event_id, triggered_by, attempts, max_attempts",
    # one round trip: so many due jobs of each integration, with their events' payloads and their integrations
    "WITH pick AS (SELECT j.id FROM unnest(%b::text[], %b::int[]) AS a(iid, n) CROSS JOIN LATERAL"
    " (SELECT id FROM jobs WHERE integration_id = a.iid AND status IN ('pending', 'delivering') AND run_at <= %s"
    " ORDER BY run_at LIMIT a.n FOR UPDATE SKIP LOCKED) j),"
    " c AS (UPDATE jobs SET status = 'delivering', run_at = %s, lease_token = %s, updated_at = %s"
    " WHERE id IN (SELECT id FROM pick)"
    " RETURNING id, store_id, integration_id, event_id, triggered_by, attempts, max_attempts)"
    f" SELECT c.*, e.payload, e.created_at, {', '.join('i.' + c for c in _INTEGRATION_COLUMNS)}"
    # LEFT JOINs: a job whose event or integration row is missing comes back too, to be cancelled, not lost
    " FROM c LEFT JOIN events e ON e.id = c.event_id LEFT JOIN integrations i ON i.id = c.integration_id",
)
_PROBING = Sql(
    "UPDATE integrations SET breaker_until = ? WHERE id IN (SELECT value FROM json_each(?))",
    "UPDATE integrations SET breaker_until = %s WHERE id = ANY(%b)",
)


@dataclass(frozen=True, slots=True)
class Fairness:
    """How claims share the workers between integrations.

    `per_integration`: jobs of one integration held by all workers together (being sent, or waiting for their
    turn), so that one slow integration's backlog stays in the database, claimable by nobody, instead of filling
    the workers. `breaker_failures`: failed attempts in a row after which an integration's circuit breaker
    opens: its jobs are left alone but for one probe every `probe_interval` seconds, until an attempt succeeds.
    """

    per_integration: int = 100
    breaker_failures: int = 10
    probe_interval: float = 30.0


def _shares(open_rows: list[tuple[Any, ...]], want: int, now: datetime, fair: Fairness,
            db: Driver) -> tuple[dict[str, int], set[str], datetime | None]:
    """Slots for each integration, dealt one at a time in turn up to each one's allowance: to each store with due
    work in turn (oldest due first), and within a store to its integrations in turn, so that a claim spreads over
    every store and every integration with due work, and a store with a thousand integrations gets no more of a
    busy worker than a store with one. Also the integrations that get a breaker probe and, for an idle worker,
    when the next job falls due (a breaker's reopening counts)."""
    allowance: dict[str, int] = {}
    probes: set[str] = set()
    next_due: datetime | None = None
    due: list[tuple[datetime, str, str]] = []
    for iid, first, held, failures, breaker_until, store_id in open_rows:
        first, breaker_until = db.ts_out(first), db.ts_out(breaker_until)
        if first is None:
            continue
        broken = failures is not None and failures >= fair.breaker_failures
        if broken and breaker_until is not None and breaker_until > now:
            next_due = breaker_until if next_due is None else min(next_due, breaker_until)
            continue
        if first > now:
            next_due = first if next_due is None else min(next_due, first)
            continue
        room = (1 if broken else fair.per_integration) - int(held)
        if room <= 0:
            continue
        allowance[iid] = room
        due.append((first, iid, store_id or ""))
        if broken:
            probes.add(iid)
    due.sort()
    turns: dict[str, deque[str]] = {}  # store -> its integrations in turn; stores by oldest due
    for _, iid, store_id in due:
        turns.setdefault(store_id, deque()).append(iid)
    shares: dict[str, int] = {}
    left = want
    while left > 0 and turns:
        for store_id in list(turns):
            if left == 0:
                break
            line = turns[store_id]
            iid = line.popleft()
            shares[iid] = shares.get(iid, 0) + 1
            left -= 1
            if shares[iid] < allowance[iid]:
                line.append(iid)
            elif not line:
                del turns[store_id]
    return shares, probes & set(shares), next_due


_EVENTS = Sql("SELECT id, payload, created_at FROM events WHERE id IN (SELECT value FROM json_each(?))")
_INTEGRATIONS = Sql(
    f"SELECT {', '.join(_INTEGRATION_COLUMNS)} FROM integrations WHERE id IN (SELECT value FROM json_each(?))"
)


async def claim(
    conn: AsyncConnection, limit: int, lease_seconds: float, now: datetime, fair: Fairness | None = None
) -> tuple[list[ClaimedJob], datetime | None]:
    """Take up to `limit` due jobs (pending and due, or delivering with an expired lease), shared fairly between
    integrations (see `Fairness`).

    Also answers, when fewer than `limit` were taken, when the next job falls due (None when nothing waits, or
    only integrations at their share have due work: they free up as their jobs end), so that an idle worker
    knows how long it may sleep.

    Status predicates are written out literally so that the planner uses the partial indexes whose predicates
    are exactly this text; on PostgreSQL, SKIP LOCKED lets workers claim side by side.
    """
    fair = fair or Fairness()
    db = Driver(conn)
    token = new_id()
    open_rows = await db.all(_OPEN_INTEGRATIONS, (db.ts(now),))
    shares, probes, next_due = _shares(open_rows, limit, now, fair, db)
    if not shares:
        return [], next_due
    until = db.ts(now + timedelta(seconds=lease_seconds))
    if db.is_sqlite:
        ids: list[str] = []
        for iid, n in shares.items():
            ids += [r[0] for r in await db.all(_DUE_OF, (iid, db.ts(now), n))]
        claimed = await db.all(_CLAIM, (until, token, db.ts(now), db.ids(ids)))
    else:
        claimed = await db.all(_CLAIM, (list(shares), list(shares.values()), now, until, token, now))
    if probes:
        # one probe per interval, whichever worker sends it
        await db.run(_PROBING, (db.ts(now + timedelta(seconds=fair.probe_interval)), db.ids(probes)))
    if len(claimed) >= limit:
        next_due = None
    if not claimed:
        return [], next_due
    if db.is_sqlite:
        payloads = {r[0]: r[1:] for r in await db.all(_EVENTS, (db.ids({r[3] for r in claimed}),))}
        claimed = [r + payloads.get(r[3], (None, None)) for r in claimed]
        integration_rows = await db.all(_INTEGRATIONS, (db.ids({r[2] for r in claimed}),))
    else:
        integration_rows = [row for row in {r[2]: r[9:] for r in claimed}.values() if row[0] is not None]
        claimed = [r[:9] for r in claimed]
    found: dict[str, IntegrationSnapshot] = {}
    for iid, name, description, kind, configuration, secret, previous, expires, deleted_at, enabled in integration_rows:
        found[iid] = IntegrationSnapshot(
            iid, name, description, kind, orjson.loads(configuration), secret, previous, db.ts_out(expires),
            db.ts_out(deleted_at), bool(enabled),
        )
    orphans = [r[0] for r in claimed if r[2] not in found or r[7] is None]
    if orphans:
        # no integration or no event to deliver: cancel, so that the job neither blocks claiming nor loops
        log.warning("cancelled %d job(s) whose integration or event is missing: %s", len(orphans), orphans[:5])
        await conn.execute(jobs.update().where(jobs.c.id.in_(orphans), jobs.c.lease_token == token)
                           .values(status="cancelled", run_at=None, lease_token=None, updated_at=now))
    jobs_out = [
        ClaimedJob(
            job_id, store_id, integration_id, event_id, triggered_by, attempts + 1, max_attempts,
            token, payload, db.ts_out(created_at), found[integration_id],  # type: ignore[arg-type]
        )
        for job_id, store_id, integration_id, event_id, triggered_by, attempts, max_attempts, payload, created_at
        in claimed
        if integration_id in found and payload is not None
    ]
    return jobs_out, next_due


# SQLite: one writer at a time, and statements cost no round trip.
_HELD = Sql("SELECT id, lease_token FROM jobs WHERE id IN (SELECT value FROM json_each(?)) AND status = 'delivering'")
_FINISH = Sql("UPDATE jobs SET status = ?, attempts = ?, run_at = ?, lease_token = NULL, updated_at = ? WHERE id = ?")
_INSERT_LOGS = Sql(f"INSERT INTO logs ({', '.join(LOG_COLUMN_NAMES)}) VALUES ({', '.join('?' * len(LOG_COLUMNS))})")
_JOB_COLUMNS = (("token", "text"), ("status", "text"), ("run_at", "timestamptz"))  # the job's next state
_RECORD_COLUMNS = _JOB_COLUMNS + LOG_COLUMNS
_RECORD_PG = Sql(
    None,
    # One round trip: finish the jobs whose lease this worker still holds, log their attempts, add to the totals
    # (in one order everywhere, so that workers cannot deadlock), clear `failing_since` of the integrations
    # that succeeded, and answer which jobs were finished. One array per column of `_RECORD_COLUMNS`.
    f"WITH u AS (SELECT * FROM unnest({', '.join(f'%b::{kind}[]' for _, kind in _RECORD_COLUMNS)})"
    f" AS u({', '.join(name for name, _ in _RECORD_COLUMNS)})),"
    " done AS (UPDATE jobs SET status = u.status, attempts = u.attempt, run_at = u.run_at, lease_token = NULL,"
    " updated_at = %s FROM u WHERE jobs.id = u.job_id AND jobs.lease_token = u.token AND jobs.status = 'delivering'"
    " RETURNING jobs.id),"
    f" logged AS (INSERT INTO logs ({', '.join(LOG_COLUMN_NAMES)})"
    f" SELECT {', '.join('u.' + c for c in LOG_COLUMN_NAMES)}"
    " FROM u JOIN done ON done.id = u.job_id RETURNING store_id, integration_id, succeeded, created_at),"
    " counted AS (INSERT INTO log_counts (store_id, integration_id, succeeded, count)"
    " SELECT store_id, integration_id, succeeded, count(*) FROM logged GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    " ON CONFLICT (store_id, integration_id, succeeded) DO UPDATE SET count = log_counts.count + excluded.count),"
    f" by_minute AS ({minutes.PG_ADD_FROM_LOGGED}),"
    " healed AS (UPDATE integrations SET failing_since = NULL, consecutive_failures = 0, breaker_until = NULL"
    " WHERE id IN (SELECT integration_id FROM logged WHERE succeeded)"
    " AND (failing_since IS NOT NULL OR consecutive_failures > 0))"
    " SELECT id FROM done",
)


_TIMESTAMPS = tuple(i for i, name in enumerate(LOG_COLUMN_NAMES) if name in TIMESTAMP_COLUMNS)


def _log_values(db: Driver, log: LogRow) -> list[Any]:
    """A log's values for the SQLite insert, timestamps in SQLite's text form."""
    values = list(log_values(log))
    for i in _TIMESTAMPS:
        values[i] = db.ts(values[i])
    return values


async def record(
    conn: AsyncConnection, outcomes: list[Outcome], now: datetime, fair: Fairness | None = None
) -> list[Outcome]:
    """Write each attempt's log and its job's next state, only where this worker still holds the lease, and
    track since when every delivery of an integration has failed.

    Returns the outcomes that were recorded; the others were taken over by another worker after the lease
    expired, and that worker's attempt is the one that counts.
    """
    db = Driver(conn)
    await _cancel_retries_of_disabled(db, outcomes)
    if not db.is_sqlite:
        logs = [log_values(o.log) for o in outcomes]
        columns = [[o.job.lease_token for o in outcomes], [o.status for o in outcomes], [o.run_at for o in outcomes]]
        columns += [list(column) for column in zip(*logs, strict=True)]
        finished = {r[0] for r in await db.all(_RECORD_PG, (*columns, now))}
        kept = [o for o in outcomes if o.job.id in finished]
        await _mark_failing(db, kept, now, fair or Fairness())
        return kept
    held = dict(await db.all(_HELD, (db.ids([o.job.id for o in outcomes]),)))
    kept = [o for o in outcomes if held.get(o.job.id) == o.job.lease_token]
    if not kept:
        return kept
    stamp = db.ts(now)
    await db.many(_FINISH, [(o.status, o.job.attempt, db.ts(o.run_at), stamp, o.job.id) for o in kept])
    await db.many(_INSERT_LOGS, [_log_values(db, o.log) for o in kept])
    await counts.add(db, [o.log for o in kept])
    await minutes.add(db, [o.log for o in kept])
    succeeded = {o.job.integration_id for o in kept if o.log.succeeded}
    if succeeded:
        await db.run(_RECOVERED, (db.ids(succeeded),))
    await _mark_failing(db, kept, now, fair or Fairness())
    return kept


_LIVE = Sql(
    "SELECT id FROM integrations WHERE id IN (SELECT value FROM json_each(?)) AND enabled = 1 AND deleted_at IS NULL",
    # FOR SHARE: a concurrent disable waits for this transaction, then cancels what it left pending
    "SELECT id FROM integrations WHERE id = ANY(%b) AND enabled AND deleted_at IS NULL FOR SHARE",
)


async def _cancel_retries_of_disabled(db: Driver, outcomes: list[Outcome]) -> None:
    """A job whose integration was disabled or deleted during the attempt is cancelled, not rescheduled."""
    retrying = {o.job.integration_id for o in outcomes if o.status == "pending"}
    if not retrying:
        return
    live = {r[0] for r in await db.all(_LIVE, (db.ids(retrying),))}
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


async def release(conn: AsyncConnection, tokens: list[str], now: datetime, only: list[str] | None = None) -> int:
    """Give leased jobs back unsent, as they were: every job of these leases at shutdown, so that another worker
    takes them at once, or `only` these job ids (their integration's breaker opened while they waited)."""
    if not tokens:
        return 0
    where = [jobs.c.lease_token.in_(tokens), jobs.c.status == "delivering"]
    if only is not None:
        where.append(jobs.c.id.in_(only))
    result = await conn.execute(
        jobs.update().where(*where).values(status="pending", run_at=now, lease_token=None, updated_at=now)
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


_RECOVERED = Sql(
    "UPDATE integrations SET failing_since = NULL, consecutive_failures = 0, breaker_until = NULL"
    " WHERE id IN (SELECT value FROM json_each(?)) AND (failing_since IS NOT NULL OR consecutive_failures > 0)"
)
# params: now, failures, failures, threshold, open until, integration id
_FAILING = Sql(
    "UPDATE integrations SET failing_since = coalesce(failing_since, ?),"
    " consecutive_failures = consecutive_failures + ?,"
    " breaker_until = CASE WHEN consecutive_failures + ? >= ? THEN ? ELSE breaker_until END WHERE id = ?"
)
_FAILING_SINCE = Sql(
    "SELECT id FROM integrations WHERE id IN (SELECT value FROM json_each(?)) AND enabled = 1"
    " AND failing_since IS NOT NULL AND failing_since <= ?",
    "SELECT id FROM integrations WHERE id = ANY(%b) AND enabled AND failing_since IS NOT NULL AND failing_since <= %s",
)


async def _mark_failing(db: Driver, kept: list[Outcome], now: datetime, fair: Fairness) -> None:
    """Integrations with only failed attempts in this batch start failing now, unless they already were, and
    count them towards their circuit breaker, which opens at `fair.breaker_failures` in a row."""
    failures = Counter(o.job.integration_id for o in kept if not o.log.succeeded)
    for iid in {o.job.integration_id for o in kept if o.log.succeeded}:
        failures.pop(iid, None)
    if failures:
        stamp, until = db.ts(now), db.ts(now + timedelta(seconds=fair.probe_interval))
        await db.many(_FAILING, [(stamp, n, n, fair.breaker_failures, until, iid)
                                 for iid, n in sorted(failures.items())])


async def failing_too_long(conn: AsyncConnection, ids: set[str], before: datetime) -> list[str]:
    if not ids:
        return []
    db = Driver(conn)
    return [r[0] for r in await db.all(_FAILING_SINCE, (db.ids(ids), db.ts(before)))]
