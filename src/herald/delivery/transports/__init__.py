"""Transports, one module per integration type, each a class with `from_settings(settings)`.

`TRANSPORTS` maps a type's name (as registered in `herald.domain.destinations`) to its class, imported only
when a worker first delivers to that type: an API process never loads aiobotocore.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from herald.delivery.transports.base import Transport
    from herald.settings import Settings

TRANSPORTS: dict[str, str] = {
    "webhook": "herald.delivery.transports.webhook:WebhookTransport",
    "aws_sqs": "herald.delivery.transports.sqs:SqsTransport",
    "stomp": "herald.delivery.transports.stomp:StompTransport",
}


def make_transport(integration_type: str, settings: Settings) -> Transport:
    """The transport for `integration_type`, configured from the settings."""
    try:
        where = TRANSPORTS[integration_type]
    except KeyError:
        raise ValueError(f"no transport for integration_type {integration_type!r}") from None
    module, _, name = where.partition(":")
    transport: Transport = getattr(importlib.import_module(module), name).from_settings(settings)
    return transport
