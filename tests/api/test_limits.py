"""Limits that hold in a deployment: failed sign-ins per client and per address (shared by every API process on
PostgreSQL, bounded in memory on SQLite), and each store's request rate."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from herald.api.limits import FailedSignIns, SharedFailedSignIns, SignInLimits, sign_in_keys
from herald.app import create_app
from herald.settings import Settings
from tests.support.helpers import StoreCreds, error, make_settings, new_store

TOKEN = "/oauth/access_token"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def address() -> str:
    """An address no other test signs in from (PostgreSQL's counters outlive each test's app)."""
    return "10." + ".".join(str(b) for b in secrets.token_bytes(3))


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@asynccontextmanager
async def client_at(app: Any, host: str) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=(host, 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as c:
        yield c


def form(store: StoreCreds, secret: str | None = None) -> dict[str, str]:
    return {"grant_type": "client_credentials", "client_id": store.client_id,
            "client_secret": store.client_secret if secret is None else secret}


def stopped_clock(app: Any) -> Clock:
    """Replace the sign-in counter's clock with one that moves only when the test says."""
    counter = app.state.sign_ins
    clock = Clock(counter.clock())
    counter.clock = clock
    return clock


# --- failed sign-ins ---------------------------------------------------------------------------------------------


def test_the_counter_fits_the_backend(app) -> None:
    expected = FailedSignIns if app.state.db.is_sqlite else SharedFailedSignIns
    assert type(app.state.sign_ins) is expected


async def test_one_clients_failures_do_not_lock_out_another_client_at_the_same_address(
    app, store: StoreCreds, other_store: StoreCreds
) -> None:
    limit = app.state.settings.login_attempts
    async with client_at(app, address()) as c:
        for _ in range(limit):
            error(await c.post(TOKEN, data=form(store, "wrong")), 401)
        for _ in range(3 * limit):  # the flood goes on; refused now, and not counted against the address
            error(await c.post(TOKEN, data=form(store, "wrong")), 429)
        r = await c.post(TOKEN, data=form(other_store))
        assert r.status_code == 200, r.text
        # B's own failures are B's: a few, under its limit, and it still signs in
        for _ in range(limit - 1):
            error(await c.post(TOKEN, data=form(other_store, "wrong")), 401)
        assert (await c.post(TOKEN, data=form(other_store))).status_code == 200


async def test_a_locked_out_client_stays_locked_until_its_window_passes(app, store: StoreCreds) -> None:
    settings = app.state.settings
    clock = stopped_clock(app)
    async with client_at(app, address()) as here, client_at(app, address()) as elsewhere:
        for _ in range(settings.login_attempts):
            error(await here.post(TOKEN, data=form(store, "wrong")), 401)
        r = await here.post(TOKEN, data=form(store))  # the correct secret
        error(r, 429)
        assert r.json()["errors"][0]["title"] == "Too Many Requests"
        assert int(r.headers["Retry-After"]) == settings.login_window
        error(await elsewhere.post(TOKEN, data=form(store)), 429)  # the client is locked, wherever it signs in from
        clock.advance(settings.login_window - 1)
        r = await elsewhere.post(TOKEN, data=form(store))
        error(r, 429)
        assert r.headers["Retry-After"] == "1"
        clock.advance(1)
        assert (await here.post(TOKEN, data=form(store))).status_code == 200
        assert (await elsewhere.post(TOKEN, data=form(store))).status_code == 200
        # a new window: the count starts again
        error(await here.post(TOKEN, data=form(store, "wrong")), 401)
        assert (await here.post(TOKEN, data=form(store))).status_code == 200


async def test_an_address_is_cut_off_at_its_own_higher_threshold(database_url: str) -> None:
    settings = make_settings(database_url, login_attempts=3, login_address_attempts=12)
    async with running(settings) as app:
        spraying, other = address(), address()
        async with client_at(app, spraying) as c, client_at(app, other) as o:
            store = await new_store(app, o, "Victim")
            for n in range(settings.login_address_attempts):
                # a different client_id each time: no client reaches its own limit
                error(await c.post(TOKEN, data={"grant_type": "implicit", "client_id": f"guess-{n}"}), 401)
                if n == settings.login_address_attempts - 2:
                    assert (await c.post(TOKEN, data=form(store))).status_code == 200  # not yet
            r = await c.post(TOKEN, data=form(store))
            error(r, 429)  # the address is refused, even for a real store with its secret
            assert int(r.headers["Retry-After"]) > 0
            error(await c.post(TOKEN, data={"grant_type": "implicit", "client_id": "guess-new"}), 429)
            assert (await o.post(TOKEN, data=form(store))).status_code == 200  # other addresses are not


async def test_two_api_processes_on_one_postgresql_database_share_the_counts(postgres_url: str) -> None:
    settings = make_settings(postgres_url, login_attempts=4)
    async with running(settings) as first, running(settings) as second:
        host = address()
        async with client_at(first, host) as one, client_at(second, host) as two:
            store = await new_store(first, one, "Shared")
            for n in range(settings.login_attempts):
                # alternate between the processes, as a proxy spreading requests would
                error(await (one if n % 2 else two).post(TOKEN, data=form(store, "wrong")), 401)
            error(await one.post(TOKEN, data=form(store)), 429)
            error(await two.post(TOKEN, data=form(store)), 429)
        async with running(settings) as third, client_at(third, address()) as three:
            error(await three.post(TOKEN, data=form(store)), 429)  # and a process started later


