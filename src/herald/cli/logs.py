"""`herald logs tail`: the latest delivery attempts of a store, and the new ones as they are recorded."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from herald.cli.common import StoreRef, console, emit, run, store

if TYPE_CHECKING:
    from herald.db.database import Database

app = typer.Typer(help="Delivery logs: one per attempt.", no_args_is_help=True)


def _line(row: dict[str, Any], names: dict[str, str]) -> str:
    from herald.domain.ids import rfc3339

    mark = "[green]ok  [/green]" if row["succeeded"] else "[red]FAIL[/red]"
    status = row["status_code"] if row["status_code"] is not None else "-"
    detail = f"  {escape(row['error_detail'])}" if row["error_detail"] else ""
    name = escape(names.get(row["integration_id"], row["integration_id"]))
    return (f"{rfc3339(row['created_at'])} {mark} {status!s:>3} {name} job {row['job_id']} "
            f"attempt {row['attempt']} ({row['processing_time'] * 1000:.0f} ms){detail}")


def _record(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("id", "integration_id", "job_id", "succeeded", "attempt", "status_code",
                                "processing_time", "error_detail", "body", "created_at")}


@app.command("tail")
def tail(
    store_ref: StoreRef = None,
    integration: Annotated[str | None, typer.Option(help="Only this integration's logs.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed attempts.")] = False,
    lines: Annotated[int, typer.Option("-n", "--lines", min=0, max=1000, help="How many recent logs first.")] = 20,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new logs as they come.")] = False,
    interval: Annotated[float, typer.Option(min=0.05, help="Seconds between looks for new logs.")] = 1.0,
    json: Annotated[bool, typer.Option("--json", help="One JSON object per log and line, for scripts.")] = False,
) -> None:
    """Print a store's most recent delivery logs, oldest first; with --follow, keep going until Ctrl-C."""
    from herald.cli.common import Failure
    from herald.db import integrations as integration_repo
    from herald.db import logs

    succeeded = False if failed else None

    def show(rows: list[dict[str, Any]], names: dict[str, str]) -> None:
        for row in rows:
            if json:
                emit(_record(row))
            else:
                console.print(_line(row, names), soft_wrap=True)

    async def go(db: Database) -> None:
        async with db.read() as conn:
            found = await store(conn, store_ref)
            if integration and not await integration_repo.exists(conn, found.id, integration, include_deleted=True):
                raise Failure(f"the store {found.name!r} has no integration {integration}")
            names = {i: n for i, n in await integration_repo.names(conn, found.id)}
            recent = await logs.recent(conn, found.id, lines, integration_id=integration, succeeded=succeeded)
            last = recent[0]["id"] if recent else await logs.newest_id(conn, found.id)
        if not recent and not follow and not json:
            console.print("No logs.")
        show(list(reversed(recent)), names)
        while follow:
            await asyncio.sleep(interval)
            async with db.read() as conn:
                new = await logs.newer(conn, found.id, last, integration_id=integration, succeeded=succeeded)
                if any(r["integration_id"] not in names for r in new):
                    names = {i: n for i, n in await integration_repo.names(conn, found.id)}
            show(new, names)
            if new:
                last = new[-1]["id"]

    try:
        run(go)
    except KeyboardInterrupt:
        pass

