"""The one contract every delivery target implements, and the one wrapper that turns an attempt into a result.

A transport's `send` returns `Delivered` or raises `DeliveryFailed` (as httpx maps every transport error onto
one exception tree). Everything else an attempt needs -- the deadline, the timing, the 4 KiB cut of the answer,
text PostgreSQL can store, and a readable log row when a transport itself breaks -- is done once, in `attempt`.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import math
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from herald.domain.messages import AttemptResult, OutboundMessage

__all__ = [
    "BODY_LIMIT",
    "AttemptResult",
    "OutboundMessage",
    "Delivered",
    "DeliveryFailed",
    "Transport",
    "attempt",
    "blocked_detail",
    "cut_text",
    "current_phase",
    "cut_utf8",
    "note_phase",
]

log = logging.getLogger("herald.worker")

BODY_LIMIT = 4096  # bytes of the receiver's or broker's answer kept in a log


@dataclass(frozen=True, slots=True)
class Delivered:
    """The receiver or broker took the message: its status (HTTP only), its answer, the id it gave the message."""

    status: int | None = None
    body: str = ""
    broker_id: str | None = None


class DeliveryFailed(Exception):
    """One attempt failed. `detail` is the sentence a user reads in the log; the rest is what the peer said."""

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        body: str = "",
        retry_after: float | None = None,
        gone: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.body = body
        self.retry_after = retry_after  # seconds the receiver asked us to wait (Retry-After)
        self.gone = gone  # the receiver said the endpoint is gone for good: disable the integration


class Transport(Protocol):
    """One per integration type per worker; shared by every delivery of that type, so it pools connections."""

    timeout: float  # seconds one attempt may take in all

    async def send(self, message: OutboundMessage) -> Delivered:
        """Make one attempt; raise `DeliveryFailed` for anything the receiver, the broker or the network did."""
        ...

    def peer(self, configuration: Mapping[str, Any]) -> str:
        """Whose connections deliveries to this configuration share (a receiver's scheme, host and port; a
        broker's address). The worker lets `HERALD_PER_HOST_CONNECTIONS` deliveries be in flight per peer,
        taken in turn by the peer's integrations. Called for every delivery: keep it cheap, never raise."""
        ...

    def timeout_detail(self, timeout: float, phase: str) -> str:
        """The log's sentence when the attempt ran out of time (`phase`: what it was doing, may be empty)."""
        ...

    async def close(self) -> None: ...


_phase: contextvars.ContextVar[str] = contextvars.ContextVar("herald_delivery_phase", default="")


def note_phase(text: str) -> None:
    """Say what the attempt is doing now (e.g. "connecting to stomp://b:61613"), for the timeout's sentence."""
    _phase.set(text)


def current_phase() -> str:
    return _phase.get()


class _Expiry:
    __slots__ = ("task", "fired")

    def __init__(self, task: asyncio.Task[object]) -> None:
        self.task = task
        self.fired = False


class _Deadlines:
    """Deadlines of the attempts in flight, rounded up to a 20 ms tick so that attempts ending in the same tick
    share one loop timer. A timer per attempt (what `asyncio.timeout` makes) cost about 8 us under uvloop, more
    than the rest of the wrapper; thousands of attempts a second share a few dozen timers here."""

    TICK = 0.02

    __slots__ = ("_ticks",)

    def __init__(self) -> None:
        self._ticks: dict[int, set[_Expiry]] = {}

    def add(self, loop: asyncio.AbstractEventLoop, timeout: float, expiry: _Expiry) -> int:
        tick = math.ceil((loop.time() + timeout) / self.TICK)
        due = self._ticks.get(tick)
        if due is None:
            due = self._ticks[tick] = set()
            loop.call_at(tick * self.TICK, self._expire, tick)
        due.add(expiry)
        return tick

    def remove(self, tick: int, expiry: _Expiry) -> None:
        due = self._ticks.get(tick)
        if due is not None:
            due.discard(expiry)

    def _expire(self, tick: int) -> None:
        for expiry in self._ticks.pop(tick, ()):
            expiry.fired = True
            expiry.task.cancel()


# One per event loop (tests run a loop per test); a finished loop takes its deadlines with it. The last one used
# is kept beside, behind a weak reference: a process runs one loop, and the dictionary look-up costs more.
_deadlines: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = weakref.WeakKeyDictionary()
_latest: tuple[weakref.ref[asyncio.AbstractEventLoop], _Deadlines] | None = None


def _deadlines_of(loop: asyncio.AbstractEventLoop) -> _Deadlines:
    global _latest
    if _latest is not None and _latest[0]() is loop:
        return _latest[1]
    found = _deadlines.get(loop)
    if found is None:
        found = _deadlines[loop] = _Deadlines()
    _latest = (weakref.ref(loop), found)
    return found


async def attempt(
    transport: Transport,
    message: OutboundMessage,
    timeout: float | None = None,
    *,
    then: Callable[[AttemptResult | None], None] | None = None,
) -> AttemptResult:
    """One attempt within `timeout` seconds (default: the transport's), as the result that becomes its log row.
    Never raises but for cancellation: a transport bug still leaves a failed attempt in the log, not a stuck job.

    `then(result)` is called as the attempt ends (with None when it was cancelled): the worker runs each attempt
    as a task of its own, and a callback costs less than one more coroutine level resumed at every await.
    """
    if timeout is None:
        timeout = transport.timeout
    result: AttemptResult | None = None
    started = time.perf_counter()
    reset = _phase.set("")
    status: int | None = None
    body = ""
    detail = ""
    retry_after: float | None = None
    gone = False
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("attempt() must run inside a task")
    expiry = _Expiry(task)
    cancelling = task.cancelling()
    loop = task.get_loop()
    deadlines = _deadlines_of(loop)
    tick = deadlines.add(loop, timeout, expiry)
    try:
        try:
            try:
                done = await transport.send(message)
            except asyncio.CancelledError:
                # our deadline, unless someone else cancelled the task too (then the cancellation goes on)
                if expiry.fired and task.uncancel() <= cancelling:
                    raise TimeoutError from None
                raise
            finally:
                deadlines.remove(tick, expiry)
            status, body = done.status, done.body or done.broker_id or ""
        except DeliveryFailed as failed:
            status, body, detail = failed.status, failed.body, failed.detail or "The delivery failed."
            retry_after, gone = failed.retry_after, failed.gone
        except TimeoutError:
            detail = transport.timeout_detail(timeout, _phase.get())
        except Exception as exc:
            log.exception("delivery of job %s raised", message.job_id,
                          extra={"job_id": message.job_id, "integration_id": message.integration_id,
                                 "store_id": message.store_id})
            detail = f"The delivery failed inside Herald ({type(exc).__name__})."
        result = AttemptResult(
            succeeded=not detail,
            status_code=status,
            body=_storable(cut_text(body)),
            error_detail=_storable(detail),
            processing_time=round(time.perf_counter() - started, 6),
            retry_after=retry_after,
            gone=gone,
        )
        return result
    finally:
        _phase.reset(reset)
        if then is not None:
            then(result)


def blocked_detail(host: str) -> str:
    """The error_detail of a delivery refused by the outbound address policy (the same for every transport)."""
    return (
        f"Delivery to {host} was blocked because its address is loopback, private, link-local or "
        "otherwise non-public (HERALD_ALLOW_PRIVATE_NETWORKS=true lifts this)."
    )


def cut_utf8(data: bytes, limit: int = BODY_LIMIT) -> bytes:
    """Cut to `limit` bytes without splitting a UTF-8 character (backs up at most 3 bytes)."""
    if len(data) <= limit:
        return data
    cut = limit
    while cut > limit - 3 and data[cut] & 0xC0 == 0x80:  # data[cut] continues a character
        cut -= 1
    return data[:cut]


def cut_text(text: str, limit: int = BODY_LIMIT) -> str:
    """At most `limit` bytes of UTF-8, cut at a character boundary (the log `body` limit)."""
    if len(text) * 4 <= limit:  # no character takes more than 4 bytes: nothing to cut
        return text
    return cut_utf8(text.encode(errors="surrogatepass"), limit).decode(errors="replace")


def _storable(text: str) -> str:
    """A receiver may answer NUL characters, which PostgreSQL text cannot hold: keep them visible as U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
