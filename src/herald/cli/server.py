"""The processes: `herald serve` (API and worker in one), `herald api`, `herald worker`, and `herald migrate`."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Annotated, Any

import typer

from herald import __version__
from herald.cli.common import safe_url
from herald.settings import Settings

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


def migrate_schema(settings: Settings) -> None:
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


def serve(host: Host = "127.0.0.1", port: Port = 8080) -> None:
    """API and delivery worker in one process. Migrates the database first."""
    from herald.app import create_app

    settings = Settings()
    _logging(settings)
    migrate_schema(settings)
    first = asyncio.run(_first_store(settings))
    url = f"http://{host}:{port}"
    typer.echo(f"Herald {__version__} listening on {url}  (database: {safe_url(settings.database_url)})")
    if first:
        typer.echo("Created the first store. Its credentials are shown only this once:")
        typer.echo(f"  store id:      {first['id']}")
        typer.echo(f"  client_id:     {first['client_id']}")
        typer.echo(f"  client_secret: {first['client_secret']}")
    typer.echo(f"API docs: {url}/docs", err=False)
    sys.stdout.flush()
    _uvicorn(create_app(settings, worker=True), host, port, settings)


def api(host: Host = "127.0.0.1", port: Port = 8080) -> None:
    """The API alone (run `herald worker` beside it). Does not migrate: run `herald migrate` first."""
    from herald.app import create_app

    settings = Settings()
    _logging(settings)
    typer.echo(f"Herald API {__version__} listening on http://{host}:{port}")
    sys.stdout.flush()
    _uvicorn(create_app(settings), host, port, settings)


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
        def banner() -> None:  # printed once the worker takes part: what scripts and tests wait for
            typer.echo(f"Herald worker {__version__} started (database: {safe_url(settings.database_url)})")
            sys.stdout.flush()

        try:
            await runner.run_forever(on_ready=banner)
        finally:
            await runner.stop()
            await db.dispose()

    _run_loop(main())


async def _refresh_metrics(metrics: Any, db: Any, every: float = 5.0) -> None:
    """A worker has no API to refresh the job gauges at scrape time: read them every few seconds instead."""
    while True:
        await metrics.refresh(db)
        await asyncio.sleep(every)


def migrate() -> None:
    """Bring the database schema up to date."""
    settings = Settings()
    migrate_schema(settings)
    from herald.db.migrate import current

    typer.echo(f"database at revision {current(settings.database_url)}")


def version() -> None:
    """Print the version."""
    typer.echo(__version__)


