"""`herald jobs retry`: one more attempt, due now, for one job or for every job that ended badly (after an outage
of a receiver, say)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from herald.cli.common import Failure, Json, StoreRef, console, duration, emit, run, store

if TYPE_CHECKING:
    from herald.db.database import Database

app = typer.Typer(help="Jobs: one per event and integration.", no_args_is_help=True)


@app.command("retry")
def retry(
    job: Annotated[str | None, typer.Argument(help="One job id; leave it out to retry in bulk.")] = None,
    store_ref: StoreRef = None,
    failed: Annotated[bool, typer.Option("--failed", help="Retry every failed job (bulk).")] = False,
    status: Annotated[
        str | None, typer.Option(help="Retry every job in this status instead: failed, succeeded or cancelled.")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Only jobs that ended within this long: 2h, 30m, 1d...")
    ] = None,
    integration: Annotated[str | None, typer.Option(help="Only this integration's jobs.")] = None,
    json: Json = False,
) -> None:
    """Grant one more attempt, due now, to a job or (with --failed or --status) to every matching job.

    A bulk retry goes in batches of 500, one transaction each, with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from herald.db import integrations as integration_repo
    from herald.db import jobs
    from herald.domain.ids import utcnow

    if job is not None and (failed or status or since):
        raise typer.BadParameter("give a job id, or --failed/--status for a bulk retry, not both")
    if job is None and not failed and status is None:
        raise typer.BadParameter("give a job id, or --failed (or --status) to retry in bulk")
    wanted = status or "failed"
    if failed and status not in (None, "failed"):
        raise typer.BadParameter("--failed and --status disagree")
    if wanted not in jobs.RETRYABLE:
        raise typer.BadParameter(f"--status must be one of {', '.join(jobs.RETRYABLE)}")
    ended_since = utcnow() - duration(since) if since else None

    async def one(db: Database) -> dict[str, object]:
        async with db.write() as conn:
            found = await store(conn, store_ref)
            row = await jobs.find(conn, found.id, job or "")
            if row is None:
                raise Failure(f"the store {found.name!r} has no job {job}")
            if row["status"] not in jobs.RETRYABLE:
                raise Failure(f"the job is {row['status']}; only {', '.join(jobs.RETRYABLE)} jobs can be retried")
            await jobs.retry(conn, found.id, row["integration_id"], row["id"], utcnow())
            return {"id": row["id"], "integration_id": row["integration_id"], "retried": 1}

    async def bulk(db: Database) -> dict[str, object]:
        async with db.read() as conn:
            found = await store(conn, store_ref)
            if integration and not await integration_repo.exists(conn, found.id, integration):
                raise Failure(f"the store {found.name!r} has no integration {integration}")
            total = await jobs.count_retryable(conn, found.id, wanted, ended_since, integration)
        retried, after = 0, ""
        columns = (TextColumn(f"retrying {wanted} jobs"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console, disable=json or not total, transient=False) as bar:
            task = bar.add_task("retry", total=total)
            while True:
                async with db.write() as conn:
                    count, last = await jobs.retry_batch(conn, found.id, wanted, ended_since, integration, after,
                                                         utcnow())
                if last is None:
                    break
                retried, after = retried + count, last
                bar.update(task, completed=retried)
        return {"store_id": found.id, "status": wanted, "retried": retried}

    result = run(one if job else bulk)
    if json:
        emit(result)
    elif job:
        console.print(f"The job {job} will be attempted again now.")
    else:
        console.print(f"{result['retried']:,} {wanted} job(s) will be attempted again now.")
