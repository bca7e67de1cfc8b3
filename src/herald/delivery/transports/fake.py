"""A transport that answers from a script, for tests of the worker's claim -> deliver -> record loop (no sockets).

Not registered for any integration type: a test hands it to `Worker(transports={"webhook": fake})`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from herald.delivery.transports.base import Delivered, DeliveryFailed
from herald.domain.messages import OutboundMessage

Answer = Delivered | BaseException
Script = Callable[[OutboundMessage], Answer | Awaitable[Answer]]


class FakeTransport:
    """Answers each attempt with `script(message)`: a `Delivered`, or an exception to raise (`DeliveryFailed`,
    or anything else to play a broken transport). The script may be async, to hold an attempt open."""

    def __init__(self, script: Script | None = None, *, timeout: float = 5.0) -> None:
        self.script: Script = script or (lambda _message: Delivered(200, "ok"))
        self.timeout = timeout
        self.sent: list[OutboundMessage] = []
        self.closed = False
        self._sent_event = asyncio.Event()

    async def send(self, message: OutboundMessage) -> Delivered:
        self.sent.append(message)
        self._sent_event.set()
        answer = self.script(message)
        if isinstance(answer, Awaitable):
            answer = await answer
        if isinstance(answer, BaseException):
            raise answer
        return answer

    async def wait_sent(self, count: int, timeout: float = 10.0) -> list[OutboundMessage]:
        """Wait until at least `count` attempts were made (fails the test at the deadline)."""
        async with asyncio.timeout(timeout):
            while len(self.sent) < count:
                self._sent_event.clear()
                await self._sent_event.wait()
        return self.sent

    def peer(self, configuration: Mapping[str, Any]) -> str:
        """The configuration's url: integrations with the same one share the per-peer limit."""
        return str(configuration.get("url", ""))

    def timeout_detail(self, timeout: float, phase: str) -> str:
        return f"The fake transport did not answer within {timeout:g} s."

    async def close(self) -> None:
        self.closed = True


__all__ = ["DeliveryFailed", "FakeTransport"]
