"""The webhook request Herald sends: the Moltin body and the Moltin + Standard Webhooks headers, built without I/O."""

from __future__ import annotations

from typing import Any

import orjson

from herald.domain.messages import OutboundMessage
from herald.domain.signatures import sign


def webhook_body(message: OutboundMessage) -> bytes:
    """The Moltin-compatible body; `resources` is the payload as a JSON string, as the original
    platform sent it, except for `*.deleted` events where it is the object itself. The stored JSON text
    is spliced in as it is, not parsed and serialised again."""
    payload = orjson.Fragment(message.payload_json)
    resources: Any = payload if message.triggered_by.endswith(".deleted") else message.payload_json
    return orjson.dumps(
        {
            "id": message.event_id,
            "triggered_by": message.triggered_by,
            "attempt": message.attempt,
            "store_id": message.store_id,
            "integration": {
                "id": message.integration_id,
                "integration_type": message.integration_type,
                "name": message.integration_name,
                "description": message.integration_description,
            },
            "resources": resources,
            "payload": payload,
        }
    )


def webhook_headers(
    message: OutboundMessage, body: bytes, now: int, user_agent: str
) -> dict[str, str]:
    """Moltin headers plus Standard Webhooks headers; `webhook-id` is the job id so a receiver
    can drop duplicates across retries."""
    headers = {
        "Content-Type": "application/json",
        "User-Agent": user_agent,
        "X-MOLTIN-INTEGRATION-TRIGGER": message.triggered_by,
    }
    secret_key = message.configuration.get("secret_key")
    if secret_key:
        headers["X-MOLTIN-SECRET-KEY"] = str(secret_key)
    headers["webhook-id"] = message.job_id
    headers["webhook-timestamp"] = str(now)
    if message.signing_secrets:
        headers["webhook-signature"] = sign(message.signing_secrets, message.job_id, now, body)
    return headers
