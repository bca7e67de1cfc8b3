"""SqsTransport against a real SQS-compatible server: moto in server mode, a loopback subprocess."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from herald.delivery.transports.base import attempt
from herald.delivery.transports.sqs import SqsTransport
from herald.domain.messages import OutboundMessage

try:
    import boto3
    import moto.server  # noqa: F401  (run below as `python -m moto.server`)
except ImportError:
    if os.environ.get("HERALD_REQUIRE_BROKERS") == "1":
        raise
    pytest.skip(
        "the SQS tests need moto[server] (pip install 'moto[server]')", allow_module_level=True
    )

REGION = "us-east-1"
KEYS = {"aws_access_key_id": "AKIDHERALDTEST", "aws_secret_access_key": "herald-test-secret"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_moto(env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """moto_server on a free loopback port, polled until it accepts connections (30 s deadline)."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            pytest.fail(f"moto_server exited with {process.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("moto_server did not accept connections within 30 s")
            time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def sqs_endpoint() -> Iterator[str]:
    process, endpoint = _start_moto()
    yield endpoint
    _stop(process)


@pytest.fixture
def sqs(sqs_endpoint: str) -> Any:
    return boto3.client("sqs", region_name=REGION, endpoint_url=sqs_endpoint, **KEYS)


@pytest.fixture
async def transport() -> AsyncIterator[SqsTransport]:
    transport = SqsTransport(timeout=5, allow_private=True)
    yield transport
    await transport.close()


def _message(configuration: dict[str, Any]) -> OutboundMessage:
    return OutboundMessage(
        job_id=str(uuid.uuid4()),
        event_id=str(uuid.uuid4()),
        store_id="store-1",
        triggered_by="order.paid",
        attempt=1,
        payload_json=orjson.dumps({"id": "order-1", "total": 1250, "note": "café"}).decode(),
        event_created_at=datetime(2026, 11, 2, 10, 30, 0, 123456, tzinfo=UTC),
        integration_id="integration-1",
        integration_type="aws_sqs",
        integration_name="Orders to SQS",
        integration_description="",
        configuration=configuration,
    )


def _config(endpoint: str, url: str, **overrides: str) -> dict[str, Any]:
    return {"url": url, "region": REGION, "endpoint_url": endpoint, **KEYS, **overrides}


async def test_delivers_the_cloudevent_and_records_the_message_id(
    sqs: Any, sqs_endpoint: str, transport: SqsTransport
) -> None:
    queue_url = sqs.create_queue(QueueName=f"herald-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    message = _message(_config(sqs_endpoint, queue_url))

    first = await attempt(transport, message)
    second = await attempt(transport, message)  # a retry: same CloudEvent id, same cached client

    assert first.succeeded and second.succeeded, (first, second)
    assert first.status_code == 200
    assert first.error_detail == ""
    assert first.processing_time > 0
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)[
        "Messages"
    ]
    assert sorted(m["MessageId"] for m in received) == sorted([first.body, second.body])
    event = orjson.loads(received[0]["Body"])
    assert event == {
        "specversion": "1.0",
        "id": message.job_id,
        "source": "herald/stores/store-1/integrations/integration-1",
        "type": "order.paid",
        "time": "2026-11-02T10:30:00.123456Z",
        "datacontenttype": "application/json",
        "data": {"id": "order-1", "total": 1250, "note": "café"},
        "integrationid": "integration-1",
        "storeid": "store-1",
    }
    assert orjson.loads(received[1]["Body"])["id"] == message.job_id
    assert len(transport._clients) == 1


async def test_fifo_queue_gets_group_and_deduplication_ids(
    sqs: Any, sqs_endpoint: str, transport: SqsTransport
) -> None:
    queue_url = sqs.create_queue(
        QueueName=f"herald-{uuid.uuid4().hex[:12]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]

    result = await attempt(transport, _message(_config(sqs_endpoint, queue_url)))

    assert result.succeeded, result
    assert sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)["Messages"]


async def test_nonexistent_queue_fails_with_a_clear_error(
    sqs_endpoint: str, transport: SqsTransport
) -> None:
    url = f"{sqs_endpoint}/123456789012/herald-no-such-queue-{uuid.uuid4().hex[:8]}"

    result = await attempt(transport, _message(_config(sqs_endpoint, url)))

    assert not result.succeeded
    assert result.status_code == 400
    assert result.error_detail == "The SQS queue does not exist."
    assert result.body


async def test_refused_connection_fails_without_a_status(transport: SqsTransport) -> None:
    endpoint = f"http://127.0.0.1:{_free_port()}"

    result = await attempt(transport, _message(_config(endpoint, f"{endpoint}/123456789012/q")))

    assert not result.succeeded
    assert result.status_code is None
    assert result.error_detail == "The SQS endpoint refused the connection."


async def test_silent_server_times_out_within_the_deadline() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # hold the connection open, answer nothing

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    endpoint = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    transport = SqsTransport(timeout=0.5, allow_private=True)
    try:
        result = await attempt(transport, _message(_config(endpoint, f"{endpoint}/123456789012/q")))
    finally:
        await transport.close()
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()

    assert not result.succeeded
    assert result.status_code is None
    assert result.error_detail == "The SQS request timed out after 0.5 s."
    assert result.processing_time < 2


async def test_rejected_credentials_fail_with_a_clear_error(transport: SqsTransport) -> None:
    # moto checks signatures against its IAM once this many unauthenticated calls are used up.
    process, endpoint = _start_moto({"INITIAL_NO_AUTH_ACTION_COUNT": "0"})
    try:
        result = await attempt(transport,
            _message(_config(endpoint, f"{endpoint}/123456789012/herald-any"))
        )
    finally:
        _stop(process)

    assert not result.succeeded
    assert result.status_code == 403
    assert result.error_detail == "SQS rejected the AWS credentials (InvalidClientTokenId)."


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_private_endpoints_are_blocked_by_default(sqs_endpoint: str, host: str) -> None:
    endpoint = sqs_endpoint.replace("127.0.0.1", host)
    transport = SqsTransport(timeout=5)
    try:
        result = await attempt(transport, _message(_config(endpoint, f"{endpoint}/123456789012/q")))
    finally:
        await transport.close()

    assert not result.succeeded
    assert result.status_code is None
    assert result.error_detail.startswith(
        f"Delivery to {host} was blocked because its address is loopback"
    )
