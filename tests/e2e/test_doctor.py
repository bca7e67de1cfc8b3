"""`herald doctor` finds each problem it promises to, one line each, exit status 1; and passes a sound setup.

Brokers are checked for real: RabbitMQ's STOMP port (required in CI) must be reported reachable, a closed port
refused, and with the outbound guard on, a private broker address refused by the guard."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from herald.db import integrations, stores
from herald.db.database import Database
from herald.db.migrate import upgrade
from herald.db.operator_events import OperatorEvents
from herald.domain.ids import utcnow
from tests.support.server import HERALD, free_port, herald_env

pytestmark = pytest.mark.e2e

REQUIRE_BROKERS = os.environ.get("HERALD_REQUIRE_BROKERS", "") not in ("", "0", "false")
STOMP = ("127.0.0.1", 61613)


def doctor(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(HERALD + ["doctor", *args], env=herald_env(url, **env), capture_output=True, text=True,
                          timeout=60)


def report(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert "Traceback" not in done.stderr, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def problems(result: dict[str, Any]) -> list[str]:
    return [f"{c['check']}: {c['detail']}" for c in result["checks"] if c["status"] == "problem"]


def stomp_running() -> bool:
    try:
        socket.create_connection(STOMP, timeout=2).close()
    except OSError:
        if REQUIRE_BROKERS:
            pytest.fail("RabbitMQ's STOMP plugin is required (HERALD_REQUIRE_BROKERS=1) but 61613 is closed")
        return False
    return True


async def _with_integrations(url: str, configs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    db = Database(url)
    try:
        async with db.write() as conn:
            store = await stores.create(conn, "Doctor")
            made = []
            for kind, config in configs:
                row = await integrations.create(
                    conn, store.id,
                    {"name": kind, "description": "", "enabled": True, "integration_type": kind,
                     "observes": ["order.paid"], "configuration": config},
                    utcnow(), OperatorEvents(None, 3))
                made.append(row["id"])
            return made
    finally:
        await db.dispose()


def test_a_schema_that_is_not_current_is_a_problem(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    done = doctor(url, "--json")
    assert done.returncode == 1
    found = problems(report(done))
    assert found == [f"migrations: the database is at no Herald schema, this Herald needs {head()}: "
                     "run `herald migrate`"]
    text = doctor(url)
    assert text.returncode == 1 and "run `herald migrate`" in text.stdout and "1 problem(s)" in text.stdout


def head() -> str:
    from herald.db.migrate import head as current_head

    value = current_head()
    assert value is not None
    return value


def test_an_unreachable_database_and_bad_settings_are_problems(tmp_path: Path) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{free_port()}/herald"
    done = doctor(url, "--json", HERALD_SECRET_KEY="short", HERALD_LEASE_SECONDS="4", HERALD_DELIVERY_TIMEOUT="5")
    assert done.returncode == 1
    found = problems(report(done))
    assert len(found) == 3, found
    assert found[0].startswith("settings: HERALD_LEASE_SECONDS (4) is not above HERALD_DELIVERY_TIMEOUT (5)")
    assert found[1].startswith("settings: HERALD_SECRET_KEY is 5 characters")
    assert found[2].startswith("database: cannot reach postgresql://postgres:***@127.0.0.1")
    assert "hunter2" not in done.stdout
    unfair = report(doctor(url, "--json", HERALD_PER_INTEGRATION_INFLIGHT="50", HERALD_PER_HOST_CONNECTIONS="50"))
    assert [c["detail"] for c in unfair["checks"] if c["check"] == "settings" and c["status"] == "warning"] == [
        "HERALD_PER_INTEGRATION_INFLIGHT (50) is not below HERALD_PER_HOST_CONNECTIONS (50): one integration whose "
        "receiver hangs can hold every connection to its host, and the other integrations on that host wait"]
    invalid = doctor(f"sqlite:///{tmp_path / 'x.db'}", "--json", HERALD_LEASE_SECONDS="soon")
    assert invalid.returncode == 1
    assert problems(report(invalid)) == ["settings: HERALD_LEASE_SECONDS: Input should be a valid number, "
                                         "unable to parse string as a number"]


def test_brokers_are_connected_to_as_a_worker_would(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'brokers.db'}"
    upgrade(url)
    closed = free_port()
    configs: list[tuple[str, dict[str, Any]]] = [
        ("stomp", {"addresses": [f"stomp://127.0.0.1:{closed}"], "destination": "/queue/x", "username": "guest",
                   "password": "guest"}),
        ("aws_sqs", {"url": f"http://127.0.0.1:{closed}/000000000000/q", "aws_access_key_id": "k",
                     "aws_secret_access_key": "s", "region": "us-east-1"}),
        ("webhook", {"url": f"http://127.0.0.1:{closed}/hook"}),  # a receiver is not a broker: not checked
    ]
    live = stomp_running()
    if live:
        configs.append(("stomp", {"addresses": [f"stomp://{STOMP[0]}:{STOMP[1]}"], "destination": "/queue/y",
                                  "username": "guest", "password": "guest"}))
    ids = asyncio.run(_with_integrations(url, configs))

    open_guard = doctor(url, "--json")  # the test environment allows private networks
    assert open_guard.returncode == 1
    found = problems(report(open_guard))
    assert sorted(found) == sorted([
        f"brokers: aws_sqs 127.0.0.1:{closed} unreachable: connection refused (nothing listens there) "
        f"(1 integration, e.g. {ids[1]})",
        f"brokers: stomp 127.0.0.1:{closed} unreachable: connection refused (nothing listens there) "
        f"(1 integration, e.g. {ids[0]})",
    ])
    reachable = [c["detail"] for c in report(open_guard)["checks"] if c["check"] == "brokers" and c["status"] == "ok"]
    if live:
        assert reachable == [f"stomp 127.0.0.1:61613 reachable (1 integration, e.g. {ids[3]})"]

    guarded = doctor(url, "--json", HERALD_ALLOW_PRIVATE_NETWORKS="false")
    assert guarded.returncode == 1
    refused = problems(report(guarded))
    assert len(refused) == (3 if live else 2)
    assert all("refused by the outbound guard" in line for line in refused)
    guard = [c for c in report(guarded)["checks"] if c["check"] == "outbound guard"]
    assert guard[0]["status"] == "ok" and guard[0]["detail"].startswith("on:")
