"""Time-ordered ids and UTC timestamps, as the API writes them."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

import uuid_utils


def new_id() -> str:
    return str(uuid_utils.uuid7())


def utcnow() -> datetime:
    return datetime.now(UTC)


@lru_cache(maxsize=1024)
def rfc3339(value: datetime | None) -> str | None:
    """`2026-11-26T15:43:33.315225Z`. Cached: every event and job of one publish shares its timestamp."""
    if value is None:
        return None
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 / ISO 8601 timestamp (a date alone means midnight UTC); raises ValueError."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
