"""Herald driven by the official JS SDK (`@moltin/sdk` from npm), configured exactly as a user would:
`gateway({client_id, client_secret, host: "127.0.0.1:PORT", protocol: "http", storage: new MemoryStorageFactory()})`.

The node scripts live in tests/js (core.mjs, logs.mjs, auth.mjs); each prints one JSON document of what the
SDK answered. These tests start a real `herald serve` on each backend, run the scripts against it and check
what the SDK got against SPEC sections 1-3, 6 and 9."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.support.server import HeraldProcess, Receiver, create_store, poll, serve, token

pytestmark = pytest.mark.e2e

JS_DIR = Path(__file__).resolve().parents[1] / "js"
NODE_TIMEOUT = 90.0  # seconds for one node script; the SDK itself has no overall deadline
NPM_TIMEOUT = 300.0

RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NON_2XX = "Received a status code outside of 2xx range - treating webhook as a fail"
NOT_FOUND = {"status": 404, "title": "Not Found", "detail": "The resource could not be found"}
LOG_KEYS = {
    "id", "type", "succeeded", "attempt", "processing_time", "body", "status_code", "error_detail",
    "relationships", "meta",
}


# --------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def node() -> str:
    """The node binary, with tests/js/node_modules installed from the committed lock file (`npm ci`) once."""
    node_bin = shutil.which("node")
    if node_bin is None:
        pytest.fail("node is not installed (needed for the @moltin/sdk end-to-end tests; node >= 18)")
    if not (JS_DIR / "node_modules" / "@moltin" / "sdk" / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"npm is not installed: cannot install the JS SDK in {JS_DIR} (run `npm ci` there)")
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True, timeout=NPM_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` in {JS_DIR} did not finish within {NPM_TIMEOUT:.0f}s")
        if done.returncode != 0:
            pytest.fail(f"`npm ci` in {JS_DIR} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return node_bin


@pytest.fixture
def herald(database_url: str, tmp_path: Path) -> Iterator[HeraldProcess]:
    hp = serve(database_url, tmp_path)
    try:
        yield hp
    finally:
        hp.stop()


@pytest.fixture
def store(database_url: str) -> dict[str, str]:
    """A fresh store (tenant) per test: the lists the SDK reads hold only this test's objects."""
    return create_store(database_url, f"JS SDK store {secrets.token_hex(3)}")


# ---------------------------------------------------------------------------------------------- helpers


