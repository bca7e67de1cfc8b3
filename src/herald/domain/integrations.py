"""Validation of integration bodies (create and partial update); each type's configuration is checked by its
model in `herald.domain.destinations`. Pure: no I/O."""

from __future__ import annotations

from typing import Any, cast

from herald.domain.destinations import DESTINATIONS, ValidationFailed, validate_configuration
from herald.domain.events import is_valid_pattern
from herald.domain.masking import is_masked_echo, secret_fields

INTEGRATION_TYPES = tuple(DESTINATIONS)


def _text(value: Any, source: str, *, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValidationFailed("must be a non-empty string" if required else "must be a string", source)
    if "\x00" in value:  # PostgreSQL cannot store one in a text column
        raise ValidationFailed("must not contain a NUL character", source)
    return value


def _observes(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ValidationFailed("must be a non-empty list of event keys", "data.observes")
    for i, key in enumerate(value):
        if not isinstance(key, str) or not is_valid_pattern(key):
            raise ValidationFailed(f"{key!r} is not an observable event", f"data.observes[{i}]")
    return list(dict.fromkeys(value))


def _common(data: dict[str, Any], out: dict[str, Any]) -> None:
    if "name" in data:
        name = _text(data["name"], "data.name")
        if len(name) > 255:
            raise ValidationFailed("must be at most 255 characters", "data.name")
        out["name"] = name
    if "description" in data:
        desc = data["description"]
        out["description"] = "" if desc is None else _text(desc, "data.description", required=False)
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            raise ValidationFailed("must be true or false", "data.enabled")
        out["enabled"] = data["enabled"]
    if "observes" in data:
        out["observes"] = _observes(data["observes"])


def _envelope(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ValidationFailed("The request body must be an object with a `data` object", "data")
    data: dict[str, Any] = body["data"]
    if data.get("type") != "integration":
        raise ValidationFailed("must be `integration`", "data.type")
    return data


def _integration_type(value: Any) -> str:
    if value not in INTEGRATION_TYPES:
        raise ValidationFailed(f"must be one of {', '.join(INTEGRATION_TYPES)}", "data.integration_type")
    return cast(str, value)  # one of INTEGRATION_TYPES


def validate_create(body: Any) -> dict[str, Any]:
    data = _envelope(body)
    for key in ("name", "observes", "configuration"):
        if data.get(key) is None:
            raise ValidationFailed("is required", f"data.{key}")
    out: dict[str, Any] = {"description": "", "enabled": False}
    _common(data, out)
    out["integration_type"] = _integration_type(data.get("integration_type", "webhook"))
    out["configuration"] = validate_configuration(out["integration_type"], data["configuration"])
    return out


def validate_update(body: Any, stored: dict[str, Any]) -> dict[str, Any]:
    """A partial update against the stored integration; returns only the columns that change."""
    data = _envelope(body)
    out: dict[str, Any] = {}
    for key in ("name", "observes"):
        if key in data and data[key] is None:
            raise ValidationFailed("must not be null", f"data.{key}")
    _common(data, out)
    new_type = _integration_type(data.get("integration_type", stored["integration_type"]))
    sent = data.get("configuration")
    if sent is not None and not isinstance(sent, dict):
        raise ValidationFailed("must be an object", "data.configuration")
    if new_type != stored["integration_type"]:
        if sent is None:
            raise ValidationFailed(
                f"a complete {new_type} configuration is required when integration_type changes",
                "data.configuration",
            )
        out["integration_type"] = new_type
        out["configuration"] = validate_configuration(new_type, sent)
    elif sent is not None:
        merged = dict(stored["configuration"])
        secrets = secret_fields(new_type)
        for key, value in sent.items():
            if value is None:
                merged.pop(key, None)
            elif key in secrets and is_masked_echo(value, merged.get(key)):
                continue
            else:
                merged[key] = value
        out["configuration"] = validate_configuration(new_type, merged)
    return out
