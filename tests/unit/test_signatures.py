"""Signatures verify with the reference `standardwebhooks` library; the body is SPEC 7's shape."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from herald.domain.messages import OutboundMessage
from herald.domain.signatures import generate_secret, sign
from herald.domain.webhook_request import webhook_body, webhook_headers


def make_message(**overrides: object) -> OutboundMessage:
    fields: dict[str, object] = dict(
        job_id="job-1",
        event_id="event-1",
        store_id="store-1",
        triggered_by="order.paid",
        attempt=2,
        payload_json=orjson.dumps({"data": {"id": "order-9", "total": 12.5, "note": "café"}}).decode(),
        event_created_at=datetime(2024, 1, 1, tzinfo=UTC),
        integration_id="integration-1",
        integration_type="webhook",
        integration_name="Order paid",
        integration_description="tells the shop",
        configuration={"url": "https://example.com/hook", "secret_key": "s3cret"},
        signing_secrets=[generate_secret(), generate_secret()],
    )
    fields.update(overrides)
    return OutboundMessage(**fields)  # type: ignore[arg-type]


def test_generated_secret_is_whsec_and_24_random_bytes() -> None:
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert generate_secret() != secret


def test_each_secret_signature_verifies_with_standardwebhooks() -> None:
    old, new = generate_secret(), generate_secret()
    body = '{"hello":"wörld"}'.encode()
    now = int(time.time())
    signature = sign([new, old], "msg_1", now, body)
    assert len(signature.split(" ")) == 2
    assert all(part.startswith("v1,") for part in signature.split(" "))
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(now), "webhook-signature": signature}
    for secret in (new, old):
        assert Webhook(secret).verify(body, headers) == {"hello": "wörld"}
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify(body + b" ", headers)


def test_body_has_spec_shape_with_resources_as_json_string() -> None:
    message = make_message()
    body = json.loads(webhook_body(message))
    assert body == {
        "id": "event-1",
        "triggered_by": "order.paid",
        "attempt": 2,
        "store_id": "store-1",
        "integration": {
            "id": "integration-1",
            "integration_type": "webhook",
            "name": "Order paid",
            "description": "tells the shop",
        },
        "resources": json.dumps(message.payload, separators=(",", ":"), ensure_ascii=False),
        "payload": message.payload,
    }
    assert json.loads(body["resources"]) == message.payload


def test_deleted_event_resources_is_the_object_itself() -> None:
    payload = {"type": "integration", "id": "integration-7"}
    message = make_message(triggered_by="integration.deleted", payload_json=orjson.dumps(payload).decode())
    body = json.loads(webhook_body(message))
    assert body["resources"] == payload
    assert body["payload"] == payload


def test_headers_are_signed_and_verify_for_each_secret() -> None:
    message = make_message()
    body = webhook_body(message)
    now = int(time.time())
    headers = webhook_headers(message, body, now, "Herald/test")
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Herald/test"
    assert headers["X-MOLTIN-INTEGRATION-TRIGGER"] == "order.paid"
    assert headers["X-MOLTIN-SECRET-KEY"] == "s3cret"
    assert headers["webhook-id"] == "job-1"
    assert headers["webhook-timestamp"] == str(now)
    for secret in message.signing_secrets:
        assert Webhook(secret).verify(body, headers)["id"] == "event-1"


def test_optional_headers_are_left_out_when_not_configured() -> None:
    message = make_message(configuration={"url": "https://example.com", "secret_key": ""}, signing_secrets=[])
    headers = webhook_headers(message, webhook_body(message), int(time.time()), "Herald/test")
    assert "X-MOLTIN-SECRET-KEY" not in headers
    assert "webhook-signature" not in headers
    assert headers["webhook-id"] == "job-1"
