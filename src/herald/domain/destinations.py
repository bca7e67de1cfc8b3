"""The destination registry: one typed configuration model per integration type, keyed by the type's name.

Validation of `configuration` (with the API's error texts and `source` paths), which fields are secrets (masked
in answers, kept when sent back masked), the OpenAPI schema of each type and the worker's choice of transport
all come from here. Adding a type is one model below (decorated with `@destination`) plus its transport
module in `herald.delivery.transports`. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from herald.domain.cloudevents import cloudevent
from herald.domain.messages import OutboundMessage
from herald.domain.webhook_request import webhook_body

__all__ = [
    "DESTINATIONS",
    "Destination",
    "DestinationConfig",
    "Secret",
    "ValidationFailed",
    "destination",
    "validate_configuration",
]


class ValidationFailed(Exception):
    """A 422: `detail` says what is wrong, `source` names the field (e.g. `data.observes`)."""

    def __init__(self, detail: str, source: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.source = source


class _SecretMarker:
    """Marks a configuration field as a secret: answered masked, never logged, kept when echoed back masked."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "Secret"


SECRET = _SecretMarker()


def _fail(text: str) -> PydanticCustomError:
    return PydanticCustomError("herald", text)


def _http_url(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail("must be an absolute http or https URL")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail("must be an absolute http or https URL")
    try:
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise _fail("has an invalid port") from None
    return value


def _required_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail("must be a non-empty string")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("must be a string")
    return value


def _stomp_address(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("must be a stomp:// or stomp+ssl:// address")
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("stomp", "stomp+ssl") or not parts.hostname or port is None:
        raise _fail("must be a stomp://host:port or stomp+ssl://host:port address")
    return value


def _non_empty_list(what: str) -> Callable[[Any], list[Any]]:
    def check(value: Any) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise _fail(f"must be a non-empty list of {what}")
        return value

    return check


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"{parts.username}:***@" + parts.netloc.rpartition("@")[2]).geturl()


# Field types. The checks run before pydantic's own, so every bad value gets the sentence the API has always used.
HttpUrl = Annotated[str, BeforeValidator(_http_url), Field(json_schema_extra={"format": "uri"})]
Text = Annotated[str, BeforeValidator(_required_text), Field(min_length=1)]
OptionalText = Annotated[str, BeforeValidator(_text)]
StompAddress = Annotated[str, BeforeValidator(_stomp_address)]
Secret = Annotated[str, SECRET, Field(json_schema_extra={"format": "password", "x-secret": True})]
"""A secret text field (`Annotated[Secret, BeforeValidator(...)]` adds a check); answered masked."""


class DestinationConfig(BaseModel):
    """Base of every type's configuration: unknown fields are refused, nothing is coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def target(self) -> str:
        """Where deliveries go, in a few words and with no secret in them (lists, the dashboard)."""
        return ""

    def brokers(self) -> list[tuple[str, int]]:
        """(host, port) of the message brokers this destination needs, for `herald doctor` to check; a webhook
        receiver is the store's own business, so it has none."""
        return []


@dataclass(frozen=True, slots=True)
class Destination:
    """One integration type: its name on the wire, its configuration model and its secret fields."""

    name: str
    model: type[DestinationConfig]
    secret_fields: frozenset[str]
    summary: str
    body: Callable[[OutboundMessage], bytes]
    """The bytes a delivery carries (shown as "the payload sent" in the dashboard)."""

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.model.model_fields)


def _is_secret(annotation: Any, metadata: list[Any]) -> bool:
    """Marked `Secret`, directly or inside `Secret | None`."""
    if SECRET in metadata:
        return True
    if get_origin(annotation) is Annotated:
        return SECRET in annotation.__metadata__
    return any(_is_secret(arg, []) for arg in get_args(annotation))


DESTINATIONS: dict[str, Destination] = {}
"""Every integration type, in the order they are documented; `webhook` is the default."""

C = TypeVar("C", bound=DestinationConfig)


