"""Engine set-up for both backends, and the two ways in: a read connection and a write transaction."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from herald.db.notify import JOBS_DUE, Notifier

BUSY_WAIT = 0.05  # seconds a statement may block on another process's lock before we back off
WRITE_LOCK_WAIT = 5.0  # seconds a write waits for another process's write lock in all (then: database is locked)
POOL_WAIT = 2.0  # seconds a PostgreSQL request waits for a pooled connection before giving up (503)


def async_url(url: str) -> str:
    """Map a plain `sqlite:///` or `postgresql://` URL to the async driver Herald uses."""
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    elif backend in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    else:
        raise ValueError(f"unsupported database URL {url!r}: use sqlite:///FILE or postgresql://USER@HOST/DB")
    return parsed.render_as_string(hide_password=False)


def sync_url(url: str) -> str:
    parsed = make_url(async_url(url))
    driver = "sqlite" if parsed.get_backend_name() == "sqlite" else "postgresql+psycopg"
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


class _InlineQueue:
    """Stands in for aiosqlite's queue to its thread: runs the call at once and settles its future."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Any]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class InlineSQLiteConnection(aiosqlite.Connection):
    """aiosqlite's interface, run on the event loop's own thread.

    A local SQLite statement takes microseconds; handing each one to a helper thread and back costs more
    (thread wake-ups and GIL hand-offs) than the statement itself. Waiting for another process's write
    lock is not done here by blocking: `Database.write` retries BEGIN IMMEDIATE with an async back-off.
    """

    def __init__(self, connector: Any, iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        self._tx = _InlineQueue()  # type: ignore[assignment]  # SQLAlchemy posts some calls here directly

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineSQLiteConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Generator[Any, None, InlineSQLiteConnection]:
        return self._connect().__await__()

    def stop(self) -> None:
        self._running = False
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def _inline_creator(path: str) -> Any:
    async def create() -> InlineSQLiteConnection:
        def connector() -> sqlite3.Connection:
            return sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=BUSY_WAIT)

        return await InlineSQLiteConnection(connector, 64)

    return create


def _sqlite_setup(engine: AsyncEngine) -> None:
    """WAL, a busy timeout and our own BEGIN (IMMEDIATE for writes) so that nobody sees 'database is locked'."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()  # opened with isolation_level=None: we emit BEGIN ourselves
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_WAIT * 1000)}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("herald_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """One engine per process. On SQLite, writes from this process queue on one lock (one writer at a time).

    `notifier` is this process's wake-up signal for its workers: a committed write that said `jobs_due` sets it.
    """

    def __init__(self, url: str, *, pool_size: int = 10, notifier: Notifier | None = None) -> None:
        self.url = url
        self.notifier = notifier or Notifier()
        self.async_url = async_url(url)
        kwargs: dict[str, Any] = {}
        if self.async_url.startswith("postgresql"):
            # An outage must cost seconds, not minutes: connecting gives up after 2 s, a request waits at most 2 s
            # for a pooled connection, and a connection whose server stopped answering (no RST: a cut network)
            # fails after a few seconds of unacknowledged data or silent keepalives, instead of TCP's 15 minutes.
            kwargs.update(
                pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False, pool_timeout=POOL_WAIT,
                connect_args={"connect_timeout": 2, "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2,
                              "keepalives_count": 2, "tcp_user_timeout": 5000},
            )
        else:
            database = make_url(self.async_url).database or ":memory:"
            kwargs.update(async_creator=_inline_creator(database))
        self.engine: AsyncEngine = create_async_engine(self.async_url, **kwargs)
        self.dialect = self.engine.dialect.name
        self._write_lock = asyncio.Lock() if self.dialect == "sqlite" else None
        if self.dialect == "sqlite":
            _sqlite_setup(self.engine)

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success and rolls back on error. After a commit that made jobs due
        (`herald.db.notify.jobs_due`), this process's workers are woken."""
        if self._write_lock is not None:
            async with self._write_lock:
                async with self.engine.connect() as conn:
                    conn = await conn.execution_options(herald_write=True)
                    deadline = time.monotonic() + WRITE_LOCK_WAIT
                    delay = 0.002
                    while True:
                        try:
                            transaction = await conn.begin()
                            break
                        except OperationalError as exc:  # another process holds the write lock
                            if "locked" not in str(exc) or time.monotonic() > deadline:
                                raise
                            await conn.rollback()
                            await asyncio.sleep(delay)
                            delay = min(delay * 2, 0.1)
                    conn.info.pop(JOBS_DUE, None)  # a flag left by a transaction that failed
                    try:
                        yield conn
                    except BaseException:
                        await transaction.rollback()
                        raise
                    due = conn.info.pop(JOBS_DUE, False)
                    await transaction.commit()
        else:
            async with self.engine.connect() as conn:
                async with conn.begin():  # commits when the block ends without an error
                    # The flag is read only on success: after an error (a cancellation included) the connection
                    # may refuse every use until rolled back, and reading it then would replace that error.
                    conn.info.pop(JOBS_DUE, None)
                    yield conn
                    due = conn.info.pop(JOBS_DUE, False)
        if due:
            self.notifier.wake()

    async def dispose(self) -> None:
        await self.engine.dispose()
