"""Pagination, links, filters and cursors on the integrations list."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.support.helpers import StoreCreds, webhook_body


async def _make(client, store: StoreCreds, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    ids = []
    for i in range(count):
        r = await client.post(
            "/v2/integrations",
            json=webhook_body(name=f"Hook {i:02d}", enabled=i % 2 == 0,
                              integration_type="webhook"),
            headers=store.headers,
        )
        ids.append(r.json()["data"]["id"])
    return ids


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


async def test_offset_pagination_meta_and_links(client, store: StoreCreds) -> None:
    ids = await _make(client, store, 7)
    r = await client.get("/v2/integrations?page[limit]=3&page[offset]=3", headers=store.headers)
    body = r.json()
    assert [d["id"] for d in body["data"]] == list(reversed(ids))[3:6]  # newest first
    assert body["meta"] == {"page": {"limit": 3, "offset": 3, "current": 2, "total": 3}, "results": {"total": 7}}
    links = body["links"]
    assert links["current"].startswith("http://herald.test/v2/integrations?")
    assert _query(links["first"])["page[offset]"] == ["0"]
    assert _query(links["prev"])["page[offset]"] == ["0"]
    assert _query(links["next"])["page[offset]"] == ["6"]
    assert _query(links["last"])["page[offset]"] == ["6"]
    last = (await client.get(links["last"].replace("http://herald.test", ""), headers=store.headers)).json()
    assert last["links"]["next"] is None and len(last["data"]) == 1


async def test_limit_is_clamped_and_empty_list_shape(client, store: StoreCreds) -> None:
    r = await client.get("/v2/integrations?page[limit]=500", headers=store.headers)
    body = r.json()
    assert body["data"] == []
    assert body["meta"] == {"page": {"limit": 100, "offset": 0, "current": 1, "total": 0}, "results": {"total": 0}}
    assert body["links"]["next"] is None and body["links"]["prev"] is None


async def test_filters(client, store: StoreCreds) -> None:
    await _make(client, store, 6)
    enabled = (await client.get("/v2/integrations?filter=eq(enabled,true)", headers=store.headers)).json()
    assert enabled["meta"]["results"]["total"] == 3
    assert all(d["enabled"] for d in enabled["data"])
    named = (await client.get("/v2/integrations?filter=eq(name,Hook 03)", headers=store.headers)).json()
    assert [d["name"] for d in named["data"]] == ["Hook 03"]
    like = (await client.get("/v2/integrations?filter=like(name,*0*):eq(enabled,false)", headers=store.headers)).json()
    assert sorted(d["name"] for d in like["data"]) == ["Hook 01", "Hook 03", "Hook 05"]
    typed = (await client.get("/v2/integrations?filter=eq(integration_type,webhook)", headers=store.headers)).json()
    assert typed["meta"]["results"]["total"] == 6
    # quoted values may hold `,` and `)`; filter links keep the filter
    r = await client.post("/v2/integrations", json=webhook_body(name="odd, name (x)"), headers=store.headers)
    assert r.status_code == 201
    quoted = (await client.get('/v2/integrations?filter=eq(name,"odd, name (x)")', headers=store.headers)).json()
    assert [d["name"] for d in quoted["data"]] == ["odd, name (x)"]
    assert "filter" in _query(quoted["links"]["first"])


async def test_cursor_pagination_walks_everything(client, store: StoreCreds) -> None:
    ids = await _make(client, store, 5)
    seen: list[str] = []
    url = "/v2/integrations?page[limit]=2&page[after]="
    while url:
        body = (await client.get(url, headers=store.headers)).json()
        seen += [d["id"] for d in body["data"]]
        nxt = body["links"]["next"]
        url = nxt.replace("http://herald.test", "") if nxt else None
        if nxt:
            assert "page[after]" in _query(nxt)
    assert seen == list(reversed(ids))
