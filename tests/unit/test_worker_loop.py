"""The worker's claim -> gate -> deliver -> record loop on a fake transport: no sockets, a real database
(SQLite and PostgreSQL), the real queue. What a delivery's outcome does to its job, its log and its integration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from herald.app import create_app
from herald.db.tables import events, jobs
from herald.delivery.transports.base import Delivered, DeliveryFailed
from herald.delivery.transports.fake import FakeTransport
from herald.delivery.worker import Recorded, Worker
from herald.domain.messages import OutboundMessage
from tests.support.helpers import StoreCreds, make_settings, new_store, webhook_body
from tests.support.server import poll


@dataclass
class Harness:
    app: Any
    client: httpx.AsyncClient
    store: StoreCreds
    database_url: str

    async def integration(self, **overrides: object) -> str:
        r = await self.client.post("/v2/integrations", json=webhook_body(enabled=True, **overrides),
                                   headers=self.store.headers)
        assert r.status_code == 201, r.text
        return str(r.json()["data"]["id"])

    async def publish(self, key: str = "order.paid", payload: dict[str, Any] | None = None) -> str:
        body = {"data": {"type": "event", "triggered_by": key, "payload": payload or {"id": "o1"}}}
        r = await self.client.post("/v2/events", json=body, headers=self.store.headers)
        assert r.status_code == 202, r.text
        return str(r.json()["data"]["relationships"]["jobs"]["data"][0]["id"])

    async def get(self, path: str) -> dict[str, Any]:
        r = await self.client.get(path, headers=self.store.headers)
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def logs(self, integration_id: str, count: int) -> list[dict[str, Any]]:
        answer = await poll(lambda: self.get(f"/v2/integrations/{integration_id}/logs"),
                            lambda a: len(a["data"]) >= count)
        return sorted(answer["data"], key=lambda log: log["attempt"])

    async def job(self, integration_id: str, job_id: str) -> dict[str, Any]:
        return (await self.get(f"/v2/integrations/{integration_id}/jobs/{job_id}"))["data"]

    def worker(self, fake: FakeTransport, recorded: list[Recorded], **overrides: object) -> Worker:
        settings = make_settings(self.database_url, **overrides)
        return Worker(settings, self.app.state.db, transports={"webhook": fake}, hooks=[recorded.append])


@pytest.fixture
async def harness(database_url: str) -> AsyncIterator[Harness]:
    app = create_app(make_settings(database_url))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client:
            store = await new_store(app, client)
            # The database is shared by the whole session: jobs other tests left open would be claimed by this
            # test's worker and sent through its fake transport. They are closed first, so that every job a
            # worker sees here is this test's.
            async with app.state.db.write() as conn:
                await conn.execute(jobs.update().where(jobs.c.status.in_(("pending", "delivering")),
                                                       jobs.c.store_id != store.id)
                                   .values(status="cancelled", run_at=None, lease_token=None))
            yield Harness(app, client, store, database_url)


async def _running(worker: Worker) -> Worker:
    await worker.start()
    return worker


async def test_success_is_recorded_once_with_the_answer(harness: Harness) -> None:
    fake = FakeTransport(lambda m: Delivered(200, "thanks"))
    recorded: list[Recorded] = []
    integration_id = await harness.integration()
    job_id = await harness.publish(payload={"id": "order-1"})
    worker = await _running(harness.worker(fake, recorded))
    try:
        [entry] = await harness.logs(integration_id, 1)
    finally:
        await worker.stop()
    assert (entry["succeeded"], entry["status_code"], entry["body"], entry["error_detail"]) == (True, 200, "thanks", "")
    assert (await harness.job(integration_id, job_id))["status"] == "succeeded"
    [message] = fake.sent
    assert isinstance(message, OutboundMessage)
    assert (message.job_id, message.integration_id, message.attempt) == (job_id, integration_id, 1)
    assert message.payload == {"id": "order-1"}
    assert message.configuration["secret_key"] == "topsecretvalue"  # unmasked
    assert [s[:6] for s in message.signing_secrets] == ["whsec_"]
    assert [o.job.id for r in recorded for o in r.outcomes] == [job_id]
    assert sum(r.dropped for r in recorded) == 0
    assert not fake.closed  # a transport handed in belongs to the caller


async def test_failure_is_retried_on_the_schedule_then_succeeds(harness: Harness) -> None:
    answers: list[Delivered | BaseException] = [DeliveryFailed("the receiver said no", status=500, body="nope"),
                                               Delivered(201, "")]
    fake = FakeTransport(lambda m: answers[m.attempt - 1])
    integration_id = await harness.integration()
    job_id = await harness.publish()
    worker = await _running(harness.worker(fake, [], retry_schedule="0.1"))
    try:
        first, second = await harness.logs(integration_id, 2)
    finally:
        await worker.stop()
    assert (first["attempt"], first["succeeded"], first["status_code"]) == (1, False, 500)
    assert (first["error_detail"], first["body"]) == ("the receiver said no", "nope")
    assert (second["attempt"], second["succeeded"], second["status_code"]) == (2, True, 201)
    job = await harness.job(integration_id, job_id)
    assert (job["status"], job["attempts"]) == ("succeeded", 2)
    assert [m.attempt for m in fake.sent] == [1, 2]


async def test_retries_end_when_the_schedule_runs_out(harness: Harness) -> None:
    fake = FakeTransport(lambda m: DeliveryFailed("down", status=503))
    integration_id = await harness.integration()
    job_id = await harness.publish()
    worker = await _running(harness.worker(fake, [], retry_schedule="0.05,0.05"))
    try:
        logs = await harness.logs(integration_id, 3)
        job = await poll(lambda: harness.job(integration_id, job_id), lambda j: j["status"] == "failed")
    finally:
        await worker.stop()
    assert [entry["attempt"] for entry in logs] == [1, 2, 3]
    assert job["attempts"] == 3 and job["next_attempt_at"] is None


async def test_410_gone_disables_the_integration_and_raises_integration_updated(harness: Harness) -> None:
    fake = FakeTransport(lambda m: DeliveryFailed("gone", status=410, gone=True))
    recorded: list[Recorded] = []
    integration_id = await harness.integration()
    job_id = await harness.publish()
    worker = await _running(harness.worker(fake, recorded))
    try:
        [entry] = await harness.logs(integration_id, 1)
        integration = await poll(lambda: harness.get(f"/v2/integrations/{integration_id}"),
                                 lambda a: a["data"]["enabled"] is False)
    finally:
        await worker.stop()
    assert entry["status_code"] == 410
    assert integration["data"]["enabled"] is False
    assert (await harness.job(integration_id, job_id))["status"] == "failed"  # no retry after 410
    assert [i for r in recorded for i in r.disabled] == [integration_id]
    async with harness.app.state.db.read() as conn:
        raised = (await conn.execute(
            sa.select(events.c.triggered_by).where(events.c.store_id == harness.store.id).order_by(events.c.id)
        )).scalars().all()
    assert raised == ["integration.created", "order.paid", "integration.updated"]
    assert len(fake.sent) == 1


async def test_a_result_after_the_lease_was_lost_is_dropped(harness: Harness) -> None:
    release = asyncio.Event()

    async def held(message: OutboundMessage) -> Delivered:
        await release.wait()
        return Delivered(200, "late")

    fake = FakeTransport(held)
    recorded: list[Recorded] = []
    integration_id = await harness.integration()
    job_id = await harness.publish()
    worker = await _running(harness.worker(fake, recorded))
    try:
        await fake.wait_sent(1)
        # another worker took the job over after our lease expired
        async with harness.app.state.db.write() as conn:
            await conn.execute(jobs.update().where(jobs.c.id == job_id).values(lease_token="someone-else"))
        release.set()
        await poll(lambda: asyncio.sleep(0, recorded), lambda r: sum(x.dropped for x in r) == 1)
    finally:
        await worker.stop()
    assert (await harness.get(f"/v2/integrations/{integration_id}/logs"))["data"] == []
    assert [o for r in recorded for o in r.outcomes] == []
    async with harness.app.state.db.read() as conn:
        row = (await conn.execute(sa.select(jobs.c.status, jobs.c.lease_token).where(jobs.c.id == job_id))).one()
    assert tuple(row) == ("delivering", "someone-else")  # left to the worker that holds it


async def test_a_broken_transport_leaves_a_failed_attempt(harness: Harness) -> None:
    fake = FakeTransport(lambda m: RuntimeError("bug"))
    integration_id = await harness.integration()
    await harness.publish()
    worker = await _running(harness.worker(fake, [], retry_schedule=""))
    try:
        [entry] = await harness.logs(integration_id, 1)
    finally:
        await worker.stop()
    assert entry["succeeded"] is False
    assert entry["error_detail"] == "The delivery failed inside Herald (RuntimeError)."


async def test_an_attempt_past_the_deadline_is_a_timeout(harness: Harness) -> None:
    async def hangs(message: OutboundMessage) -> Delivered:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    fake = FakeTransport(hangs, timeout=0.2)
    integration_id = await harness.integration()
    await harness.publish()
    worker = await _running(harness.worker(fake, [], retry_schedule=""))
    try:
        [entry] = await harness.logs(integration_id, 1)
    finally:
        await worker.stop()
    assert entry["error_detail"] == "The fake transport did not answer within 0.2 s."
    assert 0.2 <= entry["processing_time"] < 2


async def test_deliveries_per_integration_wait_for_their_turn(harness: Harness) -> None:
    """With per_integration_inflight=2, a third job of the same integration waits in the worker until one ends."""
    release = asyncio.Event()
    running = 0
    most = 0

    async def slow(message: OutboundMessage) -> Delivered:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await release.wait()
        running -= 1
        return Delivered(200, "")

    fake = FakeTransport(slow)
    integration_id = await harness.integration()
    for _ in range(5):
        await harness.publish()
    worker = await _running(harness.worker(fake, [], per_integration_inflight=2))
    try:
        await fake.wait_sent(2)
        await asyncio.sleep(0.2)  # give a third delivery every chance to start wrongly (asserted absent below)
        assert len(fake.sent) == 2
        release.set()
        await harness.logs(integration_id, 5)
    finally:
        await worker.stop()
    assert most == 2


async def test_ready_once_it_has_looked_for_jobs_and_hears_notify(harness: Harness) -> None:
    fake = FakeTransport(lambda m: Delivered(200, "ok"))
    worker = harness.worker(fake, [])
    ready = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(on_ready=ready.set))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        if not worker.db.is_sqlite:
            assert worker.notifier.listening.is_set()
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, 20)
        await worker.stop()


async def test_not_ready_when_asked_to_stop_first(harness: Harness) -> None:
    worker = harness.worker(FakeTransport(lambda m: Delivered(200, "ok")), [])
    called: list[bool] = []
    worker.request_stop()
    await asyncio.wait_for(worker.run_forever(on_ready=lambda: called.append(True)), 20)
    await worker.stop()
    assert called == []


async def test_each_recorded_attempt_is_counted_in_its_minute(harness: Harness) -> None:
    """log_minutes (the dashboard's chart and health) agrees with the logs it summarises."""
    from herald.db import minutes
    from herald.db.tables import log_minutes, logs
    from herald.domain.ids import utcnow

    answers = {1: DeliveryFailed("no", status=500), 2: Delivered(200, "")}
    fake = FakeTransport(lambda m: answers[m.attempt])
    integration_id = await harness.integration()
    for _ in range(3):
        await harness.publish()
    worker = await _running(harness.worker(fake, [], retry_schedule="0.05"))
    try:
        await harness.logs(integration_id, 6)
    finally:
        await worker.stop()
    async with harness.app.state.db.read() as conn:
        kept = dict(((ok,), int(n)) for ok, n in await conn.execute(
            sa.select(log_minutes.c.succeeded, sa.func.sum(log_minutes.c.count))
            .where(log_minutes.c.integration_id == integration_id).group_by(log_minutes.c.succeeded)))
        logged = dict(((ok,), int(n)) for ok, n in await conn.execute(
            sa.select(logs.c.succeeded, sa.func.count()).where(logs.c.integration_id == integration_id)
            .group_by(logs.c.succeeded)))
        assert kept == logged == {(True,): 3, (False,): 3}
        minute = (await conn.execute(sa.select(log_minutes.c.minute)
                                     .where(log_minutes.c.integration_id == integration_id))).scalars().first()
        assert minute is not None and minute.second == 0 and minute.microsecond == 0
        assert await minutes.totals(conn, harness.store.id, [integration_id], utcnow() - timedelta(hours=1)) == {
            integration_id: (6, 3)}
        series = await minutes.series(conn, harness.store.id, utcnow() - timedelta(minutes=59), utcnow())
        assert len(series) == 60 and sum(m.succeeded for m in series) == 3 and sum(m.failed for m in series) == 3


async def test_a_job_whose_integration_is_missing_is_cancelled_not_stuck(harness: Harness) -> None:
    """A job row pointing at no integration (or no event) must not stop the claim loop for everyone else."""
    from herald.domain.ids import new_id, utcnow

    fake = FakeTransport(lambda m: Delivered(200, "ok"))
    integration_id = await harness.integration()
    orphan, no_event = new_id(), new_id()
    now = utcnow()
    async with harness.app.state.db.write() as conn:
        event_id = new_id()
        await conn.execute(events.insert().values(id=event_id, store_id=harness.store.id, triggered_by="order.paid",
                                                  payload="{}", created_at=now))
        for job_id, integration, event in ((orphan, new_id(), event_id), (no_event, integration_id, new_id())):
            await conn.execute(jobs.insert().values(
                id=job_id, store_id=harness.store.id, integration_id=integration, event_id=event,
                triggered_by="order.paid", status="pending", attempts=0, max_attempts=3, run_at=now, created_at=now,
                updated_at=now))
    job_id = await harness.publish()
    worker = await _running(harness.worker(fake, []))
    try:
        await harness.logs(integration_id, 1)
        async def statuses() -> dict[str, str]:
            async with harness.app.state.db.read() as conn:
                rows = await conn.execute(sa.select(jobs.c.id, jobs.c.status).where(
                    jobs.c.id.in_([orphan, no_event, job_id])))
                return {i: s for i, s in rows}
        found = await poll(statuses, lambda s: s.get(orphan) == "cancelled" and s.get(no_event) == "cancelled")
    finally:
        await worker.stop()
    assert found[job_id] == "succeeded"
    assert [m.job_id for m in fake.sent] == [job_id]
