"""End-to-end delivery: a real `herald serve` process, real HTTP receivers on loopback, SQLite and PostgreSQL.

One serve process per backend for the module (retry schedule 0.3,0.3 = 3 attempts), plus three started only
when a test needs them: one with a long schedule (30 s) for Retry-After and pending jobs, one with a 1 s
delivery timeout for the timeout test, and one that disables an integration failing for 2 s (HERALD_DISABLE_AFTER)
with a schedule of twenty 0.2 s retries, for the auto-disable tests.
Each server gets its own throwaway database, so that no other worker (another module's server, an
in-process app) claims these jobs and no leftover job of this module is delivered after it ends.
Every test makes its own store, token and integrations; nothing waits on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.support.databases import dedicated_database
from tests.support.server import HeraldProcess, Receiver, poll, serve

pytestmark = pytest.mark.e2e

NON_2XX = "Received a status code outside of 2xx range - treating webhook as a fail"
RFC3339_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
LOG_KEYS = {
    "id", "type", "succeeded", "attempt", "processing_time", "body", "status_code", "error_detail",
    "relationships", "meta",
}

MAIN_ENV = {"HERALD_RETRY_SCHEDULE": "0.3,0.3", "HERALD_DELIVERY_TIMEOUT": "5"}
SLOW_ENV = {"HERALD_RETRY_SCHEDULE": "30", "HERALD_DELIVERY_TIMEOUT": "5"}
# Only the timeout test runs against a 1 s deadline, so that a busy machine cannot turn a slow answer
# into a timeout anywhere else.
TIMEOUT_ENV = {"HERALD_RETRY_SCHEDULE": "0.3,0.3", "HERALD_DELIVERY_TIMEOUT": "1"}
# Auto-disable: an integration whose every delivery failed for DISABLE_AFTER seconds is disabled. 21 attempts
# 0.2 s apart outlast the window by far, so that it is the disable, not the end of the retries, that stops them.
DISABLE_AFTER = 2.0
DISABLE_ATTEMPTS = 21
DISABLE_ENV = {
    "HERALD_RETRY_SCHEDULE": ",".join(["0.2"] * (DISABLE_ATTEMPTS - 1)),
    "HERALD_DISABLE_AFTER": str(DISABLE_AFTER),
    "HERALD_DELIVERY_TIMEOUT": "5",
}


# --- servers: one per backend per module, each on its own database ------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@dataclass
class Server:
    process: HeraldProcess
    database_url: str

    @property
    def url(self) -> str:
        return self.process.url


@contextmanager
def running_server(request: pytest.FixtureRequest, backend: str, label: str, env: dict[str, str]) -> Iterator[Server]:
    with dedicated_database(request, backend, label) as url:
        logs_dir = request.getfixturevalue("tmp_path_factory").mktemp(f"serve-{label}")
        process = serve(url, logs_dir, **env)
        try:
            yield Server(process, url)
        finally:
            process.stop()


@pytest.fixture(scope="module")
def herald_main(request: pytest.FixtureRequest, backend: str) -> Iterator[Server]:
    with running_server(request, backend, "main", MAIN_ENV) as server:
        yield server


@pytest.fixture(scope="module")
def herald_slow(request: pytest.FixtureRequest, backend: str) -> Iterator[Server]:
    with running_server(request, backend, "slow", SLOW_ENV) as server:
        yield server


@pytest.fixture(scope="module")
def herald_timeout(request: pytest.FixtureRequest, backend: str) -> Iterator[Server]:
    with running_server(request, backend, "timeout", TIMEOUT_ENV) as server:
        yield server


@pytest.fixture(scope="module")
def herald_disable(request: pytest.FixtureRequest, backend: str) -> Iterator[Server]:
    with running_server(request, backend, "disable", DISABLE_ENV) as server:
        yield server


# --- a store, its token and an API client per test ------------------------------------------------


async def new_store(database_url: str, name: str) -> dict[str, str]:
    """Create a store straight in the database (what `herald stores create` does, minus 0.7 s of start-up)."""
    from herald.db import stores
    from herald.db.database import Database

    db = Database(database_url)
    try:
        async with db.write() as conn:
            return (await stores.create(conn, name)).as_dict()
    finally:
        await db.dispose()


@dataclass
class Api:
    client: httpx.AsyncClient
    store_id: str

    async def create_integration(
        self,
        url: str,
        observes: list[str] | None = None,
        *,
        secret_key: str | None = None,
        name: str = "E2E hook",
        description: str = "Delivered by the e2e suite",
    ) -> dict[str, Any]:
        configuration: dict[str, Any] = {"url": url}
        if secret_key is not None:
            configuration["secret_key"] = secret_key
        r = await self.client.post(
            "/v2/integrations",
            json={
                "data": {
                    "type": "integration", "name": name, "description": description, "enabled": True,
                    "integration_type": "webhook", "observes": observes or ["order.paid"],
                    "configuration": configuration,
                }
            },
        )
        assert r.status_code == 201, r.text
        return r.json()["data"]

    async def publish(
        self, triggered_by: str, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        r = await self.client.post(
            "/v2/events",
            json={"data": {"type": "event", "triggered_by": triggered_by, "payload": payload}},
            headers=headers,
        )
        assert r.status_code == 202, r.text
        return r.json()["data"]

    async def job(self, integration_id: str, job_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/v2/integrations/{integration_id}/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()["data"]

    async def wait_job(self, integration_id: str, job_id: str, *statuses: str, attempts: int | None = None,
                       timeout: float = 20) -> dict[str, Any]:
        return await poll(
            lambda: self.job(integration_id, job_id),
            lambda j: j["status"] in statuses and (attempts is None or j["attempts"] == attempts),
            timeout,
        )

    async def get(self, path: str, **params: str) -> dict[str, Any]:
        r = await self.client.get(path, params=params)
        assert r.status_code == 200, r.text
        return r.json()

    async def logs(self, path: str, **params: str) -> list[dict[str, Any]]:
        return (await self.get(path, **params))["data"]


@asynccontextmanager
async def api_for(server: Server) -> AsyncIterator[Api]:
    store = await new_store(server.database_url, "E2E delivery store")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        r = await client.post(
            "/oauth/access_token",
            data={
                "grant_type": "client_credentials",
                "client_id": store["client_id"],
                "client_secret": store["client_secret"],
            },
        )
        assert r.status_code == 200, r.text
        client.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        yield Api(client, store["id"])


@pytest.fixture
async def api(herald_main: Server) -> AsyncIterator[Api]:
    async with api_for(herald_main) as a:
        yield a


@pytest.fixture
async def slow_api(herald_slow: Server) -> AsyncIterator[Api]:
    async with api_for(herald_slow) as a:
        yield a


@pytest.fixture
async def timeout_api(herald_timeout: Server) -> AsyncIterator[Api]:
    async with api_for(herald_timeout) as a:
        yield a


@pytest.fixture
async def disable_api(herald_disable: Server) -> AsyncIterator[Api]:
    async with api_for(herald_disable) as a:
        yield a


# --- small helpers -----------------------------------------------------------------------------


def lower(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def body_of(request: dict[str, Any]) -> dict[str, Any]:
    return json.loads(request["body"])


def job_ids(event: dict[str, Any]) -> list[str]:
    return [j["id"] for j in event["relationships"]["jobs"]["data"]]


def answer(*statuses: int, text: str = "", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """A handler answering the given statuses in turn (the last one repeats)."""
    calls = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        status = statuses[min(calls["n"], len(statuses) - 1)]
        calls["n"] += 1
        return web.Response(status=status, text=text or ("ok" if status < 300 else "nope"), headers=headers)

    return handler


def assert_log(log: dict[str, Any], *, integration_id: str, job_id: str, succeeded: bool, attempt: int,
               status_code: int | None, body: str | None = None, error_detail: str | None = None) -> None:
    assert set(log) == LOG_KEYS
    assert UUID.match(log["id"])
    assert log["type"] == "integration-log"
    assert log["succeeded"] is succeeded
    assert log["attempt"] == attempt
    assert log["status_code"] == status_code
    if body is not None:
        assert log["body"] == body
    if error_detail is not None:
        assert log["error_detail"] == error_detail
    assert isinstance(log["processing_time"], float) and log["processing_time"] > 0
    assert log["relationships"] == {
        "integration": {"data": {"type": "integration", "id": integration_id}},
        "job": {"data": {"type": "integration-job", "id": job_id}},
    }
    assert set(log["meta"]) == {"timestamps"} and set(log["meta"]["timestamps"]) == {"created_at"}
    assert RFC3339_Z.match(log["meta"]["timestamps"]["created_at"])


# --- scenarios ---------------------------------------------------------------------------------


async def test_success_delivers_signed_webhook_and_logs_it(api: Api) -> None:
    async with Receiver() as rcv:
        integ = await api.create_integration(rcv.url(), ["order.paid"], secret_key="topsecretvalue",
                                             name="Order paid", description="Tell the ERP")
        payload = {"id": "order-1", "type": "order", "total": 4200, "items": [{"sku": "A", "qty": 2}]}
        event = await api.publish("order.paid", payload)
        assert len(job_ids(event)) == 1
        job_id = job_ids(event)[0]
        started = time.time()
        stored = (await api.get(f"/v2/events/{event['id']}"))["data"]
        assert stored["payload"] == payload and job_ids(stored) == [job_id]
        assert stored["triggered_by"] == "order.paid" and RFC3339_Z.match(stored["meta"]["timestamps"]["created_at"])
        (req,) = await rcv.wait_for(1)

        job = await api.wait_job(integ["id"], job_id, "succeeded")
        assert job["attempts"] == 1 and job["next_attempt_at"] is None
        assert job["triggered_by"] == "order.paid"
        assert job["relationships"] == {
            "integration": {"data": {"type": "integration", "id": integ["id"]}},
            "event": {"data": {"type": "event", "id": event["id"]}},
        }
        logs = await api.logs(f"/v2/integrations/{integ['id']}/logs")
        assert len(logs) == 1
        assert_log(logs[0], integration_id=integ["id"], job_id=job_id, succeeded=True, attempt=1,
                   status_code=200, body="ok", error_detail="")

        body = body_of(req)
        assert isinstance(body["resources"], str) and json.loads(body["resources"]) == payload
        assert body == {
            "id": event["id"],
            "triggered_by": "order.paid",
            "attempt": 1,
            "store_id": api.store_id,
            "integration": {"id": integ["id"], "integration_type": "webhook", "name": "Order paid",
                            "description": "Tell the ERP"},
            "resources": body["resources"],
            "payload": payload,
        }
        assert req["path"] == "/hook"
        h = lower(req["headers"])
        assert h["content-type"] == "application/json"
        assert h["user-agent"].startswith("Herald/")
        assert h["x-moltin-integration-trigger"] == "order.paid"
        assert h["x-moltin-secret-key"] == "topsecretvalue"
        assert h["webhook-id"] == job_id
        assert abs(int(h["webhook-timestamp"]) - started) < 60

        old_key = (await api.get(f"/v2/integrations/{integ['id']}/signing-secret"))["data"]["key"]
        assert old_key.startswith("whsec_")
        assert Webhook(old_key).verify(req["body"], req["headers"]) == body
        with pytest.raises(WebhookVerificationError):
            Webhook("whsec_" + "QUJD" * 8).verify(req["body"], req["headers"])

        r = await api.client.post(f"/v2/integrations/{integ['id']}/signing-secret/rotate")
        assert r.status_code == 200, r.text
        new_key = r.json()["data"]["key"]
        assert new_key.startswith("whsec_") and new_key != old_key
        assert (await api.get(f"/v2/integrations/{integ['id']}/signing-secret"))["data"]["key"] == new_key
        with pytest.raises(WebhookVerificationError):  # the first delivery was signed before the rotation
            Webhook(new_key).verify(req["body"], req["headers"])

        second = await api.publish("order.paid", {"id": "order-2"})
        reqs = await rcv.wait_for(2)
        assert lower(reqs[1]["headers"])["webhook-id"] == job_ids(second)[0]
        assert Webhook(new_key).verify(reqs[1]["body"], reqs[1]["headers"])["id"] == second["id"]
        assert Webhook(old_key).verify(reqs[1]["body"], reqs[1]["headers"])["id"] == second["id"]


async def test_404_log_has_the_seed_shape(api: Api) -> None:
    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="Not found")

    async with Receiver(not_found) as rcv:
        integ = await api.create_integration(rcv.url())
        event = await api.publish("order.paid", {"id": "o-404"})
        job_id = job_ids(event)[0]
        await rcv.wait_for(1)
        answer_ = await poll(lambda: api.get("/v2/integrations/logs"), lambda a: len(a["data"]) >= 1)
        first = answer_["data"][-1]  # newest first: the oldest is attempt 1
        assert set(answer_) == {"data", "links", "meta", "results"}
        assert set(answer_["meta"]) == {"limit", "offset", "current", "total"}
        assert_log(first, integration_id=integ["id"], job_id=job_id, succeeded=False, attempt=1, status_code=404,
                   body="Not found", error_detail=NON_2XX)
        expected = {
            "id": first["id"],
            "type": "integration-log",
            "succeeded": False,
            "attempt": 1,
            "processing_time": first["processing_time"],
            "body": "Not found",
            "status_code": 404,
            "error_detail": NON_2XX,
            "relationships": {
                "integration": {"data": {"type": "integration", "id": integ["id"]}},
                "job": {"data": {"type": "integration-job", "id": job_id}},
            },
            "meta": {"timestamps": {"created_at": first["meta"]["timestamps"]["created_at"]}},
        }
        assert first == expected
        # the same log through the two other log routes
        for path in (f"/v2/integrations/{integ['id']}/logs", f"/v2/integrations/{integ['id']}/jobs/{job_id}/logs"):
            logs = await api.logs(path, filter="eq(attempt,1)")
            assert logs == [expected], path


async def test_flaky_receiver_is_retried_until_it_succeeds(api: Api) -> None:
    async with Receiver(answer(500, 500, 200)) as rcv:
        integ = await api.create_integration(rcv.url())
        event = await api.publish("order.paid", {"id": "o-flaky"})
        job_id = job_ids(event)[0]
        reqs = await rcv.wait_for(3)
        job = await api.wait_job(integ["id"], job_id, "succeeded")
        assert job["attempts"] == 3 and job["next_attempt_at"] is None
        assert len(rcv.requests) == 3

        assert [lower(r["headers"])["webhook-id"] for r in reqs] == [job_id] * 3
        assert [body_of(r)["attempt"] for r in reqs] == [1, 2, 3]
        assert {body_of(r)["id"] for r in reqs} == {event["id"]}
        key = (await api.get(f"/v2/integrations/{integ['id']}/signing-secret"))["data"]["key"]
        for r in reqs:
            Webhook(key).verify(r["body"], r["headers"])

        logs = await api.logs(f"/v2/integrations/{integ['id']}/jobs/{job_id}/logs")
        assert [log["attempt"] for log in logs] == [3, 2, 1]
        assert [log["succeeded"] for log in logs] == [True, False, False]
        assert [log["status_code"] for log in logs] == [200, 500, 500]
        assert [log["error_detail"] for log in logs] == ["", NON_2XX, NON_2XX]


async def test_retries_exhausted_fail_the_job(api: Api) -> None:
    async with Receiver(answer(500)) as rcv:
        integ = await api.create_integration(rcv.url())
        event = await api.publish("order.paid", {"id": "o-fail"})
        job_id = job_ids(event)[0]
        job = await api.wait_job(integ["id"], job_id, "failed")
        assert job["attempts"] == 3
        assert job["next_attempt_at"] is None
        assert len(rcv.requests) == 3
        logs = await api.logs(f"/v2/integrations/{integ['id']}/logs")
        assert [log["attempt"] for log in logs] == [3, 2, 1]
        assert all(log["succeeded"] is False and log["status_code"] == 500 for log in logs)
        # the integration stays enabled: failing for seconds is not failing for 5 days
        assert (await api.get(f"/v2/integrations/{integ['id']}"))["data"]["enabled"] is True


async def test_timeout_is_logged_without_status_code(timeout_api: Api) -> None:
    api = timeout_api
    release = asyncio.Event()

    async def stall(request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(release.wait(), 15)
        except TimeoutError:
            pass
        return web.Response(text="too late")

    async with Receiver(stall) as rcv:
        try:
            integ = await api.create_integration(rcv.url())
            event = await api.publish("order.paid", {"id": "o-slow"})
            job_id = job_ids(event)[0]
            await rcv.wait_for(1)
            logs = await poll(lambda: api.logs(f"/v2/integrations/{integ['id']}/logs"), lambda ls: len(ls) >= 1)
            log = logs[-1]
            assert_log(log, integration_id=integ["id"], job_id=job_id, succeeded=False, attempt=1, status_code=None,
                       body="")
            assert "timeout" in log["error_detail"].lower() or "timed out" in log["error_detail"].lower()
            assert log["error_detail"] != NON_2XX
            assert 0.9 <= log["processing_time"] < 10
        finally:
            release.set()


async def test_redirect_is_a_failure_and_not_followed(api: Api) -> None:
    async with Receiver() as target:
        async with Receiver(answer(302, headers={"Location": target.url("/elsewhere")})) as rcv:
            integ = await api.create_integration(rcv.url())
            event = await api.publish("order.paid", {"id": "o-redirect"})
            job_id = job_ids(event)[0]
            job = await api.wait_job(integ["id"], job_id, "failed")
            assert job["attempts"] == 3
            logs = await api.logs(f"/v2/integrations/{integ['id']}/logs")
            assert len(logs) == 3
            for log in logs:
                assert log["succeeded"] is False and log["status_code"] == 302
                assert log["error_detail"] not in ("", NON_2XX)
                assert "redirect" in log["error_detail"].lower()
            assert len(rcv.requests) == 3
            assert target.requests == []


async def test_410_gone_disables_the_integration(api: Api) -> None:
    async with Receiver(answer(410, text="Gone")) as rcv:
        integ = await api.create_integration(rcv.url())
        event = await api.publish("order.paid", {"id": "o-gone"})
        job_id = job_ids(event)[0]
        job = await api.wait_job(integ["id"], job_id, "failed")
        assert job["attempts"] == 1 and job["next_attempt_at"] is None
        assert (await api.get(f"/v2/integrations/{integ['id']}"))["data"]["enabled"] is False
        logs = await api.logs(f"/v2/integrations/{integ['id']}/logs")
        assert len(logs) == 1
        assert_log(logs[0], integration_id=integ["id"], job_id=job_id, succeeded=False, attempt=1, status_code=410,
                   body="Gone")
        assert len(rcv.requests) == 1
        # a disabled integration gets no new jobs
        later = await api.publish("order.paid", {"id": "o-after"})
        assert job_ids(later) == []
        jobs = await api.get(f"/v2/integrations/{integ['id']}/jobs")
        assert jobs["meta"]["results"]["total"] == 1

def created_at(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meta"]["timestamps"]["created_at"])


async def test_failing_longer_than_disable_after_disables_the_integration(disable_api: Api) -> None:
    """Once every delivery of an integration has failed for HERALD_DISABLE_AFTER seconds (counted from the first
    failure of the run), the next failed attempt disables it, cancels its pending job and raises
    integration.updated; no attempt follows, although its retries were far from exhausted."""
    api = disable_api
    async with Receiver(answer(500)) as failing, Receiver() as observer:
        integ = await api.create_integration(failing.url(), ["order.paid"], name="Always failing")
        watcher = await api.create_integration(observer.url("/updated"), ["integration.updated"], name="Watcher")
        event = await api.publish("order.paid", {"id": "o-disable"})
        job_id = job_ids(event)[0]
        await failing.wait_for(1)

        await poll(lambda: api.get(f"/v2/integrations/{integ['id']}"), lambda a: a["data"]["enabled"] is False,
                   timeout=DISABLE_AFTER + 20)
        # the disable commits with the attempt that triggered it: what is logged now is every attempt there is
        page = await api.get(f"/v2/integrations/{integ['id']}/logs")
        logs = page["data"]
        attempts = page["results"]["total"]
        assert len(logs) == attempts and len(failing.requests) == attempts
        assert [log["attempt"] for log in logs] == list(range(attempts, 0, -1))
        assert all(log["succeeded"] is False and log["status_code"] == 500 for log in logs)
        span = (created_at(logs[0]) - created_at(logs[-1])).total_seconds()
        assert span >= DISABLE_AFTER - 0.05, f"disabled after {span:.2f} s of failures, before the window passed"
        assert span < DISABLE_AFTER + 1.5, f"disabled only after {span:.2f} s of failures"
        assert 2 <= attempts < DISABLE_ATTEMPTS, attempts

        job = await api.job(integ["id"], job_id)
        assert job["status"] == "cancelled" and job["attempts"] == attempts and job["next_attempt_at"] is None
        jobs = await api.get(f"/v2/integrations/{integ['id']}/jobs")
        assert [(j["id"], j["status"]) for j in jobs["data"]] == [(job_id, "cancelled")]

        (req,) = await observer.wait_for(1)
        body = body_of(req)
        assert body["triggered_by"] == "integration.updated"
        assert body["integration"]["id"] == watcher["id"]
        updated = body["payload"]["data"]
        assert (updated["id"], updated["type"], updated["name"]) == (integ["id"], "integration", "Always failing")
        assert updated["enabled"] is False
        await api.wait_job(watcher["id"], lower(req["headers"])["webhook-id"], "succeeded")

        # Absence of further attempts: a bounded look of five retry delays (0.2 s each), failing at the first one.
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            now_logged = (await api.get(f"/v2/integrations/{integ['id']}/logs"))["results"]["total"]
            assert (now_logged, len(failing.requests)) == (attempts, attempts), "an attempt after the disable"
            await asyncio.sleep(0.1)
        assert (await api.get(f"/v2/integrations/{integ['id']}"))["data"]["enabled"] is False
        assert (await api.job(integ["id"], job_id))["status"] == "cancelled"
        assert len(observer.requests) == 1  # one integration.updated, not one per later failure


async def test_a_success_within_disable_after_keeps_the_integration_enabled(disable_api: Api) -> None:
    """`failing_since` is set by the first failure of a run of failures and cleared by a success. An integration
    that recovers half-way through the window stays enabled, even when it fails again past the window counted
    from its very first failure: its new run of failures is younger than HERALD_DISABLE_AFTER."""
    api = disable_api
    first: list[float] = []
    late: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        now = time.monotonic()
        if not first:
            first.append(now)
        if (await request.json())["payload"]["id"] == "o-recovers":
            ok = now >= first[0] + DISABLE_AFTER / 2
        else:  # fails again, until one failure past the window counted from the first failure of all
            ok = bool(late)
            if not ok and now >= first[0] + DISABLE_AFTER + 0.2:
                late.append(now)
        return web.Response(status=200 if ok else 500, text="ok" if ok else "nope")

    async with Receiver(handler) as rcv:
        integ = await api.create_integration(rcv.url(), ["order.paid"])
        recovers = job_ids(await api.publish("order.paid", {"id": "o-recovers"}))[0]
        job = await api.wait_job(integ["id"], recovers, "succeeded", "failed", "cancelled", timeout=DISABLE_AFTER + 20)
        assert job["status"] == "succeeded" and job["attempts"] >= 2, job
        assert (await api.get(f"/v2/integrations/{integ['id']}"))["data"]["enabled"] is True

        again = job_ids(await api.publish("order.paid", {"id": "o-fails-again"}))[0]
        job = await api.wait_job(integ["id"], again, "succeeded", "failed", "cancelled", timeout=DISABLE_AFTER + 20)
        logs = (await api.get(f"/v2/integrations/{integ['id']}/logs"))["data"][::-1]  # oldest first
        assert len(logs) == len(rcv.requests)
        recovery = next(log for log in logs if log["succeeded"])
        failed_again = [
            log for log in logs if not log["succeeded"] and log["relationships"]["job"]["data"]["id"] == again
        ]
        enabled = (await api.get(f"/v2/integrations/{integ['id']}"))["data"]["enabled"]
        since_first: float | None = None
        since_recovery: float | None = None
        if failed_again:
            since_first = (created_at(failed_again[-1]) - created_at(logs[0])).total_seconds()
            since_recovery = (created_at(failed_again[-1]) - created_at(recovery)).total_seconds()
        seen = (f"second job {job['status']}, integration enabled: {enabled}; its last failure came {since_first} s"
                f" after the first failure of all and {since_recovery} s after the recovery (window {DISABLE_AFTER} s)")
        assert job["status"] == "succeeded" and enabled is True, seen
        assert late and since_first is not None and since_recovery is not None, seen
        assert since_first >= DISABLE_AFTER + 0.1, seen  # it would be disabled, had the success not cleared the count
        assert since_recovery < DISABLE_AFTER, seen  # precondition: the second run of failures is younger than that
        assert job["attempts"] == len(failed_again) + 1


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_overrides_a_long_schedule(slow_api: Api, status: int) -> None:
    async with Receiver(answer(status, 200, headers={"Retry-After": "1"})) as rcv:
        integ = await slow_api.create_integration(rcv.url())
        event = await slow_api.publish("order.paid", {"id": "o-busy"})
        job_id = job_ids(event)[0]
        reqs = await rcv.wait_for(2, timeout=15)
        gap = reqs[1]["at"] - reqs[0]["at"]
        assert 0.9 <= gap < 10, gap  # the schedule says 30 s
        assert body_of(reqs[1])["attempt"] == 2
        job = await slow_api.wait_job(integ["id"], job_id, "succeeded")
        assert job["attempts"] == 2
        logs = await slow_api.logs(f"/v2/integrations/{integ['id']}/jobs/{job_id}/logs")
        assert [(log["attempt"], log["status_code"], log["succeeded"]) for log in logs] == [
            (2, 200, True), (1, status, False)
        ]


async def test_retrying_a_pending_job_conflicts(slow_api: Api) -> None:
    async with Receiver(answer(500)) as rcv:
        integ = await slow_api.create_integration(rcv.url())
        event = await slow_api.publish("order.paid", {"id": "o-pending"})
        job_id = job_ids(event)[0]
        await rcv.wait_for(1)
        job = await slow_api.wait_job(integ["id"], job_id, "pending", attempts=1)
        assert job["next_attempt_at"] is not None and RFC3339_Z.match(job["next_attempt_at"])
        r = await slow_api.client.post(f"/v2/integrations/{integ['id']}/jobs/{job_id}/retry")
        assert r.status_code == 409, r.text
        (error,) = r.json()["errors"]
        assert error["status"] == 409
        assert (await slow_api.job(integ["id"], job_id))["status"] == "pending"
        assert len(rcv.requests) == 1


async def test_disabling_an_integration_cancels_its_pending_jobs(slow_api: Api) -> None:
    async with Receiver(answer(500)) as rcv:
        integ = await slow_api.create_integration(rcv.url())
        first = await slow_api.publish("order.paid", {"id": "o-c1"})
        second = await slow_api.publish("order.paid", {"id": "o-c2"})
        ids = job_ids(first) + job_ids(second)
        await rcv.wait_for(2)
        for job_id in ids:
            await slow_api.wait_job(integ["id"], job_id, "pending", attempts=1)
        r = await slow_api.client.put(
            f"/v2/integrations/{integ['id']}", json={"data": {"type": "integration", "enabled": False}}
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["enabled"] is False
        for job_id in ids:
            job = await slow_api.job(integ["id"], job_id)
            assert job["status"] == "cancelled" and job["next_attempt_at"] is None and job["attempts"] == 1
        cancelled = await slow_api.get(f"/v2/integrations/{integ['id']}/jobs", filter="eq(status,cancelled)")
        assert sorted(j["id"] for j in cancelled["data"]) == sorted(ids)
        assert len(rcv.requests) == 2
        # SPEC 9: cancelled jobs can be retried later
        r = await slow_api.client.post(f"/v2/integrations/{integ['id']}/jobs/{ids[0]}/retry")
        assert r.status_code == 202, r.text


async def test_idempotent_publish(api: Api) -> None:
    async with Receiver() as rcv:
        integ = await api.create_integration(rcv.url())
        body = {"data": {"type": "event", "triggered_by": "order.paid", "payload": {"id": "o-idem"}}}
        headers = {"Idempotency-Key": "idem-key-1"}
        first = await api.client.post("/v2/events", json=body, headers=headers)
        again = await api.client.post("/v2/events", json=body, headers=headers)
        assert first.status_code == again.status_code == 202, (first.text, again.text)
        assert again.json() == first.json()
        event = first.json()["data"]
        (job_id,) = job_ids(event)
        await rcv.wait_for(1)
        await api.wait_job(integ["id"], job_id, "succeeded")
        jobs = await api.get(f"/v2/integrations/{integ['id']}/jobs")
        assert [j["id"] for j in jobs["data"]] == [job_id]
        assert len(rcv.requests) == 1

        other = {"data": {"type": "event", "triggered_by": "order.paid", "payload": {"id": "o-other"}}}
        r = await api.client.post("/v2/events", json=other, headers=headers)
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["status"] == 422
        jobs = await api.get(f"/v2/integrations/{integ['id']}/jobs")
        assert jobs["meta"]["results"]["total"] == 1


async def test_deleted_event_resources_is_the_object(api: Api) -> None:
    async with Receiver() as rcv:
        integ = await api.create_integration(rcv.url(), ["product.deleted"])
        event = await api.publish("product.deleted", {"type": "product", "id": "p1"})
        (req,) = await rcv.wait_for(1)
        body = body_of(req)
        assert body["resources"] == {"type": "product", "id": "p1"}
        assert body["payload"] == {"type": "product", "id": "p1"}
        assert body["id"] == event["id"] and body["triggered_by"] == "product.deleted"
        h = lower(req["headers"])
        assert h["x-moltin-integration-trigger"] == "product.deleted"
        assert "x-moltin-secret-key" not in h  # no secret_key configured
        await api.wait_job(integ["id"], job_ids(event)[0], "succeeded")


async def test_batch_publish_delivers_every_event(api: Api) -> None:
    async with Receiver() as rcv:
        integ = await api.create_integration(rcv.url(), ["order.created"])
        batch = [{"type": "event", "triggered_by": "order.created", "payload": {"n": n}} for n in range(50)]
        r = await api.client.post("/v2/events", json={"data": batch})
        assert r.status_code == 202, r.text
        events = r.json()["data"]
        assert isinstance(events, list) and len(events) == 50
        assert all(e["type"] == "event" and e["triggered_by"] == "order.created" for e in events)
        assert all(len(job_ids(e)) == 1 for e in events)
        assert len({e["id"] for e in events}) == 50
        assert len({job_ids(e)[0] for e in events}) == 50

        reqs = await rcv.wait_for(50, timeout=30)
        bodies = [body_of(q) for q in reqs]
        assert {b["id"] for b in bodies} == {e["id"] for e in events}
        assert sorted(b["payload"]["n"] for b in bodies) == list(range(50))
        done = await poll(
            lambda: api.get(f"/v2/integrations/{integ['id']}/jobs", filter="eq(status,succeeded)"),
            lambda a: a["meta"]["results"]["total"] == 50,
        )
        assert {j["id"] for j in done["data"]} == {job_ids(e)[0] for e in events}
        assert len(rcv.requests) == 50


async def test_wildcard_observes_order_events_only(api: Api) -> None:
    async with Receiver() as rcv:
        integ = await api.create_integration(rcv.url(), ["order.*"])
        product = await api.publish("product.created", {"id": "p-1"})
        assert job_ids(product) == []
        created = await api.publish("order.created", {"id": "o-1"})
        paid = await api.publish("order.paid", {"id": "o-1"})
        reqs = await rcv.wait_for(2)
        triggers = sorted(lower(q["headers"])["x-moltin-integration-trigger"] for q in reqs)
        assert triggers == ["order.created", "order.paid"]
        for event in (created, paid):
            await api.wait_job(integ["id"], job_ids(event)[0], "succeeded")
        jobs = await api.get(f"/v2/integrations/{integ['id']}/jobs")
        assert sorted(j["triggered_by"] for j in jobs["data"]) == ["order.created", "order.paid"]
        assert len(rcv.requests) == 2


async def test_manual_retry_of_a_failed_job(api: Api) -> None:
    async with Receiver(answer(500, 500, 500, 200)) as rcv:
        integ = await api.create_integration(rcv.url())
        event = await api.publish("order.paid", {"id": "o-retry"})
        job_id = job_ids(event)[0]
        await api.wait_job(integ["id"], job_id, "failed", attempts=3)
        assert len(rcv.requests) == 3

        r = await api.client.post(f"/v2/integrations/{integ['id']}/jobs/{job_id}/retry")
        assert r.status_code == 202, r.text
        assert r.json()["data"]["id"] == job_id
        assert r.json()["data"]["status"] in ("pending", "delivering", "succeeded")
        reqs = await rcv.wait_for(4)
        assert body_of(reqs[3])["attempt"] == 4
        assert lower(reqs[3]["headers"])["webhook-id"] == job_id
        job = await api.wait_job(integ["id"], job_id, "succeeded")
        assert job["attempts"] == 4 and job["next_attempt_at"] is None
        logs = await api.logs(f"/v2/integrations/{integ['id']}/jobs/{job_id}/logs")
        assert [log["attempt"] for log in logs] == [4, 3, 2, 1]
        assert_log(logs[0], integration_id=integ["id"], job_id=job_id, succeeded=True, attempt=4, status_code=200,
                   body="ok", error_detail="")
        assert len(rcv.requests) == 4


async def test_bulk_retry_of_failed_jobs(api: Api) -> None:
    async def by_payload(request: web.Request) -> web.Response:
        ok = (await request.json())["payload"].get("ok", False)
        return web.Response(status=200 if ok else 500, text="ok" if ok else "nope")

    async with Receiver(by_payload) as rcv:
        integ = await api.create_integration(rcv.url())
        bad = [job_ids(await api.publish("order.paid", {"id": f"o-bad-{n}"}))[0] for n in range(2)]
        good = job_ids(await api.publish("order.paid", {"id": "o-good", "ok": True}))[0]
        for job_id in bad:
            await api.wait_job(integ["id"], job_id, "failed", attempts=3)
        await api.wait_job(integ["id"], good, "succeeded")
        assert len(rcv.requests) == 7

        path = f"/v2/integrations/{integ['id']}/jobs/retry"
        r = await api.client.post(path, json={"data": {"status": "failed", "since": "2999-01-01T00:00:00Z"}})
        assert r.status_code == 202, r.text
        assert r.json() == {"meta": {"count": 0}}

        r = await api.client.post(path, json={"data": {"status": "failed"}})
        assert r.status_code == 202, r.text
        assert r.json() == {"meta": {"count": 2}}
        reqs = await rcv.wait_for(9)
        retried = [body_of(q) for q in reqs[7:]]
        assert sorted(lower(q["headers"])["webhook-id"] for q in reqs[7:]) == sorted(bad)
        assert [b["attempt"] for b in retried] == [4, 4]
        for job_id in bad:
            job = await api.wait_job(integ["id"], job_id, "failed", attempts=4)
            assert job["next_attempt_at"] is None
        assert (await api.job(integ["id"], good))["attempts"] == 1
        assert len(rcv.requests) == 9


async def test_log_lists_filters_and_cursor_pagination(api: Api) -> None:
    calls: dict[str, int] = {}

    async def handler(request: web.Request) -> web.Response:
        key = (await request.json())["payload"]["id"]
        calls[key] = calls.get(key, 0) + 1
        ok = key == "steady" or calls[key] >= 3
        return web.Response(status=200 if ok else 500, text="ok" if ok else "nope")

    async with Receiver(handler) as rcv:
        integ = await api.create_integration(rcv.url())
        iid = integ["id"]
        flaky = job_ids(await api.publish("order.paid", {"id": "flaky"}))[0]
        steady = job_ids(await api.publish("order.paid", {"id": "steady"}))[0]
        await api.wait_job(iid, flaky, "succeeded", attempts=3)
        await api.wait_job(iid, steady, "succeeded", attempts=1)
        assert len(rcv.requests) == 4

        everything = await api.get(f"/v2/integrations/{iid}/logs")
        all_logs = everything["data"]
        assert len(all_logs) == 4 and everything["results"] == {"total": 4}
        assert everything["meta"] == {"limit": 100, "offset": 0, "current": 1, "total": 1}
        ids = [log["id"] for log in all_logs]
        assert ids == sorted(ids, reverse=True)  # newest first (time-ordered ids)
        stamps = [log["meta"]["timestamps"]["created_at"] for log in all_logs]
        assert stamps == sorted(stamps, reverse=True)
        assert [log["id"] for log in await api.logs("/v2/integrations/logs")] == ids

        job_logs = await api.get(f"/v2/integrations/{iid}/jobs/{flaky}/logs")
        assert [log["attempt"] for log in job_logs["data"]] == [3, 2, 1]
        assert {log["relationships"]["job"]["data"]["id"] for log in job_logs["data"]} == {flaky}
        assert job_logs["results"] == {"total": 3}
        assert [log["attempt"] for log in await api.logs(f"/v2/integrations/{iid}/jobs/{steady}/logs")] == [1]

        failed_page = await api.get(f"/v2/integrations/{iid}/logs", filter="eq(succeeded,false)")
        failed = failed_page["data"]
        assert [(log["attempt"], log["succeeded"]) for log in failed] == [(2, False), (1, False)]
        assert failed_page["results"] == {"total": 2}
        assert (await api.get("/v2/integrations/logs", filter="eq(succeeded,true)"))["results"] == {"total": 2}
        later_page = await api.get(f"/v2/integrations/{iid}/logs", filter="ge(attempt,2)")
        later = later_page["data"]
        assert [log["attempt"] for log in later] == [3, 2]
        assert later_page["results"] == {"total": 2}
        both = await api.logs(f"/v2/integrations/{iid}/logs", filter="eq(succeeded,false):ge(attempt,2)")
        assert [log["attempt"] for log in both] == [2]
        ok_on_job = await api.logs(f"/v2/integrations/{iid}/jobs/{flaky}/logs", filter="eq(succeeded,true)")
        assert [log["attempt"] for log in ok_on_job] == [3]
        first_attempts = await api.logs("/v2/integrations/logs", filter="eq(attempt,1)")
        assert len(first_attempts) == 2

        # cursor pagination: page[after] walks every log once, in the same order, following links.next
        for limit in (1, 3):
            seen: list[str] = []
            url: str | None = f"{api.client.base_url}/v2/integrations/{iid}/logs?page[limit]={limit}&page[after]="
            pages = 0
            while url is not None:
                pages += 1
                assert pages <= 10, "links.next never ends"
                r = await api.client.get(url)
                assert r.status_code == 200, r.text
                page = r.json()
                assert len(page["data"]) <= limit
                seen += [log["id"] for log in page["data"]]
                url = page["links"]["next"]
                if url is not None:
                    assert "page[after]=" in url or "page%5Bafter%5D=" in url
            assert seen == ids, limit

        # links.next keeps the filter
        seen = []
        url = f"{api.client.base_url}/v2/integrations/{iid}/logs?filter=eq(succeeded,false)&page[limit]=1&page[after]="
        while url is not None:
            assert len(seen) <= 4, "links.next never ends"
            page = (await api.client.get(url)).json()
            seen += [log["id"] for log in page["data"]]
            url = page["links"]["next"]
        assert seen == [log["id"] for log in failed]


@pytest.mark.parametrize("action", ["disable", "delete"])
async def test_disabling_during_an_attempt_stops_further_attempts(api: Api, action: str) -> None:
    """A job in flight when its integration is disabled (or deleted) must not be retried against it afterwards:
    SPEC 9 says disabling or deleting cancels the integration's pending jobs, and a job between attempts is one."""
    release = asyncio.Event()

    async def hold_then_fail(request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(release.wait(), 15)
        except TimeoutError:
            pass
        return web.Response(status=500, text="nope")

    async with Receiver(hold_then_fail) as rcv:
        try:
            integ = await api.create_integration(rcv.url())
            event = await api.publish("order.paid", {"id": "o-inflight"})
            job_id = job_ids(event)[0]
            await rcv.wait_for(1)
            assert (await api.job(integ["id"], job_id))["status"] == "delivering"
            if action == "disable":
                r = await api.client.put(
                    f"/v2/integrations/{integ['id']}", json={"data": {"type": "integration", "enabled": False}}
                )
                assert r.status_code == 200, r.text
            else:
                r = await api.client.delete(f"/v2/integrations/{integ['id']}")
                assert r.status_code == 204, r.text
        finally:
            release.set()
        job = await api.wait_job(integ["id"], job_id, "cancelled", "failed", "succeeded")
        assert len(rcv.requests) == 1, f"{len(rcv.requests)} attempts in all after {action}; job now {job}"
        assert job["status"] == "cancelled" and job["next_attempt_at"] is None
        assert job["attempts"] == 1
        logs = await api.logs("/v2/integrations/logs")  # still listed after a delete (SPEC 3)
        assert [(log["attempt"], log["status_code"]) for log in logs] == [(1, 500)]
