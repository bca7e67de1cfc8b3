"""The one small interface every delivery target (webhook, SQS, STOMP) implements."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import orjson


@dataclass(slots=True)
class OutboundMessage:
    """Everything a transport needs to make one delivery attempt of one job."""

    job_id: str
    event_id: str
    store_id: str
    triggered_by: str
    attempt: int
    payload_json: str  # the event's payload, as the JSON text it was stored as
    event_created_at: datetime
    integration_id: str
    integration_type: str
    integration_name: str
    integration_description: str
    configuration: dict[str, Any]  # unmasked, as stored
    signing_secrets: list[str] = field(default_factory=list)  # "whsec_..." newest first

    @property
    def payload(self) -> dict[str, Any]:
        return orjson.loads(self.payload_json)  # type: ignore[no-any-return]


@dataclass(slots=True)
class AttemptResult:
    """The outcome of one attempt, exactly what becomes one integration-log row."""

    succeeded: bool
    status_code: int | None
    body: str
    error_detail: str
    processing_time: float
    retry_after: float | None = None  # seconds asked by the receiver (Retry-After on 429/503)
    gone: bool = False  # the receiver answered 410 Gone: the integration is disabled


BODY_LIMIT = 4096  # bytes of the receiver's or broker's answer kept in a log (SPEC section 6)


def blocked_detail(host: str) -> str:
    """The error_detail of a delivery refused by the outbound address policy (the same for every transport)."""
    return (
        f"Delivery to {host} was blocked because its address is loopback, private, link-local or "
        "otherwise non-public (HERALD_ALLOW_PRIVATE_NETWORKS=true lifts this)."
    )


def cut_utf8(data: bytes, limit: int = BODY_LIMIT) -> bytes:
    """Cut to `limit` bytes without splitting a UTF-8 character (backs up at most 3 bytes)."""
    if len(data) <= limit:
        return data
    cut = limit
    while cut > limit - 3 and data[cut] & 0xC0 == 0x80:  # data[cut] continues a character
        cut -= 1
    return data[:cut]


def cut_text(text: str, limit: int = BODY_LIMIT) -> str:
    """At most `limit` bytes of UTF-8, cut at a character boundary (the log `body` limit)."""
    return cut_utf8(text.encode(), limit).decode(errors="replace")


class Transport(Protocol):
    async def deliver(self, message: OutboundMessage) -> AttemptResult: ...

    async def close(self) -> None: ...
