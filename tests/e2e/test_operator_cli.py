"""The operator's CLI against a live `herald serve` and its database, SQLite and PostgreSQL: stores, integrations,
logs tail (with --follow), bulk retries, rotate-secret and doctor, each with and without --json.

Every command runs as a subprocess, as an operator would run it; the receiver is a real HTTP server on loopback
whose answers the test switches, so that a retry is seen to deliver for real."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.support.databases import dedicated_database
from tests.support.server import HERALD, HeraldProcess, Receiver, herald_env, poll, serve, token

pytestmark = pytest.mark.e2e

HOOK_SECRET = "receiver-shared-secret-4f9a1c"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def live(request: pytest.FixtureRequest, backend: str) -> Iterator[HeraldProcess]:
    with dedicated_database(request, backend, "cli") as url:
        logs_dir = request.getfixturevalue("tmp_path_factory").mktemp("serve-cli")
        process = serve(url, logs_dir, HERALD_RETRY_SCHEDULE="0.2,0.2", HERALD_SECRET_KEY="")
        process.database_url = url  # type: ignore[attr-defined]
        try:
            yield process
        finally:
            process.stop()


def herald(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(HERALD + list(args), env=herald_env(url, **env), capture_output=True, text=True,
                          timeout=60)


async def aherald(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`herald ...` off the event loop, so that the receiver in this process keeps answering meanwhile."""
    return await asyncio.to_thread(herald, url, *args, **env)


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout)


def json_lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


class Switchable:
    """A receiver whose integration paths fail (500) until told to succeed."""

    def __init__(self) -> None:
        self.failing = {"/a"}

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=500 if request.path in self.failing else 200, text="nope" if
                            request.path in self.failing else "ok")


@pytest.fixture
async def world(live: HeraldProcess) -> AsyncIterator[dict[str, Any]]:
    """A fresh store with two webhook integrations (A fails until switched, B succeeds) and a receiver."""
    url: str = live.database_url  # type: ignore[attr-defined]
    name = f"Shop {time.monotonic_ns()}"
    store = ok_json(await aherald(url, "stores", "create", "--name", name, "--json"))
    handler = Switchable()
    async with Receiver(handler) as receiver:
        tok = token(live.url, store["client_id"], store["client_secret"])
        async with httpx.AsyncClient(base_url=live.url, headers={"Authorization": f"Bearer {tok}"}) as api:
            ids = {}
            for key in ("a", "b"):
                r = await api.post("/v2/integrations", json={"data": {
                    "type": "integration", "name": f"Hook {key.upper()}", "integration_type": "webhook",
                    "enabled": True, "observes": ["order.paid"],
                    "configuration": {"url": receiver.url(f"/{key}"), "secret_key": HOOK_SECRET}}})
                assert r.status_code == 201, r.text
                ids[key] = r.json()["data"]["id"]
            yield {"url": url, "store": store, "api": api, "ids": ids, "receiver": receiver, "handler": handler}


async def publish(api: httpx.AsyncClient, count: int) -> None:
    for i in range(count):
        r = await api.post("/v2/events", json={"data": {"type": "event", "triggered_by": "order.paid",
                                                        "payload": {"n": i}}})
        assert r.status_code == 202, r.text


async def show(world: dict[str, Any], key: str) -> dict[str, Any]:
    done = await aherald(world["url"], "integrations", "show", world["ids"][key], "--store", world["store"]["id"],
                         "--json")
    result: dict[str, Any] = ok_json(done)
    return result


