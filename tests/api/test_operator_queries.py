"""The queries behind the operator's CLI, on SQLite and PostgreSQL: bulk retries in batches, integration health,
following logs, finding stores and rotating their secrets."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from herald.db import jobs as job_repo
from herald.db import logs as log_repo
from herald.db import minutes, stores
from herald.db.driver_sql import Driver
from herald.db.logs import LogRow
from herald.db.tables import events, jobs, logs
from herald.domain.ids import new_id, utcnow
from tests.support.helpers import StoreCreds


def _id_at(at: datetime) -> str:
    """A UUIDv7 made at `at`."""
    ms = f"{int(at.timestamp() * 1000):012x}"
    tail = secrets.token_hex(10)
    return f"{ms[:8]}-{ms[8:]}-7{tail[:3]}-8{tail[3:6]}-{tail[6:18]}"


async def _jobs(app: Any, store_id: str, integration_id: str, count: int, *, status: str,
                ended: datetime) -> list[str]:
    ids = []
    async with app.state.db.write() as conn:
        event_id = new_id()
        await conn.execute(events.insert().values(id=event_id, store_id=store_id, triggered_by="order.paid",
                                                  payload="{}", created_at=ended))
        rows = []
        for _ in range(count):
            ids.append(new_id())
            rows.append(dict(id=ids[-1], store_id=store_id, integration_id=integration_id, event_id=event_id,
                             triggered_by="order.paid", status=status, attempts=3, max_attempts=3,
                             run_at=ended if status == "pending" else None, created_at=ended, updated_at=ended))
        await conn.execute(jobs.insert(), rows)
    return ids


async def _statuses(app: Any, ids: list[str]) -> dict[str, int]:
    async with app.state.db.read() as conn:
        rows = await conn.execute(sa.select(jobs.c.status, sa.func.count()).where(jobs.c.id.in_(ids))
                                  .group_by(jobs.c.status))
        return {s: n for s, n in rows}


async def test_bulk_retry_goes_in_batches_and_only_through_what_matches(app: Any, store: StoreCreds) -> None:
    now = utcnow()
    target, other = new_id(), new_id()
    recent = await _jobs(app, store.id, target, 1200, status="failed", ended=now - timedelta(minutes=30))
    older = await _jobs(app, store.id, target, 5, status="failed", ended=now - timedelta(hours=3))
    elsewhere = await _jobs(app, store.id, other, 3, status="failed", ended=now - timedelta(minutes=5))
    pending = await _jobs(app, store.id, target, 2, status="pending", ended=now)
    since = now - timedelta(hours=2)
    async with app.state.db.read() as conn:
        assert await job_repo.count_retryable(conn, store.id, "failed", since, target) == 1200
        assert await job_repo.count_retryable(conn, store.id, "failed", None, None) >= 1208

    batches, after, total = [], "", 0
    while True:
        async with app.state.db.write() as conn:
            count, last = await job_repo.retry_batch(conn, store.id, "failed", since, target, after, utcnow(),
                                                     limit=500)
        if last is None:
            break
        batches.append(count)
        total, after = total + count, last
    assert batches == [500, 500, 200] and total == 1200
    assert await _statuses(app, recent) == {"pending": 1200}
    assert await _statuses(app, older) == {"failed": 5}
    assert await _statuses(app, elsewhere) == {"failed": 3}
    assert await _statuses(app, pending) == {"pending": 2}
    async with app.state.db.read() as conn:
        granted = (await conn.execute(sa.select(sa.func.min(jobs.c.max_attempts - jobs.c.attempts))
                                      .where(jobs.c.id.in_(recent)))).scalar_one()
        assert granted == 1  # one more attempt each
        # another store's jobs are never touched, whatever the filter
        assert await job_repo.count_retryable(conn, new_id(), "failed", None, None) == 0


async def _log(app: Any, store_id: str, integration_id: str, ok: bool, at: datetime) -> str:
    row = LogRow(_id_at(at), store_id, integration_id, new_id(), ok, 1, 0.01, "", 200 if ok else 500, "", at)
    async with app.state.db.write() as conn:
        await conn.execute(logs.insert().values(**{k: getattr(row, k) for k in row.__slots__}))
        await minutes.add(Driver(conn), [row])  # as recording does
    return row.id


async def test_health_counts_the_window_and_finds_the_last_outcomes(app: Any, store: StoreCreds) -> None:
    now = utcnow()
    a, b, quiet = new_id(), new_id(), new_id()
    await _log(app, store.id, a, False, now - timedelta(days=2))  # outside the window
    for ago in (50, 40, 30):
        await _log(app, store.id, a, True, now - timedelta(minutes=ago))
    await _log(app, store.id, a, False, now - timedelta(minutes=20))
    await _log(app, store.id, b, False, now - timedelta(days=3))
    async with app.state.db.read() as conn:
        found = await log_repo.health(conn, store.id, [a, b, quiet], now - timedelta(hours=24))
    assert (found[a].deliveries, found[a].succeeded, found[a].success_rate) == (4, 3, 0.75)
    assert found[a].last_success is not None and found[a].last_failure is not None
    assert found[a].last_failure > found[a].last_success
    assert (found[b].deliveries, found[b].success_rate, found[b].last_success) == (0, None, None)
    assert found[b].last_failure is not None and found[b].last_failure < now - timedelta(days=2)
    assert (found[quiet].deliveries, found[quiet].last_failure) == (0, None)


async def test_recent_and_newer_follow_the_log_in_order(app: Any, store: StoreCreds) -> None:
    async with app.state.db.read() as conn:
        start = await log_repo.newest_id(conn, store.id)
    integration = new_id()
    now = utcnow()
    made = [await _log(app, store.id, integration, i % 2 == 0, now + timedelta(milliseconds=i)) for i in range(6)]
    async with app.state.db.read() as conn:
        newest = await log_repo.recent(conn, store.id, 3, integration_id=integration)
        assert [r["id"] for r in newest] == made[:2:-1]  # newest first
        failed = await log_repo.recent(conn, store.id, 10, integration_id=integration, succeeded=False)
        assert [r["id"] for r in failed] == [made[5], made[3], made[1]]
        after = await log_repo.newer(conn, store.id, start, integration_id=integration)
        assert [r["id"] for r in after] == made  # oldest first
        assert await log_repo.newer(conn, store.id, made[-1]) == []
        assert [r["id"] for r in await log_repo.newer(conn, store.id, made[2], succeeded=True)] == [made[4]]
        assert await log_repo.newest_id(conn, store.id) == made[-1]
        assert await log_repo.recent(conn, store.id, 0) == []


async def test_stores_are_found_by_id_client_id_or_name_and_rotate(app: Any, store: StoreCreds) -> None:
    async with app.state.db.write() as conn:
        twin_a = await stores.create(conn, "Twin")
        twin_b = await stores.create(conn, "Twin")
    async with app.state.db.read() as conn:
        assert [s.id for s in await stores.find(conn, store.id)] == [store.id]
        assert [s.id for s in await stores.find(conn, store.client_id)] == [store.id]
        assert sorted(s.id for s in await stores.find(conn, "Twin")) == sorted([twin_a.id, twin_b.id])
        assert await stores.find(conn, "nobody") == []
    async with app.state.db.write() as conn:
        rotated = await stores.rotate_secret(conn, twin_a.id)
        assert await stores.rotate_secret(conn, new_id()) is None
    assert rotated is not None and rotated.client_id == twin_a.client_id
    async with app.state.db.read() as conn:
        found = await stores.by_client_id(conn, twin_a.client_id)
    assert found is not None
    assert stores.secret_matches(rotated.client_secret, found[1])
    assert not stores.secret_matches(twin_a.client_secret, found[1])


async def test_health_of_many_integrations_at_once(app: Any, store: StoreCreds) -> None:
    """Past one statement's worth of probes (200 integrations): every integration still gets its own outcomes."""
    now = utcnow()
    ids = [new_id() for _ in range(450)]
    for n, iid in enumerate(ids[::45]):  # one log for every 45th, alternately a success and a failure
        await _log(app, store.id, iid, n % 2 == 0, now - timedelta(minutes=n + 1))
    async with app.state.db.read() as conn:
        found = await log_repo.health(conn, store.id, ids, now - timedelta(hours=24))
    assert len(found) == 450
    logged = set(ids[::45])
    for n, iid in enumerate(ids[::45]):
        item = found[iid]
        assert (item.last_success is not None, item.last_failure is not None) == (n % 2 == 0, n % 2 == 1)
    assert all(found[i].last_success is None and found[i].last_failure is None for i in ids if i not in logged)
