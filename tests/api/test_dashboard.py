"""The dashboard in-process, on SQLite and PostgreSQL: sign-in and its limits, sessions, CSRF, isolation between
stores, one-time links, the logs page's filters and cursors, the live fragments, a job's page and its retry.

The browser tests (tests/browser) drive the same pages in Chromium; these check what a browser does not show."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from herald.db import counts, minutes
from herald.db.driver_sql import Driver
from herald.db.logs import LogRow
from herald.db.tables import dashboard_links, jobs, logs
from herald.domain.ids import new_id, utcnow
from tests.support.helpers import StoreCreds, webhook_body

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def sign_in(client: httpx.AsyncClient, store: StoreCreds, secret: str | None = None,
                  next_url: str = "/dashboard") -> httpx.Response:
    form = await client.get("/dashboard/sign-in")
    token = CSRF.search(form.text)
    assert token, form.text
    return await client.post("/dashboard/sign-in", data={
        "csrf": token.group(1), "client_id": store.client_id,
        "client_secret": store.client_secret if secret is None else secret, "next": next_url})


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)


async def integration(client: httpx.AsyncClient, store: StoreCreds, name: str = "Orders") -> str:
    r = await client.post("/v2/integrations", json=webhook_body(enabled=True, name=name), headers=store.headers)
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["id"])


async def publish(client: httpx.AsyncClient, store: StoreCreds, payload: dict[str, Any] | None = None) -> list[str]:
    r = await client.post("/v2/events", headers=store.headers, json={"data": {
        "type": "event", "triggered_by": "order.paid", "payload": payload or {"id": "o-1"}}})
    assert r.status_code == 202, r.text
    return [j["id"] for j in r.json()["data"]["relationships"]["jobs"]["data"]]


async def attempt(app: Any, store_id: str, integration_id: str, job_id: str, ok: bool, status: int | None,
                  number: int = 1, detail: str = "") -> str:
    """A recorded attempt, written as recording writes it (log, totals, minutes, the job's state)."""
    row = LogRow(new_id(), store_id, integration_id, job_id, ok, number, 0.012, "answer" if ok else "nope", status,
                 detail, utcnow())
    async with app.state.db.write() as conn:
        await conn.execute(logs.insert().values(**{k: getattr(row, k) for k in row.__slots__}))
        await counts.add(Driver(conn), [row])
        await minutes.add(Driver(conn), [row])
        await conn.execute(jobs.update().where(jobs.c.id == job_id).values(
            status="succeeded" if ok else "failed", attempts=number, run_at=None))
    return row.id


@pytest.fixture
async def signed_in(client: httpx.AsyncClient, store: StoreCreds) -> httpx.AsyncClient:
    r = await sign_in(client, store)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard", r.text
    return client


async def test_pages_need_a_session_and_say_where_to_go_after(client: httpx.AsyncClient) -> None:
    for path in ("/dashboard", "/dashboard/logs?outcome=failed", f"/dashboard/jobs/{new_id()}"):
        r = await client.get(path)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/dashboard/sign-in?next=%2Fdashboard")
    fragment = await client.get("/dashboard/logs/rows", headers={"X-Herald-Fragment": "1"})
    assert fragment.status_code == 401


async def test_sign_in_sets_a_safe_cookie_and_follows_only_dashboard_paths(
    client: httpx.AsyncClient, store: StoreCreds
) -> None:
    r = await sign_in(client, store, next_url="/dashboard/logs?outcome=failed")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/logs?outcome=failed"
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("herald_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/dashboard" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test
    page = await client.get("/dashboard")
    assert page.status_code == 200 and "Integrations" in page.text
    for header in ("content-security-policy", "x-content-type-options", "x-frame-options"):
        assert header in page.headers
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "'unsafe-inline'" not in page.headers["content-security-policy"]
    client.cookies.clear()
    elsewhere = await sign_in(client, store, next_url="https://evil.example/")
    assert elsewhere.headers["location"] == "/dashboard"


async def test_the_cookie_is_secure_over_https(app: Any, store: StoreCreds) -> None:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50001))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="https://herald.test") as client:
        r = await sign_in(client, store)
    cookie = next(v for k, v in r.headers.multi_items() if k == "set-cookie" and v.startswith("herald_session="))
    assert "Secure" in cookie