async def run_script(
    node: str, script: str, herald: HeraldProcess, store: dict[str, str], *args: str, expect_ok: bool = True,
) -> dict[str, Any]:
    """Run `node tests/js/<script> --host .. --client-id .. --client-secret .. <args>` without blocking the event
    loop (a Receiver in this loop may have to answer Herald meanwhile); return its JSON document."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env["NODE_NO_WARNINGS"] = "1"
    argv = [
        node, str(JS_DIR / script),
        "--host", f"127.0.0.1:{herald.port}",
        "--client-id", store["client_id"],
        "--client-secret", store["client_secret"],
        *args,
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=JS_DIR, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), NODE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        pytest.fail(
            f"node {script} did not finish within {NODE_TIMEOUT:.0f}s\nstdout:\n{out.decode()}\nstderr:\n{err.decode()}"
            f"\nherald:\n{herald.output()[-4000:]}"
        )
    stdout, stderr = out.decode(), err.decode()
    lines = [line for line in stdout.splitlines() if line.strip()]
    try:
        doc = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        pytest.fail(
            f"node {script} exited {proc.returncode} without a JSON document\nstdout:\n{stdout}\nstderr:\n{stderr}"
        )
    if expect_ok and (proc.returncode != 0 or not doc.get("ok")):
        pytest.fail(
            f"node {script} exited {proc.returncode}; failed step: {json.dumps(doc.get('failure'), indent=2)}\n"
            f"document:\n{json.dumps(doc, indent=2)[:6000]}\nstderr:\n{stderr[-3000:]}\n"
            f"herald:\n{herald.output()[-4000:]}"
        )
    return doc


def masked(secret: str) -> str:
    return "*" * len(secret) if len(secret) <= 8 else "*" * (len(secret) - 4) + secret[-4:]


def header(request: dict[str, Any], name: str) -> str | None:
    for key, value in request["headers"].items():
        if key.lower() == name.lower():
            return value
    return None


def assert_timestamp(value: Any) -> None:
    assert isinstance(value, str) and RFC3339_Z.match(value), f"not an RFC 3339 UTC timestamp with Z: {value!r}"


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def assert_flat_logs_meta(doc: dict[str, Any], records: int) -> None:
    """SPEC 1 + 9: the three logs lists answer a flat meta (total = page count) and top-level results."""
    assert doc["meta"] == {"limit": 100, "offset": 0, "current": 1, "total": -(-records // 100)}, doc["meta"]
    assert doc["results"] == {"total": records}, doc.get("results")
    assert set(doc["links"]) >= {"current", "first", "last", "prev", "next"}, doc["links"]


def assert_log_shape(log: dict[str, Any], integration_id: str, job_id: str) -> None:
    """SPEC 6: a log has exactly this shape."""
    assert set(log) == LOG_KEYS, f"log keys differ from SPEC 6: {sorted(set(log) ^ LOG_KEYS)} in {log}"
    assert log["type"] == "integration-log"
    assert UUID.match(log["id"]), log["id"]
    assert isinstance(log["succeeded"], bool)
    assert isinstance(log["attempt"], int) and not isinstance(log["attempt"], bool)
    assert isinstance(log["processing_time"], (int, float)) and 0 <= log["processing_time"] < 10
    assert isinstance(log["body"], str)
    assert isinstance(log["error_detail"], str)
    assert log["relationships"] == {
        "integration": {"data": {"type": "integration", "id": integration_id}},
        "job": {"data": {"type": "integration-job", "id": job_id}},
    }
    assert set(log["meta"]) == {"timestamps"} and set(log["meta"]["timestamps"]) == {"created_at"}, log["meta"]
    assert_timestamp(log["meta"]["timestamps"]["created_at"])


# ------------------------------------------------------------------------------------------------ tests


async def test_integration_lifecycle_with_js_sdk(node: str, herald: HeraldProcess, store: dict[str, str]) -> None:
    """Script A: Authenticate, Create, All, All with Filter+Limit, Get, Update (sending back the masked secret),
    Delete, Get -> 404."""
    name = f"JS SDK {secrets.token_hex(3)}"
    secret = f"sdk-secret-{secrets.token_hex(6)}"
    async with Receiver() as receiver:
        started = time.time()
        doc = await run_script(
            node, "core.mjs", herald, store,
            "--url", receiver.url("/core"), "--secret-key", secret, "--name", name, "--new-name", f"{name} v2",
            "--probe-delivery",
        )
        deliveries = await receiver.wait_for(1)

    assert doc["steps"][-1] == "get-after-delete"

    # Authenticate: the token answer of SPEC 2; the SDK caches it by `expires` and never asked again.
    auth = doc["authenticate"]
    assert auth["token_type"] == "Bearer" and auth["identifier"] == "client_credentials"
    assert auth["expires_in"] == 3600
    assert isinstance(auth["expires"], int) and started + 3500 < auth["expires"] < time.time() + 3700
    assert doc["sdk_messages"] == [], "the SDK found its cached token invalid and re-authenticated"

    # Create
    created = doc["created"]["data"]
    integration_id = created["id"]
    assert UUID.match(integration_id)
    assert created["type"] == "integration"
    assert created["name"] == name
    assert created["description"] == ""
    assert created["enabled"] is True
    assert created["integration_type"] == "webhook"
    assert created["observes"] == ["order.paid"]
    assert created["configuration"] == {"url": receiver.url("/core"), "secret_key": masked(secret)}
    assert created["links"] == {"self": f"{herald.url}/v2/integrations/{integration_id}"}
    assert_timestamp(created["meta"]["timestamps"]["created_at"])
    assert_timestamp(created["meta"]["timestamps"]["updated_at"])

    # All: a fresh store holds exactly this integration.
    listed = doc["all"]
    assert [item["id"] for item in listed["data"]] == [integration_id]
    assert listed["data"][0] == created
    assert listed["meta"] == {"page": {"limit": 100, "offset": 0, "current": 1, "total": 1}, "results": {"total": 1}}
    assert set(listed["links"]) >= {"current", "first", "last", "prev", "next"}

    # Filter({eq: {name, enabled}}).Limit(5).All(): the SDK's own query syntax, a name with spaces.
    filtered = doc["all_filtered"]
    assert [item["id"] for item in filtered["data"]] == [integration_id]
    assert filtered["meta"] == {"page": {"limit": 5, "offset": 0, "current": 1, "total": 1}, "results": {"total": 1}}

    # Get
    assert doc["get"]["data"] == created

    # Update: the name and description changed; the masked secret sent back kept the stored secret.
    updated = doc["updated"]["data"]
    assert updated["id"] == integration_id
    assert updated["name"] == f"{name} v2"
    assert updated["description"] == "updated by the JS SDK"
    assert updated["configuration"] == {"url": receiver.url("/core"), "secret_key": masked(secret)}
    assert updated["enabled"] is True and updated["observes"] == ["order.paid"]
    assert updated["integration_type"] == "webhook"
    assert updated["meta"]["timestamps"]["created_at"] == created["meta"]["timestamps"]["created_at"]
    assert ts(updated["meta"]["timestamps"]["updated_at"]) >= ts(created["meta"]["timestamps"]["updated_at"])

    # The delivery after the update carries the real secret, not the mask the SDK sent back.
    job_id = doc["published"]["data"]["relationships"]["jobs"]["data"][0]["id"]
    assert header(deliveries[0], "X-MOLTIN-SECRET-KEY") == secret
    assert header(deliveries[0], "webhook-id") == job_id
    probe = doc["probe_logs"]["data"][0]
    assert probe["succeeded"] is True and probe["status_code"] == 200
    assert probe["relationships"]["job"]["data"]["id"] == job_id

    # Delete resolved (204 without a body: the SDK resolves with its '{}' fallback) ...
    assert doc["deleted"] == "{}"
    # ... and Get is rejected with the 404 errors body.
    rejected = doc["get_after_delete"]["body"]
    assert rejected["errors"][0]["status"] == 404
    assert {k: rejected["errors"][0][k] for k in ("status", "title", "detail")} == NOT_FOUND

    # SPEC 3: the deleted integration's logs stay listed in /v2/integrations/logs.
    async with httpx.AsyncClient(base_url=herald.url) as http:
        bearer = token(herald.url, store["client_id"], store["client_secret"])
        r = await http.get("/v2/integrations/logs", headers={"Authorization": f"Bearer {bearer}"})
    assert r.status_code == 200, r.text
    assert probe["id"] in [log["id"] for log in r.json()["data"]]


async def test_logs_and_jobs_with_js_sdk(node: str, herald: HeraldProcess, store: dict[str, str]) -> None:
    """Script B: GetAllLogs, GetLogs, GetJobs, GetAllLogsForJob after one job failed once (404) and then succeeded."""
    calls = 0

    async def first_404_then_ok(request: web.Request) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        return web.Response(status=404, text="Not found") if calls == 1 else web.Response(text="ok")

    async with Receiver(first_404_then_ok) as receiver, httpx.AsyncClient(base_url=herald.url) as http:
        bearer = token(herald.url, store["client_id"], store["client_secret"])
        auth = {"Authorization": f"Bearer {bearer}"}
        r = await http.post("/v2/integrations", headers=auth, json={"data": {
            "type": "integration", "name": "Logs via SDK", "observes": ["order.paid"], "enabled": True,
            "configuration": {"url": receiver.url("/logs"), "secret_key": "logs-secret-value"},
        }})
        assert r.status_code == 201, r.text
        integration_id = r.json()["data"]["id"]

        r = await http.post("/v2/events", headers=auth, json={"data": {
            "type": "event", "triggered_by": "order.paid", "payload": {"id": "order-1", "status": "paid"},
        }})
        assert r.status_code == 202, r.text
        event = r.json()["data"]
        [job_ref] = event["relationships"]["jobs"]["data"]
        job_id = job_ref["id"]

        async def logs() -> dict[str, Any]:
            resp = await http.get(f"/v2/integrations/{integration_id}/logs", headers=auth)
            assert resp.status_code == 200, resp.text
            return resp.json()

        await poll(logs, lambda d: any(log["succeeded"] for log in d["data"]), timeout=30)
        await receiver.wait_for(2)

        doc = await run_script(node, "logs.mjs", herald, store, "--integration-id", integration_id)
        assert len(receiver.requests) == 2, "a succeeded job was delivered again"

    assert doc["sdk_messages"] == []
    assert doc["job_id"] == job_id

    # GetLogs(id): both attempts of the job, newest first, each exactly the SPEC 6 shape.
    got = doc["logs"]
    assert len(got["data"]) == 2, got
    for log in got["data"]:
        assert_log_shape(log, integration_id, job_id)
    second, first = got["data"]
    assert first["attempt"] == 1 and second["attempt"] == 2
    assert first["succeeded"] is False
    assert first["status_code"] == 404
    assert first["body"] == "Not found"
    assert first["error_detail"] == NON_2XX
    assert second["succeeded"] is True
    assert second["status_code"] == 200
    assert second["body"] == "ok"
    assert second["error_detail"] == ""
    assert ts(first["meta"]["timestamps"]["created_at"]) <= ts(second["meta"]["timestamps"]["created_at"])
    assert_flat_logs_meta(got, 2)

    # GetAllLogs(): the store has only this integration, so the same two logs.
    all_logs = doc["all_logs"]
    assert all_logs["data"] == got["data"]
    assert_flat_logs_meta(all_logs, 2)

    # GetAllLogsForJob(id, jobId): the same two logs.
    job_logs = doc["job_logs"]
    assert job_logs["data"] == got["data"]
    assert_flat_logs_meta(job_logs, 2)

    # GetJobs(id): integration-job objects (SPEC 6), with the jobs list meta of SPEC 9.
    jobs = doc["jobs"]
    assert len(jobs["data"]) == 1, jobs
    job = jobs["data"][0]
    assert job["type"] == "integration-job"
    assert job["id"] == job_id
    assert job["status"] == "succeeded"
    assert job["triggered_by"] == "order.paid"
    assert job["attempts"] == 2
    assert job["next_attempt_at"] is None
    assert job["relationships"] == {
        "integration": {"data": {"type": "integration", "id": integration_id}},
        "event": {"data": {"type": "event", "id": event["id"]}},
    }
    assert_timestamp(job["meta"]["timestamps"]["created_at"])
    assert_timestamp(job["meta"]["timestamps"]["updated_at"])
    assert jobs["meta"] == {"page": {"limit": 100, "offset": 0, "current": 1, "total": 1}, "results": {"total": 1}}


async def test_authentication_edges_with_js_sdk(node: str, herald: HeraldProcess, store: dict[str, str]) -> None:
    """A wrong client_secret is rejected with 401; a stale cached token is replaced after Herald's 401; an implicit
    token (SDK without client_secret) gets 403."""
    doc = await run_script(node, "auth.mjs", herald, store)

    wrong = doc["wrong_secret"]["body"]
    assert wrong["errors"][0]["status"] == 401, wrong

    # A stale cached token: 401, then the SDK signed in again by itself and the retried call resolved.
    stale = doc["stale_token_all"]
    assert stale["data"] == [] and stale["meta"]["results"] == {"total": 0}
    assert doc["stale_token_replaced"] is True, "Herald accepted a garbage bearer token"

    implicit = doc["implicit_authenticate"]
    assert implicit["identifier"] == "implicit" and implicit["token_type"] == "Bearer"
    assert isinstance(implicit["expires"], int) and implicit["expires_in"] == 3600

    forbidden = doc["implicit_all"]["body"]
    assert forbidden["errors"][0]["status"] == 403, forbidden
    assert doc["sdk_messages"] == []
