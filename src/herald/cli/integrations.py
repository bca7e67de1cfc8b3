"""`herald integrations`: a store's integrations, their health, and turning them on and off."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from herald.cli.common import Failure, Json, StoreRef, console, emit, id_column, new_table, run, settings, store, when

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from herald.db.database import Database
    from herald.db.logs import Health

app = typer.Typer(help="A store's integrations: list, show, enable, disable.", no_args_is_help=True)

IntegrationId = Annotated[str, typer.Argument(help="The integration id (see `herald integrations list`).")]
HEALTH_WINDOW = timedelta(hours=24)


def _target(row: dict[str, Any]) -> str:
    from herald.domain.destinations import stored

    return stored(row["integration_type"], row["configuration"]).target()


def _rate(health: Health) -> str:
    rate = health.success_rate
    if rate is None:
        return "-"
    colour = "green" if rate >= 0.99 else "yellow" if rate >= 0.9 else "red"
    return f"[{colour}]{rate:.1%}[/{colour}]"


def _state(enabled: bool) -> str:
    return "[green]enabled[/green]" if enabled else "[red]disabled[/red]"


def _resource(row: dict[str, Any], health: Health | None = None) -> dict[str, Any]:
    from herald.domain.representations import integration_resource

    body = integration_resource(row, (settings().public_url or "").rstrip("/"))
    body["target"] = _target(row)
    if health is not None:
        body["health"] = {**asdict(health), "window_hours": HEALTH_WINDOW.total_seconds() / 3600,
                          "success_rate": health.success_rate}
    return body


async def _health(conn: AsyncConnection, store_id: str, ids: list[str]) -> dict[str, Health]:
    from herald.db import logs
    from herald.domain.ids import utcnow

    return await logs.health(conn, store_id, ids, utcnow() - HEALTH_WINDOW)


@app.command("list")
def list_(store_ref: StoreRef = None, json: Json = False) -> None:
    """The store's integrations with their health over the last 24 hours (secrets masked)."""

    from herald.db import integrations

    async def go(db: Database) -> tuple[list[dict[str, Any]], dict[str, Health]]:
        async with db.read() as conn:
            found = await store(conn, store_ref)
            rows = await integrations.every(conn, found.id)
            return rows, await _health(conn, found.id, [r["id"] for r in rows])

    rows, health = run(go)
    if json:
        emit([_resource(r, health[r["id"]]) for r in rows])
        return
    if not rows:
        console.print("This store has no integrations.")
        return
    table = new_table()
    id_column(table)
    for name in ("name", "type", "target", "observes", "state", "24 h", "success", "last failure (UTC)"):
        table.add_column(name, justify="right" if name in ("24 h", "success") else "left", overflow="fold")
    for r in rows:
        h = health[r["id"]]
        table.add_row(r["id"], r["name"], r["integration_type"], _target(r), ", ".join(r["observes"]),
                      _state(r["enabled"]), f"{h.deliveries:,}", _rate(h), when(h.last_failure))
    console.print(table)


async def _one(conn: AsyncConnection, store_ref: str | None, integration_id: str) -> dict[str, Any]:
    from herald.db import integrations

    found = await store(conn, store_ref)
    row = await integrations.get(conn, found.id, integration_id)
    if row is None:
        raise Failure(f"the store {found.name!r} has no integration {integration_id}")
    return row


@app.command("show")
def show(integration_id: IntegrationId, store_ref: StoreRef = None, json: Json = False) -> None:
    """One integration: its configuration (secrets masked), health and jobs by status."""
    from herald.db import jobs

    async def go(db: Database) -> tuple[dict[str, Any], Health, dict[str, int]]:
        async with db.read() as conn:
            row = await _one(conn, store_ref, integration_id)
            health = (await _health(conn, row["store_id"], [row["id"]]))[row["id"]]
            return row, health, await jobs.count_by_status(conn, row["store_id"], row["id"])

    row, health, by_status = run(go)
    body = _resource(row, health)
    body["jobs"] = by_status
    if json:
        emit(body)
        return
    table = new_table()
    table.show_header = False
    table.add_column(style="bold")
    table.add_column()
    table.add_row("id", row["id"])
    table.add_row("name", row["name"])
    if row["description"]:
        table.add_row("description", row["description"])
    table.add_row("state", _state(row["enabled"]))
    table.add_row("type", row["integration_type"])
    table.add_row("target", body["target"])
    for key, value in body["configuration"].items():
        table.add_row(f"  {key}", ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    table.add_row("observes", ", ".join(row["observes"]))
    table.add_row("created", when(row["created_at"]))
    table.add_row("updated", when(row["updated_at"]))
    table.add_row("last 24 h", f"{health.deliveries:,} deliveries, {_rate(health)} succeeded")
    table.add_row("last success", when(health.last_success))
    table.add_row("last failure", when(health.last_failure))
    table.add_row("jobs", ", ".join(f"{n:,} {s}" for s, n in by_status.items()) or "none")
    console.print(table)


def _switch(integration_id: str, store_ref: str | None, json: bool, enabled: bool) -> None:
    """Through the same path as the API's PUT: disabling cancels pending jobs; integration.updated is raised."""
    from herald.db import integrations
    from herald.db.operator_events import OperatorEvents
    from herald.domain.ids import utcnow

    config = settings()
    events = OperatorEvents(config.public_url, config.max_attempts)

    async def go(db: Database) -> tuple[dict[str, Any], bool]:
        async with db.write() as conn:
            row = await _one(conn, store_ref, integration_id)
            if row["enabled"] == enabled:
                return row, False
            return await integrations.change(conn, row, {"enabled": enabled}, utcnow(), events), True

    row, changed = run(go, config)
    if json:
        emit({**_resource(row), "changed": changed})
        return
    word = "enabled" if enabled else "disabled"
    if changed:
        extra = "" if enabled else "; its pending jobs are cancelled"
        console.print(f"{row['name']} ({row['id']}) is now {word}{extra}.")
    else:
        console.print(f"{row['name']} ({row['id']}) was already {word}.")


@app.command("enable")
def enable(integration_id: IntegrationId, store_ref: StoreRef = None, json: Json = False) -> None:
    """Turn an integration on: new events get jobs again."""
    _switch(integration_id, store_ref, json, True)


@app.command("disable")
def disable(integration_id: IntegrationId, store_ref: StoreRef = None, json: Json = False) -> None:
    """Turn an integration off: its pending jobs are cancelled and new events get none."""
    _switch(integration_id, store_ref, json, False)
