"""The delivery loop: claim due jobs, send them, record every attempt, reschedule or finish."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import socket
from datetime import timedelta
from typing import Any

import orjson

from herald.delivery.notify import Notifier
from herald.delivery.transports.base import AttemptResult, OutboundMessage, Transport
from herald.domain.ids import new_id, utcnow
from herald.domain.representations import integration_resource
from herald.domain.retry import next_delay
from herald.settings import Settings
from herald.db import events as event_repo
from herald.db import integrations as integration_repo
from herald.db import jobs as job_repo
from herald.db import queue
from herald.db.database import Database

log = logging.getLogger("herald.worker")


class Worker:
    """One per process. Keeps up to `worker_concurrency` deliveries in flight and writes results in batches."""

    def __init__(self, settings: Settings, db: Database, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.db = db
        self.notifier = notifier or Notifier()
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self._transports: dict[str, Transport] = {}
        self._inflight: dict[int, asyncio.Task[None]] = {}  # id() of the ClaimedJob being delivered -> its task
        # Deliveries per integration are capped at per_host_connections; claimed jobs beyond the cap wait here,
        # not as tasks parked in the HTTP client's connection queue (which costs far more per delivery).
        self._active: dict[str, int] = {}  # integration id -> deliveries running
        self._queued: dict[str, collections.deque[queue.ClaimedJob]] = {}  # integration id -> jobs waiting
        self._waiting = 0  # jobs in _queued
        self._tokens: dict[str, str] = {}  # job id -> lease token
        self._done: list[tuple[queue.ClaimedJob, AttemptResult]] = []
        self._done_event = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._renewer: asyncio.Task[None] | None = None
        self.delivered = 0  # attempts recorded by this worker

    # --- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="herald-claim"),
            asyncio.create_task(self._record_loop(), name="herald-record"),
        ]
        self._renewer = asyncio.create_task(self._renew_loop(), name="herald-renew")
        if not self.db.is_sqlite:
            conninfo = self.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._tasks.append(asyncio.create_task(self.notifier.listen_postgres(conninfo, self._stop), name="herald-listen"))
        log.info("worker %s started", self.name)

    async def stop(self) -> None:
        """Stop claiming, let in-flight deliveries finish (bounded), record them, release what is left."""
        self._stop.set()
        self.notifier.wake()
        self._slot_free.set()
        claim_task, record_task, *rest = self._tasks
        await asyncio.gather(claim_task, *rest, return_exceptions=True)
        log.info(
            "worker %s stopping: no more claims, %d deliveries in flight, %d claimed jobs not started (released)",
            self.name, len(self._inflight), self._waiting,
        )
        if self._inflight:
            _, pending = await asyncio.wait(list(self._inflight.values()), timeout=self.settings.delivery_timeout + 5)
            for task in pending:
                task.cancel()
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        self._done_event.set()
        await asyncio.gather(record_task, return_exceptions=True)
        await self._flush()
        leftover = list(self._tokens.values())
        if leftover:
            async with self.db.write() as conn:
                released = await queue.release(conn, list(set(leftover)), utcnow())
            log.info("released %d leased jobs", released)
        for transport in self._transports.values():
            with contextlib.suppress(Exception):
                await transport.close()
        log.info("worker %s stopped; it recorded %d attempts", self.name, self.delivered)

    async def run_forever(self) -> None:
        await self.start()
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()
        self.notifier.wake()
        self._slot_free.set()

    # --- claiming -----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            capacity = s.worker_concurrency - len(self._inflight) - self._waiting
            if capacity <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            want = min(capacity, s.worker_batch)
            try:
                async with self.db.write() as conn:
                    claimed, next_due = await queue.claim(conn, want, s.lease_seconds, utcnow())
                    for job in claimed:
                        if job.integration["deleted_at"] is not None:
                            await queue.cancel(conn, job, utcnow())
            except Exception:  # noqa: BLE001 - the database may be briefly away; keep the worker alive
                log.exception("claiming jobs failed; retrying shortly")
                await self.notifier.wait(s.worker_poll_interval)
                continue
            for job in claimed:
                if job.integration["deleted_at"] is None:
                    self._tokens[job.id] = job.lease_token
                    self._start(job)
            if len(claimed) == want:
                continue
            # Sleep until woken by a publish, or until the next job falls due (at most the poll interval).
            idle = s.worker_poll_interval
            if next_due is not None:
                idle = max(0.0, min(idle, (next_due - utcnow()).total_seconds()))
            await self.notifier.wait(idle)

    # --- delivering ---------------------------------------------------------------------------

    def _transport(self, kind: str) -> Transport:
        transport = self._transports.get(kind)
        if transport is None:
            s = self.settings
            if kind == "webhook":
                from herald.delivery.transports.webhook import WebhookTransport

                transport = WebhookTransport(
                    timeout=s.delivery_timeout, allow_private=s.allow_private_networks,
                    per_host_limit=s.per_host_connections, total_limit=max(s.worker_concurrency, 1),
                )
            elif kind == "aws_sqs":
                from herald.delivery.transports.sqs import SqsTransport

                transport = SqsTransport(timeout=s.delivery_timeout, allow_private=s.allow_private_networks)
            elif kind == "stomp":
                from herald.delivery.transports.stomp import StompTransport

                transport = StompTransport(timeout=s.delivery_timeout, allow_private=s.allow_private_networks)
            else:
                raise ValueError(f"unknown integration_type {kind!r}")
            self._transports[kind] = transport
        return transport

    def _message(self, job: queue.ClaimedJob) -> OutboundMessage:
        i = job.integration
        secrets = [i["signing_secret"]]
        expires = i["previous_secret_expires_at"]
        if i["previous_signing_secret"] and expires is not None and expires > utcnow():
            secrets.append(i["previous_signing_secret"])
        return OutboundMessage(
            job_id=job.id, event_id=job.event_id, store_id=job.store_id, triggered_by=job.triggered_by,
            attempt=job.attempt, payload_json=job.payload, event_created_at=job.event_created_at,
            integration_id=job.integration_id, integration_type=i["integration_type"], integration_name=i["name"],
            integration_description=i["description"], configuration=i["configuration"], signing_secrets=secrets,
        )

    def _start(self, job: queue.ClaimedJob) -> None:
        """Deliver now, or once a delivery of the same integration ends when it already has its share."""
        key = job.integration_id
        running = self._active.get(key, 0)
        if running >= self.settings.per_host_connections:
            self._queued.setdefault(key, collections.deque()).append(job)
            self._waiting += 1
            return
        self._active[key] = running + 1
        self._inflight[id(job)] = asyncio.create_task(self._deliver(job))

    def _next(self, key: str) -> None:
        """A delivery of integration `key` ended: start its next waiting job in the freed place."""
        waiting = self._queued.get(key)
        if waiting and not self._stop.is_set():
            job = waiting.popleft()
            self._waiting -= 1
            if not waiting:
                del self._queued[key]
            self._inflight[id(job)] = asyncio.create_task(self._deliver(job))
            return
        running = self._active[key] - 1
        if running:
            self._active[key] = running
        else:
            del self._active[key]

    async def _deliver(self, job: queue.ClaimedJob) -> None:
        try:
            try:
                result = await self._transport(job.integration["integration_type"]).deliver(self._message(job))
            except Exception as exc:  # noqa: BLE001 - a transport bug must still leave a log, not a stuck job
                log.exception("delivery of job %s raised", job.id)
                result = AttemptResult(False, None, "", f"The delivery failed inside Herald ({type(exc).__name__}).", 0.0)
            self._done.append((job, result))
            self._done_event.set()
        finally:
            del self._inflight[id(job)]
            self._next(job.integration_id)
            self._slot_free.set()

    async def _renew_loop(self) -> None:
        """Every third of a lease, extend the leases of jobs not yet recorded; runs until `stop` ends it."""
        lease = self.settings.lease_seconds
        while True:
            await asyncio.sleep(lease / 3)
            tokens = list(set(self._tokens.values()))
            if not tokens:
                continue
            try:
                async with self.db.write() as conn:
                    await queue.renew(conn, tokens, lease, utcnow())
            except Exception:  # noqa: BLE001 - try again at the next beat; the lease still has two thirds left
                log.exception("renewing leases failed")

    # --- recording ----------------------------------------------------------------------------

    async def _record_loop(self) -> None:
        while not self._stop.is_set():
            await self._done_event.wait()
            self._done_event.clear()
            try:
                await self._flush()
            except Exception:  # noqa: BLE001
                log.exception("recording attempts failed; will retry")
                await asyncio.sleep(0.5)
                self._done_event.set()

    def _outcome(self, job: queue.ClaimedJob, result: AttemptResult) -> queue.Outcome:
        s = self.settings
        now = utcnow()
        status, run_at = "succeeded", None
        if not result.succeeded:
            delay = None if result.gone else next_delay(
                s.retry_schedule, job.attempt, job.max_attempts, jitter=s.retry_jitter,
                retry_after=result.retry_after, retry_after_max=s.retry_after_max,
            )
            status, run_at = ("failed", None) if delay is None else ("pending", now + timedelta(seconds=delay))
        return queue.Outcome(
            job, status, run_at,
            {
                "id": new_id(), "store_id": job.store_id, "integration_id": job.integration_id, "job_id": job.id,
                "succeeded": result.succeeded, "attempt": job.attempt, "processing_time": round(result.processing_time, 6),
                "body": _storable(result.body), "status_code": result.status_code,
                "error_detail": _storable(result.error_detail),
                "created_at": now,
            },
        )

    async def _flush(self) -> None:
        if not self._done:
            return
        batch, self._done = self._done, []
        outcomes = [self._outcome(job, result) for job, result in batch]
        now = utcnow()
        woke = False
        try:
            async with self.db.write() as conn:
                kept = await queue.record(conn, outcomes, now)
                bad = {o.job.integration_id for o in kept if not o.log["succeeded"]}
                gone_jobs = {job.id for job, result in batch if result.gone}
                gone = {o.job.integration_id for o in kept if o.job.id in gone_jobs}
                stale = await queue.failing_too_long(conn, bad, now - timedelta(seconds=self.settings.disable_after))
                by_store = {o.job.integration_id: o.job.store_id for o in kept}
                for integration_id in gone | set(stale):
                    woke |= await self._disable(conn, by_store[integration_id], integration_id, now)
        except BaseException:
            # The transaction rolled back: keep the results for the retry (the lease-token check makes a
            # retry after an unknown commit outcome harmless), or the attempts would be lost and redelivered.
            self._done[:0] = batch
            raise
        for job, _ in batch:
            if self._tokens.get(job.id) == job.lease_token:
                del self._tokens[job.id]
        self.delivered += len(kept)
        if any(o.status == "pending" for o in kept) or woke:
            self.notifier.wake()

    async def _disable(self, conn: Any, store_id: str, integration_id: str, now: Any) -> bool:
        """Disable an integration (410 Gone, or failing too long), cancel its pending jobs, raise integration.updated."""
        row = await integration_repo.get(conn, store_id, integration_id)
        if row is None or not row["enabled"]:
            return False
        await integration_repo.update(conn, store_id, integration_id, {"enabled": False}, now)
        await job_repo.cancel_pending(conn, integration_id, now)
        row.update(enabled=False, updated_at=now)
        base = (self.settings.public_url or "").rstrip("/")
        payload = orjson.dumps({"data": integration_resource(row, base)}).decode()
        published = await event_repo.publish(
            conn, store_id, [("integration.updated", payload)], now=now, max_attempts=self.settings.max_attempts
        )
        log.warning("integration %s disabled after failing deliveries", integration_id)
        return any(e.job_ids for e in published)


def _storable(text: str) -> str:
    """A receiver may answer NUL characters, which PostgreSQL text cannot hold: keep them visible as U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
