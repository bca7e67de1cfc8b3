"""What every scenario shares: a throwaway database, Herald and receiver processes, an API client, statistics.

A `Session` owns one database and every process started for it, and removes them all when it closes,
whatever happened: no scenario leaves a process or a database behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import orjson
import psycopg

HERALD = [sys.executable, "-m", "herald"]
PG_ADMIN_URL = os.environ.get("HERALD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/postgres")
SECRET_KEY = "herald-bench-secret-key-0123456789abcdef"
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run the load generator on uvloop when it is installed (it is, with uvicorn[standard])."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def postgres_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


# --- databases ------------------------------------------------------------------------------------


class Database:
    """A SQLite file in the session's folder, or a PostgreSQL database created here and dropped on close."""

    def __init__(self, backend: str, folder: Path) -> None:
        self.backend = backend
        if backend == "sqlite":
            self.path = folder / "herald.db"
            self.url = f"sqlite:///{self.path}"
            self._sqlite: sqlite3.Connection | None = None
        elif backend == "postgresql":
            self.name = f"herald_bench_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{self.name}"')
            base = PG_ADMIN_URL.rsplit("/", 1)[0]
            self.url = f"{base}/{self.name}"
            self._pg: psycopg.Connection[Any] | None = None
        else:
            raise ValueError(f"unknown backend {backend!r}")

    def scalar(self, sql: str) -> Any:
        if self.backend == "sqlite":
            if self._sqlite is None:
                self._sqlite = sqlite3.connect(self.path, isolation_level=None, timeout=30, check_same_thread=False)
            return self._sqlite.execute(sql).fetchone()[0]
        if self._pg is None:
            self._pg = psycopg.connect(self.url, autocommit=True)
        return self._pg.execute(sql).fetchone()[0]  # type: ignore[index]

    def count_logs(self) -> int:
        """Exact, but it reads the whole table: for a final check, not for polling."""
        return int(self.scalar("SELECT count(*) FROM logs"))

    def logs_recorded(self) -> int:
        """Herald's running total of log rows (`log_counts`, kept in the transaction that writes the logs): cheap
        enough to poll every 50 ms, where `count(*)` over 100,000 rows would itself load the shared CPUs."""
        return int(self.scalar("SELECT coalesce(sum(count), 0) FROM log_counts"))

    def version(self) -> str:
        if self.backend == "sqlite":
            return f"SQLite {sqlite3.sqlite_version}"
        return f"PostgreSQL {self.scalar('SHOW server_version')}"

    def close(self) -> None:
        if self.backend == "sqlite":
            if self._sqlite is not None:
                self._sqlite.close()
            return
        if self._pg is not None:
            self._pg.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def herald_env(database_url: str, **extra: str) -> dict[str, str]:
    """Herald's defaults, except what a loopback benchmark needs: private receivers allowed, quiet logs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(
        HERALD_DATABASE_URL=database_url,
        HERALD_ALLOW_PRIVATE_NETWORKS="true",
        HERALD_SECRET_KEY=SECRET_KEY,
        HERALD_LOG_LEVEL="warning",
    )
    env.update(extra)
    return env


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self, tail: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def rss_mb(self) -> float | None:
        """VmRSS from /proc, in MiB; None once the process is gone."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (FileNotFoundError, ProcessLookupError):
            pass
        return None

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (0 once the process is gone)."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 20) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)


