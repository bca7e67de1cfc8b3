"""Retention: old logs, finished jobs and orphan events go; pending and recent ones stay; totals stay right."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from herald.db import counts
from herald.db.driver_sql import Driver
from herald.db.logs import LogRow
from herald.db.retention import Purged, purge, would_purge
from herald.db.tables import events, jobs, logs
from herald.domain.ids import utcnow
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
