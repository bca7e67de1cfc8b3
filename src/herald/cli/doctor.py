"""`herald doctor`: is this deployment fit to run? One line per check; exit status 1 when any check has a problem.

Checks the settings, the database (reachable, schema current), the outbound guard, and every broker an enabled
integration delivers to (resolved and connected to as the worker would, guard included)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import typer

from herald.cli.common import Json, console, emit, safe_url, setting_problems

if TYPE_CHECKING:
    from herald.settings import Settings

Status = Literal["ok", "warning", "problem"]
CONNECT_TIMEOUT = 3.0


@dataclass(slots=True)
class Check:
    check: str
    status: Status
    detail: str


def _settings_checks(s: Settings) -> list[Check]:
    out: list[Check] = []

    def problem(detail: str) -> None:
        out.append(Check("settings", "problem", detail))

    def warning(detail: str) -> None:
        out.append(Check("settings", "warning", detail))

    if s.delivery_timeout <= 0:
        problem(f"HERALD_DELIVERY_TIMEOUT is {s.delivery_timeout:g}: it must be more than 0 seconds")
    if s.lease_seconds <= 0:
        problem(f"HERALD_LEASE_SECONDS is {s.lease_seconds:g}: it must be more than 0 seconds")
    elif s.lease_seconds <= s.delivery_timeout:
        problem(f"HERALD_LEASE_SECONDS ({s.lease_seconds:g}) is not above HERALD_DELIVERY_TIMEOUT "
                f"({s.delivery_timeout:g}): a lease could end while its delivery runs, and another worker "
                "would send the job again")
    if s.worker_concurrency < 1:
        problem(f"HERALD_WORKER_CONCURRENCY is {s.worker_concurrency}: a worker could hold no job")
    if s.worker_batch < 1:
        problem(f"HERALD_WORKER_BATCH is {s.worker_batch}: a worker would claim nothing")
    elif s.worker_batch > s.worker_concurrency:
        warning(f"HERALD_WORKER_BATCH ({s.worker_batch}) is more than HERALD_WORKER_CONCURRENCY "
                f"({s.worker_concurrency}): claims never take more than the concurrency")
    if s.per_integration_inflight >= s.per_host_connections:
        warning(f"HERALD_PER_INTEGRATION_INFLIGHT ({s.per_integration_inflight}) is not below "
                f"HERALD_PER_HOST_CONNECTIONS ({s.per_host_connections}): one integration whose receiver hangs "
                "can hold every connection to its host, and the other integrations on that host wait")
    if s.token_ttl <= 0:
        problem(f"HERALD_TOKEN_TTL is {s.token_ttl}: every access token would be expired")
    if s.secret_key is not None and len(s.secret_key) < 32:
        problem(f"HERALD_SECRET_KEY is {len(s.secret_key)} characters: use at least 32 random ones, or unset it")
    if s.public_url is not None and not s.public_url.startswith(("http://", "https://")):
        problem(f"HERALD_PUBLIC_URL {s.public_url!r} is not an http:// or https:// URL")
    if s.metrics_port is not None and not 0 < s.metrics_port < 65536:
        problem(f"HERALD_METRICS_PORT {s.metrics_port} is not a TCP port")
    if s.retry_after_max < 0:
        problem("HERALD_RETRY_AFTER_MAX must not be negative")
    if not out:
        retention = f"{s.log_retention_days:g} days" if s.log_retention_days else "forever"
        out.append(Check("settings", "ok", f"{s.max_attempts} attempts per job, {s.delivery_timeout:g} s deadline, "
                                           f"logs kept {retention}"))
    return out


def _guard_check(s: Settings) -> Check:
    if s.allow_private_networks:
        return Check("outbound guard", "warning", "off (HERALD_ALLOW_PRIVATE_NETWORKS=true): deliveries may reach "
                                                  "loopback, private and link-local addresses")
    return Check("outbound guard", "ok", "on: deliveries to loopback, private and link-local addresses are refused")


def _reason(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def _database_checks(s: Settings) -> tuple[list[Check], list[dict[str, object]] | None]:
    """Reachable, schema current; and the enabled integrations that need a broker (None when unreadable)."""
    import sqlalchemy as sa

    from herald.db import integrations, migrate
    from herald.db.database import Database
    from herald.domain.destinations import DESTINATIONS, DestinationConfig

    where = safe_url(s.database_url)
    try:
        db = Database(s.database_url, pool_size=1)
    except Exception as exc:  # noqa: BLE001 - a bad URL is a problem to report, whatever raised it
        return [Check("database", "problem", f"{where}: {_reason(exc)}")], None
    try:
        try:
            async with asyncio.timeout(10), db.read() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001
            reason = "no answer in 10 s" if isinstance(exc, TimeoutError) else _reason(exc)
            return [Check("database", "problem", f"cannot reach {where}: {reason}")], None
        checks = [Check("database", "ok", f"reachable: {where}")]
        head = migrate.head()
        async with db.read() as conn:
            current = await conn.run_sync(migrate.revision_of)
        if current != head:
            found = current or "no Herald schema"
            checks.append(Check("migrations", "problem", f"the database is at {found}, this Herald needs {head}: "
                                                         "run `herald migrate`"))
            return checks, None
        checks.append(Check("migrations", "ok", f"schema at {head}, current"))
        # the types whose configuration names brokers (they override DestinationConfig.brokers)
        types = [name for name, d in DESTINATIONS.items() if d.model.brokers is not DestinationConfig.brokers]
        async with db.read() as conn:
            rows = await integrations.enabled_of_types(conn, types)
        return checks, rows
    finally:
        await db.dispose()


async def _reach(host: str, port: int, allow_private: bool) -> str | None:
    """None when a TCP connection to host:port succeeds the way a worker would make it; else why not."""
    import socket

    from herald.delivery.guard import BlockedAddressError, resolve_public

    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            addresses = await resolve_public(host, port, allow_private=allow_private)
            _, writer = await asyncio.open_connection(addresses[0], port)
    except BlockedAddressError:
        return "refused by the outbound guard (a private address; HERALD_ALLOW_PRIVATE_NETWORKS is off)"
    except socket.gaierror:
        return f"{host} does not resolve"
    except TimeoutError:
        return f"no connection in {CONNECT_TIMEOUT:g} s"
    except ConnectionRefusedError:
        return "connection refused (nothing listens there)"
    except OSError as exc:
        return exc.strerror or str(exc)
    writer.close()
    return None


async def _broker_checks(rows: list[dict[str, object]], allow_private: bool) -> list[Check]:
    from herald.domain.destinations import stored

    users: dict[tuple[str, str, int], list[str]] = defaultdict(list)
    for row in rows:
        config = stored(str(row["integration_type"]), row["configuration"])  # type: ignore[arg-type]
        for host, port in config.brokers():
            users[(str(row["integration_type"]), host, port)].append(str(row["id"]))
    if not users:
        return [Check("brokers", "ok", "no enabled integration delivers to a broker")]
    keys = list(users)
    reasons = await asyncio.gather(*(_reach(host, port, allow_private) for _, host, port in keys))
    checks = []
    for (kind, host, port), reason in zip(keys, reasons, strict=True):
        ids = users[(kind, host, port)]
        who = f"{len(ids)} integration{'s' if len(ids) > 1 else ''}, e.g. {ids[0]}"
        if reason is None:
            checks.append(Check("brokers", "ok", f"{kind} {host}:{port} reachable ({who})"))
        else:
            checks.append(Check("brokers", "problem", f"{kind} {host}:{port} unreachable: {reason} ({who})"))
    return checks


async def _all_checks(s: Settings) -> list[Check]:
    checks = [*_settings_checks(s), _guard_check(s)]
    db_checks, rows = await _database_checks(s)
    checks += db_checks
    if rows is not None:
        checks += await _broker_checks(rows, s.allow_private_networks)
    return checks


MARKS = {"ok": "[green]ok     [/green]", "warning": "[yellow]warning[/yellow]", "problem": "[red]problem[/red]"}


def doctor(json: Json = False) -> None:
    """Check the settings, the database, migrations, the outbound guard and the brokers integrations need.
    Exit status 1 when anything has a problem."""
    from pydantic import ValidationError

    from herald.settings import Settings

    try:
        s = Settings()
    except ValidationError as exc:
        checks = [Check("settings", "problem", line) for line in setting_problems(exc)]
    else:
        checks = asyncio.run(_all_checks(s))
    problems = sum(c.status == "problem" for c in checks)
    if json:
        emit({"ok": not problems, "checks": [asdict(c) for c in checks]})
    else:
        for c in checks:
            console.print(f"{MARKS[c.status]}  {c.check:<15} {c.detail}", soft_wrap=True)
        console.print(f"[red]{problems} problem(s)[/red]" if problems else "[green]no problems[/green]")
    if problems:
        raise typer.Exit(1)