def _wait(check: Callable[[], bool], proc: Process, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.output()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not {what} within {timeout:.0f} s:\n{proc.output()}")
        time.sleep(0.05)


def _http_ok(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


@dataclass
class Session:
    """One benchmark run on one backend: its folder, its database, its processes. Use it as a context manager."""

    backend: str
    keep_logs: Path | None = None
    processes: list[Process] = field(default_factory=list)

    def __enter__(self) -> Session:
        self.folder = Path(tempfile.mkdtemp(prefix=f"herald-bench-{self.backend}-"))
        self.db = Database(self.backend, self.folder)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        try:
            self.db.close()
        finally:
            if self.keep_logs is not None:
                self.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in self.folder.glob("*.log"):
                    shutil.copy(log, self.keep_logs / f"{self.folder.name}-{log.name}")
            shutil.rmtree(self.folder, ignore_errors=True)

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Process:
        log_path = self.folder / f"{name}-{len(self.processes)}.log"
        with log_path.open("wb") as handle:
            popen = subprocess.Popen(argv, env=env, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        proc = Process(name, popen, log_path)
        self.processes.append(proc)
        return proc

    def receiver(self, record: bool = False) -> Process:
        """The webhook receiver (bench.receiver) in its own process."""
        argv = [sys.executable, "-m", "bench.receiver"] + (["--record"] if record else [])
        env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
        proc = self._spawn("receiver", argv, env)
        _wait(lambda: "listening" in proc.output(), proc, 15, "listen")
        proc.port = int(proc.output().split("listening", 1)[1].split()[0])
        return proc

    def store(self) -> dict[str, str]:
        """`herald stores create --json` (it migrates first), as an operator would run it."""
        out = subprocess.run(
            HERALD + ["stores", "create", "--name", "Bench store", "--json"],
            env=herald_env(self.db.url), capture_output=True, text=True, timeout=60,
        )
        if out.returncode != 0:
            raise RuntimeError(f"herald stores create failed:\n{out.stdout}\n{out.stderr}")
        return dict(orjson.loads(out.stdout.strip().splitlines()[-1]))

    def herald(self, role: str, timeout: float = 60, **env: str) -> Process:
        """`herald serve|api|worker` with Herald's default settings; waits until it serves or has started."""
        port = free_port() if role in ("serve", "api") else None
        argv = HERALD + [role] + (["--port", str(port)] if port else [])
        proc = self._spawn(role, argv, herald_env(self.db.url, **env))
        proc.port = port
        if port is not None:
            _wait(lambda: _http_ok(f"{proc.url}/readyz"), proc, timeout, "become ready")
        else:
            _wait(lambda: "started" in proc.output(), proc, timeout, "start")
        return proc


# --- the API, as a client sees it -----------------------------------------------------------------


class Api:
    """An aiohttp client for one Herald API process, signed in as one store."""

    def __init__(self, base_url: str, credentials: dict[str, str], connections: int = 64) -> None:
        self.base_url = base_url
        self.credentials = credentials
        self.connections = connections

    async def __aenter__(self) -> Api:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.connections), json_serialize=lambda o: orjson.dumps(o).decode()
        )
        async with self.session.post(
            f"{self.base_url}/oauth/access_token",
            data={
                "grant_type": "client_credentials",
                **{k: self.credentials[k] for k in ("client_id", "client_secret")},
            },
        ) as r:
            r.raise_for_status()
            token = (await r.json())["access_token"]
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def post(self, path: str, doc: Any, expect: int) -> Any:
        async with self.session.post(f"{self.base_url}{path}", data=orjson.dumps(doc), headers=self.headers) as r:
            body = await r.read()
            if r.status != expect:
                raise RuntimeError(f"POST {path} answered {r.status}: {body[:300]!r}")
            return orjson.loads(body)

    async def get(self, path: str, params: dict[str, str] | None = None) -> tuple[int, Any]:
        async with self.session.get(f"{self.base_url}{path}", params=params, headers=self.headers) as r:
            return r.status, orjson.loads(await r.read())

    async def create_integration(self, url: str, name: str = "Bench webhook", enabled: bool = True) -> str:
        doc = {"data": {"type": "integration", "name": name, "enabled": enabled, "observes": ["order.paid"],
                        "configuration": {"url": url}}}
        return str((await self.post("/v2/integrations", doc, 201))["data"]["id"])

    async def publish_one(self, payload: dict[str, Any]) -> str:
        """One event, not a batch; answers its id."""
        doc = {"data": {"type": "event", "triggered_by": "order.paid", "payload": payload}}
        return str((await self.post("/v2/events", doc, 202))["data"]["id"])

    async def publish(self, payloads: list[dict[str, Any]]) -> Any:
        """One batch request (`data` is a list), whatever its size."""
        doc = {"data": [{"type": "event", "triggered_by": "order.paid", "payload": p} for p in payloads]}
        return await self.post("/v2/events", doc, 202)

    async def publish_backlog(self, n: int, batch: int = 1000) -> None:
        for start in range(0, n, batch):
            await self.publish([order(i) for i in range(start, min(n, start + batch))])


def order(i: int, **extra: Any) -> dict[str, Any]:
    """A small, realistic order payload (about 200 bytes)."""
    return {"id": f"order-{i:08d}", "type": "order", "status": "paid", "payment": "paid",
            "meta": {"display_price": {"with_tax": {"amount": 4999, "currency": "USD"}}}, **extra}


# --- waiting and statistics -----------------------------------------------------------------------


async def wait_until(
    fn: Callable[[], Awaitable[T]], until: Callable[[T], bool], timeout: float, every: float = 0.05
) -> T:
    """Call `fn` until `until(result)` holds; fail with the last result when the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = await fn()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout:.0f} s; last result: {result!r}")
        await asyncio.sleep(every)


async def wait_for_logs(db: Database, n: int, timeout: float) -> float:
    """Poll the recorded-logs total (in a thread, so the event loop stays free) until it reaches n; the monotonic
    time then. The rows themselves are counted once at the end, and must agree."""
    await wait_until(lambda: asyncio.to_thread(db.logs_recorded), lambda c: c >= n, timeout, every=0.05)
    done = time.monotonic()
    rows = await asyncio.to_thread(db.count_logs)
    if rows != await asyncio.to_thread(db.logs_recorded):
        raise RuntimeError(f"the logs table holds {rows} rows, but Herald's totals say otherwise")
    return done


async def paced(count: int, rate: float, one: Callable[[int], Awaitable[None]]) -> None:
    """Start `one(i)` for i in range(count), `rate` per second on a fixed schedule (a late start does not push the
    later ones back), each as a task of its own, and wait for all of them."""
    start = time.monotonic()
    tasks = []
    for i in range(count):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    await asyncio.gather(*tasks)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


@dataclass
class Context:
    """What a scenario is told: the mode (quick or full), where to keep process logs, where to put plot data."""

    mode: str
    profile: bool = False
    keep_logs: Path | None = None
    details: dict[str, dict[str, Any]] = field(default_factory=dict)

    def session(self, backend: str) -> Session:
        return Session(backend, self.keep_logs)

    def detail(self, scenario: str, backend: str, value: Any) -> None:
        self.details.setdefault(scenario, {})[backend] = value

    @contextlib.contextmanager
    def profiled(self, scenario: str, backend: str, proc: Process) -> Iterator[None]:
        """With --profile: py-spy `proc` for the block; its summary goes into details["profile"]."""
        if not self.profile:
            yield
            return
        from bench import profile

        raw = Path(__file__).resolve().parent / "results" / f"profile-{scenario}-{backend}.txt"
        with profile.record(proc.pid, raw):
            yield
        if raw.exists():
            self.detail("profile", f"{scenario}/{backend}", profile.summarise(raw))
