"""Group commit for publishing: concurrent publish requests share one transaction.

Each request still gets its own events and jobs and its own answer, and is answered only after the
transaction that holds its rows has committed, so an accepted event is never lost. Sharing the
transaction (one BEGIN, one COMMIT, one look-up of each store's integrations) is what lets single-event
requests scale: alone, each would pay for a whole transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from dataclasses import dataclass, field

from herald.db import events as event_repo
from herald.db.database import Database
from herald.domain.ids import utcnow

MAX_GROUP = 500  # requests written per transaction at most


@dataclass(slots=True)
class _Request:
    store_id: str
    items: list[tuple[str, str]]
    done: asyncio.Future[list[event_repo.PublishedEvent]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Publisher:
    def __init__(self, db: Database, max_attempts: int) -> None:
        self.db = db
        self.max_attempts = max_attempts
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def publish(self, store_id: str, items: list[tuple[str, str]]) -> list[event_repo.PublishedEvent]:
        """Write the events and their jobs; returns once they are committed."""
        if self._task is None or self._task.done():
            # a context of its own: not the first request's (its request_id would stay on every later log line)
            self._task = asyncio.create_task(self._run(), name="herald-publisher", context=contextvars.Context())
        request = _Request(store_id, items)
        await self._queue.put(request)
        return await request.done

    async def _run(self) -> None:
        while True:
            group = [await self._queue.get()]
            while len(group) < MAX_GROUP and not self._queue.empty():
                group.append(self._queue.get_nowait())
            await self._write(group)

    async def _write(self, group: list[_Request]) -> None:
        try:
            results: list[list[event_repo.PublishedEvent]] = []
            async with self.db.write() as conn:
                batch = event_repo.Batch(self.max_attempts, utcnow())
                for request in group:
                    results.append(await batch.add(conn, request.store_id, request.items))
                await batch.write(conn)
        except BaseException as exc:  # every waiting request hears of it, even when we are cancelled
            for request in group:
                if not request.done.done():
                    request.done.set_exception(exc if isinstance(exc, Exception) else RuntimeError("publisher stopped"))
            if not isinstance(exc, Exception):
                raise
            return
        for request, published in zip(group, results, strict=True):
            if not request.done.done():
                request.done.set_result(published)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            request = self._queue.get_nowait()
            if not request.done.done():
                request.done.set_exception(RuntimeError("publisher stopped"))
