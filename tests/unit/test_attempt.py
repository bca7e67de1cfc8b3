"""transports.base.attempt: the one wrapper around every transport's send (deadline, cut, failure mapping)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from herald.delivery.transports.base import BODY_LIMIT, Delivered, DeliveryFailed, attempt, note_phase
from herald.delivery.transports.fake import FakeTransport
from herald.domain.messages import AttemptResult, OutboundMessage


def _message() -> OutboundMessage:
    return OutboundMessage("job", "event", "store", "order.paid", 1, "{}", datetime.now(UTC), "integration",
                           "webhook", "name", "", {})


async def _hang(message: OutboundMessage) -> Delivered:
    note_phase("waiting for the receiver")
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_success_keeps_status_and_body_or_broker_id() -> None:
    ok = await attempt(FakeTransport(lambda m: Delivered(204, "fine")), _message())
    assert (ok.succeeded, ok.status_code, ok.body, ok.error_detail) == (True, 204, "fine", "")
    queued = await attempt(FakeTransport(lambda m: Delivered(broker_id="msg-1")), _message())
    assert (queued.succeeded, queued.status_code, queued.body) == (True, None, "msg-1")


async def test_failure_carries_what_the_peer_said() -> None:
    failed = DeliveryFailed("busy", status=503, body="later", retry_after=30.0)
    result = await attempt(FakeTransport(lambda m: failed), _message())
    assert (result.succeeded, result.status_code, result.body, result.error_detail) == (False, 503, "later", "busy")
    assert (result.retry_after, result.gone) == (30.0, False)
    gone = await attempt(FakeTransport(lambda m: DeliveryFailed("gone", status=410, gone=True)), _message())
    assert gone.gone is True


async def test_the_answer_is_cut_to_4_kib_at_a_character_and_nul_is_kept_visible() -> None:
    long = "é" * BODY_LIMIT  # 2 bytes each
    result = await attempt(FakeTransport(lambda m: Delivered(200, long)), _message())
    assert len(result.body.encode()) == BODY_LIMIT and set(result.body) == {"é"}
    nul = await attempt(FakeTransport(lambda m: DeliveryFailed("x\x00", body="a\x00b")), _message())
    assert (nul.body, nul.error_detail) == ("a\ufffdb", "x\ufffd")


async def test_a_broken_transport_is_a_failed_attempt() -> None:
    result = await attempt(FakeTransport(lambda m: KeyError("url")), _message())
    assert (result.succeeded, result.error_detail) == (False, "The delivery failed inside Herald (KeyError).")


async def test_the_deadline_ends_the_attempt_and_leaves_the_task_uncancelled() -> None:
    result = await attempt(FakeTransport(_hang), _message(), 0.05)
    assert result.error_detail == "The fake transport did not answer within 0.05 s."
    assert 0.05 <= result.processing_time < 1.0
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.05)  # the task goes on normally: no cancellation left pending


async def test_the_transport_hears_its_phase_in_the_timeout_detail() -> None:
    class Phased(FakeTransport):
        def timeout_detail(self, timeout: float, phase: str) -> str:
            return f"timed out while {phase}"

    result = await attempt(Phased(_hang), _message(), 0.05)
    assert result.error_detail == "timed out while waiting for the receiver"


async def test_a_cancellation_from_outside_is_not_a_timeout() -> None:
    ended: list[AttemptResult | None] = []
    task = asyncio.create_task(attempt(FakeTransport(_hang), _message(), 10.0, then=ended.append))
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ended == [None]


async def test_many_attempts_share_deadlines_and_each_ends_on_time() -> None:
    results = await asyncio.gather(*(attempt(FakeTransport(_hang), _message(), 0.05 + i * 0.01) for i in range(20)))
    assert all(r.error_detail.startswith("The fake transport did not answer") for r in results)
    fast = await asyncio.gather(*(attempt(FakeTransport(), _message(), 0.05) for _ in range(20)))
    assert all(r.succeeded for r in fast)
    await asyncio.sleep(0.1)  # the shared timers of finished attempts fire on nobody
