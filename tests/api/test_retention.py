"""Retention: old logs, finished jobs and orphan events go; pending and recent ones stay; totals stay right."""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from herald.db import counts, retention
from herald.db.database import Database
from herald.db.driver_sql import Driver
from herald.db.logs import LogRow
from herald.db.retention import PG_LOCK, Purged, purge, would_purge
from herald.db.tables import events, jobs, logs
from herald.domain.ids import new_id, utcnow
from tests.support.helpers import StoreCreds, webhook_body


def _old_id(at: datetime) -> str:
    """A UUIDv7 made at `at`."""
    ms = f"{int(at.timestamp() * 1000):012x}"
    tail = secrets.token_hex(10)
    return f"{ms[:8]}-{ms[8:]}-7{tail[:3]}-8{tail[3:6]}-{tail[6:18]}"


async def _seed(app: Any, store_id: str, integration_id: str, at: datetime, *, status: str, with_log: bool,
                log_at: datetime | None = None) -> tuple[str, str, str | None]:
    event_id, job_id = _old_id(at), _old_id(at)
    log_id = _old_id(log_at or at) if with_log else None
    async with app.state.db.write() as conn:
        await conn.execute(events.insert().values(id=event_id, store_id=store_id, triggered_by="order.paid",
                                                  payload="{}", created_at=at))
        await conn.execute(jobs.insert().values(
            id=job_id, store_id=store_id, integration_id=integration_id, event_id=event_id,
            triggered_by="order.paid", status=status, attempts=1, max_attempts=3,
            run_at=at if status == "pending" else None, created_at=at, updated_at=at))
        if log_id is not None:
            row = LogRow(log_id, store_id, integration_id, job_id, status == "succeeded", 1, 0.01, "", 200, "",
                         log_at or at)
            await conn.execute(logs.insert().values(**{k: getattr(row, k) for k in row.__slots__}))
            await counts.add(Driver(conn), [row])
    return event_id, job_id, log_id


async def _ids(app: Any, table: sa.Table, ids: list[str]) -> set[str]:
    async with app.state.db.read() as conn:
        return set((await conn.execute(sa.select(table.c.id).where(table.c.id.in_(ids)))).scalars())


async def test_old_rows_go_and_the_rest_stays(app: Any, client: httpx.AsyncClient, store: StoreCreds) -> None:
    created = await client.post("/v2/integrations", json=webhook_body(enabled=True), headers=store.headers)
    integration_id = created.json()["data"]["id"]
    now = utcnow()
    old = now - timedelta(days=40)
    finished = [await _seed(app, store.id, integration_id, old + timedelta(seconds=i), status="succeeded",
                            with_log=True) for i in range(5)]
    no_log = await _seed(app, store.id, integration_id, old, status="cancelled", with_log=False)
    pending = await _seed(app, store.id, integration_id, old, status="pending", with_log=False)
    retried = await _seed(app, store.id, integration_id, old, status="failed", with_log=True,
                          log_at=now - timedelta(days=1))  # an old job with a recent attempt: it stays
    recent = await _seed(app, store.id, integration_id, now - timedelta(days=2), status="succeeded", with_log=True)
    cutoff = now - timedelta(days=30)
    before = (await client.get(f"/v2/integrations/{integration_id}/logs", headers=store.headers)).json()

    async with app.state.db.read() as conn:
        planned = await would_purge(conn, cutoff)
    batches: list[Purged] = []
    done = await purge(app.state.db, cutoff, limit=2, progress=batches.append)

    assert (done.logs, done.jobs) == (5, 6)
    assert done.events >= 6  # the shared test database may hold other tests' orphans too: never newer ones
    assert (planned.logs, planned.jobs) == (done.logs, done.jobs)
    assert len(batches) >= 3 and sum(b.total for b in batches) == done.total  # in batches of at most 2 per kind
    gone_jobs = [job for _, job, _ in finished] + [no_log[1]]
    assert await _ids(app, jobs, gone_jobs) == set()
    assert await _ids(app, events, [event for event, _, _ in finished] + [no_log[0]]) == set()
    assert await _ids(app, logs, [log for _, _, log in finished if log]) == set()
    kept = [pending, retried, recent]
    assert await _ids(app, jobs, [job for _, job, _ in kept]) == {job for _, job, _ in kept}
    assert await _ids(app, events, [event for event, _, _ in kept]) == {event for event, _, _ in kept}
    assert await _ids(app, logs, [log for _, _, log in kept if log]) == {log for _, _, log in kept if log}
    after = (await client.get(f"/v2/integrations/{integration_id}/logs", headers=store.headers)).json()
    assert after["results"]["total"] == before["results"]["total"] - 5 == len(after["data"]) == 2
    failed = await client.get(f"/v2/integrations/{integration_id}/logs?filter=eq(succeeded,false)",
                              headers=store.headers)
    assert failed.json()["results"]["total"] == 1 == len(failed.json()["data"])
    again = await purge(app.state.db, cutoff)
    assert (again.logs, again.jobs) == (0, 0)