async def test_integrations_logs_and_bulk_retry(world: dict[str, Any]) -> None:
    url, store, ids = world["url"], world["store"], world["ids"]
    await publish(world["api"], 3)
    # A: three attempts each, all failed; B: delivered
    a = await poll(lambda: show(world, "a"), lambda s: s["jobs"] == {"failed": 3}, timeout=30, every=0.3)
    b = await poll(lambda: show(world, "b"), lambda s: s["jobs"] == {"succeeded": 3}, timeout=30, every=0.3)
    assert a["health"]["deliveries"] == 9 and a["health"]["succeeded"] == 0 and a["health"]["success_rate"] == 0
    assert a["health"]["last_failure"] and a["health"]["last_success"] is None
    assert b["health"]["deliveries"] == 3 and b["health"]["success_rate"] == 1
    assert a["enabled"] is True and a["target"].endswith("/a")
    assert a["configuration"]["secret_key"] != HOOK_SECRET and a["configuration"]["secret_key"].endswith("1c")

    # the store is chosen by name, client_id or id alike
    listed = [ok_json(await aherald(url, "integrations", "list", "--store", ref, "--json"))
              for ref in (store["name"], store["client_id"], store["id"])]
    assert listed[0] == listed[1] == listed[2]
    assert sorted(i["id"] for i in listed[0]) == sorted(ids.values())
    table = await aherald(url, "integrations", "list", "--store", store["name"])
    assert table.returncode == 0, table.stderr
    for key in ("a", "b"):
        assert ids[key] in table.stdout and f"Hook {key.upper()}" in table.stdout
    assert HOOK_SECRET not in table.stdout and HOOK_SECRET not in json.dumps(listed[0])
    detail = await aherald(url, "integrations", "show", ids["a"], "--store", store["id"])
    assert "3 failed" in detail.stdout and "9 deliveries" in detail.stdout and HOOK_SECRET not in detail.stdout

    # logs tail: every attempt, only the failed ones, only one integration
    every = json_lines(await aherald(url, "logs", "tail", "--store", store["id"], "-n", "100", "--json"))
    assert len(every) == 12 and [r["id"] for r in every] == sorted(r["id"] for r in every)  # oldest first
    failed = json_lines(await aherald(url, "logs", "tail", "--store", store["id"], "--failed", "--json"))
    assert len(failed) == 9 and all(not r["succeeded"] and r["integration_id"] == ids["a"] for r in failed)
    only_b = json_lines(await aherald(url, "logs", "tail", "--store", store["id"], "--integration", ids["b"],
                                      "--json"))
    assert len(only_b) == 3 and all(r["succeeded"] and r["status_code"] == 200 for r in only_b)
    text = await aherald(url, "logs", "tail", "--store", store["id"], "-n", "2")
    assert text.returncode == 0 and len(text.stdout.splitlines()) == 2

    # A's receiver recovers: retry what failed in the last hour, and it is delivered
    world["handler"].failing.clear()
    retried = ok_json(await aherald(url, "jobs", "retry", "--failed", "--since", "1h", "--integration", ids["a"],
                                    "--store", store["id"], "--json"))
    assert retried == {"store_id": store["id"], "status": "failed", "retried": 3}
    await poll(lambda: show(world, "a"), lambda s: s["jobs"] == {"succeeded": 3}, timeout=30, every=0.3)
    again = await aherald(url, "jobs", "retry", "--failed", "--store", store["id"])
    assert again.returncode == 0 and "0 failed job(s)" in again.stdout
    # one job by its id
    one = every[0]["job_id"]
    single = ok_json(await aherald(url, "jobs", "retry", one, "--store", store["id"], "--json"))
    assert single["id"] == one and single["retried"] == 1


