"""8. The dashboard's pages at scale: p99 of the logs page (first page and filtered) beside the API's same pages,
and of the integrations page (24 h health and chart), on a logs table filled directly in bulk (bench.browse).

Timed over HTTP against `herald api`, signed in through the dashboard's own sign-in form, the way a browser is.
The per-minute totals the integrations page reads are filled from the loaded logs, as migration 0003 does."""

from __future__ import annotations

import re
import sqlite3
import time

import aiohttp
import psycopg

from bench.browse import fill, integrations
from bench.harness import Api, Context, Database, Process, percentile, run_async
from bench.report import Row

NAME = "dashboard"
BACKENDS = ("sqlite", "postgresql")
ROWS = {"quick": {"sqlite": 100_000, "postgresql": 100_000}, "full": {"sqlite": 1_000_000, "postgresql": 1_000_000}}
REQUESTS = 200
TARGET_P99 = 50.0  # ms
CSRF = re.compile(r'name="csrf" value="([^"]+)"')

MINUTES = {
    "sqlite": "INSERT INTO log_minutes (store_id, minute, integration_id, succeeded, count)"
              " SELECT store_id, substr(created_at, 1, 16) || ':00.000000', integration_id, succeeded, count(*)"
              " FROM logs GROUP BY 1, 2, 3, 4",
    "postgresql": "INSERT INTO log_minutes (store_id, minute, integration_id, succeeded, count)"
                  " SELECT store_id, date_trunc('minute', created_at), integration_id, succeeded, count(*)"
                  " FROM logs GROUP BY 1, 2, 3, 4",
}


def fill_minutes(db: Database) -> None:
    if db.backend == "sqlite":
        with sqlite3.connect(db.path) as conn:
            conn.execute(MINUTES["sqlite"])
    else:
        with psycopg.connect(db.url) as conn:
            conn.execute(MINUTES["postgresql"])
            conn.execute("ANALYZE log_minutes")


async def timed(session: aiohttp.ClientSession, url: str, headers: dict[str, str] | None = None,
                must: str = "") -> list[float]:
    """REQUESTS timed GETs (after two untimed ones); each must answer 200 with `must` in its body."""
    times = []
    for i in range(REQUESTS + 2):
        t = time.perf_counter()
        async with session.get(url, headers=headers) as r:
            body = await r.text()
            if r.status != 200 or must not in body:
                raise RuntimeError(f"GET {url} answered {r.status}: {body[:200]!r}")
        if i >= 2:
            times.append(1000 * (time.perf_counter() - t))
    return times


async def measure(herald: Process, credentials: dict[str, str], integration_id: str) -> dict[str, list[float]]:
    base = herald.url
    out: dict[str, list[float]] = {}
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as browser:
        async with browser.get(f"{base}/dashboard/sign-in") as r:
            token = CSRF.search(await r.text())
        assert token, "no CSRF token on the sign-in form"
        async with browser.post(f"{base}/dashboard/sign-in", allow_redirects=False, data={
            "csrf": token.group(1), "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"]}) as r:
            if r.status != 303:
                raise RuntimeError(f"dashboard sign-in answered {r.status}")
        row = 'data-id="'
        out["dashboard logs, first page"] = await timed(browser, f"{base}/dashboard/logs", must=row)
        out["dashboard logs, one integration's failures"] = await timed(
            browser, f"{base}/dashboard/logs?integration={integration_id}&outcome=failed", must=row)
        out["dashboard integrations and chart"] = await timed(browser, f"{base}/dashboard", must="svg")
    async with Api(base, credentials) as api:
        headers = api.headers
        out["API logs, first page"] = await timed(api.session, f"{base}/v2/integrations/logs?page[limit]=50",
                                                  headers, '"data"')
        out["API logs, one integration's failures"] = await timed(
            api.session, f"{base}/v2/integrations/{integration_id}/logs?page[limit]=50&filter=eq(succeeded,false)",
            headers, '"data"')
    return out


def run(ctx: Context, backend: str) -> list[Row]:
    n = ROWS[ctx.mode][backend]
    with ctx.session(backend) as s:
        credentials = s.store()
        herald = s.herald("api")
        ids = run_async(integrations(herald, credentials))
        t = time.monotonic()
        fill(s.db, credentials["id"], ids, n)
        fill_minutes(s.db)
        loaded = time.monotonic() - t
        got = run_async(measure(herald, credentials, ids[0]))
    size = f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n // 1000}k"
    rows = []
    for kind, times in got.items():
        target = TARGET_P99 if kind.startswith("dashboard") else None
        rows.append(Row(NAME, backend, f"{kind}, p99 ({size} rows)", percentile(times, 99), "ms", target, "<=",
                        note=f"p50 {percentile(times, 50):.1f} ms, max {max(times):.1f} ms"))
    rows[0].note += f"; {n:,} rows loaded in {loaded:.0f} s; herald api; 50 rows a page"
    return rows
