"""Odd inputs answer a clear 4xx in the error form, never a 500, on both backends: NUL characters (which
PostgreSQL cannot store or compare in text), ids that are not ids, numbers beyond a column's range and times
before the first representable instant."""

from __future__ import annotations

import httpx

from tests.support.helpers import StoreCreds, webhook_body


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    (error,) = r.json()["errors"]
    assert error["status"] == status
    return error


async def test_nul_in_names_and_descriptions_is_422(client, store: StoreCreds) -> None:
    r = await client.post("/v2/integrations", json=webhook_body(name="a\x00b"), headers=store.headers)
    assert _error(r, 422) == {"status": 422, "title": "Unprocessable Entity",
                              "detail": "name must not contain a NUL character", "source": "data.name"}
    r = await client.post("/v2/integrations", json=webhook_body(description="\x00"), headers=store.headers)
    assert _error(r, 422)["source"] == "data.description"
    created = (await client.post("/v2/integrations", json=webhook_body(), headers=store.headers)).json()["data"]
    r = await client.put(f"/v2/integrations/{created['id']}", json={"data": {"type": "integration", "name": "\x00"}},
                         headers=store.headers)
    assert _error(r, 422)["source"] == "data.name"


async def test_nul_in_a_filter_value_is_400(client, store: StoreCreds) -> None:
    for path, query in (("/v2/integrations", "eq(name,a\x00b)"), ("/v2/integrations", "like(name,\x00*)"),
                        ("/v2/integrations/logs", "eq(succeeded,\x00)")):
        r = await client.get(path, params={"filter": query}, headers=store.headers)
        assert _error(r, 400)["source"] == "filter"


async def test_ids_that_are_not_ids_are_404(client, store: StoreCreds) -> None:
    created = (await client.post("/v2/integrations", json=webhook_body(), headers=store.headers)).json()["data"]
    real = created["id"]
    for method, path in (
        ("GET", "/v2/integrations/a%00b"), ("PUT", "/v2/integrations/%00"), ("DELETE", "/v2/integrations/%00"),
        ("GET", "/v2/integrations/%00/signing-secret"), ("POST", "/v2/integrations/%00/signing-secret/rotate"),
        ("GET", "/v2/integrations/%00/jobs"), ("POST", "/v2/integrations/%00/jobs/retry"),
        ("GET", f"/v2/integrations/{real}/jobs/%00"), ("POST", f"/v2/integrations/{real}/jobs/%00/retry"),
        ("GET", "/v2/integrations/%00/logs"), ("GET", f"/v2/integrations/{real}/jobs/%00/logs"),
        ("GET", "/v2/events/%00"), ("GET", f"/v2/events/{real.upper()}"),
    ):
        body = {"data": {"type": "integration", "name": "x"}} if method == "PUT" else {"data": {}}
        r = await client.request(method, path, json=body if method in ("PUT", "POST") else None,
                                 headers=store.headers)
        assert _error(r, 404)["detail"] == "The resource could not be found", (method, path)


async def test_numbers_beyond_a_column_are_400(client, store: StoreCreds) -> None:
    for value in ("-9223372036854775807", "2147483648"):
        r = await client.get("/v2/integrations/logs", params={"filter": f"ge(status_code,{value})"},
                             headers=store.headers)
        assert "too large" in _error(r, 400)["detail"]
    r = await client.get("/v2/integrations/logs", params={"filter": "ge(attempt,2147483647)"}, headers=store.headers)
    assert r.status_code == 200, r.text


async def test_times_out_of_range_are_4xx(client, store: StoreCreds) -> None:
    for stamp in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"):
        r = await client.get("/v2/integrations/logs", params={"filter": f"ge(created_at,{stamp})"},
                             headers=store.headers)
        assert "RFC 3339" in _error(r, 400)["detail"]
        created = (await client.post("/v2/integrations", json=webhook_body(), headers=store.headers)).json()["data"]
        r = await client.post(f"/v2/integrations/{created['id']}/jobs/retry", json={"data": {"since": stamp}},
                              headers=store.headers)
        assert _error(r, 422)["source"] == "data.since"


async def test_nul_in_a_client_id_is_wrong_credentials(client) -> None:
    r = await client.post("/oauth/access_token", data={"grant_type": "implicit", "client_id": "a\x00b"})
    assert _error(r, 401)["detail"] == "Invalid client credentials"
