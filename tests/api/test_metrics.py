"""GET /metrics: deliveries by outcome and type (through the worker's outcome hook), HTTP answers by route
template, the due backlog; and no secret in any of it."""

from __future__ import annotations

import re
from typing import Any

import httpx

from herald.delivery.transports.base import Delivered, DeliveryFailed
from herald.delivery.transports.fake import FakeTransport
from herald.delivery.worker import Worker
from herald.domain.messages import OutboundMessage
from herald.settings import Settings
from tests.support.helpers import StoreCreds, webhook_body
from tests.support.server import poll

CONFIGS: dict[str, dict[str, Any]] = {
    "webhook": {"url": "https://example.com/hook", "secret_key": "webhook-secret-value"},
    "aws_sqs": {"url": "https://sqs.eu-west-1.amazonaws.com/1/q", "aws_access_key_id": "AKIAEXAMPLEKEY",
                "aws_secret_access_key": "aws-secret-value-123", "region": "eu-west-1"},
    "stomp": {"addresses": ["stomp://broker.example.com:61613"], "destination": "/queue/x", "username": "u",
              "password": "stomp-secret-value"},
}


def _sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + ("{" if labels else " ")):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


async def _metrics(client: httpx.AsyncClient) -> str:
    r = await client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


async def test_http_answers_are_counted_by_route_template(client: httpx.AsyncClient, store: StoreCreds) -> None:
    created = await client.post("/v2/integrations", json=webhook_body(), headers=store.headers)
    integration_id = created.json()["data"]["id"]
    for _ in range(3):
        assert (await client.get(f"/v2/integrations/{integration_id}", headers=store.headers)).status_code == 200
    await client.get("/v2/integrations/not-an-id", headers=store.headers)
    await client.get("/no/such/path")
    text = await _metrics(client)
    route = "/v2/integrations/{integration_id}"
    assert _sample(text, "herald_http_requests_total", route=route, method="GET", status="200") == 3
    assert _sample(text, "herald_http_requests_total", route=route, method="GET", status="404") == 1
    assert _sample(text, "herald_http_requests_total", route="/v2/integrations", method="POST", status="201") == 1
    assert _sample(text, "herald_http_requests_total", route="unmatched", method="GET", status="404") == 1
    assert _sample(text, "herald_http_request_duration_seconds_count", route=route, method="GET") == 4
    assert integration_id not in text  # ids never become labels


async def test_due_jobs_are_read_from_the_database(client: httpx.AsyncClient, store: StoreCreds) -> None:
    await client.post("/v2/integrations", json=webhook_body(enabled=True), headers=store.headers)
    before = _sample(await _metrics(client), "herald_jobs_due") or 0
    for _ in range(3):
        body = {"data": {"type": "event", "triggered_by": "order.paid", "payload": {"id": "o"}}}
        assert (await client.post("/v2/events", json=body, headers=store.headers)).status_code == 202
    text = await _metrics(client)
    assert _sample(text, "herald_jobs_due") == before + 3  # no worker runs in this app
    assert _sample(text, "herald_jobs", status="pending") == before + 3
    age = _sample(text, "herald_oldest_due_job_age_seconds")
    assert age is not None and age >= 0


async def test_deliveries_move_by_outcome_and_type(app: Any, client: httpx.AsyncClient, store: StoreCreds,
                                                   settings: Settings) -> None:
    """Every type: the first attempt fails, the retry succeeds; each shows in herald_deliveries_total."""

    def script(message: OutboundMessage) -> Delivered | BaseException:
        return DeliveryFailed("no", status=500) if message.attempt == 1 else Delivered(200, "ok")

    fake = FakeTransport(script)
    for kind, config in CONFIGS.items():
        body = webhook_body(enabled=True, integration_type=kind, configuration=config, observes=["order.paid"])
        assert (await client.post("/v2/integrations", json=body, headers=store.headers)).status_code == 201
    event = {"data": {"type": "event", "triggered_by": "order.paid", "payload": {"id": "o1"}}}
    assert (await client.post("/v2/events", json=event, headers=store.headers)).status_code == 202
    worker = Worker(settings.model_copy(update={"retry_schedule": (0.05,)}), app.state.db,
                    transports={kind: fake for kind in CONFIGS})
    app.state.metrics.watch(worker)
    await worker.start()
    try:
        await poll(lambda: _metrics(client), lambda text: all(
            (_sample(text, "herald_deliveries_total", outcome="succeeded", integration_type=kind) or 0) >= 1
            for kind in CONFIGS))
    finally:
        await worker.stop()
    text = await _metrics(client)
    # the test database is shared, so jobs other tests left due may be delivered too: at least ours
    for kind in CONFIGS:
        failed = _sample(text, "herald_deliveries_total", outcome="failed", integration_type=kind) or 0
        succeeded = _sample(text, "herald_deliveries_total", outcome="succeeded", integration_type=kind) or 0
        assert failed >= 1
        assert _sample(text, "herald_attempt_duration_seconds_count", integration_type=kind) == failed + succeeded
        assert _sample(text, "herald_publish_to_delivery_seconds_count", integration_type=kind) == succeeded
    assert _sample(text, "herald_worker_inflight") == 0
    assert _sample(text, "herald_worker_waiting") == 0
    for secret in ("webhook-secret-value", "aws-secret-value-123", "AKIAEXAMPLEKEY", "stomp-secret-value",
                   store.client_secret, store.client_id, store.token):
        assert secret not in text
