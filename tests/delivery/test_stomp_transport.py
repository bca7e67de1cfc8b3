"""StompTransport against the machine's RabbitMQ (STOMP plugin on 127.0.0.1:61613, guest/guest).

The messages are read back with stomp.py, an independent client, so the framing is checked by
someone else's parser. Without the broker these tests skip, unless HERALD_REQUIRE_BROKERS=1.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import queue
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from herald.delivery.transports.base import attempt
from herald.delivery.transports.stomp import StompTransport
from herald.domain.cloudevents import CONTENT_TYPE
from herald.domain.messages import OutboundMessage

BROKER = ("127.0.0.1", 61613)
BROKER_URL = "stomp://127.0.0.1:61613"
QUEUE = "/queue/herald-test-stomp"  # one fixed queue: tests pick their message out by CloudEvent id


def _broker_reachable() -> bool:
    try:
        socket.create_connection(BROKER, timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def broker() -> None:
    """Skip (fail under HERALD_REQUIRE_BROKERS=1) when RabbitMQ STOMP or stomp.py is missing."""
    reason = ""
    if importlib.util.find_spec("stomp") is None:
        reason = "the STOMP tests read messages back with stomp.py (pip install stomp.py)"
    elif not _broker_reachable():
        reason = (
            "RabbitMQ STOMP is not reachable on 127.0.0.1:61613 "
            "(start RabbitMQ and run: rabbitmq-plugins enable rabbitmq_stomp)"
        )
    if reason and os.environ.get("HERALD_REQUIRE_BROKERS") == "1":
        pytest.fail(reason)
    if reason:
        pytest.skip(reason)


@pytest.fixture
async def transport() -> AsyncIterator[StompTransport]:
    transport = StompTransport(timeout=5, allow_private=True)
    yield transport
    await transport.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def _tcp_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    """A real loopback server with scripted behaviour; yields its stomp:// address."""
    writers: list[asyncio.StreamWriter] = []

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await handle(reader, writer)

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    try:
        yield f"stomp://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        for writer in writers:  # 3.11's server.close() leaves accepted connections open
            writer.close()
        await server.wait_closed()


async def _silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()  # accept, answer nothing
    writer.close()


def _message(addresses: list[str], **overrides: Any) -> OutboundMessage:
    configuration = {
        "addresses": addresses,
        "destination": QUEUE,
        "username": "guest",
        "password": "guest",
        **overrides,
    }
    return OutboundMessage(
        job_id=str(uuid.uuid4()),
        event_id=str(uuid.uuid4()),
        store_id="store-1",
        triggered_by="product.updated",
        attempt=3,
        payload_json=orjson.dumps({"id": "product-1", "name": "Tasse à café", "tags": ["a:b", "c\nd"]}).decode(),
        event_created_at=datetime(2026, 11, 2, 10, 30, tzinfo=UTC),
        integration_id="integration-2",
        integration_type="stomp",
        integration_name="Products to RabbitMQ",
        integration_description="",
        configuration=configuration,
    )


def _consume(*job_ids: str, timeout: float = 5.0) -> dict[str, tuple[dict[str, str], Any]]:
    """Subscribe with stomp.py; the headers and CloudEvent of each job's message, by job id."""
    import stomp  # the test-only client

    frames: queue.Queue[Any] = queue.Queue()

    class Collector(stomp.ConnectionListener):  # type: ignore[misc]
        def on_message(self, frame: Any) -> None:
            frames.put(frame)

    connection = stomp.Connection([BROKER], vhost="/")
    connection.set_listener("collector", Collector())
    connection.connect("guest", "guest", wait=True)
    connection.subscribe(QUEUE, id="herald-test", ack="auto")
    found: dict[str, tuple[dict[str, str], Any]] = {}
    try:
        deadline = time.monotonic() + timeout
        while len(found) < len(job_ids):
            frame = frames.get(timeout=max(0.01, deadline - time.monotonic()))
            event = orjson.loads(frame.body)
            if event.get("id") in job_ids:  # anything else is left over from an earlier run
                found[event["id"]] = (dict(frame.headers), event)
        return found
    finally:
        connection.disconnect()


async def test_delivers_the_cloudevent_once_the_receipt_came(
    broker: None, transport: StompTransport
) -> None:
    message, other = _message([BROKER_URL]), _message([BROKER_URL])

    result = await attempt(transport, message)
    again = await attempt(transport, other)

    assert result.succeeded, result
    assert result.status_code is None
    assert result.error_detail == ""
    assert result.body.startswith(f"{message.job_id}-3-")  # the receipt id the broker confirmed
    assert again.succeeded and again.body != result.body
    assert len(transport._connections) == 1  # one connection served both
    consumed = await asyncio.to_thread(_consume, message.job_id, other.job_id)
    headers, event = consumed[message.job_id]
    assert headers["content-type"] == CONTENT_TYPE
    assert event == {
        "specversion": "1.0",
        "id": message.job_id,
        "source": "herald/stores/store-1/integrations/integration-2",
        "type": "product.updated",
        "time": "2026-11-02T10:30:00.000000Z",
        "datacontenttype": "application/json",
        "data": {"id": "product-1", "name": "Tasse à café", "tags": ["a:b", "c\nd"]},
        "integrationid": "integration-2",
        "storeid": "store-1",
    }
    assert consumed[other.job_id][1]["id"] == other.job_id


