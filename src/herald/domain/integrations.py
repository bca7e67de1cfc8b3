"""Validation of integration bodies (create and partial update), per integration_type. Pure: no I/O."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from herald.domain.events import is_valid_pattern
from herald.domain.masking import is_masked_echo

INTEGRATION_TYPES = ("webhook", "aws_sqs", "stomp")


class ValidationFailed(Exception):
    """A 422: `detail` says what is wrong, `source` names the field (e.g. `data.observes`)."""

    def __init__(self, detail: str, source: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.source = source


def _http_url(value: Any, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValidationFailed("must be an absolute http or https URL", source)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed("must be an absolute http or https URL", source)
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise ValidationFailed("has an invalid port", source) from None
    return value


def _text(value: Any, source: str, *, required: bool = True) -> str:
    if not isinstance(value, str) or (required and not value.strip()):
        raise ValidationFailed("must be a non-empty string" if required else "must be a string", source)
    return value


def _stomp_address(value: Any, source: str) -> str:
    if not isinstance(value, str):
        raise ValidationFailed("must be a stomp:// or stomp+ssl:// address", source)
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("stomp", "stomp+ssl") or not parts.hostname or port is None:
        raise ValidationFailed("must be a stomp://host:port or stomp+ssl://host:port address", source)
    return value


_REQUIRED = {
    "webhook": ("url",),
    "aws_sqs": ("url", "aws_access_key_id", "aws_secret_access_key", "region"),
    "stomp": ("addresses", "destination", "username", "password"),
}
_OPTIONAL = {"webhook": ("secret_key",), "aws_sqs": ("endpoint_url",), "stomp": ()}


def validate_configuration(integration_type: str, config: Any) -> dict[str, Any]:
    """Check a complete configuration for `integration_type`; returns it without null optional keys."""
    base = "data.configuration"
    if not isinstance(config, dict):
        raise ValidationFailed("must be an object", base)
    allowed = _REQUIRED[integration_type] + _OPTIONAL[integration_type]
    for key in config:
        if key not in allowed:
            raise ValidationFailed(
                f"is not a configuration field of a {integration_type} integration (allowed: {', '.join(allowed)})",
                f"{base}.{key}",
            )
    for key in _REQUIRED[integration_type]:
        if config.get(key) is None:
            raise ValidationFailed(f"is required for a {integration_type} integration", f"{base}.{key}")
    out = {k: v for k, v in config.items() if v is not None}
    if integration_type == "webhook":
        _http_url(out["url"], f"{base}.url")
        if "secret_key" in out:
            _text(out["secret_key"], f"{base}.secret_key", required=False)
    elif integration_type == "aws_sqs":
        _http_url(out["url"], f"{base}.url")
        for key in ("aws_access_key_id", "aws_secret_access_key", "region"):
            _text(out[key], f"{base}.{key}")
        if "endpoint_url" in out:
            _http_url(out["endpoint_url"], f"{base}.endpoint_url")
    else:
        addresses = out["addresses"]
        if not isinstance(addresses, list) or not addresses:
            raise ValidationFailed("must be a non-empty list of stomp:// addresses", f"{base}.addresses")
        for i, address in enumerate(addresses):
            _stomp_address(address, f"{base}.addresses[{i}]")
        for key in ("destination", "username", "password"):
            _text(out[key], f"{base}.{key}")
    return out


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
    data = body["data"]
    if data.get("type") != "integration":
        raise ValidationFailed("must be `integration`", "data.type")
    return data


def _integration_type(value: Any) -> str:
    if value not in INTEGRATION_TYPES:
        raise ValidationFailed(f"must be one of {', '.join(INTEGRATION_TYPES)}", "data.integration_type")
    return value


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
        for key, value in sent.items():
            if value is None:
                merged.pop(key, None)
            elif is_masked_echo(value, merged.get(key)):
                continue
            else:
                merged[key] = value
        out["configuration"] = validate_configuration(new_type, merged)
    return out
