"""Waking idle workers when a write makes jobs due, instead of polling in a tight loop.

A statement that makes jobs due calls `jobs_due(conn)` inside its transaction; `Database.write` wakes this
process's workers once that transaction has committed, and on PostgreSQL the NOTIFY sent with the transaction
wakes every other process's (`Notifier.listen_postgres`). Nobody else calls `wake`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncConnection

log = logging.getLogger("herald.worker")
CHANNEL = "herald_jobs"
NOTIFY_SQL = f"SELECT pg_notify('{CHANNEL}', '')"  # PostgreSQL sends it when the transaction commits
JOBS_DUE = "herald_jobs_due"  # key in the connection's info: this transaction made jobs due


async def jobs_due(conn: AsyncConnection, *, notified: bool = False, other_processes: bool = True) -> None:
    """Say, inside a write transaction, that it makes jobs due: the workers are woken once it commits.

    `notified`: the statement already sent the NOTIFY itself. `other_processes=False`: only this process's
    workers need to know (a retry scheduled by a worker: the others find it when they next look).
    """
    conn.info[JOBS_DUE] = True
    if other_processes and not notified and conn.dialect.name == "postgresql":
        await conn.exec_driver_sql(NOTIFY_SQL)


class Notifier:
    """An in-process signal; on PostgreSQL a LISTEN connection feeds it too (publishers send NOTIFY)."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.listening = asyncio.Event()  # set while the LISTEN connection is up (PostgreSQL)

    def wake(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """Sleep until woken or `timeout` seconds pass; True when woken."""
        if timeout <= 0:
            return self._event.is_set()
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
            return True
        except TimeoutError:
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
                    self.listening.set()
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
                self.listening.clear()
                log.warning("LISTEN connection lost (%s); reconnecting", exc)
                self.wake()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