async def test_a_wrong_secret_is_refused_and_counted_with_the_token_endpoint(
    app: Any, client: httpx.AsyncClient, store: StoreCreds
) -> None:
    wrong = await sign_in(client, store, secret="not-the-secret")
    assert wrong.status_code == 401 and "do not match a store" in wrong.text
    assert "herald_session" not in wrong.headers.get("set-cookie", "")
    # failures at /oauth/access_token and at the dashboard count against the same limit
    limit = app.state.settings.login_attempts
    for _ in range(limit - 2):
        r = await client.post("/oauth/access_token", data={
            "grant_type": "client_credentials", "client_id": store.client_id, "client_secret": "nope"})
        assert r.status_code == 401
    last = await sign_in(client, store, secret="still-wrong")
    assert last.status_code == 401
    locked = await sign_in(client, store)  # even the right secret, while the window lasts
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert "Too many failed sign-ins" in locked.text


async def test_forms_without_the_csrf_token_are_refused(
    app: Any, signed_in: httpx.AsyncClient, store: StoreCreds
) -> None:
    integration_id = await integration(signed_in, store)
    [job_id] = await publish(signed_in, store)
    await attempt(app, store.id, integration_id, job_id, False, 500)
    for path in (f"/dashboard/integrations/{integration_id}/disable", f"/dashboard/jobs/{job_id}/retry",
                 "/dashboard/sign-out"):
        for data in ({}, {"csrf": "forged"}):
            r = await signed_in.post(path, data=data)
            assert r.status_code == 403, (path, data)
    assert (await signed_in.get(f"/v2/integrations/{integration_id}", headers=store.headers)).json()["data"][
        "enabled"] is True
    async with app.state.db.read() as conn:
        assert (await conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id))).scalar_one() == "failed"
    # the sign-in form has its own token: a post without it does not sign in
    client2 = httpx.AsyncClient(transport=signed_in._transport, base_url="http://herald.test")
    async with client2:
        r = await client2.post("/dashboard/sign-in", data={"client_id": store.client_id,
                                                            "client_secret": store.client_secret})
        assert r.status_code == 403 and "herald_session" not in r.headers.get("set-cookie", "")
    # with the token, the same form works (the header form of the token, as a script would send it)
    page = await signed_in.get("/dashboard")
    r = await signed_in.post(f"/dashboard/integrations/{integration_id}/disable",
                             headers={"X-CSRF-Token": csrf_of(page)})
    assert r.status_code == 303


async def test_enable_and_disable_take_the_api_path(signed_in: httpx.AsyncClient, store: StoreCreds) -> None:
    integration_id = await integration(signed_in, store)
    [job_id] = await publish(signed_in, store)
    token = csrf_of(await signed_in.get("/dashboard"))
    r = await signed_in.post(f"/dashboard/integrations/{integration_id}/disable", data={"csrf": token})
    assert r.status_code == 303 and r.headers["location"] == f"/dashboard?changed={integration_id}"
    assert (await signed_in.get(f"/v2/integrations/{integration_id}", headers=store.headers)).json()["data"][
        "enabled"] is False
    job = await signed_in.get(f"/v2/integrations/{integration_id}/jobs/{job_id}", headers=store.headers)
    assert job.json()["data"]["status"] == "cancelled"  # disabling cancels pending jobs, as PUT does
    page = await signed_in.get("/dashboard")
    assert "Disabled" in page.text and f'action="/dashboard/integrations/{integration_id}/enable"' in page.text
    r = await signed_in.post(f"/dashboard/integrations/{integration_id}/enable", data={"csrf": token})
    assert (await signed_in.get(f"/v2/integrations/{integration_id}", headers=store.headers)).json()["data"][
        "enabled"] is True


