"""Database outages caused for real, under a publish-and-deliver load.

PostgreSQL: `herald serve` reaches its database through a TCP proxy in this test. Mid-load, every connection is
killed with pg_terminate_backend, then the proxy is cut for 10 s (live connections closed, new ones refused) and
restored. Afterwards every accepted event is delivered, every attempt is recorded once, no job has two recorded
successes, and the API answered only 2xx or 503 (each 503 within 2 s, with Retry-After).

SQLite: another process holding the file's write lock, or a disk filled for real (a small tmpfs, so this needs
root; HERALD_REQUIRE_FAULTS=1 makes it fail rather than skip without), gives a clear 503, reads go on, and the file
stays intact."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from herald.db.migrate import upgrade
from tests.support.databases import dedicated_database
from tests.support.server import HeraldProcess, Receiver, create_store, poll, serve, token

pytestmark = pytest.mark.e2e


class Proxy:
    """A TCP proxy to PostgreSQL that the test can cut (close every connection, refuse new ones) and restore."""

    def __init__(self, target_port: int = 5432) -> None:
        self.target_port = target_port
        self.port = 0
        self.cut_off = False
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.StreamWriter] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._pipes |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._pipes -= {writer, up_writer}

    async def cut(self) -> None:
        """Close the listener and every connection: the database is unreachable."""
        self.cut_off = True
        assert self._server is not None
        self._server.close()
        for w in list(self._pipes):
            w.transport.abort()
        self._pipes.clear()

    async def restore(self) -> None:
        self.cut_off = False
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._pipes):
            w.transport.abort()


@pytest.fixture
def pg_database(request: pytest.FixtureRequest) -> Iterator[str]:
    with dedicated_database(request, "postgresql", "outage") as url:
        upgrade(url)
        yield url


def _through(url: str, port: int) -> str:
    base, _, name = url.rpartition("/")
    host = base.rsplit("@", 1)
    return f"{host[0]}@127.0.0.1:{port}/{name}" if len(host) == 2 else f"postgresql://127.0.0.1:{port}/{name}"


async def test_connections_killed_and_the_database_cut_for_10s(pg_database: str, tmp_path: Path) -> None:
    proxy = await Proxy().start()
    store = create_store(pg_database, "Outage")
    herald: HeraldProcess = await asyncio.to_thread(
        serve, _through(pg_database, proxy.port), tmp_path, HERALD_RETRY_SCHEDULE="0.5,0.5,1,1,2,2,5,5,5,5",
        HERALD_LEASE_SECONDS="30", HERALD_DELIVERY_TIMEOUT="5", HERALD_SECRET_KEY="outage-test-key-0123456789abcdef",
    )
    answers: list[tuple[int, float, str | None]] = []  # status, seconds, Retry-After
    accepted: list[str] = []  # job ids of accepted events
    stop = asyncio.Event()
    try:
        async with Receiver() as receiver:
            async with signed_in(herald, store) as api:
                await hook(api, receiver.url("/hook"))

                async def publisher() -> None:
                    n = 0
                    while not stop.is_set():
                        body = {"data": [{"type": "event", "triggered_by": "order.paid", "payload": {"n": n + i}}
                                         for i in range(25)]}
                        n += 25
                        t = time.monotonic()
                        try:
                            r = await api.post("/v2/events", json=body)
                        except httpx.HTTPError as exc:
                            answers.append((-1, time.monotonic() - t, repr(exc)))
                            continue
                        answers.append((r.status_code, time.monotonic() - t, r.headers.get("retry-after")))
                        if r.status_code == 202:
                            accepted.extend(j["id"] for e in r.json()["data"]
                                            for j in e["relationships"]["jobs"]["data"])
                            await asyncio.sleep(0.02)  # a steady load, about 1,000 events/s at most
                        else:
                            await asyncio.sleep(0.1)  # a client backing off, as Retry-After asks

                task = asyncio.create_task(publisher())
                await poll(lambda: _count(accepted), lambda n: n >= 1000, timeout=60, every=0.1)
                # 1. every connection of the database killed mid-load
                with psycopg.connect(pg_database, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                  " WHERE datname = current_database() AND pid <> pg_backend_pid()")
                await poll(lambda: _count(accepted), lambda n: n >= 2000, timeout=60, every=0.1)
                # 2. the database unreachable for 10 s
                await proxy.cut()
                cut_at = time.monotonic()
                ready = await api.get("/readyz")
                assert ready.status_code == 503, ready.text
                await asyncio.sleep(max(0.0, 10 - (time.monotonic() - cut_at)))  # the outage lasts 10 s
                seen_during_cut = len(answers)
                await proxy.restore()
                restored = time.monotonic()
                await poll(lambda: _ready(api), lambda ok: ok, timeout=30, every=0.2)
                back_in = time.monotonic() - restored
                more = len(accepted) + 500
                await poll(lambda: _count(accepted), lambda n: n >= more, timeout=60, every=0.1)
                stop.set()
                await task

                # every accepted event delivered, every attempt recorded once
                await poll(lambda: _statuses(pg_database, accepted), lambda s: s == {"succeeded": len(accepted)},
                           timeout=120, every=0.5)
    finally:
        stop.set()
        herald.stop()
        await proxy.close()

    kinds = Counter(status for status, _, _ in answers)
    assert set(kinds) <= {202, 503}, kinds
    assert kinds[503] > 0 and seen_during_cut > 0, kinds  # the outage was met, and answered
    slow = [(s, round(t, 2)) for s, t, _ in answers if s == 503 and t > 2.5]
    assert slow == [], slow
    assert all(after == "2" for s, _, after in answers if s == 503)
    assert back_in < 10, f"ready again {back_in:.1f} s after the database came back"
    with psycopg.connect(pg_database) as conn:
        logged = conn.execute("SELECT job_id, attempt, succeeded FROM logs WHERE job_id = ANY(%s)",
                              (accepted,)).fetchall()
    recorded_once(logged, accepted)
    delivered = Counter(q["headers"]["webhook-id"] for q in receiver.requests)
    assert set(delivered) >= set(accepted)


@contextlib.asynccontextmanager
async def signed_in(herald: HeraldProcess, store: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `herald` with the store's token."""
    tok = await asyncio.to_thread(token, herald.url, store["client_id"], store["client_secret"])
    async with httpx.AsyncClient(base_url=herald.url, timeout=30, headers={"Authorization": f"Bearer {tok}"}) as api:
        yield api


