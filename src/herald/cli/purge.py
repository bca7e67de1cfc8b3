"""`herald purge`: apply the log retention now, without waiting for a worker's next pass."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer

from herald.cli.common import Json, console, duration, emit, run
from herald.cli.common import settings as load_settings

if TYPE_CHECKING:
    from herald.db.database import Database


def purge(
    older_than: Annotated[
        str | None, typer.Option(help="Age beyond which logs go: 30d, 12h... (default HERALD_LOG_RETENTION_DAYS).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be removed.")] = False,
    json: Json = False,
) -> None:
    """Remove delivery logs older than the retention now, with finished jobs and events nothing needs any more."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from herald.db import retention
    from herald.domain.ids import rfc3339, utcnow

    settings = load_settings()
    age = duration(older_than) if older_than is not None else timedelta(days=settings.log_retention_days)
    if older_than is None and settings.log_retention_days == 0:
        raise typer.BadParameter("HERALD_LOG_RETENTION_DAYS is 0 (keep everything): give --older-than")
    cutoff = utcnow() - age

    async def go(db: Database) -> tuple[retention.Purged, retention.Purged]:
        async with db.read() as conn:
            planned = await retention.would_purge(conn, cutoff)
        if dry_run:
            return planned, retention.Purged()
        with Progress(TextColumn("purging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, disable=json, transient=False) as bar:
            task = bar.add_task("purge", total=planned.total or None)
            done = await retention.purge(db, cutoff, progress=lambda batch: bar.advance(task, batch.total))
            bar.update(task, total=max(done.total, planned.total, 1), completed=max(done.total, planned.total, 1))
        return planned, done

    planned, done = run(go, settings)
    result = planned if dry_run else done
    summary = {"older_than": rfc3339(cutoff), "dry_run": dry_run, "logs": result.logs, "jobs": result.jobs,
               "events": result.events}
    if json:
        emit(summary)
        return
    verb = "would remove" if dry_run else "removed"
    console.print(f"{verb} {result.logs:,} logs, {result.jobs:,} finished jobs and {result.events:,} events "
               f"older than {summary['older_than']}")