async def test_logs_tail_follow_prints_new_logs(world: dict[str, Any]) -> None:
    url, store = world["url"], world["store"]
    follower = await asyncio.create_subprocess_exec(
        *HERALD, "logs", "tail", "--store", store["id"], "--follow", "--integration", world["ids"]["b"],
        "--interval", "0.1", "--json",
        env=herald_env(url), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        # nothing old to show; a new event's log is printed as it is recorded
        await publish(world["api"], 1)
        line = await asyncio.wait_for(follower.stdout.readline(), 30)  # type: ignore[union-attr]
        log = json.loads(line)
        assert log["integration_id"] == world["ids"]["b"] and log["succeeded"] is True
    finally:
        follower.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(follower.wait(), 30)
    assert code == 0, await follower.stderr.read()  # type: ignore[union-attr]


async def test_enable_disable_go_through_the_api_path(world: dict[str, Any]) -> None:
    url, store, ids, api = world["url"], world["store"], world["ids"], world["api"]
    receiver: Receiver = world["receiver"]
    r = await api.post("/v2/integrations", json={"data": {
        "type": "integration", "name": "Watcher", "integration_type": "webhook", "enabled": True,
        "observes": ["integration.updated"],
        "configuration": {"url": receiver.url("/watch")}}})
    assert r.status_code == 201, r.text
    off = ok_json(await aherald(url, "integrations", "disable", ids["b"], "--store", store["id"], "--json"))
    assert off["enabled"] is False and off["changed"] is True
    assert (await api.get(f"/v2/integrations/{ids['b']}")).json()["data"]["enabled"] is False
    twice = await aherald(url, "integrations", "disable", ids["b"], "--store", store["id"])
    assert twice.returncode == 0 and "already disabled" in twice.stdout
    await publish(api, 1)  # a disabled integration gets no job
    assert (await show(world, "b"))["jobs"] == {}
    # integration.updated was raised, as the API's PUT raises it
    async def watched() -> list[dict[str, Any]]:
        return [json.loads(q["body"]) for q in receiver.requests if q["path"] == "/watch"]

    [event] = await poll(watched, lambda found: len(found) >= 1, timeout=30)
    changed = json.loads(event["resources"])["data"]
    assert event["triggered_by"] == "integration.updated" and changed["id"] == ids["b"]
    assert changed["enabled"] is False
    on = await aherald(url, "integrations", "enable", ids["b"], "--store", store["id"])
    assert on.returncode == 0 and "is now enabled" in on.stdout
    assert (await api.get(f"/v2/integrations/{ids['b']}")).json()["data"]["enabled"] is True


async def test_stores_list_and_rotate_secret(live: HeraldProcess, world: dict[str, Any]) -> None:
    url, store = world["url"], world["store"]
    listed = ok_json(await aherald(url, "stores", "list", "--json"))
    mine = [s for s in listed if s["id"] == store["id"]]
    assert mine and mine[0]["name"] == store["name"] and "client_secret" not in mine[0]
    table = await aherald(url, "stores", "list")
    assert store["id"] in table.stdout and store["client_id"] in table.stdout and store["name"] in table.stdout

    rotated = ok_json(await aherald(url, "stores", "rotate-secret", store["name"], "--json"))
    assert rotated["id"] == store["id"] and rotated["client_secret"] != store["client_secret"]
    async with httpx.AsyncClient(base_url=live.url) as anon:
        def form(secret: str) -> dict[str, str]:
            return {"grant_type": "client_credentials", "client_id": store["client_id"], "client_secret": secret}

        assert (await anon.post("/oauth/access_token", data=form(store["client_secret"]))).status_code == 401
        assert (await anon.post("/oauth/access_token", data=form(rotated["client_secret"]))).status_code == 200
    shown = await aherald(url, "stores", "rotate-secret", store["id"])
    assert shown.returncode == 0 and "shown only this once" in shown.stdout


async def test_store_choice_problems_are_one_line(world: dict[str, Any]) -> None:
    url, store = world["url"], world["store"]
    # several stores exist in this database: --store is needed
    missing = await aherald(url, "integrations", "list")
    assert missing.returncode == 1 and "choose one with --store" in missing.stderr
    unknown = await aherald(url, "integrations", "list", "--store", "no-such-store")
    assert unknown.returncode == 1 and "no store has the id, client_id or name 'no-such-store'" in unknown.stderr
    nothing = await aherald(url, "integrations", "show", "0190ffff-0000-7000-8000-000000000000", "--store",
                            store["id"])
    assert nothing.returncode == 1 and "has no integration" in nothing.stderr
    for done in (missing, unknown, nothing):
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    # the environment names the store too
    by_env = ok_json(await aherald(url, "integrations", "list", "--json", HERALD_STORE=store["id"]))
    assert sorted(i["id"] for i in by_env) == sorted(world["ids"].values())


async def test_doctor_passes_on_a_healthy_deployment(world: dict[str, Any]) -> None:
    report = await aherald(world["url"], "doctor", "--json")
    result = ok_json(report)
    assert result["ok"] is True
    by_name = {c["check"]: c for c in result["checks"]}
    assert {"settings", "outbound guard", "database", "migrations", "brokers"} <= set(by_name)
    # the test environment allows private networks, and doctor says so
    assert by_name["outbound guard"]["status"] == "warning"
    text = await aherald(world["url"], "doctor")
    assert text.returncode == 0 and "no problems" in text.stdout
