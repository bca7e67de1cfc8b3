"""Integrations CRUD: defaults, validation per type, masking, partial updates, delete."""

from __future__ import annotations

import pytest

from tests.support.helpers import StoreCreds, webhook_body


async def _create(client, store: StoreCreds, **overrides):  # type: ignore[no-untyped-def]
    r = await client.post("/v2/integrations", json=webhook_body(**overrides), headers=store.headers)
    assert r.status_code == 201, r.text
    return r.json()["data"]


async def test_create_answers_the_whole_object_with_defaults(client, store: StoreCreds) -> None:
    data = await _create(client, store)
    assert set(data) == {"id", "type", "name", "description", "enabled", "integration_type", "observes",
                         "configuration", "links", "meta"}
    assert data["type"] == "integration"
    assert data["description"] == ""
    assert data["enabled"] is False
    assert data["integration_type"] == "webhook"
    assert data["observes"] == ["order.paid"]
    assert data["configuration"] == {"url": "https://example.com/hook", "secret_key": "**********alue"}
    assert data["links"]["self"] == f"http://herald.test/v2/integrations/{data['id']}"
    ts = data["meta"]["timestamps"]
    assert ts["created_at"].endswith("Z") and ts["updated_at"] == ts["created_at"]


async def test_get_and_list(client, store: StoreCreds) -> None:
    data = await _create(client, store, name="One")
    r = await client.get(f"/v2/integrations/{data['id']}", headers=store.headers)
    assert r.status_code == 200
    assert r.json()["data"] == data
    listed = (await client.get("/v2/integrations", headers=store.headers)).json()
    assert [d["id"] for d in listed["data"]] == [data["id"]]
    assert listed["meta"] == {"page": {"limit": 100, "offset": 0, "current": 1, "total": 1}, "results": {"total": 1}}


@pytest.mark.parametrize(
    ("overrides", "source"),
    [
        ({"type": "integrations"}, "data.type"),
        ({"name": None}, "data.name"),
        ({"name": ""}, "data.name"),
        ({"observes": []}, "data.observes"),
        ({"observes": ["order.exploded"]}, "data.observes[0]"),
        ({"observes": ["order.paid", "nope.*"]}, "data.observes[1]"),
        ({"observes": "order.paid"}, "data.observes"),
        ({"configuration": None}, "data.configuration"),
        ({"configuration": {"url": "ftp://example.com"}}, "data.configuration.url"),
        ({"configuration": {"url": "/relative"}}, "data.configuration.url"),
        ({"configuration": {}}, "data.configuration.url"),
        ({"configuration": {"url": "https://x.io", "colour": "red"}}, "data.configuration.colour"),
        ({"enabled": "yes"}, "data.enabled"),
        ({"integration_type": "carrier_pigeon"}, "data.integration_type"),
        ({"integration_type": "aws_sqs", "configuration": {"url": "https://sqs.eu-west-1.amazonaws.com/1/q"}},
         "data.configuration.aws_access_key_id"),
        ({"integration_type": "stomp", "configuration": {"addresses": ["http://mq:61613"], "destination": "/queue/a",
          "username": "u", "password": "p"}}, "data.configuration.addresses[0]"),
    ],
)
async def test_validation_names_the_field(  # type: ignore[no-untyped-def]
    client, store: StoreCreds, overrides, source
) -> None:
    r = await client.post("/v2/integrations", json=webhook_body(**overrides), headers=store.headers)
    assert r.status_code == 422, r.text
    error = r.json()["errors"][0]
    assert error["status"] == 422
    assert error["title"] == "Unprocessable Entity"
    assert error["source"] == source
    assert error["detail"]


async def test_wildcards_and_other_types(client, store: StoreCreds) -> None:
    assert (await _create(client, store, observes=["order.*", "*"]))["observes"] == ["order.*", "*"]
    sqs = await _create(
        client, store, integration_type="aws_sqs",
        configuration={"url": "https://sqs.eu-west-1.amazonaws.com/123/q", "aws_access_key_id": "AKIAEXAMPLEKEY1",
                       "aws_secret_access_key": "wJalrXUtnFEMIEXAMPLEKEY", "region": "eu-west-1"},
    )
    assert sqs["configuration"]["aws_access_key_id"] == "***********KEY1"
    assert sqs["configuration"]["aws_secret_access_key"].endswith("EKEY")
    assert sqs["configuration"]["region"] == "eu-west-1"
    stomp = await _create(
        client, store, integration_type="stomp",
        configuration={"addresses": ["stomp://127.0.0.1:61613", "stomp+ssl://mq.example.com:61614"],
                       "destination": "/queue/orders", "username": "guest", "password": "guest"},
    )
    assert stomp["configuration"]["password"] == "*****"


async def test_short_secret_is_masked_entirely(client, store: StoreCreds) -> None:
    data = await _create(client, store, configuration={"url": "https://x.io/h", "secret_key": "12345678"})
    assert data["configuration"]["secret_key"] == "********"


