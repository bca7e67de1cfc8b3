"""The `herald` command: serve, api, worker, migrate, and store/integration/log/job tools."""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import timedelta
from typing import Annotated, Any

import orjson
import typer

from herald import __version__
from herald.settings import Settings

app = typer.Typer(
    help="Herald: self-hosted webhooks and integrations (Moltin Integrations API v2).", no_args_is_help=True
)
stores_app = typer.Typer(help="Stores (tenants) and their API credentials.", no_args_is_help=True)
integrations_app = typer.Typer(help="Look at a store's integrations.", no_args_is_help=True)
logs_app = typer.Typer(help="Look at delivery logs.", no_args_is_help=True)
jobs_app = typer.Typer(help="Look at and retry jobs.", no_args_is_help=True)
app.add_typer(stores_app, name="stores")
app.add_typer(integrations_app, name="integrations")
app.add_typer(logs_app, name="logs")
app.add_typer(jobs_app, name="jobs")

Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(help="Port to listen on.")]


def _logging(settings: Settings) -> None:
    from herald.log import configure

    configure(settings.log_level, settings.log_format)


def _run_loop(coro: Any) -> Any:
    """asyncio.run on uvloop where it is installed (it is, with uvicorn[standard]): far less overhead per socket."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency, but not on every platform
        return asyncio.run(coro)
    return uvloop.run(coro)


def _migrate(settings: Settings) -> None:
    from herald.db.migrate import upgrade

    upgrade(settings.database_url)


async def _first_store(settings: Settings) -> dict[str, str] | None:
    from herald.db import stores
    from herald.db.database import Database

    db = Database(settings.database_url)
    try:
        async with db.write() as conn:
            if await stores.count(conn):
                return None
            return (await stores.create(conn, "Default store")).as_dict()
    finally:
        await db.dispose()


def _uvicorn(asgi: Any, host: str, port: int, settings: Settings) -> None:
    import uvicorn

    # log_config=None: uvicorn's own and its access log lines go through Herald's formatter (herald.log)
    uvicorn.run(
        asgi, host=host, port=port, log_level=settings.log_level, log_config=None, proxy_headers=True,
        server_header=False,
    )


@app.command()
def serve(host: Host = "127.0.0.1", port: Port = 8080) -> None:
    """API and delivery worker in one process. Migrates the database first."""
    from herald.app import create_app

    settings = Settings()
    _logging(settings)
    _migrate(settings)
    first = asyncio.run(_first_store(settings))
    url = f"http://{host}:{port}"
    typer.echo(f"Herald {__version__} listening on {url}  (database: {settings.database_url})")
    if first:
        typer.echo("Created the first store. Its credentials are shown only this once:")
        typer.echo(f"  store id:      {first['id']}")
        typer.echo(f"  client_id:     {first['client_id']}")
        typer.echo(f"  client_secret: {first['client_secret']}")
    typer.echo(f"API docs: {url}/docs", err=False)
    sys.stdout.flush()
    _uvicorn(create_app(settings, worker=True), host, port, settings)


@app.command()
def api(host: Host = "127.0.0.1", port: Port = 8080) -> None:
    """The API alone (run `herald worker` beside it). Does not migrate: run `herald migrate` first."""
    from herald.app import create_app

    settings = Settings()
    _logging(settings)
    typer.echo(f"Herald API {__version__} listening on http://{host}:{port}")
    sys.stdout.flush()
    _uvicorn(create_app(settings), host, port, settings)


@app.command()
def worker() -> None:
    """A delivery worker alone. Any number may run against one PostgreSQL database. SIGTERM stops it cleanly."""
    settings = Settings()
    _logging(settings)

    async def main() -> None:
        from herald.app import settle_heap
        from herald.db.database import Database
        from herald.delivery.worker import Worker
        db = Database(settings.database_url)
        runner = Worker(settings, db)
        if settings.metrics_port:
            from herald.metrics import Metrics  # prometheus_client only where it is used

            metrics = Metrics()
            metrics.watch(runner)
            metrics.serve(settings.metrics_port)
            asyncio.get_running_loop().create_task(_refresh_metrics(metrics, db), name="herald-metrics")
        settle_heap()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, runner.request_stop)
        try:
            await runner.run_forever()
        finally:
            await runner.stop()
            await db.dispose()

    typer.echo(f"Herald worker {__version__} started (database: {settings.database_url})")
    sys.stdout.flush()
    _run_loop(main())


async def _refresh_metrics(metrics: Any, db: Any, every: float = 5.0) -> None:
    """A worker has no API to refresh the job gauges at scrape time: read them every few seconds instead."""
    while True:
        await metrics.refresh(db)
        await asyncio.sleep(every)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    settings = Settings()
    _migrate(settings)
    from herald.db.migrate import current

    typer.echo(f"database at revision {current(settings.database_url)}")


def _run(coro_fn: Any) -> Any:
    from herald.db.database import Database

    settings = Settings()

    async def main() -> Any:
        db = Database(settings.database_url)
        try:
            return await coro_fn(db)
        finally:
            await db.dispose()

    return asyncio.run(main())


@stores_app.command("create")
def stores_create(
    name: Annotated[str, typer.Option(help="The store's name.")],
    json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Create a store and print its credentials (the secret is shown once)."""
    from herald.db import stores

    async def go(db: Any) -> dict[str, str]:
        async with db.write() as conn:
            return (await stores.create(conn, name)).as_dict()

    _migrate(Settings())
    created = _run(go)
    if json:
        typer.echo(orjson.dumps(created).decode())
    else:
        for key, value in created.items():
            typer.echo(f"{key}: {value}")


