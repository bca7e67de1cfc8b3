"""A store never sees another store's data: every route answers 404 for store A's ids to store B."""

from __future__ import annotations

from tests.support.helpers import StoreCreds, webhook_body

NOT_FOUND = {"status": 404, "title": "Not Found", "detail": "The resource could not be found"}


async def test_store_b_gets_404_for_everything_of_store_a(client, store: StoreCreds, other_store: StoreCreds) -> None:
    a, b = store, other_store
    created = await client.post("/v2/integrations", json=webhook_body(enabled=True), headers=a.headers)
    integration_id = created.json()["data"]["id"]
    event = await client.post(
        "/v2/events",
        json={"data": {"type": "event", "triggered_by": "order.paid", "payload": {"id": "o1"}}},
        headers=a.headers,
    )
    event_id = event.json()["data"]["id"]
    job_id = event.json()["data"]["relationships"]["jobs"]["data"][0]["id"]

    calls = [
        ("GET", f"/v2/integrations/{integration_id}", None),
        ("PUT", f"/v2/integrations/{integration_id}", {"data": {"type": "integration", "name": "stolen"}}),
        ("DELETE", f"/v2/integrations/{integration_id}", None),
        ("GET", f"/v2/integrations/{integration_id}/logs", None),
        ("GET", f"/v2/integrations/{integration_id}/jobs", None),
        ("GET", f"/v2/integrations/{integration_id}/jobs/{job_id}", None),
        ("GET", f"/v2/integrations/{integration_id}/jobs/{job_id}/logs", None),
        ("POST", f"/v2/integrations/{integration_id}/jobs/{job_id}/retry", None),
        ("POST", f"/v2/integrations/{integration_id}/jobs/retry", {"data": {"status": "failed"}}),
        ("GET", f"/v2/integrations/{integration_id}/signing-secret", None),
        ("POST", f"/v2/integrations/{integration_id}/signing-secret/rotate", None),
        ("GET", f"/v2/events/{event_id}", None),
    ]
    for method, path, body in calls:
        r = await client.request(method, path, json=body, headers=b.headers)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json() == {"errors": [NOT_FOUND]}, (method, path)

    lists = await client.get("/v2/integrations", headers=b.headers)
    assert lists.json()["data"] == []
    logs = await client.get("/v2/integrations/logs", headers=b.headers)
    assert logs.json()["data"] == []

    # store A still has everything, untouched
    r = await client.get(f"/v2/integrations/{integration_id}", headers=a.headers)
    assert r.status_code == 200
    assert r.json()["data"]["name"] == "Order paid"
    assert (await client.get(f"/v2/events/{event_id}", headers=a.headers)).status_code == 200