async def test_another_stores_things_are_not_found(
    app: Any, signed_in: httpx.AsyncClient, store: StoreCreds, other_store: StoreCreds
) -> None:
    theirs = await integration(signed_in, other_store, name="Theirs")
    [their_job] = await publish(signed_in, other_store)
    await attempt(app, other_store.id, theirs, their_job, False, 500)
    token = csrf_of(await signed_in.get("/dashboard"))
    assert (await signed_in.get(f"/dashboard/jobs/{their_job}")).status_code == 404
    assert (await signed_in.get(f"/dashboard/jobs/{their_job}/live")).status_code == 404
    assert (await signed_in.post(f"/dashboard/jobs/{their_job}/retry", data={"csrf": token})).status_code == 404
    assert (await signed_in.post(f"/dashboard/integrations/{theirs}/disable", data={"csrf": token})).status_code \
        == 404
    logs_page = await signed_in.get(f"/dashboard/logs?integration={theirs}")
    assert logs_page.status_code == 200 and their_job not in logs_page.text and "No logs match" in logs_page.text
    assert "Theirs" not in (await signed_in.get("/dashboard")).text
    assert (await signed_in.get("/dashboard/no/such/page")).status_code == 404


async def test_logs_filters_and_cursors(app: Any, signed_in: httpx.AsyncClient, store: StoreCreds) -> None:
    a = await integration(signed_in, store, name="Alpha")
    b = await integration(signed_in, store, name="Beta")
    made: list[tuple[str, str, bool, int]] = []  # (log id, integration, ok, status)
    for i in range(60):
        job_a, job_b = await publish(signed_in, store, {"n": i})
        made.append((await attempt(app, store.id, a, job_a, i % 3 != 0, 200 if i % 3 else 503), a, i % 3 != 0,
                     200 if i % 3 else 503))
        if i < 5:
            made.append((await attempt(app, store.id, b, job_b, True, 204), b, True, 204))

    def ids(page: httpx.Response) -> list[str]:
        return re.findall(r'<tr class="(?:ok|bad)" data-id="([^"]+)"', page.text)

    first = await signed_in.get("/dashboard/logs")
    newest = sorted((m[0] for m in made), reverse=True)
    assert ids(first) == newest[:50]
    older = re.search(r'href="(/dashboard/logs\?before=[^"]+)" rel="next"', first.text)
    assert older, "a second page"
    second = await signed_in.get(older.group(1).replace("&amp;", "&"))
    assert ids(second) == newest[50:]
    assert 'rel="next"' not in second.text and "Newest" in second.text

    failed_a = await signed_in.get(f"/dashboard/logs?integration={a}&outcome=failed")
    assert ids(failed_a) == sorted((m[0] for m in made if m[1] == a and not m[2]), reverse=True)
    assert f'<option value="{a}" selected>' in failed_a.text  # the filter is kept in the page and its URL
    status = await signed_in.get("/dashboard/logs?status=204")
    assert ids(status) == sorted((m[0] for m in made if m[3] == 204), reverse=True)
    later = (utcnow() + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M")
    assert ids(await signed_in.get(f"/dashboard/logs?since={later}")) == []
    assert len(ids(await signed_in.get(f"/dashboard/logs?until={later}"))) == 50
    bad = await signed_in.get("/dashboard/logs?status=abc&since=yesterday")
    assert bad.status_code == 200 and "A status code is a number" in bad.text and "not a date and time" in bad.text


async def test_the_live_fragment_brings_only_newer_logs(
    app: Any, signed_in: httpx.AsyncClient, store: StoreCreds
) -> None:
    integration_id = await integration(signed_in, store)
    [job] = await publish(signed_in, store)
    first = await attempt(app, store.id, integration_id, job, False, 500)
    page = await signed_in.get("/dashboard/logs")
    live = re.search(r'data-live="([^"]+)"', page.text)
    assert live and f"after={first}" in live.group(1)
    url = live.group(1).replace("&amp;", "&")
    nothing = await signed_in.get(url, headers={"X-Herald-Fragment": "1"})
    assert nothing.status_code == 200 and nothing.text.strip() == "" and nothing.headers["x-herald-after"] == first
    second = await attempt(app, store.id, integration_id, job, True, 200, number=2)
    fresh = await signed_in.get(url, headers={"X-Herald-Fragment": "1"})
    assert re.findall(r'data-id="([^"]+)"', fresh.text) == [second]
    assert fresh.headers["x-herald-after"] == second
    # a paged (older) view does not follow
    older = await signed_in.get(f"/dashboard/logs?before={second}")
    assert "data-live" not in older.text


async def test_a_jobs_page_shows_what_was_sent_and_retries(
    app: Any, signed_in: httpx.AsyncClient, store: StoreCreds
) -> None:
    integration_id = await integration(signed_in, store)
    [job] = await publish(signed_in, store, {"id": "order-77", "total": 12.5})
    await attempt(app, store.id, integration_id, job, False, 503, detail="The receiver said 503")
    page = await signed_in.get(f"/dashboard/jobs/{job}")
    assert page.status_code == 200
    assert "order-77" in page.text and "The receiver said 503" in page.text and "Retry now" in page.text
    sent = re.search(r'<pre class="code wrap" id="sent">(.*?)</pre>', page.text, flags=re.S)
    assert sent and "&#34;triggered_by&#34;:&#34;order.paid&#34;" in sent.group(1)
    assert "topsecretvalue" not in page.text  # the webhook's secret_key is not shown
    r = await signed_in.post(f"/dashboard/jobs/{job}/retry", data={"csrf": csrf_of(page)})
    assert r.status_code == 303 and r.headers["location"] == f"/dashboard/jobs/{job}?retried=1"
    live = await signed_in.get(f"/dashboard/jobs/{job}/live", headers={"X-Herald-Fragment": "1"})
    assert live.headers["x-herald-version"] == "pending:1:1" and "pending" in live.text
    assert "Retry now" not in live.text  # a pending job cannot be retried again


async def test_sign_out_ends_the_session_for_good(signed_in: httpx.AsyncClient) -> None:
    page = await signed_in.get("/dashboard")
    kept = dict(signed_in.cookies)
    r = await signed_in.post("/dashboard/sign-out", data={"csrf": csrf_of(page)})
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/sign-in"
    for name, value in kept.items():  # the old cookie, replayed, opens nothing
        signed_in.cookies.set(name, value, domain="herald.test", path="/dashboard")
    assert (await signed_in.get("/dashboard")).status_code == 303


async def test_one_time_links_work_once_within_five_minutes(
    app: Any, client: httpx.AsyncClient, store: StoreCreds
) -> None:
    r = await client.post("/v2/dashboard/links", headers=store.headers)
    assert r.status_code == 201, r.text
    link = r.json()["data"]
    assert link["type"] == "dashboard_link" and link["url"].startswith("http://herald.test/dashboard/links/")
    path = link["url"].removeprefix("http://herald.test")
    used = await client.get(path)
    assert used.status_code == 303 and used.headers["location"] == "/dashboard"
    assert (await client.get("/dashboard")).status_code == 200
    client.cookies.clear()
    again = await client.get(path)
    assert again.status_code == 410 and "used already or has expired" in again.text
    assert (await client.get("/dashboard")).status_code == 303
    # an expired link
    late = (await client.post("/v2/dashboard/links", headers=store.headers)).json()["data"]["url"]
    async with app.state.db.write() as conn:
        await conn.execute(dashboard_links.update().values(expires_at=utcnow() - timedelta(seconds=1))
                           .where(dashboard_links.c.used_at.is_(None)))
    assert (await client.get(late.removeprefix("http://herald.test"))).status_code == 410
    # links need a client_credentials token
    assert (await client.post("/v2/dashboard/links")).status_code == 401


async def test_static_assets_and_favicon(client: httpx.AsyncClient) -> None:
    for path, kind in (("/dashboard/static/dashboard.css", "text/css"), ("/dashboard/static/dashboard.js",
                       "javascript"), ("/favicon.ico", "image/svg+xml")):
        r = await client.get(path)
        assert r.status_code == 200 and kind in r.headers["content-type"], path


async def test_every_dashboard_route_with_an_id_is_404_for_another_store(
    app: Any, client: httpx.AsyncClient, store: StoreCreds, other_store: StoreCreds
) -> None:
    """Derived from the app's routes, as test_isolation does for the API: a new dashboard route with an id in its
    path is checked without being listed here."""
    from tests.api.test_isolation import PARAM, http_routes

    integration_id = await integration(client, store)
    [job_id] = await publish(client, store)
    await attempt(app, store.id, integration_id, job_id, False, 500)
    assert (await sign_in(client, other_store)).status_code == 303
    token = csrf_of(await client.get("/dashboard"))
    ids = {"integration_id": integration_id, "job_id": job_id, "action": "disable"}
    not_scoped = {"/dashboard/links/{token}", "/dashboard/{rest:path}"}  # a link names no store's thing; the fallback
    routes = [(path, methods) for path, methods in http_routes(app.routes)
              if path.startswith("/dashboard") and PARAM.search(path) and path not in not_scoped]
    assert len(routes) >= 4, routes
    for template, methods in routes:
        path = PARAM.sub(lambda m: ids[m.group(1)], template)
        for method in sorted(methods or ()):
            r = await client.request(method, path, data={"csrf": token} if method == "POST" else None)
            assert r.status_code == 404, (method, template, r.status_code)
    assert (await client.get(f"/v2/integrations/{integration_id}", headers=store.headers)).json()["data"][
        "enabled"] is True


async def test_live_rows_start_from_nothing_when_the_store_has_no_logs(
    app: Any, signed_in: httpx.AsyncClient, store: StoreCreds
) -> None:
    page = await signed_in.get("/dashboard/logs")
    live = re.search(r'data-live="([^"]+)"', page.text)
    assert live, page.text
    url = live.group(1).replace("&amp;", "&")
    assert (await signed_in.get(url)).text.strip() == ""
    integration_id = await integration(signed_in, store)
    [job] = await publish(signed_in, store)
    first = await attempt(app, store.id, integration_id, job, True, 200)
    fresh = await signed_in.get(url)
    assert re.findall(r'data-id="([^"]+)"', fresh.text) == [first] and fresh.headers["x-herald-after"] == first


async def test_ids_that_are_not_ids_are_404_or_a_clear_problem(signed_in: httpx.AsyncClient) -> None:
    """PostgreSQL cannot compare a NUL character: an odd id must never reach a query (a 500)."""
    token = csrf_of(await signed_in.get("/dashboard"))
    for odd in ("x%00y", "not-an-id", "01A23194-33A4-74C8-9DC1-C16B9E444F88"):
        assert (await signed_in.get(f"/dashboard/jobs/{odd}")).status_code == 404, odd
        assert (await signed_in.get(f"/dashboard/jobs/{odd}/live")).status_code == 404, odd
        assert (await signed_in.post(f"/dashboard/jobs/{odd}/retry", data={"csrf": token})).status_code == 404
        assert (await signed_in.post(f"/dashboard/integrations/{odd}/disable",
                                     data={"csrf": token})).status_code == 404
    page = await signed_in.get("/dashboard/logs", params={"integration": "a\x00b", "before": "z\x00"})
    assert page.status_code == 200 and "There is no such integration" in page.text
    rows = await signed_in.get("/dashboard/logs/rows", params={"after": "\x00"})
    assert rows.status_code == 400