def destination(
    name: str, summary: str, body: Callable[[OutboundMessage], bytes] = cloudevent
) -> Callable[[type[C]], type[C]]:
    """Register a configuration model as the integration type `name`; `body` makes what its deliveries carry
    (a CloudEvent unless said otherwise)."""

    def register(model: type[C]) -> type[C]:
        if name in DESTINATIONS:
            raise ValueError(f"integration type {name!r} is registered twice")
        secrets = frozenset(n for n, f in model.model_fields.items() if _is_secret(f.annotation, f.metadata))
        DESTINATIONS[name] = Destination(name, model, secrets, summary, body)
        return model

    return register


# --- the integration types -------------------------------------------------------------------------------------


@destination("webhook", "An HTTPS POST of the Moltin webhook body, signed with Standard Webhooks.", webhook_body)
class WebhookConfig(DestinationConfig):
    url: HttpUrl = Field(description="Where to POST each event (http or https).")
    secret_key: Annotated[Secret, BeforeValidator(_text)] | None = Field(
        None, description="Sent as X-MOLTIN-SECRET-KEY, as Moltin did. Optional."
    )

    def target(self) -> str:
        return _without_password(self.url)


@destination("aws_sqs", "A CloudEvents message on an AWS SQS queue (or an SQS-compatible server).")
class SqsConfig(DestinationConfig):
    url: HttpUrl = Field(description="The queue URL.")
    aws_access_key_id: Annotated[Secret, BeforeValidator(_required_text)]
    aws_secret_access_key: Annotated[Secret, BeforeValidator(_required_text)]
    region: Text
    endpoint_url: HttpUrl | None = Field(None, description="An SQS-compatible endpoint instead of AWS's.")

    def target(self) -> str:
        return _without_password(self.url)

    def brokers(self) -> list[tuple[str, int]]:
        parts = urlsplit(self.endpoint_url or self.url)
        return [(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))]


@destination("stomp", "A CloudEvents message SENT to a STOMP 1.2 broker (RabbitMQ, ActiveMQ, Artemis).")
class StompConfig(DestinationConfig):
    addresses: Annotated[list[StompAddress], BeforeValidator(_non_empty_list("stomp:// addresses"))] = Field(
        description="Brokers tried in order, stomp://host:port or stomp+ssl://host:port."
    )
    destination: Text = Field(description="e.g. /queue/orders or /exchange/events/order.paid")
    username: Text
    password: Annotated[Secret, BeforeValidator(_required_text)]

    def target(self) -> str:
        more = f" (+{len(self.addresses) - 1})" if len(self.addresses) > 1 else ""
        return f"{self.destination} on {self.addresses[0]}{more}"

    def brokers(self) -> list[tuple[str, int]]:
        return [(urlsplit(a).hostname or "", urlsplit(a).port or 0) for a in self.addresses]


# --- validation ---------------------------------------------------------------------------------------------------

_PRIORITY = {"extra_forbidden": 0, "missing": 1}


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate_configuration(integration_type: str, config: Any) -> dict[str, Any]:
    """Check a complete configuration for `integration_type`; returns it without null optional keys.

    Raises `ValidationFailed` for the first problem, judged in this order: an unknown field, a missing required
    field, then each field in the model's order.
    """
    base = "data.configuration"
    if not isinstance(config, dict):
        raise ValidationFailed("must be an object", base)
    kind = DESTINATIONS[integration_type]
    known = kind.model.model_fields
    # null means "not set" for a known field; an unknown field is refused even when null
    values = {k: v for k, v in config.items() if v is not None or k not in known}
    try:
        kind.model.model_validate(values)
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: _PRIORITY.get(e["type"], 2))
        first = errors[0]
        if first["type"] == "extra_forbidden":
            detail = f"is not a configuration field of a {integration_type} integration (allowed: {', '.join(known)})"
        elif first["type"] == "missing":
            detail = f"is required for a {integration_type} integration"
        else:
            detail = first["msg"]
        raise ValidationFailed(detail, base + _path(first["loc"])) from None
    return values


def stored(integration_type: str, configuration: dict[str, Any]) -> DestinationConfig:
    """The typed configuration of a stored integration (validated when it was written)."""
    return DESTINATIONS[integration_type].model.model_validate(configuration)
