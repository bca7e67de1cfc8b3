"""Waking idle workers when new jobs are written, instead of polling in a tight loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

log = logging.getLogger("herald.worker")
CHANNEL = "herald_jobs"


class Notifier:
    """An in-process signal; on PostgreSQL a LISTEN connection feeds it too (publishers send NOTIFY)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` seconds pass; True when woken."""
        if timeout <= 0:
            return self._event.is_set()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._event.clear()

    async def listen_postgres(self, conninfo: str, stop: asyncio.Event) -> None:
        """LISTEN on the jobs channel until `stop`; reconnects after a lost connection."""
        import psycopg

        while not stop.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.wake()  # anything written while we were not listening
                    gen = conn.notifies()
                    stopper = asyncio.ensure_future(stop.wait())
                    try:
                        while True:
                            nxt = asyncio.ensure_future(anext(gen))
                            done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
                            if stopper in done:
                                nxt.cancel()
                                with contextlib.suppress(BaseException):
                                    await nxt
                                return
                            nxt.result()
                            self.wake()
                    finally:
                        stopper.cancel()
            except (OSError, psycopg.Error) as exc:
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                self.wake()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