async def _log(app: Any, store_id: str, integration_id: str, job_id: str, at: datetime) -> str:
    """One more (failed) attempt of `job_id`, made at `at`, with its total."""
    row = LogRow(_old_id(at), store_id, integration_id, job_id, False, 2, 0.01, "", 500, "", at)
    async with app.state.db.write() as conn:
        await conn.execute(logs.insert().values(**{k: getattr(row, k) for k in row.__slots__}))
        await counts.add(Driver(conn), [row])
    return row.id


async def test_a_pass_walks_past_what_it_keeps(app: Any, client: httpx.AsyncClient, store: StoreCreds) -> None:
    """Batches of 2: more kept jobs at the start of the range than a batch holds, a job with more logs than a batch,
    an event that no job ever needed. One pass removes all that can go, which is what a dry run counted."""
    created = await client.post("/v2/integrations", json=webhook_body(enabled=True), headers=store.headers)
    integration_id = created.json()["data"]["id"]
    now = utcnow()
    old, cutoff = now - timedelta(days=40), now - timedelta(days=30)
    pending = [await _seed(app, store.id, integration_id, old + timedelta(seconds=i), status="pending",
                           with_log=False) for i in range(5)]
    retried = await _seed(app, store.id, integration_id, old + timedelta(seconds=10), status="failed", with_log=True)
    retries = [await _log(app, store.id, integration_id, retried[1], old + timedelta(seconds=11 + i)) for i in range(4)]
    orphan = _old_id(old + timedelta(seconds=20))
    async with app.state.db.write() as conn:
        await conn.execute(events.insert().values(id=orphan, store_id=store.id, triggered_by="order.paid",
                                                  payload="{}", created_at=old))
    finished = [await _seed(app, store.id, integration_id, old + timedelta(seconds=30 + i), status="succeeded",
                            with_log=True) for i in range(3)]

    async with app.state.db.read() as conn:
        planned = await would_purge(conn, cutoff)
    done = await purge(app.state.db, cutoff, limit=2)

    assert done == planned
    assert (done.logs, done.jobs) == (8, 4) and done.events >= 5
    assert await _ids(app, jobs, [job for _, job, _ in pending]) == {job for _, job, _ in pending}
    assert await _ids(app, events, [event for event, _, _ in pending]) == {event for event, _, _ in pending}
    gone = [retried, *finished]
    assert await _ids(app, jobs, [job for _, job, _ in gone]) == set()
    assert await _ids(app, events, [event for event, _, _ in gone] + [orphan]) == set()
    assert await _ids(app, logs, [log for _, _, log in gone if log] + retries) == set()
    listed = await client.get(f"/v2/integrations/{integration_id}/logs", headers=store.headers)
    assert listed.json()["results"]["total"] == 0 == len(listed.json()["data"])
    assert await purge(app.state.db, cutoff, limit=2) == Purged()



