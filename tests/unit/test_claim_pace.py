"""A backlog deeper than an integration's share is claimed again as soon as its held jobs are recorded, not one
share per poll interval."""

from __future__ import annotations

import sqlalchemy as sa

from herald.db.tables import jobs
from herald.delivery.transports.base import Delivered
from herald.delivery.transports.fake import FakeTransport
from tests.support.server import poll
from tests.unit.test_worker_loop import Harness, _running, harness

__all__ = ["harness"]  # the fixture, shared with test_worker_loop


async def test_a_backlog_beyond_the_share_flows_without_waiting_for_the_poll(harness: Harness) -> None:
    integration_id = await harness.integration()
    items = [{"type": "event", "triggered_by": "order.paid", "payload": {"n": i}} for i in range(40)]
    r = await harness.client.post("/v2/events", json={"data": items}, headers=harness.store.headers)
    assert r.status_code == 202, r.text
    fake = FakeTransport(lambda m: Delivered(200, ""))
    # a share of 5 and a poll interval far longer than the test: 8 shares in a row need 8 prompt claims
    worker = await _running(harness.worker(fake, [], claim_per_integration=5, worker_poll_interval=60))
    try:
        async def succeeded() -> int:
            async with harness.app.state.db.read() as conn:
                return int((await conn.execute(sa.select(sa.func.count()).where(
                    jobs.c.integration_id == integration_id, jobs.c.status == "succeeded"))).scalar_one())

        await poll(succeeded, lambda n: n == 40, timeout=15)
    finally:
        await worker.stop()
