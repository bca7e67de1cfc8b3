"""What crosses from the queue to a transport and back: one outbound message, one attempt's result. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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
        value: dict[str, Any] = orjson.loads(self.payload_json)
        return value


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