async def test_a_pass_waits_after_each_batch_as_long_as_it_took(app: Any, client: httpx.AsyncClient,
                                                                store: StoreCreds, monkeypatch: Any) -> None:
    """With a clock on which every batch takes 0.25 s, a pass with pause=2 waits 0.5 s after each one (the waits
    are noted here, not slept), and it still removes everything."""
    ticks = itertools.count()
    monkeypatch.setattr(retention, "_clock", lambda: next(ticks) * 0.25)
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(0)

    monkeypatch.setattr(retention, "_sleep", wait)
    created = await client.post("/v2/integrations", json=webhook_body(enabled=True), headers=store.headers)
    integration_id = created.json()["data"]["id"]
    now = utcnow()
    seeded = [await _seed(app, store.id, integration_id, now - timedelta(days=40, seconds=i), status="succeeded",
                          with_log=True) for i in range(3)]
    cutoff = now - timedelta(days=30)
    async with app.state.db.read() as conn:
        planned = await would_purge(conn, cutoff)
    done = await purge(app.state.db, cutoff, limit=2, pause=2.0)
    assert done == planned and done.logs >= 3
    assert await _ids(app, jobs, [job for _, job, _ in seeded]) == set()
    assert len(waits) >= 6 and set(waits) == {0.5}  # one per batch: 2 + 1 of each kind at least

# --- PostgreSQL: what a batch reads, and the purge lock ------------------------------------------------------------


def _bulk_sql(n: int, start_ms: int) -> list[str]:
    """n old events, their finished jobs and one log each (ids UUIDv7 one millisecond apart), with the totals."""
    h = (f"(SELECT i, lpad(to_hex({start_ms}::bigint + i), 12, '0') AS ms, lpad(to_hex(i), 15, '0') AS seq,"
         f" to_timestamp(({start_ms}::bigint + i) / 1000.0) AS at FROM generate_series(0, {n - 1}) AS i) AS h")

    def uuid7(kind: int) -> str:
        return f"substr(h.ms, 1, 8) || '-' || substr(h.ms, 9, 4) || '-7{kind}00-8' || substr(h.seq, 1, 3) || '-' " \
               f"|| substr(h.seq, 4, 12)"

    return [
        f"INSERT INTO events (id, store_id, triggered_by, payload, created_at)"
        f" SELECT {uuid7(0)}, %(store)s, 'order.paid', '{{}}', h.at FROM {h}",
        f"INSERT INTO jobs (id, store_id, integration_id, event_id, triggered_by, status, attempts, max_attempts,"
        f" created_at, updated_at) SELECT {uuid7(1)}, %(store)s, %(integration)s, {uuid7(0)}, 'order.paid',"
        f" 'succeeded', 1, 3, h.at, h.at FROM {h}",
        f"INSERT INTO logs (id, store_id, integration_id, job_id, succeeded, attempt, processing_time, body,"
        f" status_code, error_detail, created_at) SELECT {uuid7(2)}, %(store)s, %(integration)s, {uuid7(1)}, true,"
        f" 1, 0.01, 'ok', 200, '', h.at FROM {h}",
        "INSERT INTO log_counts (store_id, integration_id, succeeded, count)"
        " SELECT store_id, integration_id, succeeded, count(*) FROM logs WHERE store_id = %(store)s"
        " GROUP BY store_id, integration_id, succeeded",
    ]


class _InOneTransaction:
    """Stands in for a Database whose every write transaction is the one transaction already open on `conn`."""

    is_sqlite = False

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        yield self.conn


_READS = ("SELECT relname, seq_scan, seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables"
          " WHERE relname IN ('logs', 'jobs', 'events')")


