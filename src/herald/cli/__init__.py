"""The `herald` command. One module per noun: `server` (serve, api, worker, migrate), `stores`, `integrations`,
`logs`, `jobs`, `purge` and `doctor`; `common` holds what they share (settings, the database, `--store`,
`--json`)."""

from __future__ import annotations

import typer

from herald.cli import doctor, integrations, jobs, logs, purge, server, stores

app = typer.Typer(
    help="Herald: self-hosted webhooks and integrations (Moltin Integrations API v2).", no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for command in (server.serve, server.api, server.worker, server.migrate, purge.purge, doctor.doctor,
                server.version):
    app.command()(command)
app.add_typer(stores.app, name="stores")
app.add_typer(integrations.app, name="integrations")
app.add_typer(logs.app, name="logs")
app.add_typer(jobs.app, name="jobs")

__all__ = ["app"]
