"""Secrets are answered masked; a masked value sent back means "keep what is stored"."""

from __future__ import annotations

from typing import Any

SECRET_FIELDS = frozenset({"secret_key", "aws_secret_access_key", "aws_access_key_id", "password"})


def mask(value: str) -> str:
    if len(value) <= 8:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


def mask_configuration(configuration: dict[str, Any]) -> dict[str, Any]:
    return {
        k: mask(v) if k in SECRET_FIELDS and isinstance(v, str) and v else v for k, v in configuration.items()
    }


def is_masked_echo(sent: Any, stored: Any) -> bool:
    """True when `sent` is exactly the masked form of `stored`."""
    return isinstance(sent, str) and isinstance(stored, str) and bool(stored) and sent == mask(stored)