async def test_a_pass_reads_each_row_a_few_times_not_once_per_batch(postgres_url: str) -> None:
    """Asked for "the first 1,000 old jobs with no log", PostgreSQL would rather hash the whole logs table (it
    expects almost no such job) than look row by row: a pass over n rows would then read n rows per batch. Every
    batch must read only the rows it decides. All in one transaction, rolled back: nothing stays in the database."""
    n, limit = 40_000, 100  # big enough that an index is the planner's choice for a batch (at 10,000 it is not)
    store, integration = new_id(), new_id()
    now = utcnow()
    cutoff = now - timedelta(days=30)
    start_ms = int((now - timedelta(days=40)).timestamp() * 1000) - n
    db = Database(postgres_url)
    try:
        async with db.engine.connect() as conn:
            transaction = await conn.begin()
            try:
                await conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")  # every read counted here
                for sql in _bulk_sql(n, start_ms):
                    await conn.exec_driver_sql(sql, {"store": store, "integration": integration})
                await conn.exec_driver_sql("ANALYZE events, jobs, logs")
                planned = await would_purge(conn, cutoff)
                before = {name: (scans, rows) for name, scans, rows in (await conn.exec_driver_sql(_READS)).all()}
                done = await purge(_InOneTransaction(conn), cutoff, limit=limit, pause=0)
                after = {name: (scans, rows) for name, scans, rows in (await conn.exec_driver_sql(_READS)).all()}
            finally:
                await transaction.rollback()
        async with db.engine.connect() as conn:  # the rolled-back rows' room, and the row counts, as they were
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).exec_driver_sql(
                "VACUUM events, jobs, logs")
    finally:
        await db.dispose()
    assert done == planned and min(done.logs, done.jobs, done.events) >= n
    read = {name: after[name][1] - before.get(name, (0, 0))[1] for name in after}
    scans = {name: after[name][0] - before.get(name, (0, 0))[0] for name in after}
    assert scans == {"logs": 0, "jobs": 0, "events": 0}, read
    assert all(rows <= 5 * n for rows in read.values()), read  # a whole table per batch: n * n / limit


# Just before a transaction commits: whether it deleted from (or wrote to) the logs, jobs or events, whose row
# locks it then holds with a ROW EXCLUSIVE lock on the table until the commit, and whether it holds the purge lock.
_WATCH = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation WHERE l.pid = pg_backend_pid()"
    " AND l.mode = 'RowExclusiveLock' AND c.relname IN ('logs', 'jobs', 'events')),"
    " EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted"
    " AND classid::bigint = %s AND objid::bigint = %s AND objsubid = 1)"
)


class _Worker(Database):
    """One worker's Database. For each write transaction it notes, just before the commit, whether the transaction
    wrote to the logs, jobs or events and whether it held the purge lock (the per-minute totals' clean-up after a
    pass writes elsewhere, without it). With `hold_first`, its first transaction then stays open (deletions not
    committed, lock held) until `release` is set: a worker in the middle of a batch."""

    def __init__(self, url: str, *, hold_first: bool = False) -> None:
        super().__init__(url)
        self.transactions: list[tuple[bool, bool]] = []  # (wrote to logs, jobs or events; held the lock)
        self.hold_first = hold_first
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with super().write() as conn:
            yield conn
            wrote, locked = (await conn.exec_driver_sql(_WATCH, (PG_LOCK >> 32, PG_LOCK & 0xFFFF_FFFF))).one()
            self.transactions.append((bool(wrote), bool(locked)))
            if self.hold_first and len(self.transactions) == 1:
                self.holding.set()
                await self.release.wait()

    @property
    def wrote_without_the_lock(self) -> int:
        return sum(1 for wrote, locked in self.transactions if wrote and not locked)


RECENT = 3  # logs of the seeded store that no purge may touch


async def _seed_old(db: Database, n: int) -> str:
    """n old events with a finished job and a log each, and RECENT new logs, in a store of their own; its id."""
    store, integration = new_id(), new_id()
    now = utcnow()
    start_ms = int((now - timedelta(days=40)).timestamp() * 1000) - n
    recent = [LogRow(new_id(), store, integration, new_id(), True, 1, 0.01, "ok", 200, "", now) for _ in range(RECENT)]
    async with db.write() as conn:
        for sql in _bulk_sql(n, start_ms):
            await conn.exec_driver_sql(sql, {"store": store, "integration": integration})
        await conn.execute(logs.insert(), [{k: getattr(row, k) for k in row.__slots__} for row in recent])
        await counts.add(Driver(conn), recent)
    return store


