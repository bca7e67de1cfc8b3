"""Every error class answers the Moltin form {"errors":[{status,title,detail,source?}]}."""

from __future__ import annotations

import httpx

from tests.support.helpers import StoreCreds, app_without_logs_table, webhook_body


def _error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"errors"}
    error = body["errors"][0]
    assert error["status"] == status
    assert error["title"] and error["detail"]
    return error


async def test_invalid_json_is_400(client, store: StoreCreds) -> None:
    r = await client.post(
        "/v2/integrations", content=b"{not json", headers={**store.headers, "Content-Type": "application/json"}
    )
    assert "not valid JSON" in _error(r, 400)["detail"]
    r = await client.post("/v2/events", content=b"", headers=store.headers)
    _error(r, 400)


async def test_bad_page_params_are_400(client, store: StoreCreds) -> None:
    for query in ("page[limit]=abc", "page[limit]=-1", "page[offset]=-5", "page[offset]=1.5", "page[limit]=0",
                  "page[after]=%%%", "page[offset]=100000000000000000000"):
        r = await client.get(f"/v2/integrations?{query}", headers=store.headers)
        _error(r, 400)
        r = await client.get(f"/v2/integrations/logs?{query}", headers=store.headers)
        _error(r, 400)


async def test_bad_filters_are_400(client, store: StoreCreds) -> None:
    for query in ("filter=eq(colour,red)", "filter=between(name,a)", "filter=eq(name", "filter=gt(enabled,true)",
                  "filter=eq(enabled,maybe)"):
        r = await client.get(f"/v2/integrations?{query}", headers=store.headers)
        _error(r, 400)
    r = await client.get("/v2/integrations/logs?filter=eq(status_code,99999999999999999999)", headers=store.headers)
    assert "too large" in _error(r, 400)["detail"]
    r = await client.get("/v2/integrations/logs?filter=ge(created_at,yesterday)", headers=store.headers)
    assert "RFC 3339" in _error(r, 400)["detail"]


async def test_validation_is_422_with_source(client, store: StoreCreds) -> None:
    r = await client.post("/v2/integrations", json=webhook_body(observes=[]), headers=store.headers)
    assert _error(r, 422)["source"] == "data.observes"


async def test_unknown_route_and_id_are_404(client, store: StoreCreds) -> None:
    r = await client.get("/v2/nothing-here", headers=store.headers)
    assert _error(r, 404) == {"status": 404, "title": "Not Found", "detail": "The resource could not be found"}
    r = await client.get("/v2/integrations/0190d1c4-0000-7000-8000-000000000000", headers=store.headers)
    assert _error(r, 404)["detail"] == "The resource could not be found"


async def test_wrong_method_is_405(client, store: StoreCreds) -> None:
    r = await client.patch("/v2/integrations", headers=store.headers)
    _error(r, 405)
    assert "GET" in r.headers["allow"]


async def test_too_large_is_413(client, store: StoreCreds, app) -> None:
    limit = app.state.settings.max_payload_bytes
    body = {"data": {"type": "event", "triggered_by": "order.paid", "payload": {"blob": "x" * (limit + 1)}}}
    r = await client.post("/v2/events", json=body, headers=store.headers)
    assert _error(r, 413)["source"] == "data.payload"
    huge = b"{" + b" " * (app.state.settings.max_body_bytes + 1) + b"}"
    r = await client.post("/v2/events", content=huge, headers={**store.headers, "Content-Type": "application/json"})
    _error(r, 413)


async def test_unexpected_failure_is_500_with_request_id(tmp_path, caplog) -> None:
    """A real failure (the logs table is gone) answers 500 with a request_id, never a stack trace."""
    async with app_without_logs_table(tmp_path) as (c, creds):
        r = await c.get("/v2/integrations/logs", headers=creds.headers)
    error = _error(r, 500)
    assert error["title"] == "Internal Server Error"
    assert len(error["request_id"]) == 36
    assert "Traceback" not in r.text and "sqlite" not in r.text.lower()
    assert error["request_id"] in caplog.text


async def test_openapi_and_docs(client) -> None:
    r = await client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path in ("/oauth/access_token", "/v2/integrations", "/v2/integrations/{integration_id}",
                 "/v2/integrations/logs", "/v2/integrations/{integration_id}/logs",
                 "/v2/integrations/{integration_id}/jobs", "/v2/integrations/{integration_id}/jobs/{job_id}/logs",
                 "/v2/integrations/{integration_id}/jobs/{job_id}",
                 "/v2/integrations/{integration_id}/jobs/{job_id}/retry",
                 "/v2/integrations/{integration_id}/jobs/retry", "/v2/events", "/v2/events/{event_id}",
                 "/v2/integrations/{integration_id}/signing-secret", "/healthz", "/readyz"):
        assert path in paths, path
    create = paths["/v2/integrations"]["post"]
    assert "application/json" in create["requestBody"]["content"]
    docs = await client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


async def test_health_and_ready(client) -> None:
    assert (await client.get("/healthz")).json()["status"] == "ok"
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["database"] == "ok"