async def hook(api: httpx.AsyncClient, url: str) -> None:
    """An enabled webhook integration observing order.paid."""
    r = await api.post("/v2/integrations", json={"data": {
        "type": "integration", "name": "Hook", "integration_type": "webhook", "enabled": True,
        "observes": ["order.paid"], "configuration": {"url": url}}})
    assert r.status_code == 201, r.text


def recorded_once(logged: list[tuple[str, int, bool]], accepted: list[str]) -> None:
    """Logs (job id, attempt, succeeded): no attempt recorded twice, and every accepted job succeeded once."""
    attempts = Counter((job, attempt) for job, attempt, _ in logged)
    assert max(attempts.values()) == 1, "an attempt was recorded twice"
    successes = Counter(job for job, _, ok in logged if ok)
    assert set(successes) == set(accepted) and max(successes.values()) == 1


async def _count(items: list[str]) -> int:
    return len(items)


async def _ready(api: httpx.AsyncClient) -> bool:
    try:
        return (await api.get("/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


async def _statuses(url: str, job_ids: list[str]) -> dict[str, int]:
    def read() -> dict[str, int]:
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT status, count(*) FROM jobs WHERE id = ANY(%s) GROUP BY status",
                                (job_ids,)).fetchall()
        return {s: int(n) for s, n in rows}

    return await asyncio.to_thread(read)


async def test_a_locked_sqlite_file_is_a_clear_503_and_reads_go_on(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    store = create_store(url, "Outage")
    herald = await asyncio.to_thread(serve, url, tmp_path, HERALD_SECRET_KEY="locked-test-key-0123456789abcdef")
    holder: sqlite3.Connection | None = None
    try:
        async with signed_in(herald, store) as api:
            holder = sqlite3.connect(path, isolation_level=None, timeout=0)
            holder.execute("BEGIN IMMEDIATE")  # another process's long write transaction
            t = time.monotonic()
            r = await api.post("/v2/events", json={"data": {"type": "event", "triggered_by": "order.paid",
                                                            "payload": {}}})
            waited = time.monotonic() - t
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "2"
            assert r.json()["errors"][0]["title"] == "Service Unavailable"
            assert waited < 10
            listed = await api.get("/v2/integrations")  # reads do not need the write lock (WAL)
            assert listed.status_code == 200
            # the dashboard's sign-in writes a session: a page a person can read, not the API's JSON
            async with httpx.AsyncClient(base_url=herald.url, timeout=30) as browser:
                form = await browser.get("/dashboard/sign-in")
                csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
                assert form.status_code == 200 and csrf, form.text
                signed = await browser.post("/dashboard/sign-in", data={
                    "csrf": csrf.group(1), "client_id": store["client_id"], "client_secret": store["client_secret"],
                    "next": "/dashboard"})
            assert signed.status_code == 503, signed.text
            assert signed.headers["content-type"].startswith("text/html")
            assert signed.headers["retry-after"] == "2"
            assert "Service unavailable" in signed.text and "Reload this page in a few seconds" in signed.text
            holder.execute("ROLLBACK")
            r = await api.post("/v2/events", json={"data": {"type": "event", "triggered_by": "order.paid",
                                                            "payload": {}}})
            assert r.status_code == 202, r.text
    finally:
        if holder is not None:
            holder.close()
        herald.stop()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


REQUIRE_FAULTS = os.environ.get("HERALD_REQUIRE_FAULTS", "") not in ("", "0", "false")


@contextlib.contextmanager
def small_disk(where: Path, size: str = "16m") -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` (needs root): a disk this test can fill for real."""
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        why = f"a full disk needs a tmpfs mount: {done.stderr.strip() or done.returncode}"
        if REQUIRE_FAULTS:
            pytest.fail(f"{why} (HERALD_REQUIRE_FAULTS=1)")
        pytest.skip(why)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(path: Path) -> int:
    """Write `path` until the disk is full; the bytes written."""
    chunk = b"\0" * 65536
    written = 0
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                return written


async def test_a_full_sqlite_disk_is_a_clear_503_and_nothing_accepted_is_lost(tmp_path: Path) -> None:
    """`herald serve` on a SQLite file on a small disk, filled for real mid-way: publishing answers 503 with
    Retry-After (or 202 while the write-ahead log still has room), reads go on, deliveries made meanwhile are
    recorded once the disk has room again, and the file is intact."""
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "herald.db"
        url = f"sqlite:///{path}"
        store = create_store(url, "Full disk")
        herald = await asyncio.to_thread(serve, url, tmp_path, HERALD_SECRET_KEY="full-disk-test-key-0123456789abcd",
                                         HERALD_RETRY_SCHEDULE="0.5,0.5,1,1,2")
        accepted: list[str] = []
        answers: list[tuple[int, str | None]] = []
        try:
            async with Receiver() as receiver:
                async with signed_in(herald, store) as api:
                    await hook(api, receiver.url("/hook"))

                    async def publish(size: int) -> int:
                        body = {"data": [{"type": "event", "triggered_by": "order.paid",
                                          "payload": {"n": len(accepted), "pad": "x" * size}} for _ in range(10)]}
                        r = await api.post("/v2/events", json=body)
                        answers.append((r.status_code, r.headers.get("retry-after")))
                        if r.status_code == 202:
                            accepted.extend(j["id"] for e in r.json()["data"]
                                            for j in e["relationships"]["jobs"]["data"])
                        return r.status_code

                    for _ in range(10):
                        assert await publish(100) == 202
                    filler = disk / "filler"
                    assert fill(filler) > 0
                    refused = None
                    for _ in range(50):  # large events, until the log needs room the disk has not got
                        if await publish(100_000) == 503:
                            refused = answers[-1]
                            break
                    assert refused == (503, "2"), answers[-5:]
                    listed = await api.get("/v2/integrations")  # reads go on
                    assert listed.status_code == 200, listed.text
                    filler.unlink()
                    await poll(lambda: publish(100), lambda status: status == 202, timeout=30, every=0.5)
                    await poll(lambda: _sqlite_statuses(path, accepted), lambda s: s == {"succeeded": len(accepted)},
                               timeout=120, every=0.5)
        finally:
            herald.stop()
        assert {status for status, _ in answers} <= {202, 503}, answers
        assert all(after == "2" for status, after in answers if status == 503)
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            marks = ",".join("?" * len(accepted))
            logged = conn.execute(f"SELECT job_id, attempt, succeeded FROM logs WHERE job_id IN ({marks})",
                                  accepted).fetchall()
        recorded_once(logged, accepted)


async def _sqlite_statuses(path: Path, job_ids: list[str]) -> dict[str, int]:
    def read() -> dict[str, int]:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
            marks = ",".join("?" * len(job_ids))
            rows = conn.execute(f"SELECT status, count(*) FROM jobs WHERE id IN ({marks}) GROUP BY status",
                                job_ids).fetchall()
        return {s: int(n) for s, n in rows}

    return await asyncio.to_thread(read)
