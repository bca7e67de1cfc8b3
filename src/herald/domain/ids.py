"""Time-ordered ids and UTC timestamps, as the API writes them."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

import uuid_utils

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def is_id(value: str) -> bool:
    """Shaped like the ids Herald gives out (lower-case UUIDs): anything else names nothing, and need not be looked
    up (PostgreSQL cannot even compare a NUL character)."""
    return _ID.fullmatch(value) is not None


def new_id() -> str:
    return str(uuid_utils.uuid7())


def floor_id(at: datetime) -> str:
    """The smallest UUIDv7 of `at`'s millisecond: every id below it was made before `at`, so a time range is an
    id range on a primary key or any index that ends in the id."""
    hex_ms = f"{int(at.timestamp() * 1000):012x}"
    return f"{hex_ms[:8]}-{hex_ms[8:]}-7000-8000-000000000000"


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
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00, before the first representable instant
        raise ValueError("the time is out of range") from None
