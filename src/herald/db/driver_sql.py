"""Driver-level statements for the delivery and publish hot paths.

SQLAlchemy Core builds, caches and binds every statement, which costs more than running it against a local
database; on the paths taken once per event (publish, claim, record) Herald writes the SQL out for each
backend and hands it straight to the driver (sqlite3, psycopg), inside the same transaction as the
surrounding SQLAlchemy connection. Everything else goes through SQLAlchemy Core.

Values are stored exactly as SQLAlchemy stores them: on SQLite a timestamp is the naive UTC text
`YYYY-MM-DD HH:MM:SS.ffffff`, a boolean 0 or 1; PostgreSQL takes aware datetimes and booleans as they are.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection

if TYPE_CHECKING:
    import psycopg


class Sql:
    """One statement in both dialects. Placeholders are `?`; PostgreSQL's text is derived unless given
    (`%b` there sends a list as a binary array, several times cheaper than psycopg's text arrays)."""

    __slots__ = ("sqlite", "postgresql")

    def __init__(self, sqlite: str | None, postgresql: str | None = None) -> None:
        if postgresql is None:
            if sqlite is None:
                raise ValueError("a statement needs at least one dialect")
            postgresql = sqlite.replace("?", "%s")
        self.sqlite = sqlite  # None: PostgreSQL only
        self.postgresql = postgresql

    def for_sqlite(self) -> str:
        if self.sqlite is None:
            raise TypeError(f"this statement is for PostgreSQL only: {self.postgresql[:60]}...")
        return self.sqlite


def sqlite_ts(value: datetime) -> str:
    """SQLAlchemy's SQLite storage format for a UTC timestamp (sortable text, always with microseconds)."""
    if value.tzinfo is not None and value.utcoffset():
        value = value.astimezone(UTC)
    # printf-style on purpose: one C-level format call, about 3x faster here than the f-string equivalent
    return "%04d-%02d-%02d %02d:%02d:%02d.%06d" % (  # noqa: UP031
        value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond,
    )


class Driver:
    """The driver connection under an `AsyncConnection`, for the statements in this module's callers."""

    __slots__ = ("_sqlite", "_pg", "is_sqlite")

    _sqlite: sqlite3.Connection | None
    _pg: psycopg.AsyncConnection[tuple[Any, ...]] | None

    def __init__(self, conn: AsyncConnection) -> None:
        driver: Any = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
        self.is_sqlite = conn.dialect.name == "sqlite"
        self._sqlite = driver._connection if self.is_sqlite else None  # our inline aiosqlite wraps sqlite3
        self._pg = None if self.is_sqlite else driver

    # --- values -------------------------------------------------------------------------------

    def ts(self, value: datetime | None) -> Any:
        if value is None:
            return None
        return sqlite_ts(value) if self.is_sqlite else value

    def ts_out(self, value: datetime | str | None) -> datetime | None:
        """A timestamp read back: aware UTC on both backends."""
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        return value if value.tzinfo is UTC else value.astimezone(UTC)

    def ids(self, ids: Iterable[str]) -> Any:
        """A list of ids for `IN (SELECT value FROM json_each(?))` (SQLite) or `= ANY(%b)` (PostgreSQL)."""
        return orjson.dumps(list(ids)).decode() if self.is_sqlite else list(ids)

    # --- statements ---------------------------------------------------------------------------

    async def all(self, sql: Sql, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self._sqlite is not None:
            return self._sqlite.execute(sql.for_sqlite(), params).fetchall()
        async with self._pg.cursor() as cur:  # type: ignore[union-attr]
            await cur.execute(sql.postgresql, params)
            return await cur.fetchall()

    async def run(self, sql: Sql, params: Sequence[Any] = ()) -> int:
        """Execute; the number of rows changed."""
        if self._sqlite is not None:
            return self._sqlite.execute(sql.for_sqlite(), params).rowcount
        async with self._pg.cursor() as cur:  # type: ignore[union-attr]
            await cur.execute(sql.postgresql, params)
            return cur.rowcount

    async def many(self, sql: Sql, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self._sqlite is not None:
            self._sqlite.executemany(sql.for_sqlite(), rows)
            return
        async with self._pg.cursor() as cur:  # type: ignore[union-attr]
            await cur.executemany(sql.postgresql, rows)