async def test_put_is_partial_and_keeps_masked_secret(client, store: StoreCreds) -> None:
    data = await _create(client, store)
    masked = data["configuration"]["secret_key"]
    r = await client.put(
        f"/v2/integrations/{data['id']}",
        json={"data": {"type": "integration", "name": "Renamed", "configuration": {"secret_key": masked}}},
        headers=store.headers,
    )
    assert r.status_code == 200, r.text
    updated = r.json()["data"]
    assert updated["name"] == "Renamed"
    assert updated["observes"] == ["order.paid"]
    assert updated["configuration"] == data["configuration"]
    assert updated["meta"]["timestamps"]["updated_at"] >= data["meta"]["timestamps"]["updated_at"]
    # the stored secret itself is unchanged: a new secret changes the mask, the old one comes back masked
    r = await client.put(
        f"/v2/integrations/{data['id']}",
        json={"data": {"type": "integration", "configuration": {"secret_key": "a-brand-new-secret"}}},
        headers=store.headers,
    )
    assert r.json()["data"]["configuration"]["secret_key"] == "**************cret"
    r = await client.put(
        f"/v2/integrations/{data['id']}",
        json={"data": {"type": "integration", "configuration": {"secret_key": None}}},
        headers=store.headers,
    )
    assert r.json()["data"]["configuration"] == {"url": "https://example.com/hook"}


async def test_put_type_change_needs_complete_configuration(client, store: StoreCreds) -> None:
    data = await _create(client, store)
    r = await client.put(
        f"/v2/integrations/{data['id']}",
        json={"data": {"type": "integration", "integration_type": "aws_sqs", "configuration": {"region": "eu-west-1"}}},
        headers=store.headers,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["source"] == "data.configuration.url"
    r = await client.put(
        f"/v2/integrations/{data['id']}",
        json={"data": {"type": "integration", "integration_type": "aws_sqs"}},
        headers=store.headers,
    )
    assert r.status_code == 422
    assert r.json()["errors"][0]["source"] == "data.configuration"


async def test_put_requires_type_and_validates(client, store: StoreCreds) -> None:
    data = await _create(client, store)
    r = await client.put(f"/v2/integrations/{data['id']}", json={"data": {"name": "x"}}, headers=store.headers)
    assert r.status_code == 422
    assert r.json()["errors"][0]["source"] == "data.type"
    r = await client.put(
        f"/v2/integrations/{data['id']}", json={"data": {"type": "integration", "observes": []}}, headers=store.headers
    )
    assert r.status_code == 422


async def test_delete_then_gone(client, store: StoreCreds) -> None:
    data = await _create(client, store)
    r = await client.request(
        "DELETE", f"/v2/integrations/{data['id']}", headers={**store.headers, "Content-Type": "application/json"}
    )
    assert r.status_code == 204
    assert r.content == b""
    assert (await client.get(f"/v2/integrations/{data['id']}", headers=store.headers)).status_code == 404
    assert (await client.delete(f"/v2/integrations/{data['id']}", headers=store.headers)).status_code == 404
    listed = (await client.get("/v2/integrations", headers=store.headers)).json()
    assert data["id"] not in [d["id"] for d in listed["data"]]


async def test_herald_raises_integration_events(client, store: StoreCreds) -> None:
    watcher = await _create(client, store, name="Watcher", enabled=True, observes=["integration.*"])
    other = await _create(client, store, name="Other")
    await client.put(f"/v2/integrations/{other['id']}", json={"data": {"type": "integration", "name": "Other 2"}},
                     headers=store.headers)
    await client.delete(f"/v2/integrations/{other['id']}", headers=store.headers)
    jobs = (await client.get(f"/v2/integrations/{watcher['id']}/jobs", headers=store.headers)).json()["data"]
    # the watcher hears of its own creation too
    assert sorted(j["triggered_by"] for j in jobs) == [
        "integration.created", "integration.created", "integration.deleted", "integration.updated"
    ]
    deleted = next(j for j in jobs if j["triggered_by"] == "integration.deleted")
    event_id = deleted["relationships"]["event"]["data"]["id"]
    event = (await client.get(f"/v2/events/{event_id}", headers=store.headers)).json()["data"]
    assert event["payload"] == {"type": "integration", "id": other["id"]}
    created = jobs[-2]  # newest first: deleted, updated, created(other), created(watcher)
    assert created["triggered_by"] == "integration.created"
    event_id = created["relationships"]["event"]["data"]["id"]
    payload = (await client.get(f"/v2/events/{event_id}", headers=store.headers)).json()["data"]["payload"]
    assert payload["data"]["id"] == other["id"]
    assert payload["data"]["configuration"]["secret_key"].startswith("*")


async def test_signing_secret_and_rotation(client, store: StoreCreds) -> None:
    data = await _create(client, store)
    first = (
        await client.get(f"/v2/integrations/{data['id']}/signing-secret", headers=store.headers)
    ).json()["data"]["key"]
    assert first.startswith("whsec_")
    rotated = (await client.post(f"/v2/integrations/{data['id']}/signing-secret/rotate", headers=store.headers)).json()
    assert rotated["data"]["key"].startswith("whsec_") and rotated["data"]["key"] != first
    now = (
        await client.get(f"/v2/integrations/{data['id']}/signing-secret", headers=store.headers)
    ).json()["data"]["key"]
    assert now == rotated["data"]["key"]
