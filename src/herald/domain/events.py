"""The catalogue of observable events and wildcard matching."""

from __future__ import annotations

_CRUD_RESOURCES = (
    "address", "account", "account-member", "account-membership", "brand", "category", "collection",
    "currency", "customer", "customAPIEntryType", "catalog-release", "catalog-rule", "integration",
    "product", "user-authentication-info",
)

EVENT_KEYS: frozenset[str] = frozenset(
    [f"{r}.{a}" for r in _CRUD_RESOURCES for a in ("created", "updated", "deleted")]
    + [
        "cart.updated", "cart.deleted", "file.created", "file.deleted",
        "order.created", "order.updated", "order.paid", "order.authorized", "order.fulfilled",
        "order.cancelled", "order.refunded", "payment-gateway.updated", "settings.created",
        "settings.updated", "stock-transaction.created", "transaction.created", "transaction.updated",
        "one-time-password-token-request.created",
    ]
)
RESOURCES: frozenset[str] = frozenset(k.split(".", 1)[0] for k in EVENT_KEYS)


def is_valid_pattern(pattern: str) -> bool:
    """An exact event key, `resource.*` for a known resource, or `*`."""
    if pattern == "*" or pattern in EVENT_KEYS:
        return True
    resource, _, action = pattern.rpartition(".")
    return action == "*" and resource in RESOURCES


def matches(patterns: list[str], key: str) -> bool:
    for pattern in patterns:
        if pattern == key or pattern == "*":
            return True
        if pattern.endswith(".*") and key.startswith(pattern[:-1]):
            return True
    return False


def is_deletion(key: str) -> bool:
    return key.endswith(".deleted")