async def _totals(db: Database, store: str) -> tuple[int, int, int]:
    """(the store's log totals, its log rows, negative totals in the whole database)."""
    async with db.read() as conn:
        row = (await conn.exec_driver_sql(
            "SELECT (SELECT coalesce(sum(count), 0) FROM log_counts WHERE store_id = %(s)s),"
            " (SELECT count(*) FROM logs WHERE store_id = %(s)s), (SELECT count(*) FROM log_counts WHERE count < 0)",
            {"s": store})).one()
    return int(row[0]), int(row[1]), int(row[2])


async def test_while_one_worker_purges_another_does_not(postgres_url: str) -> None:
    """Worker A is in the middle of a batch: lock held, its deletions not committed. Worker B's purge stops at once
    with nothing removed, rather than waiting behind A's rows. Then A finishes: every old row removed once."""
    cutoff = utcnow() - timedelta(days=30)
    a, b = _Worker(postgres_url, hold_first=True), _Worker(postgres_url)
    first: asyncio.Task[Purged] | None = None
    try:
        await purge(b, cutoff)  # old rows other tests may have left: this test counts its own
        store = await _seed_old(b, 30)
        b.transactions.clear()
        first = asyncio.create_task(purge(a, cutoff, limit=7))
        await asyncio.wait_for(a.holding.wait(), 10)
        second = await asyncio.wait_for(purge(b, cutoff, limit=7), 10)
        assert second == Purged()
        assert b.transactions == [(False, False)]  # one try: no lock, nothing written
        async with b.read() as conn:
            assert await would_purge(conn, cutoff) == Purged(30, 30, 30)  # A's first batch is not committed
        a.release.set()
        done = await asyncio.wait_for(first, 60)
        assert done == Purged(30, 30, 30)
        assert a.transactions[0] == (True, True) and a.wrote_without_the_lock == 0
        assert await _totals(b, store) == (RECENT, RECENT, 0)
    finally:
        a.release.set()
        if first is not None and not first.done():
            first.cancel()
        await a.dispose()
        await b.dispose()


async def test_workers_competing_for_the_lock_remove_each_row_once(postgres_url: str) -> None:
    """Two workers purge again and again, as their timers would, until nothing old is left: whichever holds the
    lock purges, the other's pass stops. Every deletion happened under the lock, and the two results add up to
    what was seeded, once."""
    cutoff = utcnow() - timedelta(days=30)
    a, b = _Worker(postgres_url), _Worker(postgres_url)

    async def worker(db: _Worker) -> Purged:
        got = Purged()
        while True:
            got.add(await purge(db, cutoff, limit=4))
            async with db.read() as conn:
                if not (await would_purge(conn, cutoff)).total:
                    return got

    try:
        await purge(a, cutoff)
        store = await _seed_old(a, 60)
        a.transactions.clear()
        results = await asyncio.wait_for(asyncio.gather(worker(a), worker(b)), 60)
        total = Purged()
        for result in results:
            total.add(result)
        assert total == Purged(60, 60, 60)
        assert a.wrote_without_the_lock == b.wrote_without_the_lock == 0
        assert sum(wrote for wrote, _ in a.transactions + b.transactions) >= 60 * 3 / 4  # batches of 4 rows
        assert await _totals(a, store) == (RECENT, RECENT, 0)
    finally:
        await a.dispose()
        await b.dispose()


async def test_the_per_minute_totals_of_purged_logs_go_too(app: Any, store: StoreCreds) -> None:
    from herald.db import minutes
    from herald.db.tables import log_minutes

    now = utcnow()
    old_minute, recent_minute = minutes.minute_of(now - timedelta(days=40)), minutes.minute_of(now)
    integration_id = _old_id(now)
    async with app.state.db.write() as conn:
        for minute in (old_minute, recent_minute):
            await conn.execute(log_minutes.insert().values(store_id=store.id, minute=minute,
                                                           integration_id=integration_id, succeeded=True, count=3))
    await purge(app.state.db, now - timedelta(days=30))
    async with app.state.db.read() as conn:
        kept = (await conn.execute(sa.select(log_minutes.c.minute).where(
            log_minutes.c.integration_id == integration_id))).scalars().all()
    assert [m.replace(tzinfo=None) for m in kept] == [recent_minute.replace(tzinfo=None)]
