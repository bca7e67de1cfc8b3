"""What every operator command shares: settings, the database, choosing a store, and printing for people or scripts.

Tables and progress bars go to a terminal; `--json` prints one JSON document (or one object per line when
following) for scripts. A problem is one line on stderr and exit status 1, never a traceback."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlsplit, urlunsplit

import orjson
import typer
from rich.console import Console
from rich.table import Table

from herald.settings import Settings

if TYPE_CHECKING:
    from pydantic import ValidationError
    from sqlalchemy.ext.asyncio import AsyncConnection

    from herald.db.database import Database
    from herald.db.stores import StoreRow

T = TypeVar("T")

# Off a terminal rich would lay tables out in 80 columns, cutting cells: a wide page instead (scripts use --json).
console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True, highlight=False, soft_wrap=True)


def id_column(table: Table, name: str = "id", width: int = 36) -> None:
    """A column of ids: never cut or wrapped, whatever the width (they are copied into the next command)."""
    table.add_column(name, no_wrap=True, min_width=width)


def new_table() -> Table:
    """A plain table whose cells wrap rather than lose their ends."""
    return Table(box=None, header_style="bold", pad_edge=False)

Json = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]
StoreRef = Annotated[
    str | None,
    typer.Option(
        "--store", envvar="HERALD_STORE", show_envvar=True,
        help="The store: its id, client_id or name. May be left out when there is only one store.",
    ),
]


class Failure(Exception):
    """A problem the operator can act on: printed as one line, exit status 1."""


def fail(message: str) -> NoReturn:
    errors.print(f"[red]error:[/red] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(1)


def setting_problems(exc: ValidationError) -> list[str]:
    """`HERALD_NAME: what is wrong`, one per bad variable."""
    return [f"HERALD_{'_'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()]


def settings() -> Settings:
    """The settings, or one line per bad HERALD_* variable."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        for line in setting_problems(exc):
            errors.print(f"[red]error:[/red] {line}", soft_wrap=True)
        raise typer.Exit(2) from None


def safe_url(url: str) -> str:
    """A database URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def run(work: Callable[[Database], Awaitable[T]], config: Settings | None = None) -> T:
    """Run `work` against the configured database; an unreachable database or a missing schema is one line."""
    import sqlalchemy.exc

    from herald.db.database import Database

    config = config or settings()

    async def main() -> T:
        db = Database(config.database_url, pool_size=2)
        try:
            return await work(db)
        finally:
            await db.dispose()

    try:
        return asyncio.run(main())
    except Failure as exc:
        fail(str(exc))
    except (OSError, sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if "no such table" in reason or ("relation" in reason and "does not exist" in reason):
            fail(f"the database at {safe_url(config.database_url)} has no Herald schema: run `herald migrate`")
        fail(f"cannot use the database at {safe_url(config.database_url)}: {reason}")


async def store(conn: AsyncConnection, ref: str | None) -> StoreRow:
    """The store `--store` names, by id, client_id or name; the only store when none is named."""
    from herald.db import stores

    if ref is None:
        every = await stores.list_all(conn)
        if len(every) == 1:
            return every[0]
        if not every:
            raise Failure("there is no store yet: create one with `herald stores create --name NAME`")
        raise Failure(f"there are {len(every)} stores: choose one with --store (see `herald stores list`)")
    found = await stores.find(conn, ref)
    if not found:
        raise Failure(f"no store has the id, client_id or name {ref!r} (see `herald stores list`)")
    if len(found) > 1:
        raise Failure(f"{len(found)} stores are named {ref!r}: choose by id ({', '.join(s.id for s in found)})")
    return found[0]


def emit(value: Any) -> None:
    """One JSON document on stdout."""
    typer.echo(orjson.dumps(value, default=_default).decode())


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        from herald.domain.ids import rfc3339

        return rfc3339(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def when(value: datetime | None) -> str:
    """A time for a table: local to nobody, so UTC, to the second."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `3600s` (or plain seconds)."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    value, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        seconds = float(value) * units[unit]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a duration such as 30d, 12h, 90m or 3600s") from None
    if seconds < 0:
        raise typer.BadParameter("a duration cannot be negative")
    return timedelta(seconds=seconds)
