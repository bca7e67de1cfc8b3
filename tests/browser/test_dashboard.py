"""The dashboard in Debian's Chromium (Playwright), against a real `herald serve` and a real receiver on loopback.

Each test is what a person does: sign in, find the failed delivery, filter to it, open its job, retry it and watch
the new attempt arrive; switch an integration off and on; watch a new log arrive; and the refusals (a wrong
secret, another store's URL, a form without its CSRF token, a used one-time link). Pages are screenshotted at
desktop and phone sizes (into HERALD_SCREENSHOTS, e.g. docs/screenshots, or the test's temporary folder), and
no page may log a console error."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from tests.support.server import HeraldProcess, Receiver, create_store, poll, serve, token

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
REQUIRE = os.environ.get("HERALD_REQUIRE_BROWSER", "") not in ("", "0", "false")
SIZES = {"desktop": {"width": 1280, "height": 860}, "phone": {"width": 390, "height": 844}}


def _browser_available() -> None:
    missing = [what for what, ok in (("Debian's chromium", Path(CHROMIUM).exists()), ("playwright", _has_playwright()))
               if not ok]
    if missing:
        if REQUIRE:
            pytest.fail(f"browser tests are required (HERALD_REQUIRE_BROWSER=1) but {', '.join(missing)} is missing")
        pytest.skip(f"{', '.join(missing)} not installed")


def _has_playwright() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeraldProcess]:
    _browser_available()
    folder = tmp_path_factory.mktemp("browser")
    process = serve(f"sqlite:///{folder / 'herald.db'}", folder, HERALD_RETRY_SCHEDULE="0.2",
                    HERALD_SECRET_KEY="", HERALD_WORKER_POLL_INTERVAL="0.1")
    process.database_url = f"sqlite:///{folder / 'herald.db'}"  # type: ignore[attr-defined]
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("HERALD_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def new_store(live: HeraldProcess, name: str) -> dict[str, str]:
    store = create_store(live.database_url, name)  # type: ignore[attr-defined]
    store["token"] = token(live.url, store["client_id"], store["client_secret"])
    return store


class Switch:
    """A receiver answer that the test turns from failing (503) to succeeding."""

    def __init__(self) -> None:
        self.failing = True

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self.failing:
            return web.Response(status=503, text="down for maintenance")
        return web.Response(status=200, text="thanks")


@pytest.fixture
async def world(live: HeraldProcess) -> AsyncIterator[dict[str, Any]]:
    """A store with one webhook integration pointing at a receiver that fails until switched."""
    store = new_store(live, f"Acme Shop {os.urandom(2).hex()}")
    switch = Switch()
    async with Receiver(switch) as receiver, httpx.AsyncClient(
        base_url=live.url, headers={"Authorization": f"Bearer {store['token']}"}
    ) as api:
        r = await api.post("/v2/integrations", json={"data": {
            "type": "integration", "name": "Order fulfilment", "integration_type": "webhook", "enabled": True,
            "observes": ["order.paid", "order.fulfilled"],
            "configuration": {"url": receiver.url("/hooks/orders"), "secret_key": "shared-secret-9f2c"}}})
        assert r.status_code == 201, r.text
        other = await api.post("/v2/integrations", json={"data": {
            "type": "integration", "name": "Analytics", "integration_type": "webhook", "enabled": True,
            "observes": ["order.paid"], "configuration": {"url": receiver.url("/hooks/analytics")}}})
        assert other.status_code == 201, other.text
        yield {"store": store, "api": api, "integration": r.json()["data"]["id"], "switch": switch,
               "receiver": receiver, "live": live}


async def publish(api: httpx.AsyncClient, payload: dict[str, Any]) -> list[str]:
    r = await api.post("/v2/events", json={"data": {"type": "event", "triggered_by": "order.paid",
                                                    "payload": payload}})
    assert r.status_code == 202, r.text
    return [j["id"] for j in r.json()["data"]["relationships"]["jobs"]["data"]]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM)
        try:
            yield launched
        finally:
            await launched.close()


class Tab:
    """A page with its console errors collected; every test asserts there were none."""

    def __init__(self, page: Any, base: str) -> None:
        self.page = page
        self.base = base
        self.errors: list[str] = []
        self.loads = 0
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("load", lambda _: self._loaded())

    def _loaded(self) -> None:
        self.loads += 1

    async def goto(self, path: str) -> Any:
        return await self.page.goto(self.base + path)

    def clean(self, *allowed: str) -> None:
        unexpected = [e for e in self.errors if not any(a in e for a in allowed)]
        assert unexpected == [], unexpected


async def tab(browser: Any, live: HeraldProcess, size: str = "desktop") -> Tab:
    context = await browser.new_context(viewport=SIZES[size])
    return Tab(await context.new_page(), live.url)


async def sign_in(t: Tab, store: dict[str, str], secret: str | None = None) -> None:
    await t.page.fill("input[name=client_id]", store["client_id"])
    await t.page.fill("input[name=client_secret]", store["client_secret"] if secret is None else secret)
    await t.page.click("button[type=submit]")


async def screenshot(t: Tab, shots: Path, name: str) -> None:
    await t.page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


async def test_find_a_failed_delivery_filter_open_its_job_and_retry_it(
    browser: Any, world: dict[str, Any], shots: Path
) -> None:
    api, integration_id = world["api"], world["integration"]
    jobs = await publish(api, {"id": "ord_1042", "total": {"amount": 4999, "currency": "EUR"}})
    for n in range(3):
        await publish(api, {"id": f"ord_10{50 + n}", "total": {"amount": 1200 + n, "currency": "EUR"}})
    job_id = next(j for j in jobs if j)

    async def status() -> str:
        r = await api.get(f"/v2/integrations/{integration_id}/jobs/{job_id}")
        return str(r.json()["data"]["status"])

    await poll(status, lambda s: s == "failed", timeout=30, every=0.2)

    t = await tab(browser, world["live"])
    await t.goto("/dashboard")
    assert "/dashboard/sign-in" in t.page.url
    await screenshot(t, shots, "sign-in-desktop")
    await sign_in(t, world["store"])
    await t.page.wait_for_url("**/dashboard")
    assert await t.page.locator("h1", has_text="Integrations").count() == 1
    await t.page.locator("text=Order fulfilment").first.wait_for()
    await screenshot(t, shots, "integrations-desktop")

    await t.page.click("nav >> text=Logs")
    await t.page.wait_for_url("**/dashboard/logs")
    assert await t.page.locator("#log-rows tr.bad").count() >= 2  # two failed attempts of each job
    await t.page.select_option("select[name=integration]", integration_id)
    await t.page.select_option("select[name=outcome]", "failed")
    await t.page.click("form.filters button[type=submit]")
    await t.page.wait_for_url(f"**/dashboard/logs?integration={integration_id}&outcome=failed**")
    rows = t.page.locator("#log-rows tr")
    assert await rows.count() == 8 and await t.page.locator("#log-rows tr.ok").count() == 0
    await screenshot(t, shots, "logs-desktop")

    await t.page.click(f'a[href="/dashboard/jobs/{job_id}"] >> nth=0')
    await t.page.wait_for_url(f"**/dashboard/jobs/{job_id}")
    timeline = t.page.locator("ol.timeline li")
    assert await timeline.count() == 2
    assert await t.page.locator("pre.code", has_text="ord_1042").count() == 2  # the payload, and the body sent
    answer = t.page.locator("text=down for maintenance").first
    assert not await answer.is_visible()  # response bodies are folded away
    await t.page.locator("summary", has_text="Response body").first.click()
    assert await answer.is_visible()
    await screenshot(t, shots, "job-desktop")

    world["switch"].failing = False
    await t.page.click("text=Retry now")
    await t.page.wait_for_url(f"**/dashboard/jobs/{job_id}?retried=1")
    loads = t.loads
    await t.page.locator("ol.timeline li.ok").wait_for(timeout=20_000)  # arrives by itself, no reload
    assert t.loads == loads
    assert await timeline.count() == 3
    assert await t.page.locator(".status.succeeded").count() == 1
    await screenshot(t, shots, "job-retried-desktop")
    t.clean()


async def test_phone_pages_are_readable(browser: Any, world: dict[str, Any], shots: Path) -> None:
    api = world["api"]
    [job_id, _] = await publish(api, {"id": "ord_2001"})

    async def logged() -> int:
        r = await api.get(f"/v2/integrations/{world['integration']}/jobs/{job_id}/logs")
        return len(r.json()["data"])

    await poll(logged, lambda n: n >= 1, timeout=30, every=0.2)
    t = await tab(browser, world["live"], "phone")
    await t.goto("/dashboard")
    await screenshot(t, shots, "sign-in-phone")
    await sign_in(t, world["store"])
    await t.page.wait_for_url("**/dashboard")
    for path, name in (("/dashboard", "integrations-phone"), ("/dashboard/logs", "logs-phone"),
                       (f"/dashboard/jobs/{job_id}", "job-phone")):
        await t.goto(path)
        width = await t.page.evaluate("document.documentElement.scrollWidth")
        assert width <= SIZES["phone"]["width"], f"{path} scrolls sideways on a phone ({width}px)"
        await screenshot(t, shots, name)
    t.clean()


async def test_enable_and_disable_an_integration(browser: Any, world: dict[str, Any]) -> None:
    t = await tab(browser, world["live"])
    await t.goto("/dashboard")
    await sign_in(t, world["store"])
    await t.page.wait_for_url("**/dashboard")
    async with t.page.expect_navigation():
        await t.page.click('button[aria-label="Disable Order fulfilment"]')
    assert "?changed=" in t.page.url
    row = t.page.locator(f"#integration-{world['integration']}")
    assert await row.locator(".state.off").count() == 1
    r = await world["api"].get(f"/v2/integrations/{world['integration']}")
    assert r.json()["data"]["enabled"] is False
    # usable by keyboard: the button takes focus and Enter presses it
    button = t.page.locator('button[aria-label="Enable Order fulfilment"]')
    await button.focus()
    async with t.page.expect_navigation():
        await t.page.keyboard.press("Enter")
    assert await row.locator(".state.on").count() == 1
    r = await world["api"].get(f"/v2/integrations/{world['integration']}")
    assert r.json()["data"]["enabled"] is True
    t.clean()


async def test_a_new_log_arrives_without_a_reload(browser: Any, world: dict[str, Any]) -> None:
    t = await tab(browser, world["live"])
    await t.goto("/dashboard/logs")
    await sign_in(t, world["store"])
    await t.page.wait_for_url("**/dashboard/logs")
    assert await t.page.locator("#log-rows tr").count() == 0
    loads = t.loads
    await publish(world["api"], {"id": "ord_live"})
    await t.page.locator("#log-rows tr").first.wait_for(timeout=20_000)
    assert t.loads == loads, "the page did not reload"
    assert await t.page.locator("#log-rows tr.new").count() >= 1
    t.clean()


async def test_a_wrong_secret_is_refused(browser: Any, world: dict[str, Any], shots: Path) -> None:
    t = await tab(browser, world["live"])
    await t.goto("/dashboard")
    await sign_in(t, world["store"], secret="not-the-secret")
    await t.page.locator("[role=alert]").wait_for()
    assert "do not match a store" in await t.page.locator("[role=alert]").inner_text()
    assert "/dashboard/sign-in" in t.page.url
    await screenshot(t, shots, "sign-in-refused-desktop")
    await t.goto("/dashboard")
    assert "/dashboard/sign-in" in t.page.url  # still not signed in
    t.clean("401")


async def test_another_stores_job_is_not_found(browser: Any, world: dict[str, Any]) -> None:
    [job_id, _] = await publish(world["api"], {"id": "ord_private"})
    stranger = new_store(world["live"], "Stranger")
    t = await tab(browser, world["live"])
    await t.goto(f"/dashboard/jobs/{job_id}")
    await sign_in(t, stranger)
    await t.page.wait_for_url(f"**/dashboard/jobs/{job_id}")  # back where it was sent from, signed in
    assert await t.page.locator("h1", has_text="Not found").count() == 1
    assert await t.page.locator("text=ord_private").count() == 0
    t.clean("404")


async def test_a_form_without_its_csrf_token_is_refused(browser: Any, world: dict[str, Any]) -> None:
    t = await tab(browser, world["live"])
    await t.goto("/dashboard")
    await sign_in(t, world["store"])
    await t.page.wait_for_url("**/dashboard")
    # what a forged cross-site form would send: the right action and cookie, no token
    await t.page.evaluate("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
    await t.page.click('button[aria-label="Disable Order fulfilment"]')
    await t.page.locator("h1", has_text="Forbidden").wait_for()
    r = await world["api"].get(f"/v2/integrations/{world['integration']}")
    assert r.json()["data"]["enabled"] is True
    t.clean("403")


async def test_a_one_time_link_works_once(browser: Any, world: dict[str, Any]) -> None:
    r = await world["api"].post("/v2/dashboard/links")
    assert r.status_code == 201, r.text
    url = r.json()["data"]["url"]
    first = await tab(browser, world["live"])
    await first.page.goto(url)
    await first.page.wait_for_url("**/dashboard")
    assert await first.page.locator(".who .store").inner_text() == world["store"]["name"]
    second = await tab(browser, world["live"])
    await second.page.goto(url)
    assert await second.page.locator("h1", has_text="This link cannot be used").count() == 1
    await second.goto("/dashboard")
    assert "/dashboard/sign-in" in second.page.url
    first.clean()
    second.clean("410")


async def test_no_console_errors_and_a_strict_policy(browser: Any, world: dict[str, Any]) -> None:
    t = await tab(browser, world["live"])
    response = await t.goto("/dashboard")
    csp = (await response.all_headers())["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    await sign_in(t, world["store"])
    await t.page.wait_for_url("**/dashboard")
    await t.goto("/dashboard?range=24h")
    assert await t.page.locator("svg.chart path.ok").count() == 1
    await asyncio.sleep(0)  # let the page's script start
    t.clean()
