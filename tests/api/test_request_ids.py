"""Every answer carries X-Request-Id: the caller's when it is sane, otherwise a new one; errors included."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.helpers import StoreCreds, app_without_logs_table, webhook_body


async def test_every_answer_has_a_request_id(client: httpx.AsyncClient, store: StoreCreds) -> None:
    created = await client.post("/v2/integrations", json=webhook_body(), headers=store.headers)
    answers = [
        created,
        await client.get("/healthz"),
        await client.get("/v2/integrations"),  # 401
        await client.get("/v2/integrations/none", headers=store.headers),  # 404
        await client.get("/no/such/route"),  # 404 unmatched
        await client.patch("/v2/integrations", headers=store.headers),  # 405
        await client.post("/v2/integrations", content=b"{", headers=store.headers),  # 400
        await client.post("/v2/integrations", json={"data": {"type": "integration"}}, headers=store.headers),  # 422
        await client.post("/v2/events", content=b"x" * (33 * 1024 * 1024), headers=store.headers),  # 413
    ]
    assert [a.status_code for a in answers] == [201, 200, 401, 404, 404, 405, 400, 422, 413]
    ids = [a.headers.get("x-request-id") for a in answers]
    assert all(ids) and len(set(ids)) == len(ids)


@pytest.mark.parametrize(("sent", "kept"), [
    ("req-123_abc.def:1", True), ("x" * 128, True), ("x" * 129, False), ("has space", False), ("", False),
    ("tab\there", False),
])
async def test_the_callers_id_is_kept_when_it_is_sane(client: httpx.AsyncClient, sent: str, kept: bool) -> None:
    r = await client.get("/healthz", headers={"X-Request-Id": sent})
    answered = r.headers["x-request-id"]
    assert (answered == sent) is kept
    assert answered


async def test_a_500_carries_the_request_id_in_header_and_body(tmp_path: Path) -> None:
    async with app_without_logs_table(tmp_path) as (c, creds):
        r = await c.get("/v2/integrations/logs", headers={**creds.headers, "X-Request-Id": "trace-42"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "trace-42"
    assert r.json()["errors"][0]["request_id"] == "trace-42"
