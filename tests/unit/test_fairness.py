"""Claims shared fairly between integrations, and the circuit breaker, on SQLite and PostgreSQL: the real queue,
a fake transport (no sockets)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from herald.db import queue
from herald.db.driver_sql import Driver
from herald.db.queue import Fairness, _shares
from herald.db.tables import integrations, jobs
from herald.delivery.transports.base import Delivered, DeliveryFailed
from herald.delivery.transports.fake import FakeTransport
from herald.domain.ids import utcnow
from tests.support.server import poll
from tests.unit.test_worker_loop import Harness, _running, harness

__all__ = ["harness"]  # the fixture, shared with test_worker_loop


async def backlog(h: Harness, integration_id: str, count: int) -> None:
    """`count` due jobs for one integration (published in batches, as a store would)."""
    for start in range(0, count, 500):
        items = [{"type": "event", "triggered_by": "order.paid", "payload": {"n": i}}
                 for i in range(start, min(count, start + 500))]
        r = await h.client.post("/v2/events", json={"data": items}, headers=h.store.headers)
        assert r.status_code == 202, r.text


async def by_integration(h: Harness, status: str) -> dict[str, int]:
    async with h.app.state.db.read() as conn:
        rows = await conn.execute(sa.select(jobs.c.integration_id, sa.func.count()).where(
            jobs.c.store_id == h.store.id, jobs.c.status == status).group_by(jobs.c.integration_id))
        return {i: int(n) for i, n in rows}


def test_slots_are_dealt_in_turn_up_to_each_allowance() -> None:
    now = utcnow()
    db = Driver.__new__(Driver)  # only ts_out is used, on values that are already datetimes
    db._sqlite = None  # type: ignore[attr-defined]
    rows = [
        ("old", now - timedelta(minutes=5), 0, 0, None, "s"),  # oldest due: first in each turn
        ("full", now - timedelta(minutes=4), 3, 0, None, "s"),  # holds all it may
        ("new", now - timedelta(seconds=1), 1, 0, None, "s"),
        ("later", now + timedelta(seconds=30), 0, 0, None, "s"),  # nothing due yet
        ("open", now - timedelta(minutes=9), 0, 5, now + timedelta(seconds=20), "s"),  # breaker open
        ("probe", now - timedelta(minutes=8), 0, 5, now - timedelta(seconds=1), "s"),  # breaker due a probe
    ]
    shares, probes, next_due = _shares(rows, 7, now, Fairness(per_integration=3, breaker_failures=5), db)
    assert shares == {"probe": 1, "old": 3, "new": 2}
    assert probes == {"probe"}
    assert next_due == now + timedelta(seconds=20)  # the open breaker's probe time comes before `later`


def test_stores_take_turns_before_their_integrations_do() -> None:
    """A store with many integrations gets no more of a contended claim than a store with one: each store in
    turn (oldest due first), and within a store its integrations in turn."""
    now = utcnow()
    db = Driver.__new__(Driver)
    db._sqlite = None  # type: ignore[attr-defined]
    due = now - timedelta(seconds=1)
    rows = [(f"big-{i}", due - timedelta(seconds=i), 0, 0, None, "big") for i in range(10)]
    rows.append(("small", due, 0, 0, None, "small"))
    shares, _, _ = _shares(rows, 10, now, Fairness(per_integration=100), db)
    assert shares["small"] == 5 and sum(n for iid, n in shares.items() if iid.startswith("big-")) == 5
    # the big store's oldest integrations first, one slot each
    assert {iid for iid in shares if iid.startswith("big-")} == {f"big-{i}" for i in range(5, 10)}
    # uncontended, everyone gets what it may hold
    shares, _, _ = _shares(rows, 10_000, now, Fairness(per_integration=3), db)
    assert set(shares.values()) == {3} and len(shares) == 11


async def test_a_claim_is_shared_between_stores_on_the_real_queue(harness: Harness) -> None:
    from tests.support.helpers import new_store, webhook_body

    big = [await harness.integration(name=f"Big {i}") for i in range(4)]
    await backlog(harness, big[0], 30)  # each event goes to all four of the big store's integrations
    other = await new_store(harness.app, harness.client, "Small store")
    r = await harness.client.post("/v2/integrations", json=webhook_body(enabled=True), headers=other.headers)
    assert r.status_code == 201, r.text
    small = r.json()["data"]["id"]
    for start in (0, 15):
        r = await harness.client.post("/v2/events", headers=other.headers, json={"data": [
            {"type": "event", "triggered_by": "order.paid", "payload": {"n": i}} for i in range(start, start + 15)]})
        assert r.status_code == 202, r.text
    async with harness.app.state.db.write() as conn:
        claimed, _ = await queue.claim(conn, 20, 60, utcnow(), Fairness(per_integration=100))
    taken = {i: sum(1 for j in claimed if j.integration_id == i) for i in [*big, small]}
    assert taken[small] == 10 and sum(taken[i] for i in big) == 10, taken
    assert all(taken[i] in (2, 3) for i in big), taken


async def test_one_integrations_backlog_does_not_take_every_claim(harness: Harness) -> None:
    busy = await harness.integration(name="Busy")
    quiet = await harness.integration(name="Quiet", observes=["order.fulfilled"])
    await backlog(harness, busy, 300)
    for _ in range(3):
        r = await harness.client.post("/v2/events", headers=harness.store.headers, json={"data": {
            "type": "event", "triggered_by": "order.fulfilled", "payload": {}}})
        assert r.status_code == 202
    fair = Fairness(per_integration=20)
    async with harness.app.state.db.write() as conn:
        first, _ = await queue.claim(conn, 100, 60, utcnow(), fair)
    taken = {i: sum(1 for j in first if j.integration_id == i) for i in (busy, quiet)}
    assert taken == {busy: 20, quiet: 3}
    async with harness.app.state.db.write() as conn:
        second, _ = await queue.claim(conn, 100, 60, utcnow(), fair)
    assert second == []  # the busy integration holds its share; the rest of its backlog waits in the database
    assert (await by_integration(harness, "pending")).get(busy) == 280
    # held jobs given back (a worker stopping) free the shares again
    async with harness.app.state.db.write() as conn:
        await queue.release(conn, [first[0].lease_token], utcnow())
        third, _ = await queue.claim(conn, 100, 60, utcnow(), fair)
    assert sorted(j.integration_id for j in third) == sorted([busy] * 20 + [quiet] * 3)


async def test_an_integration_failing_in_a_row_is_probed_not_flooded(harness: Harness) -> None:
    dead = await harness.integration(name="Dead")
    healthy = await harness.integration(name="Healthy", observes=["order.fulfilled"])
    calls: dict[str, int] = {}

    def answer(message: object) -> Delivered | DeliveryFailed:
        iid = message.integration_id  # type: ignore[attr-defined]
        calls[iid] = calls.get(iid, 0) + 1
        return DeliveryFailed("down", status=503) if iid == dead else Delivered(200, "")

    fake = FakeTransport(answer)
    await backlog(harness, dead, 60)
    worker = await _running(harness.worker(fake, [], retry_schedule="0.05,0.05,0.05", breaker_failures=5,
                                           breaker_probe_interval=3600, per_integration_inflight=1,
                                           claim_per_integration=1))
    try:
        async def breaker() -> tuple[int, object]:
            async with harness.app.state.db.read() as conn:
                row = (await conn.execute(sa.select(integrations.c.consecutive_failures,
                                                    integrations.c.breaker_until).where(
                    integrations.c.id == dead))).one()
                return int(row[0]), row[1]

        failures, until = await poll(breaker, lambda b: b[0] >= 5 and b[1] is not None)
        sent = calls[dead]
        # the healthy integration goes on while the dead one's breaker is open
        r = await harness.client.post("/v2/events", headers=harness.store.headers, json={"data": {
            "type": "event", "triggered_by": "order.fulfilled", "payload": {}}})
        assert r.status_code == 202
        await harness.logs(healthy, 1)  # claims went on after the breaker opened, and skipped the dead one
        assert calls[dead] == sent <= 6, calls
        assert (await by_integration(harness, "pending")).get(dead, 0) >= 50
        # the probe time comes: one attempt; it succeeds, the breaker closes and the backlog flows
        fake.script = lambda m: Delivered(200, "")
        async with harness.app.state.db.write() as conn:
            await conn.execute(integrations.update().where(integrations.c.id == dead).values(
                breaker_until=utcnow() - timedelta(seconds=1)))
        harness.app.state.db.notifier.wake()
        await poll(lambda: by_integration(harness, "succeeded"), lambda s: s.get(dead, 0) == 60, timeout=30)
        failures, until = await breaker()
        assert (failures, until) == (0, None)
    finally:
        await worker.stop()


async def test_one_event_to_many_integrations_is_one_transaction_and_all_delivered(harness: Harness) -> None:
    from herald.db.tables import logs

    ids = [await harness.integration(name=f"Fan {i}") for i in range(300)]
    r = await harness.client.post("/v2/events", headers=harness.store.headers, json={"data": {
        "type": "event", "triggered_by": "order.paid", "payload": {"id": "o-fan"}}})
    assert r.status_code == 202
    assert len(r.json()["data"]["relationships"]["jobs"]["data"]) == 300  # accepted with all its jobs at once
    fake = FakeTransport(lambda m: Delivered(200, ""))
    worker = await _running(harness.worker(fake, []))
    try:
        async def delivered() -> dict[str, int]:
            async with harness.app.state.db.read() as conn:
                rows = await conn.execute(sa.select(logs.c.integration_id, sa.func.count()).where(
                    logs.c.store_id == harness.store.id).group_by(logs.c.integration_id))
                return {i: int(n) for i, n in rows}

        found = await poll(delivered, lambda d: len(d) == 300, timeout=60)
    finally:
        await worker.stop()
    assert set(found) == set(ids) and set(found.values()) == {1}


async def test_a_hanging_receiver_leaves_its_hosts_other_integrations_their_connections(harness: Harness) -> None:
    """Real webhook transport, one loopback receiver for both integrations: /slow hangs until the test ends, /ok
    answers at once. The stuck integration gets at most its own in-flight share of the host's connections and
    the healthy one is delivered beside it (with one limit for both, as aiohttp's per-host pool alone gave, the
    stuck integration took every connection to the host and the healthy one waited for the timeout)."""
    from aiohttp import web

    from herald.delivery.worker import Worker
    from tests.support.helpers import make_settings
    from tests.support.server import Receiver

    hang = asyncio.Event()
    open_slow = 0
    most_slow = 0

    async def slow_open() -> int:
        return open_slow

    async def handler(request: web.Request) -> web.Response:
        nonlocal open_slow, most_slow
        if request.path == "/slow":
            open_slow += 1
            most_slow = max(most_slow, open_slow)
            try:
                await hang.wait()
            finally:
                open_slow -= 1
        return web.Response(text="ok")

    async with Receiver(handler) as receiver:
        stuck = await harness.integration(name="Stuck", configuration={"url": receiver.url("/slow")})
        healthy = await harness.integration(name="Healthy", observes=["order.fulfilled"],
                                            configuration={"url": receiver.url("/ok")})
        await backlog(harness, stuck, 200)
        settings = make_settings(harness.database_url, per_integration_inflight=4, per_host_connections=6,
                                 delivery_timeout=60, claim_per_integration=50)
        worker = await _running(Worker(settings, harness.app.state.db))
        try:
            await poll(slow_open, lambda n: n == 4)
            for _ in range(20):
                r = await harness.client.post("/v2/events", headers=harness.store.headers, json={"data": {
                    "type": "event", "triggered_by": "order.fulfilled", "payload": {}}})
                assert r.status_code == 202
            await poll(lambda: by_integration(harness, "succeeded"), lambda s: s.get(healthy, 0) == 20)
            assert (open_slow, most_slow) == (4, 4)
            assert worker.waiting == 46  # the rest of the stuck one's claimed share waits in the worker
        finally:
            hang.set()
            await worker.stop()


async def test_jobs_waiting_in_the_worker_go_back_to_the_database_when_the_breaker_opens(harness: Harness) -> None:
    """Share 20, two in flight, breaker after 2 failures. The first attempt fails (the next job takes its place
    and hangs), then the second: that failure opens the breaker, and the 17 jobs still waiting in the worker go
    back to the database unsent instead of going out one after the other at a dead receiver."""
    dead = await harness.integration(name="Dead")
    first, second, never = asyncio.Event(), asyncio.Event(), asyncio.Event()
    gates: list[asyncio.Event] = [first, second]

    async def answer(message: object) -> Delivered | DeliveryFailed:
        await (gates.pop(0) if gates else never).wait()
        return DeliveryFailed("down", status=503)

    fake = FakeTransport(answer)
    await backlog(harness, dead, 30)
    worker = await _running(harness.worker(fake, [], breaker_failures=2, breaker_probe_interval=3600,
                                           per_integration_inflight=2, claim_per_integration=20))
    try:
        await fake.wait_sent(2)
        assert worker.waiting == 18
        first.set()
        await fake.wait_sent(3)  # the first failure hands its place over, as usual
        second.set()
        await poll(lambda: by_integration(harness, "pending"), lambda p: p.get(dead, 0) == 29)
        # a claim made before the opening failure was recorded is given back too, as it reaches the worker
        assert (len(fake.sent), worker.waiting, worker.inflight) == (3, 0, 1)
        # given back as they were: no attempt counted, nobody's lease
        async with harness.app.state.db.read() as conn:
            rows = (await conn.execute(sa.select(jobs.c.attempts, jobs.c.lease_token).where(
                jobs.c.integration_id == dead, jobs.c.status == "pending"))).all()
        assert sorted(rows) == [(0, None)] * 27 + [(1, None)] * 2  # 10 never claimed, 17 given back; 2 retries
    finally:
        never.set()
        await worker.stop()