async def test_wrong_password_is_a_refused_login(broker: None, transport: StompTransport) -> None:
    result = await attempt(transport, _message([BROKER_URL], password="not-the-password"))

    assert not result.succeeded
    assert result.status_code is None
    assert result.error_detail.startswith(f"The STOMP broker at {BROKER_URL} refused the login (")
    assert "Access refused" in result.body


async def test_refused_port_fails_clearly(transport: StompTransport) -> None:
    url = f"stomp://127.0.0.1:{_free_port()}"

    result = await attempt(transport, _message([url]))

    assert not result.succeeded
    assert result.error_detail == f"The STOMP broker at {url} refused the connection."


async def test_first_address_down_second_up_succeeds(
    broker: None, transport: StompTransport
) -> None:
    message = _message([f"stomp://127.0.0.1:{_free_port()}", BROKER_URL])

    result = await attempt(transport, message)

    assert result.succeeded, result
    consumed = await asyncio.to_thread(_consume, message.job_id)
    assert consumed[message.job_id][1]["data"]["id"] == "product-1"


async def test_silent_first_address_leaves_time_for_the_second(broker: None) -> None:
    transport = StompTransport(timeout=2, allow_private=True)
    try:
        async with _tcp_server(_silent) as silent:
            message = _message([silent, BROKER_URL])
            result = await attempt(transport, message)
    finally:
        await transport.close()

    assert result.succeeded, result
    assert 0.9 < result.processing_time < 2
    await asyncio.to_thread(_consume, message.job_id)


async def test_rejected_destination_is_reported(broker: None, transport: StompTransport) -> None:
    result = await attempt(transport, _message([BROKER_URL], destination="/nowhere/herald"))

    assert not result.succeeded
    assert "sent ERROR" in result.error_detail
    assert "not a valid destination" in result.body


async def test_broken_connection_is_replaced(broker: None, transport: StompTransport) -> None:
    before, after = _message([BROKER_URL]), _message([BROKER_URL])
    assert (await attempt(transport, before)).succeeded
    [first] = transport._connections.values()
    first._writer.transport.abort()  # the TCP connection dies under the cached client
    deadline = time.monotonic() + 2.0
    while not first.closed:
        if time.monotonic() > deadline:
            pytest.fail("the cached connection was not marked closed within 2 s of its TCP connection dying")
        await asyncio.sleep(0.01)

    result = await attempt(transport, after)

    assert result.succeeded, result
    [second] = transport._connections.values()
    assert second is not first
    assert set(await asyncio.to_thread(_consume, before.job_id, after.job_id)) == {
        before.job_id,
        after.job_id,
    }


async def test_no_receipt_means_no_success() -> None:
    """A broker that logs us in but never confirms the SEND: the attempt fails at the deadline."""

    async def connected_then_mute(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await reader.readuntil(b"\0")
        writer.write(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0")
        await reader.read()
        writer.close()

    transport = StompTransport(timeout=0.5, allow_private=True)
    try:
        async with _tcp_server(connected_then_mute) as url:
            result = await attempt(transport, _message([url]))
    finally:
        await transport.close()

    assert not result.succeeded
    assert (
        result.error_detail
        == f"The STOMP attempt timed out after 0.5 s while waiting for the receipt from {url}."
    )


async def test_silent_server_times_out() -> None:
    transport = StompTransport(timeout=0.5, allow_private=True)
    try:
        async with _tcp_server(_silent) as url:
            result = await attempt(transport, _message([url]))
    finally:
        await transport.close()

    assert not result.succeeded
    assert (
        result.error_detail == f"The STOMP attempt timed out after 0.5 s while connecting to {url}."
    )
    assert result.processing_time < 1.5


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_addresses_are_blocked_by_default(host: str) -> None:
    transport = StompTransport(timeout=2)
    try:
        result = await attempt(transport, _message([f"stomp://{host}:61613"]))
    finally:
        await transport.close()

    assert not result.succeeded
    assert result.error_detail.startswith(
        f"Delivery to {host} was blocked because its address is loopback"
    )


async def test_invalid_address_is_reported(transport: StompTransport) -> None:
    result = await attempt(transport, _message(["http://127.0.0.1:61613"]))

    assert not result.succeeded
    assert "is not a stomp:// or stomp+ssl:// host:port address" in result.error_detail