async def test_a_spray_of_random_client_ids_keeps_memory_bounded() -> None:
    counter = FailedSignIns(SignInLimits(per_client=10, per_address=100, window=300), clock=Clock(0.0))
    host = "203.0.113.7"
    for _ in range(100_000):
        await counter.failed(secrets.token_urlsafe(12), host)
        assert len(counter) <= counter.max_keys
    assert len(counter) == counter.max_keys
    # what matters survived: the spraying address is still counted, and refused
    assert await counter.retry_after("anyone", host) == 300
    assert await counter.retry_after("anyone", "203.0.113.8") is None


async def test_a_locked_key_survives_a_spray_that_evicts_others() -> None:
    counter = FailedSignIns(SignInLimits(per_client=3, per_address=10**9, window=300), max_keys=1000)
    for _ in range(3):
        await counter.failed("victim", "198.51.100.1")
    for n in range(5000):
        await counter.failed(f"noise-{n}", f"198.51.100.{2 + n % 200}")
        if n % 100 == 0:
            assert await counter.retry_after("victim", "198.51.100.9") is not None  # each refusal keeps it fresh
    assert len(counter) <= 1000
    assert await counter.retry_after("victim", "198.51.100.9") is not None


async def test_the_shared_counters_window_by_window(app) -> None:
    from herald.db import sign_ins

    keys = [secrets.token_hex(16), secrets.token_hex(16)]
    async with app.state.db.write() as conn:
        await sign_ins.add(conn, keys, 1000.0, 300)
        await sign_ins.add(conn, keys[:1], 1100.0, 300)
    async with app.state.db.read() as conn:
        assert await sign_ins.windows(conn, keys, 1200.0, 300) == {keys[0]: (1000.0, 2), keys[1]: (1000.0, 1)}
        assert await sign_ins.windows(conn, keys, 1300.0, 300) == {}  # both windows have ended
    async with app.state.db.write() as conn:
        await sign_ins.add(conn, keys[:1], 1300.0, 300)  # a new window, counted from one
    async with app.state.db.read() as conn:
        assert await sign_ins.windows(conn, keys, 1300.0, 300) == {keys[0]: (1300.0, 1)}
    async with app.state.db.write() as conn:
        assert await sign_ins.forget_ended(conn, 1300.0, 300) >= 1  # keys[1] (and older tests' rows)
    async with app.state.db.read() as conn:
        assert await sign_ins.windows(conn, keys, 1300.0, 10**9) == {keys[0]: (1300.0, 1)}


def test_long_client_ids_make_keys_of_one_size() -> None:
    limits = SignInLimits(10, 100, 300)
    keys = sign_in_keys(limits, "x" * 100_000, "::1") + sign_in_keys(limits, "", "")
    assert {len(key) for key, _ in keys} == {32}
    assert len({key for key, _ in keys}) == len(keys)


async def test_the_dashboard_sign_in_counts_against_the_same_client(app, store: StoreCreds) -> None:
    async with client_at(app, address()) as c:
        for _ in range(app.state.settings.login_attempts):
            error(await c.post(TOKEN, data=form(store, "wrong")), 401)
        page = await c.get("/dashboard/sign-in")
        csrf = page.cookies["herald_sign_in"]
        r = await c.post("/dashboard/sign-in", data={"csrf": csrf, "client_id": store.client_id,
                                                     "client_secret": store.client_secret})
        assert r.status_code == 429
        assert int(r.headers["Retry-After"]) > 0


# --- per-store rate limit ----------------------------------------------------------------------------------------


def test_the_burst_defaults_to_twice_the_rate() -> None:
    assert Settings(rate_limit=5).rate_limit_bucket == 10
    assert Settings(rate_limit=5, rate_limit_burst=3).rate_limit_bucket == 3
    assert Settings(rate_limit=0.1).rate_limit_bucket == 1  # never less than one request
    assert create_app(Settings(database_url="sqlite:///unused.db")).state.rates is None  # off by default


async def test_a_store_over_its_rate_gets_429_and_others_do_not(database_url: str) -> None:
    settings = make_settings(database_url, rate_limit=2, rate_limit_burst=3)
    async with running(settings) as app, client_at(app, address()) as c:
        store, other = await new_store(app, c, "Busy"), await new_store(app, c, "Quiet")
        clock = Clock(0.0)
        app.state.rates.clock = clock
        for _ in range(3):  # the burst
            assert (await c.get("/v2/integrations", headers=store.headers)).status_code == 200
        r = await c.post("/v2/events", json={"data": {"type": "event", "triggered_by": "order.paid", "payload": {}}},
                         headers=store.headers)
        assert error(r, 429) == {"status": 429, "title": "Too Many Requests",
                                 "detail": "This store may make 2 requests per second; slow down"}
        assert r.headers["Retry-After"] == "1"
        assert "x-request-id" in r.headers
        assert (await c.get("/v2/integrations", headers=other.headers)).status_code == 200
        assert (await c.post(TOKEN, data=form(store))).status_code == 200  # sign-ins are not paced by it
        clock.advance(0.25)  # half a request's worth
        error(await c.get("/v2/integrations", headers=store.headers), 429)
        clock.advance(0.25)
        assert (await c.get("/v2/integrations", headers=store.headers)).status_code == 200
        error(await c.get("/v2/integrations", headers=store.headers), 429)
        clock.advance(60)  # a long pause refills the bucket to its size, no more
        for _ in range(3):
            assert (await c.get("/v2/integrations", headers=store.headers)).status_code == 200
        error(await c.get("/v2/integrations", headers=store.headers), 429)
