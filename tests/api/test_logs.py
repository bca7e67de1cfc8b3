"""The three logs lists: shapes, totals (from running totals and from counting), filters, newest first."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from herald.app import create_app
from tests.support.helpers import StoreCreds, make_settings, new_store, webhook_body
from tests.support.server import Receiver, poll


@pytest.fixture
async def live(database_url: str) -> AsyncIterator[tuple[object, httpx.AsyncClient]]:
    """The app with its embedded delivery worker, as `herald serve` runs it."""
    application = create_app(make_settings(database_url, retry_schedule="0.05,0.05"), worker=True)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as c:
            yield application, c


async def _fail(_: web.Request) -> web.Response:
    return web.Response(status=500, text="boom")


async def test_totals_filters_and_order(live) -> None:  # type: ignore[no-untyped-def]
    app, client = live
    store: StoreCreds = await new_store(app, client)
    async with Receiver() as good, Receiver(_fail) as bad:
        ok = (await client.post("/v2/integrations", json=webhook_body(enabled=True, configuration={"url": good.url()}),
                                headers=store.headers)).json()["data"]
        ko = (await client.post("/v2/integrations", json=webhook_body(enabled=True, configuration={"url": bad.url()}),
                                headers=store.headers)).json()["data"]
        events = [{"type": "event", "triggered_by": "order.paid", "payload": {"n": i}} for i in range(4)]
        r = await client.post("/v2/events", json={"data": events}, headers=store.headers)
        assert r.status_code == 202
        # 4 successes + 4 jobs x 3 failed attempts
        await poll(lambda: client.get("/v2/integrations/logs", headers=store.headers),
                   lambda resp: resp.json()["results"]["total"] == 16, timeout=30)
        jobs = await poll(lambda: client.get(f"/v2/integrations/{ko['id']}/jobs", headers=store.headers),
                          lambda resp: all(j["status"] == "failed" for j in resp.json()["data"]), timeout=30)

    body = (await client.get("/v2/integrations/logs?page[limit]=5", headers=store.headers)).json()
    assert body["meta"] == {"limit": 5, "offset": 0, "current": 1, "total": 4}
    assert body["results"] == {"total": 16}
    stamps = [d["meta"]["timestamps"]["created_at"] for d in body["data"]]
    assert stamps == sorted(stamps, reverse=True)

    async def total(path: str) -> int:
        resp = await client.get(path, headers=store.headers)
        assert resp.status_code == 200, resp.text
        data = resp.json()
        assert len(data["data"]) == min(data["results"]["total"], 100)
        return data["results"]["total"]

    assert await total("/v2/integrations/logs?filter=eq(succeeded,false)") == 12
    assert await total("/v2/integrations/logs?filter=eq(succeeded,true)") == 4
    assert await total(f"/v2/integrations/{ok['id']}/logs") == 4
    assert await total(f"/v2/integrations/{ko['id']}/logs?filter=eq(succeeded,false)") == 12
    assert await total(f"/v2/integrations/{ko['id']}/logs?filter=eq(succeeded,true)") == 0
    assert await total("/v2/integrations/logs?filter=ge(attempt,2)") == 8
    assert await total("/v2/integrations/logs?filter=eq(status_code,500):eq(attempt,3)") == 4
    assert await total("/v2/integrations/logs?filter=ge(created_at,2000-01-01T00:00:00Z)") == 16
    assert await total("/v2/integrations/logs?filter=lt(created_at,2000-01-01T00:00:00Z)") == 0

    job = jobs.json()["data"][0]
    assert job["attempts"] == 3 and job["next_attempt_at"] is None
    job_logs = (await client.get(f"/v2/integrations/{ko['id']}/jobs/{job['id']}/logs", headers=store.headers)).json()
    assert [d["attempt"] for d in job_logs["data"]] == [3, 2, 1]
    assert job_logs["results"] == {"total": 3}
    assert {d["relationships"]["job"]["data"]["id"] for d in job_logs["data"]} == {job["id"]}
    log = job_logs["data"][0]
    assert set(log) == {"id", "type", "succeeded", "attempt", "processing_time", "body", "status_code",
                        "error_detail", "relationships", "meta"}
    assert log["body"] == "boom" and log["status_code"] == 500
    assert log["error_detail"] == "Received a status code outside of 2xx range - treating webhook as a fail"

    # a deleted integration's logs stay in the store-wide list
    assert (await client.delete(f"/v2/integrations/{ko['id']}", headers=store.headers)).status_code == 204
    assert await total("/v2/integrations/logs") == 16
    assert (await client.get(f"/v2/integrations/{ko['id']}/logs", headers=store.headers)).status_code == 404


async def _nul(_: web.Request) -> web.Response:
    return web.Response(status=502, body=b"bad\x00gateway")


async def test_a_nul_in_the_answer_is_recorded_and_blocks_nothing(live) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL text cannot hold NUL: the log keeps it as U+FFFD, and later attempts are recorded too."""
    app, client = live
    store: StoreCreds = await new_store(app, client)
    async with Receiver(_nul) as rx:
        created = await client.post(
            "/v2/integrations", json=webhook_body(enabled=True, configuration={"url": rx.url()}), headers=store.headers
        )
        integration = created.json()["data"]["id"]
        await client.post("/v2/events", json={"data": {"type": "event", "triggered_by": "order.paid", "payload": {}}},
                          headers=store.headers)
        logs = await poll(lambda: client.get(f"/v2/integrations/{integration}/logs", headers=store.headers),
                          lambda resp: resp.json()["results"]["total"] == 3, timeout=30)
    assert {d["body"] for d in logs.json()["data"]} == {"bad\ufffdgateway"}
    assert {d["status_code"] for d in logs.json()["data"]} == {502}