@stores_app.command("list")
def stores_list(json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List stores (never their secrets)."""
    from herald.db import stores
    from herald.domain.ids import rfc3339

    async def go(db: Any) -> list[Any]:
        async with db.read() as conn:
            return await stores.list_all(conn)

    rows = _run(go)
    if json:
        typer.echo(orjson.dumps([
            {"id": r.id, "name": r.name, "client_id": r.client_id, "created_at": rfc3339(r.created_at)} for r in rows
        ]).decode())
        return
    for r in rows:
        typer.echo(f"{r.id}  {r.client_id}  {r.name}")


StoreOpt = Annotated[str, typer.Option("--store", help="The store id (see `herald stores list`).")]


@integrations_app.command("list")
def integrations_list(
    store: StoreOpt, json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """List a store's integrations (secrets masked)."""
    from herald.db import integrations
    from herald.domain.representations import integration_resource

    async def go(db: Any) -> list[dict[str, Any]]:
        async with db.read() as conn:
            rows, _ = await integrations.page(conn, store, [], 1000, 0, None)
            return rows

    rows = _run(go)
    base = (Settings().public_url or "").rstrip("/")
    if json:
        typer.echo(orjson.dumps([integration_resource(r, base) for r in rows]).decode())
        return
    width = max((len(r["integration_type"]) for r in rows), default=0)
    for r in rows:
        state = "enabled " if r["enabled"] else "disabled"
        kind = f"{r['integration_type']:<{width}}"
        typer.echo(f"{r['id']}  {state}  {kind} {r['name']}  observes {','.join(r['observes'])}")


def _log_line(row: dict[str, Any]) -> str:
    from herald.domain.ids import rfc3339

    mark = "ok  " if row["succeeded"] else "FAIL"
    status = row["status_code"] if row["status_code"] is not None else "-"
    detail = f"  {row['error_detail']}" if row["error_detail"] else ""
    return (
        f"{rfc3339(row['created_at'])} {mark} {status!s:>3} attempt {row['attempt']} "
        f"job {row['job_id']} ({row['processing_time']:.3f}s){detail}"
    )


@logs_app.command("tail")
def logs_tail(
    store: StoreOpt,
    integration: Annotated[str | None, typer.Option(help="Only this integration's logs.")] = None,
    lines: Annotated[int, typer.Option("-n", "--lines", help="How many recent logs to show first.")] = 20,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new logs as they come.")] = False,
) -> None:
    """Print the most recent delivery logs, oldest first; with --follow, keep going."""
    import sqlalchemy as sa

    from herald.db import logs
    from herald.db.tables import logs as t

    async def go(db: Any) -> None:
        async with db.read() as conn:
            rows, _ = await logs.page(conn, store, [], max(1, min(lines, 100)), 0, None, integration_id=integration)
        for row in reversed(rows):
            typer.echo(_log_line(row))
        last = rows[0]["id"] if rows else ""
        while follow:
            await asyncio.sleep(1.0)
            async with db.read() as conn:
                cond = [t.c.store_id == store, t.c.id > last]
                if integration:
                    cond.append(t.c.integration_id == integration)
                query = sa.select(*logs.COLUMNS).where(*cond).order_by(t.c.id).limit(1000)
                new = (await conn.execute(query)).mappings().all()
            for row in new:
                typer.echo(_log_line(dict(row)))
                last = row["id"]

    try:
        _run(go)
    except KeyboardInterrupt:
        pass


@jobs_app.command("retry")
def jobs_retry(
    store: StoreOpt,
    integration: Annotated[str, typer.Option(help="The integration id.")],
    job: Annotated[str | None, typer.Argument(help="A job id; omit it to retry every job of --status.")] = None,
    status: Annotated[str, typer.Option(help="With no job id: retry every job in this status.")] = "failed",
) -> None:
    """Grant one more attempt, due now, to a job or to every job of a status."""
    from herald.db import jobs
    from herald.domain.ids import utcnow

    async def go(db: Any) -> int:
        async with db.write() as conn:
            if job:
                return 1 if await jobs.retry(conn, store, integration, job, utcnow()) else 0
            return await jobs.retry_many(conn, store, integration, status, None, utcnow())

    if status not in jobs_retryable():
        raise typer.BadParameter(f"status must be one of {', '.join(jobs_retryable())}")
    count = _run(go)
    if job and not count:
        typer.echo("No such job, or it is pending or delivering.", err=True)
        raise typer.Exit(1)
    typer.echo(f"{count} job(s) will be attempted again now.")


def jobs_retryable() -> tuple[str, ...]:
    from herald.db.jobs import RETRYABLE

    return RETRYABLE


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


def _duration(text: str) -> timedelta:
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


@app.command()
def purge(
    older_than: Annotated[
        str | None, typer.Option(help="Age beyond which logs go: 30d, 12h... (default HERALD_LOG_RETENTION_DAYS).")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be removed.")] = False,
    json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Remove delivery logs older than the retention now, with finished jobs and events nothing needs any more."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from herald.db import retention
    from herald.domain.ids import rfc3339, utcnow

    settings = Settings()
    _logging(settings)
    age = _duration(older_than) if older_than is not None else timedelta(days=settings.log_retention_days)
    if older_than is None and settings.log_retention_days == 0:
        raise typer.BadParameter("HERALD_LOG_RETENTION_DAYS is 0 (keep everything): give --older-than")
    cutoff = utcnow() - age

    async def go(db: Any) -> tuple[retention.Purged, retention.Purged]:
        async with db.read() as conn:
            planned = await retention.would_purge(conn, cutoff)
        if dry_run:
            return planned, retention.Purged()
        with Progress(TextColumn("purging"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      disable=json, transient=False) as bar:
            task = bar.add_task("purge", total=planned.total or None)
            done = await retention.purge(db, cutoff, progress=lambda batch: bar.advance(task, batch.total))
            bar.update(task, total=max(done.total, planned.total, 1), completed=max(done.total, planned.total, 1))
        return planned, done

    planned, done = _run(go)
    result = planned if dry_run else done
    summary = {"older_than": rfc3339(cutoff), "dry_run": dry_run, "logs": result.logs, "jobs": result.jobs,
               "events": result.events}
    if json:
        typer.echo(orjson.dumps(summary).decode())
        return
    verb = "would remove" if dry_run else "removed"
    typer.echo(f"{verb} {result.logs:,} logs, {result.jobs:,} finished jobs and {result.events:,} events "
               f"older than {summary['older_than']}")
