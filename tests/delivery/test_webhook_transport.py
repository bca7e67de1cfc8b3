"""WebhookTransport against real aiohttp receivers on loopback: what each outcome logs."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from email.utils import format_datetime

import orjson
import pytest
from aiohttp import web
from standardwebhooks import Webhook

from herald import __version__
from herald.delivery.guard import is_blocked_address
from herald.delivery.transports.base import attempt
from herald.delivery.transports.webhook import NON_2XX, WebhookTransport, parse_retry_after
from herald.domain.messages import OutboundMessage
from herald.domain.signatures import generate_secret

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
StartReceiver = Callable[[Handler], Awaitable[str]]


def make_message(url: str, **overrides: object) -> OutboundMessage:
    fields: dict[str, object] = dict(
        job_id="job-1",
        event_id="event-1",
        store_id="store-1",
        triggered_by="order.paid",
        attempt=1,
        payload_json=orjson.dumps({"data": {"id": "order-9"}}).decode(),
        event_created_at=datetime(2024, 1, 1, tzinfo=UTC),
        integration_id="integration-1",
        integration_type="webhook",
        integration_name="Order paid",
        integration_description="",
        configuration={"url": url, "secret_key": "s3cret"},
        signing_secrets=[generate_secret(), generate_secret()],
    )
    fields.update(overrides)
    return OutboundMessage(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def receiver() -> AsyncIterator[StartReceiver]:
    """Starts real HTTP receivers on 127.0.0.1 (ephemeral ports); returns their /hook URL."""
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> str:
        app = web.Application()
        app.router.add_post("/hook", handler)
        # handler_cancellation: a receiver still sleeping after the client gave up is stopped.
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}/hook"

    yield start
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def transport() -> AsyncIterator[WebhookTransport]:
    t = WebhookTransport(timeout=5.0, allow_private=True)
    yield t
    await t.close()


async def test_2xx_is_success_with_signed_spec_request(
    receiver: StartReceiver, transport: WebhookTransport
) -> None:
    received: list[tuple[dict[str, str], bytes]] = []

    async def handler(request: web.Request) -> web.Response:
        received.append((dict(request.headers), await request.read()))
        return web.Response(status=200, text="ok")

    message = make_message(await receiver(handler))
    result = await attempt(transport, message)

    assert (result.succeeded, result.status_code, result.body, result.error_detail) == (True, 200, "ok", "")
    assert 0 < result.processing_time < 5
    assert result.retry_after is None and result.gone is False
    [(headers, body)] = received
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == f"Herald/{__version__}"
    assert headers["X-MOLTIN-INTEGRATION-TRIGGER"] == "order.paid"
    assert headers["X-MOLTIN-SECRET-KEY"] == "s3cret"
    assert headers["webhook-id"] == "job-1"
    for secret in message.signing_secrets:
        assert Webhook(secret).verify(body, headers)["id"] == "event-1"
    sent = json.loads(body)
    assert sent["payload"] == {"data": {"id": "order-9"}}
    assert json.loads(sent["resources"]) == sent["payload"]


async def test_404_logs_the_seed_error_and_body(receiver: StartReceiver, transport: WebhookTransport) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=404, text="Not found")

    result = await attempt(transport, make_message(await receiver(handler)))
    assert (result.succeeded, result.status_code, result.body) == (False, 404, "Not found")
    assert result.error_detail == "Received a status code outside of 2xx range - treating webhook as a fail"
    assert result.gone is False


async def test_500_is_a_failure(receiver: StartReceiver, transport: WebhookTransport) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    result = await attempt(transport, make_message(await receiver(handler)))
    assert (result.succeeded, result.status_code, result.body, result.error_detail) == (False, 500, "boom", NON_2XX)


async def test_slow_receiver_times_out_at_one_deadline(receiver: StartReceiver) -> None:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(5)  # the behaviour under test: slower than the 0.5 s timeout
        return web.Response(text="too late")

    url = await receiver(handler)
    transport = WebhookTransport(timeout=0.5, allow_private=True)
    try:
        started = time.perf_counter()
        result = await attempt(transport, make_message(url))
        elapsed = time.perf_counter() - started
    finally:
        await transport.close()
    assert result.succeeded is False and result.status_code is None
    assert "timeout" in result.error_detail and "0.5 s" in result.error_detail
    assert 0.5 <= result.processing_time < 2 and elapsed < 2


async def test_redirect_is_not_followed(receiver: StartReceiver, transport: WebhookTransport) -> None:
    followed: list[str] = []

    async def target(request: web.Request) -> web.Response:
        followed.append(request.path)
        return web.Response(text="ok")

    target_url = await receiver(target)

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": target_url})

    result = await attempt(transport, make_message(await receiver(handler)))
    assert (result.succeeded, result.status_code) == (False, 302)
    assert "not followed" in result.error_detail and target_url in result.error_detail
    assert result.error_detail != NON_2XX
    assert followed == []


async def test_429_retry_after_seconds(receiver: StartReceiver, transport: WebhookTransport) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=429, headers={"Retry-After": "7"}, text="slow down")

    result = await attempt(transport, make_message(await receiver(handler)))
    assert (result.succeeded, result.status_code, result.retry_after) == (False, 429, 7.0)
    assert result.error_detail == NON_2XX


async def test_503_retry_after_http_date(receiver: StartReceiver, transport: WebhookTransport) -> None:
    async def handler(request: web.Request) -> web.Response:
        when = format_datetime(datetime.fromtimestamp(time.time() + 120, UTC), usegmt=True)
        return web.Response(status=503, headers={"Retry-After": when})

    result = await attempt(transport, make_message(await receiver(handler)))
    assert result.status_code == 503
    assert result.retry_after is not None and 110 <= result.retry_after <= 120


def test_retry_after_parsing_edge_cases() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("1e999") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: retry now
    assert parse_retry_after(" 2.5 ") == 2.5


async def test_410_marks_the_integration_gone(receiver: StartReceiver, transport: WebhookTransport) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=410, text="gone")

    result = await attempt(transport, make_message(await receiver(handler)))
    assert (result.succeeded, result.status_code, result.gone, result.error_detail) == (False, 410, True, NON_2XX)


async def test_huge_body_is_cut_to_4096_bytes_and_still_succeeds(
    receiver: StartReceiver, transport: WebhookTransport
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=200, body=b"x" * 1_000_000)

    result = await attempt(transport, make_message(await receiver(handler)))
    assert (result.succeeded, result.status_code, result.error_detail) == (True, 200, "")
    assert result.body == "x" * 4096


async def test_multibyte_body_is_cut_at_a_character_boundary(
    receiver: StartReceiver, transport: WebhookTransport
) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=400, text="€" * 2000)  # 3 bytes each: 4096 falls mid-character

    result = await attempt(transport, make_message(await receiver(handler)))
    assert result.body == "€" * 1365  # 4095 bytes, no replacement character
    assert len(result.body.encode()) == 4095


async def test_connection_refused(transport: WebhookTransport) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await attempt(transport, make_message(f"http://127.0.0.1:{port}/hook"))
    assert (result.succeeded, result.status_code, result.body) == (False, None, "")
    assert "refused" in result.error_detail


async def test_dns_failure() -> None:
    transport = WebhookTransport(timeout=5.0)
    try:
        result = await attempt(transport, make_message("http://no-such-receiver.invalid/hook"))
    finally:
        await transport.close()
    assert (result.succeeded, result.status_code) == (False, None)
    assert "could not be resolved" in result.error_detail


async def test_receiver_closing_the_connection(transport: WebhookTransport) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # read the request head, then close without answering
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await attempt(transport, make_message(f"http://127.0.0.1:{port}/hook"))
    finally:
        server.close()
        await server.wait_closed()
    assert (result.succeeded, result.status_code) == (False, None)
    assert "closed or reset the connection" in result.error_detail


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_address_is_blocked_by_default(receiver: StartReceiver, host: str) -> None:
    hits: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(text="ok")

    url = (await receiver(handler)).replace("127.0.0.1", host)
    transport = WebhookTransport(timeout=5.0)
    try:
        result = await attempt(transport, make_message(url))
    finally:
        await transport.close()
    assert (result.succeeded, result.status_code) == (False, None)
    assert "blocked" in result.error_detail and host in result.error_detail
    assert hits == []


@pytest.mark.parametrize(
    "address",
    ["10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.0.1", "169.254.169.254", "224.0.0.1",
     "0.0.0.0", "240.0.0.1", "::1", "fd00:ec2::254", "fc00::1", "fe80::1", "ff02::1", "::ffff:127.0.0.1"],
)
def test_guard_refuses_non_public_addresses(address: str) -> None:
    assert is_blocked_address(address)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700:4700::1111"])
def test_guard_allows_public_addresses(address: str) -> None:
    assert not is_blocked_address(address)


async def test_tls_failure(receiver: StartReceiver, transport: WebhookTransport) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text="plain http")

    url = (await receiver(handler)).replace("http://", "https://")
    result = await attempt(transport, make_message(url))
    assert (result.succeeded, result.status_code) == (False, None)
    assert result.error_detail.startswith("The TLS handshake")


async def test_slow_host_does_not_delay_another_host(receiver: StartReceiver) -> None:
    in_flight = 0
    most_in_flight = 0
    saturated = asyncio.Event()
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        nonlocal in_flight, most_in_flight
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        if in_flight == 2:
            saturated.set()
        await release.wait()  # the slow receiver holds every connection it is given
        in_flight -= 1
        return web.Response(text="slow")

    async def fast(request: web.Request) -> web.Response:
        return web.Response(text="fast")

    slow_url, fast_url = await receiver(slow), await receiver(fast)
    transport = WebhookTransport(timeout=10.0, allow_private=True, per_host_limit=2, total_limit=10)
    try:
        stuck = [asyncio.create_task(attempt(transport, make_message(slow_url))) for _ in range(6)]
        await asyncio.wait_for(saturated.wait(), 5)
        started = time.perf_counter()
        result = await asyncio.wait_for(attempt(transport, make_message(fast_url)), 2)
        assert result.succeeded and result.body == "fast"
        assert time.perf_counter() - started < 1
        assert not any(task.done() for task in stuck)
        release.set()
        slow_results = await asyncio.gather(*stuck)
    finally:
        release.set()
        await transport.close()
    assert all(r.succeeded for r in slow_results)
    assert most_in_flight == 2  # the per-host limit, not the total, bounded the slow host
