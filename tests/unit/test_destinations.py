"""The destination registry: validation texts and paths, secrets, the OpenAPI schema, and its tie to transports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from herald.delivery.transports import TRANSPORTS
from herald.domain.destinations import DESTINATIONS, ValidationFailed, validate_configuration
from herald.domain.integrations import validate_create, validate_update
from herald.domain.masking import mask_configuration

# What the hand-written validation answered before the registry existed: every case must answer the same.
GOLDEN = json.loads((Path(__file__).parent / "data" / "integration_validation.json").read_text())


def _outcome(check: Any, *args: Any) -> list[Any]:
    try:
        return ["ok", check(*args)]
    except ValidationFailed as exc:
        return ["err", exc.detail, exc.source]


@pytest.mark.parametrize(("kind", "config", "expected"), GOLDEN["configs"])
def test_configuration_answers_as_before(kind: str, config: Any, expected: list[Any]) -> None:
    assert _outcome(validate_configuration, kind, config) == expected


@pytest.mark.parametrize(("body", "expected"), GOLDEN["creates"])
def test_create_answers_as_before(body: Any, expected: list[Any]) -> None:
    if expected[1:2] == ["must be one of webhook, aws_sqs, stomp"]:  # the list grows with the registry
        expected = ["err", f"must be one of {', '.join(DESTINATIONS)}", expected[2]]
    assert _outcome(validate_create, body) == expected


@pytest.mark.parametrize(("body", "expected"), GOLDEN["updates"])
def test_update_answers_as_before(body: Any, expected: list[Any]) -> None:
    assert _outcome(validate_update, body, GOLDEN["stored"]) == expected


def test_every_type_has_a_model_and_a_transport() -> None:
    """A type with a model but no transport (or the reverse) would accept integrations nobody can deliver."""
    assert DESTINATIONS, "the registry is empty"
    assert set(DESTINATIONS) == set(TRANSPORTS)
    assert next(iter(DESTINATIONS)) == "webhook"  # the default type comes first


def test_secret_fields_come_from_the_models() -> None:
    assert DESTINATIONS["webhook"].secret_fields == {"secret_key"}
    assert DESTINATIONS["aws_sqs"].secret_fields == {"aws_access_key_id", "aws_secret_access_key"}
    assert DESTINATIONS["stomp"].secret_fields == {"password"}
    masked = mask_configuration({"url": "https://x", "username": "someone-long", "password": "hunter2hunter2"}, "stomp")
    assert masked == {"url": "https://x", "username": "someone-long", "password": "**********ter2"}


def test_masked_echo_keeps_only_secrets() -> None:
    """Sending back the masked form keeps a secret; a non-secret field is taken as sent."""
    stored = {"integration_type": "stomp", "configuration": {
        "addresses": ["stomp://b:61613"], "destination": "/queue/a", "username": "user", "password": "long-password"}}
    body = {"data": {"type": "integration", "configuration": {"password": "*********word", "destination": "/queue/b"}}}
    out = validate_update(body, stored)
    assert out["configuration"]["password"] == "long-password"
    assert out["configuration"]["destination"] == "/queue/b"


def test_openapi_documents_each_type(tmp_path: Path) -> None:
    from herald.app import create_app
    from herald.settings import Settings

    spec = create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db")).openapi()
    schemas = spec["components"]["schemas"]
    body = spec["paths"]["/v2/integrations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    text = json.dumps(spec)
    # every $ref resolves
    for ref in {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}:
        assert ref in schemas, ref
    assert body == {"$ref": "#/components/schemas/IntegrationEnvelope"}
    union = schemas["IntegrationEnvelope"]["properties"]["data"]
    mapping = union["discriminator"]["mapping"]
    assert set(mapping) == set(DESTINATIONS)
    for name, kind in DESTINATIONS.items():
        variant = schemas[mapping[name].rsplit("/", 1)[1]]
        config_ref = json.dumps(variant["properties"]["configuration"])
        config = schemas[kind.model.__name__]
        assert kind.model.__name__ in config_ref
        assert set(config["properties"]) == set(kind.fields)
        assert config["additionalProperties"] is False
        for secret in kind.secret_fields:
            assert config["properties"][secret].get("format") == "password" or "password" in json.dumps(
                config["properties"][secret])


def test_every_type_has_its_readme_section() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name, kind in DESTINATIONS.items():
        assert f"### `{name}`" in readme, name
        section = readme.split(f"### `{name}`", 1)[1].split("\n#", 1)[0]
        for field in kind.fields:
            assert f"`{field}`" in section, (name, field)
