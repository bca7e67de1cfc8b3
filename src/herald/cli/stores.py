"""`herald stores`: the tenants and their API credentials."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from herald.cli.common import Json, console, emit, id_column, new_table, run, settings, when

if TYPE_CHECKING:
    from herald.db.database import Database
    from herald.db.stores import NewStore

app = typer.Typer(help="Stores (tenants) and their API credentials.", no_args_is_help=True)


def _show_credentials(created: NewStore, json: bool, what: str) -> None:
    if json:
        emit(created.as_dict())
        return
    console.print(f"{what} Its client secret is shown only this once:")
    for key, value in created.as_dict().items():
        console.print(f"  {key + ':':<15}{value}")


@app.command("create")
def create(name: Annotated[str, typer.Option(help="The store's name.")], json: Json = False) -> None:
    """Create a store and print its credentials (the secret is shown once)."""
    from herald.cli.server import migrate_schema
    from herald.db import stores

    async def go(db: Database) -> NewStore:
        async with db.write() as conn:
            return await stores.create(conn, name)

    config = settings()
    migrate_schema(config)
    _show_credentials(run(go, config), json, f"Created the store {name!r}.")


@app.command("list")
def list_(json: Json = False) -> None:
    """Every store, oldest first (never a secret)."""
    from herald.db import stores

    async def go(db: Database) -> list[Any]:
        async with db.read() as conn:
            return await stores.list_all(conn)

    rows = run(go)
    if json:
        emit([{"id": r.id, "name": r.name, "client_id": r.client_id, "created_at": r.created_at} for r in rows])
        return
    if not rows:
        console.print("No stores yet: `herald stores create --name NAME` makes one.")
        return
    table = new_table()
    id_column(table)
    table.add_column("name")
    id_column(table, "client_id", 40)
    table.add_column("created (UTC)", no_wrap=True)
    for r in rows:
        table.add_row(r.id, r.name, r.client_id, when(r.created_at))
    console.print(table)


@app.command("rotate-secret")
def rotate_secret(
    store: Annotated[str, typer.Argument(help="The store: its id, client_id or name.")], json: Json = False
) -> None:
    """Give a store a new client secret. The old one is refused at once; tokens it already got last until they
    expire (HERALD_TOKEN_TTL)."""
    from herald.cli.common import store as find_store
    from herald.db import stores

    async def go(db: Database) -> NewStore:
        async with db.write() as conn:
            found = await find_store(conn, store)
            rotated = await stores.rotate_secret(conn, found.id)
            assert rotated is not None  # found in this transaction
            return rotated

    rotated = run(go)
    _show_credentials(rotated, json, f"The store {rotated.name!r} has a new client secret; the old one is refused.")
