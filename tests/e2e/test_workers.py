"""Workers as separate processes against one database (SPEC section 7, at least once, leases): killed, stalled,
slower than their lease, stopped gracefully, cut off from the database while recording, and scaled out.

Every test gets an empty database of its own on the session's backend (workers claim every due job in a
database, so other tests' leftovers must not steal their slots), runs `herald migrate`, `herald api` and one or
more `herald worker` processes, delivers to a real receiver on loopback, and checks the jobs and logs tables
directly. Nothing waits on a fixed sleep: the tests wait on receiver arrivals, on a worker's log line, or poll
the database with a deadline.
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import signal
import subprocess
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from aiohttp import web

from herald.db.database import Database
from herald.db.tables import jobs, logs
from tests.support.server import (
    HERALD,
    HeraldProcess,
    Receiver,
    create_store,
    free_port,
    herald_env,
    poll,
    start,
    token,
)

pytestmark = pytest.mark.e2e


# --- databases ----------------------------------------------------------------------------------


@contextmanager
def empty_database(server_url: str, tmp_path: Path) -> Iterator[str]:
    """A new, empty database beside the session's one (same backend and server), dropped afterwards."""
    if server_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'workers.db'}"
        return
    import psycopg

    name = f"herald_workers_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def own_database(database_url: str, tmp_path: Path) -> Iterator[str]:
    """SQLite and PostgreSQL in turn."""
    with empty_database(database_url, tmp_path) as url:
        yield url


@pytest.fixture
def own_postgres(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    with empty_database(postgres_url, tmp_path) as url:
        yield url


# --- processes ----------------------------------------------------------------------------------


class Cluster:
    """`herald api` plus any number of `herald worker` processes on one database; all stopped at teardown."""

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.processes: list[HeraldProcess] = []
        self.api: HeraldProcess | None = None
        self.token = ""
        self.db = Database(database_url)
        self._workers = 0

    async def start_api(self) -> None:
        env = herald_env(self.database_url)
        await asyncio.to_thread(subprocess.run, HERALD + ["migrate"], env=env, check=True, capture_output=True)
        store = await asyncio.to_thread(create_store, self.database_url, "Workers e2e")
        port = free_port()
        self.api = await asyncio.to_thread(start, ["api", "--port", str(port)], env, self.tmp_path / "api.log", port)
        self.processes.append(self.api)
        self.token = await asyncio.to_thread(token, self.api.url, store["client_id"], store["client_secret"])

    async def start_worker(self, **env: str) -> HeraldProcess:
        self._workers += 1
        values = {"HERALD_LOG_LEVEL": "info", **env}
        log_path = self.tmp_path / f"worker-{self._workers}.log"
        worker = await asyncio.to_thread(start, ["worker"], herald_env(self.database_url, **values), log_path)
        self.processes.append(worker)
        return worker

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def create_integration(self, url: str) -> str:
        assert self.api is not None
        body = {
            "data": {
                "type": "integration", "name": "Workers e2e", "enabled": True,
                "observes": ["order.paid"], "configuration": {"url": url},
            }
        }
        async with httpx.AsyncClient(base_url=self.api.url, headers=self.headers) as client:
            r = await client.post("/v2/integrations", json=body)
        assert r.status_code == 201, r.text
        return r.json()["data"]["id"]

    async def publish(self, count: int) -> list[str]:
        """Publish `count` order.paid events in batches of up to 1000; return the job ids in order."""
        assert self.api is not None
        job_ids: list[str] = []
        async with httpx.AsyncClient(base_url=self.api.url, headers=self.headers, timeout=60) as client:
            for first in range(0, count, 1000):
                data = [
                    {"type": "event", "triggered_by": "order.paid", "payload": {"id": f"order-{i}"}}
                    for i in range(first, min(count, first + 1000))
                ]
                r = await client.post("/v2/events", json={"data": data})
                assert r.status_code in (200, 201, 202), r.text
                for event in r.json()["data"]:
                    job_ids.extend(j["id"] for j in event["relationships"]["jobs"]["data"])
        assert len(job_ids) == count
        return job_ids

    async def jobs(self, integration_id: str) -> dict[str, dict[str, Any]]:
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(jobs.c.id, jobs.c.status, jobs.c.attempts, jobs.c.lease_token).where(
                    jobs.c.integration_id == integration_id
                )
            )
            return {r.id: dict(r._mapping) for r in rows}

    async def statuses(self, integration_id: str) -> Counter[str]:
        return Counter(j["status"] for j in (await self.jobs(integration_id)).values())

    async def logs(self, integration_id: str) -> dict[str, list[tuple[int, bool]]]:
        """job id -> [(attempt, succeeded), ...] in attempt order."""
        async with self.db.read() as conn:
            rows = await conn.execute(
                sa.select(logs.c.job_id, logs.c.attempt, logs.c.succeeded)
                .where(logs.c.integration_id == integration_id)
                .order_by(logs.c.job_id, logs.c.attempt)
            )
            out: dict[str, list[tuple[int, bool]]] = defaultdict(list)
            for r in rows:
                out[r.job_id].append((r.attempt, bool(r.succeeded)))
            return dict(out)

    async def close(self) -> None:
        for process in self.processes:
            if process.proc.poll() is None:
                await asyncio.to_thread(process.stop, signal.SIGKILL, 10)
        await self.db.dispose()


