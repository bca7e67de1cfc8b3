"""Secrets are answered masked; a masked value sent back means "keep what is stored"."""

from __future__ import annotations

from typing import Any

from herald.domain.destinations import DESTINATIONS

ALL_SECRET_FIELDS = frozenset().union(*(d.secret_fields for d in DESTINATIONS.values()))
"""Every field that is a secret in some integration type (used when the type is not known)."""


def secret_fields(integration_type: str | None) -> frozenset[str]:
    kind = DESTINATIONS.get(integration_type) if integration_type else None
    return kind.secret_fields if kind is not None else ALL_SECRET_FIELDS


def mask(value: str) -> str:
    if len(value) <= 8:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


def mask_configuration(configuration: dict[str, Any], integration_type: str | None = None) -> dict[str, Any]:
    secrets = secret_fields(integration_type)
    return {k: mask(v) if k in secrets and isinstance(v, str) and v else v for k, v in configuration.items()}


def is_masked_echo(sent: Any, stored: Any) -> bool:
    """True when `sent` is exactly the masked form of `stored`."""
    return isinstance(sent, str) and isinstance(stored, str) and bool(stored) and sent == mask(stored)
