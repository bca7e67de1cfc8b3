"""Off a terminal, every log line of `herald serve` is one JSON object with its context, and no line ever holds
a client secret, an access token, a signing key or a webhook secret."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.support.server import HERALD, HeraldProcess, Receiver, create_store, free_port, herald_env, start, token

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "webhook-secret-do-not-log-4711"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[HeraldProcess, dict[str, str]]]:
    url = f"sqlite:///{tmp_path}/logs.db"
    subprocess.run(HERALD + ["migrate"], env=herald_env(url), check=True, capture_output=True)
    creds = create_store(url)  # a store exists, so `serve` prints no first-store credentials
    port = free_port()
    env = herald_env(url, HERALD_LOG_LEVEL="info", HERALD_RETRY_SCHEDULE="0.1")
    process = start(["serve", "--port", str(port)], env, tmp_path / "serve.log", port)
    try:
        yield process, creds
    finally:
        process.stop()


async def test_log_lines_are_json_with_context_and_without_secrets(
    server: tuple[HeraldProcess, dict[str, str]],
) -> None:
    process, creds = server

    async def fails_once(request: web.Request) -> web.Response:
        return web.Response(status=500 if request.headers["webhook-id"] not in seen else 200, text="no")

    seen: set[str] = set()
    async with Receiver(fails_once) as receiver, httpx.AsyncClient(base_url=process.url) as client:
        access = token(process.url, creds["client_id"], creds["client_secret"])
        headers = {"Authorization": f"Bearer {access}", "X-Request-Id": "trace-publish-1"}
        wrong = await client.post("/oauth/access_token", data={"grant_type": "client_credentials",
                                                               "client_id": creds["client_id"],
                                                               "client_secret": "wrong-" + creds["client_secret"]})
        assert wrong.status_code == 401
        body = {"data": {"type": "integration", "name": "logs", "enabled": True, "observes": ["order.paid"],
                         "configuration": {"url": receiver.url(), "secret_key": WEBHOOK_SECRET}}}
        created = await client.post("/v2/integrations", json=body, headers=headers)
        integration_id = created.json()["data"]["id"]
        signing_key = (await client.get(f"/v2/integrations/{integration_id}/signing-secret", headers=headers)
                       ).json()["data"]["key"]
        event = {"data": {"type": "event", "triggered_by": "order.paid", "payload": {"card": "4111-secret-payload"}}}
        assert (await client.post("/v2/events", json=event, headers=headers)).status_code == 202
        first = await receiver.wait_for(1)
        seen.add(first[0]["headers"]["webhook-id"])
        await receiver.wait_for(2)
    process.stop()
    text = process.output()
    lines: list[dict[str, Any]] = []
    for raw in text.splitlines():
        if not raw.strip() or raw.startswith(("Herald 0", "API docs: ")):
            continue  # the CLI's own banner (version, URL), printed for a person, not a log line
        lines.append(json.loads(raw))  # fails the test on any line that is not one JSON object
    assert lines, text
    for line in lines:
        assert {"ts", "level", "msg", "logger"} <= line.keys(), line
    access_lines = [line for line in lines if line["logger"] == "uvicorn.access"]
    publish = [line for line in access_lines if "POST /v2/events" in line["msg"]]
    assert publish and publish[0]["request_id"] == "trace-publish-1"
    assert all(line.get("request_id") for line in access_lines)
    for secret in (creds["client_secret"], access, signing_key, signing_key.removeprefix("whsec_"), WEBHOOK_SECRET,
                   "4111-secret-payload"):
        assert secret not in text