@pytest.fixture
async def cluster_for(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[Cluster] = []

    async def make(database_url: str) -> Cluster:
        cluster = Cluster(database_url, tmp_path)
        made.append(cluster)
        await cluster.start_api()
        return cluster

    yield make
    for cluster in made:
        await cluster.close()


async def wait_for_output(process: HeraldProcess, pattern: str, timeout: float = 20) -> re.Match[str]:
    async def read() -> re.Match[str] | None:
        return re.search(pattern, process.output())

    return await poll(read, lambda m: m is not None, timeout=timeout)


async def stopped(process: HeraldProcess, sig: int, timeout: float) -> int | None:
    """Send `sig` and wait (bounded) for the process to exit; its exit code, or None when it did not exit."""
    process.proc.send_signal(sig)
    try:
        return await asyncio.to_thread(process.proc.wait, timeout)
    except subprocess.TimeoutExpired:
        return None


def assert_attempts_recorded_once(logged: dict[str, list[tuple[int, bool]]], job_ids: list[str]) -> None:
    """Each job: exactly one succeeded log, the last one; attempts numbered 1..k with no gap and no repeat."""
    assert set(logged) == set(job_ids), "every job has logs, and only these jobs"
    for job_id in job_ids:
        attempts = [a for a, _ in logged[job_id]]
        assert attempts == list(range(1, len(attempts) + 1)), (job_id, logged[job_id])
        outcomes = [ok for _, ok in logged[job_id]]
        assert outcomes.count(True) == 1 and outcomes[-1] is True, (job_id, logged[job_id])


@pytest.fixture
def release() -> Iterator[asyncio.Event]:
    event = asyncio.Event()
    yield event
    event.set()


# --- 1. a worker killed mid-delivery loses nothing --------------------------------------------------


async def test_sigkilled_worker_loses_nothing_and_every_attempt_is_recorded_once(
    own_database: str, cluster_for: Any, release: asyncio.Event
) -> None:
    """SIGKILL a worker holding leased jobs; after the 2 s lease a new worker delivers every one of them."""
    count, held = 30, 20  # the worker claims all 30; 20 (its per-host limit) reach the receiver and are held
    failing_first: set[str] = set()

    async def handler(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if not release.is_set():
            await release.wait()
        if request.headers["webhook-id"] in failing_first and body["attempt"] == 1:
            return web.Response(status=500, text="try again")
        return web.Response(text="ok")

    cluster = await cluster_for(own_database)
    async with Receiver(handler) as receiver:
        integration_id = await cluster.create_integration(receiver.url())
        first = await cluster.start_worker(HERALD_LEASE_SECONDS="2", HERALD_PER_HOST_CONNECTIONS=str(held))
        job_ids = await cluster.publish(count)
        failing_first.update(job_ids[::2])  # half the jobs need a second attempt after the crash

        await receiver.wait_for(held)
        before = await cluster.jobs(integration_id)
        assert {j["status"] for j in before.values()} == {"delivering"}, before
        assert len({j["lease_token"] for j in before.values()}) == 1, "one claim took them all"

        first.proc.kill()
        assert await asyncio.to_thread(first.proc.wait, 10) == -signal.SIGKILL
        assert not await cluster.logs(integration_id), "the killed worker recorded nothing"

        second = await cluster.start_worker(HERALD_LEASE_SECONDS="2")
        release.set()
        await poll(lambda: cluster.statuses(integration_id), lambda s: s == {"succeeded": count}, timeout=40, every=0.1)

        logged = await cluster.logs(integration_id)
        assert_attempts_recorded_once(logged, job_ids)
        for job_id in job_ids:
            expected = [(1, False), (2, True)] if job_id in failing_first else [(1, True)]
            assert logged[job_id] == expected, (job_id, logged[job_id])
        finished = await cluster.jobs(integration_id)
        assert all(j["attempts"] == len(logged[i]) and j["lease_token"] is None for i, j in finished.items())

        # Every job reached the receiver: the killed worker's 20 held attempts, then the new worker's attempts.
        seen = Counter(r["headers"]["webhook-id"] for r in receiver.requests)
        assert set(seen) == set(job_ids)
        assert all(seen[j] >= len(logged[j]) for j in job_ids)

        assert await stopped(second, signal.SIGTERM, 20) == 0, second.output()


# --- 1b. a delivery slower than the lease: the worker renews its lease, nobody takes it over -------


async def test_delivery_slower_than_the_lease_is_made_once_and_recorded_once(
    own_database: str, cluster_for: Any
) -> None:
    """A 1 s lease and a receiver that takes 4 s: a live worker keeps its leases, so the job is neither taken
    over (by itself or another worker) nor sent again, and its one attempt is recorded."""
    count = 3

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(4)  # a slow receiver, four lease periods long
        return web.Response(text="ok")

    cluster = await cluster_for(own_database)
    async with Receiver(slow) as receiver:
        integration_id = await cluster.create_integration(receiver.url())
        env = {"HERALD_LEASE_SECONDS": "1", "HERALD_DELIVERY_TIMEOUT": "30"}
        workers = [await cluster.start_worker(**env), await cluster.start_worker(**env)]
        job_ids = await cluster.publish(count)
        await poll(lambda: cluster.statuses(integration_id), lambda s: s == {"succeeded": count}, timeout=30, every=0.1)

        logged = await cluster.logs(integration_id)
        assert_attempts_recorded_once(logged, job_ids)
        assert all(entries == [(1, True)] for entries in logged.values())
        seen = Counter(r["headers"]["webhook-id"] for r in receiver.requests)
        assert seen == Counter(job_ids), "no job was sent again while its first attempt was still running"
        for worker in workers:
            assert await stopped(worker, signal.SIGTERM, 30) == 0, worker.output()


# --- 1c. a stalled worker whose lease expired does not record its late attempt ---------------------


async def test_attempt_finishing_after_its_lease_was_taken_over_is_not_recorded(
    own_database: str, cluster_for: Any
) -> None:
    """Worker A stalls (SIGSTOP: a frozen VM, a long GC pause) with its jobs in flight; after A's 2 s lease
    worker B takes them over. When A resumes, its late results are dropped (B holds the lease now), so each
    attempt is recorded once: B's. The receiver sees each job twice (at least once)."""
    count = 10
    release_a, release_b = asyncio.Event(), asyncio.Event()
    arrivals: Counter[str] = Counter()

    async def handler(request: web.Request) -> web.Response:
        job_id = request.headers["webhook-id"]
        arrivals[job_id] += 1
        await (release_a if arrivals[job_id] == 1 else release_b).wait()
        return web.Response(text="ok")

    cluster = await cluster_for(own_database)
    async with Receiver(handler) as receiver:
        stalled: HeraldProcess | None = None
        try:
            integration_id = await cluster.create_integration(receiver.url())
            # A: every job in flight at once (so A claims nothing more), a long delivery timeout.
            stalled = await cluster.start_worker(
                HERALD_LEASE_SECONDS="2", HERALD_DELIVERY_TIMEOUT="60", HERALD_WORKER_CONCURRENCY=str(count)
            )
            job_ids = await cluster.publish(count)
            await receiver.wait_for(count)
            stalled.proc.send_signal(signal.SIGSTOP)
            taken = await cluster.jobs(integration_id)
            # B: claims the jobs once A's lease has expired, and holds them under a lease of its own.
            successor = await cluster.start_worker(HERALD_LEASE_SECONDS="60", HERALD_DELIVERY_TIMEOUT="60")
            await receiver.wait_for(2 * count, timeout=30)
            assert sorted(arrivals.values()) == [2] * count

            release_a.set()  # A's attempts succeed at the receiver, but A no longer holds the lease
            stalled.proc.send_signal(signal.SIGCONT)
            assert await stopped(stalled, signal.SIGTERM, 30) == 0, stalled.output()
            assert "recorded 0 attempts" in stalled.output(), stalled.output()
            now = await cluster.jobs(integration_id)
            assert {j["status"] for j in now.values()} == {"delivering"}, now
            assert len({j["lease_token"] for j in now.values()}) == 1
            assert {j["lease_token"] for j in now.values()}.isdisjoint(j["lease_token"] for j in taken.values())
            assert not await cluster.logs(integration_id), "A's late attempts were not recorded"

            release_b.set()
            await poll(
                lambda: cluster.statuses(integration_id), lambda s: s == {"succeeded": count}, timeout=30, every=0.1
            )
            logged = await cluster.logs(integration_id)
            assert_attempts_recorded_once(logged, job_ids)
            assert all(entries == [(1, True)] for entries in logged.values())
            assert await stopped(successor, signal.SIGTERM, 30) == 0, successor.output()
            assert f"recorded {count} attempts" in successor.output(), successor.output()
        finally:
            if stalled is not None and stalled.proc.poll() is None:
                stalled.proc.send_signal(signal.SIGCONT)
            release_a.set()
            release_b.set()


# --- 2. SIGTERM: finish what is in flight, record it, claim nothing more ----------------------------


async def test_sigterm_finishes_inflight_deliveries_and_leaves_nothing_leased(
    own_database: str, cluster_for: Any, release: asyncio.Event
) -> None:
    count, concurrency, per_host = 40, 10, 5

    async def handler(request: web.Request) -> web.Response:
        if not release.is_set():
            await release.wait()
        return web.Response(text="ok")

    cluster = await cluster_for(own_database)
    async with Receiver(handler) as receiver:
        integration_id = await cluster.create_integration(receiver.url())
        worker = await cluster.start_worker(
            HERALD_WORKER_CONCURRENCY=str(concurrency), HERALD_PER_HOST_CONNECTIONS=str(per_host)
        )
        job_ids = await cluster.publish(count)
        await receiver.wait_for(per_host)
        assert await cluster.statuses(integration_id) == {"delivering": concurrency, "pending": count - concurrency}

        worker.proc.send_signal(signal.SIGTERM)
        inflight = await wait_for_output(worker, r"stopping: no more claims, (\d+) deliveries in flight")
        # Claimed are `concurrency` jobs, but only `per_host` go to one receiver at a time; the others were never
        # started and are not started once stopping.
        assert int(inflight.group(1)) == per_host
        assert re.search(rf"{concurrency - per_host} claimed jobs not started", inflight.string), inflight.string
        release.set()  # the held deliveries now finish
        assert await asyncio.to_thread(worker.proc.wait, 30) == 0, worker.output()
        assert re.search(rf"recorded {per_host} attempts", worker.output()), worker.output()

        after = await cluster.jobs(integration_id)
        statuses = Counter(j["status"] for j in after.values())
        assert statuses == {"succeeded": per_host, "pending": count - per_host}, statuses
        assert all(j["lease_token"] is None for j in after.values()), "nothing is left leased"
        logged = await cluster.logs(integration_id)
        assert {j for j, row in after.items() if row["status"] == "succeeded"} == set(logged)
        assert all(entries == [(1, True)] for entries in logged.values())

        # The rest go to a new worker at once (no lease to wait for), each delivered exactly once in all.
        successor = await cluster.start_worker()
        await poll(lambda: cluster.statuses(integration_id), lambda s: s == {"succeeded": count}, timeout=30, every=0.1)
        logged = await cluster.logs(integration_id)
        assert_attempts_recorded_once(logged, job_ids)
        assert all(entries == [(1, True)] for entries in logged.values())
        seen = Counter(r["headers"]["webhook-id"] for r in receiver.requests)
        assert seen == Counter(job_ids), "no job was delivered twice"
        assert await stopped(successor, signal.SIGTERM, 20) == 0, successor.output()


# --- 3. two workers share one PostgreSQL queue ------------------------------------------------------


class ConcurrencyReceiver(Receiver):
    """Also notes any webhook-id that arrives while a request with the same id is still being answered."""

    def __init__(self) -> None:
        super().__init__(self._answer)
        self.in_flight: Counter[str] = Counter()
        self.overlaps: list[str] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        job_id = request.headers.get("webhook-id", "")
        if self.in_flight[job_id]:
            self.overlaps.append(job_id)
        self.in_flight[job_id] += 1
        try:
            return await super()._handle(request)
        finally:
            self.in_flight[job_id] -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        await asyncio.sleep(random.uniform(0, 0.005))  # a receiver doing a little work, so requests overlap
        return web.Response(text="ok")


async def test_two_workers_share_the_queue_and_deliver_each_job_once(own_postgres: str, cluster_for: Any) -> None:
    count = 2000
    cluster = await cluster_for(own_postgres)
    async with ConcurrencyReceiver() as receiver:
        integration_id = await cluster.create_integration(receiver.url())
        workers = [await cluster.start_worker(), await cluster.start_worker()]
        job_ids = await cluster.publish(count)

        await poll(
            lambda: cluster.statuses(integration_id), lambda s: s == {"succeeded": count}, timeout=60, every=0.25
        )

        logged = await cluster.logs(integration_id)
        assert_attempts_recorded_once(logged, job_ids)
        assert all(entries == [(1, True)] for entries in logged.values())
        seen = Counter(r["headers"]["webhook-id"] for r in receiver.requests)
        assert seen == Counter(job_ids), "each job reached the receiver exactly once"
        assert receiver.overlaps == [], "no webhook-id was ever in flight twice at once"

        recorded = []
        for worker in workers:
            assert await stopped(worker, signal.SIGTERM, 30) == 0, worker.output()
            match = re.search(r"stopped; it recorded (\d+) attempts", worker.output())
            assert match, worker.output()
            recorded.append(int(match.group(1)))
        assert all(n > 0 for n in recorded), f"both workers delivered: {recorded}"
        assert sum(recorded) == count, recorded


# --- 4. the database connection drops while a worker records its attempts -------------------------


async def test_attempts_are_recorded_after_the_database_connection_drops(own_postgres: str, cluster_for: Any) -> None:
    """The worker's pooled connections die (a PostgreSQL restart, a proxy timeout) while deliveries are in
    flight. Recording fails once; the worker must record those attempts on its retry, not drop them and
    deliver every job a second time when the (long) lease expires."""
    import psycopg

    count = 5
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="ok")

    cluster = await cluster_for(own_postgres)
    async with Receiver(handler) as receiver:
        try:
            integration_id = await cluster.create_integration(receiver.url())
            # A long lease and poll interval: after claiming, the worker touches the database only to record.
            worker = await cluster.start_worker(HERALD_LEASE_SECONDS="60", HERALD_WORKER_POLL_INTERVAL="60")
            job_ids = await cluster.publish(count)
            await receiver.wait_for(count)
            assert await cluster.statuses(integration_id) == {"delivering": count}

            await cluster.db.dispose()  # this test's own connections are not the point
            dbname = own_postgres.rsplit("/", 1)[1]
            async with await psycopg.AsyncConnection.connect(own_postgres, autocommit=True) as admin:
                killed = await (
                    await admin.execute(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s"
                        " AND pid <> pg_backend_pid() AND query NOT ILIKE 'LISTEN%%'",
                        (dbname,),
                    )
                ).fetchone()
            assert killed and killed[0] >= 1, "the worker's pooled connection was terminated"

            release.set()
            await poll(
                lambda: cluster.statuses(integration_id), lambda s: s == {"succeeded": count}, timeout=20, every=0.1
            )
            logged = await cluster.logs(integration_id)
            assert_attempts_recorded_once(logged, job_ids)
            assert all(entries == [(1, True)] for entries in logged.values())
            seen = Counter(r["headers"]["webhook-id"] for r in receiver.requests)
            assert seen == Counter(job_ids), "no job was delivered twice"
            assert re.search(r"recording \d+ attempts failed \(.*\); will retry", worker.output()), \
                "the lost connection was noticed"
            assert await stopped(worker, signal.SIGTERM, 30) == 0, worker.output()
            assert f"recorded {count} attempts" in worker.output(), worker.output()
        finally:
            release.set()
