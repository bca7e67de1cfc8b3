"""The delivery loop: claim due jobs -> gate (per integration) -> deliver -> record every attempt, in batches.

Stages, each one method: `_claim_loop` takes due jobs under a lease, `_admit` waits them for their integration's
turn (`gate.PerKeyLimit`), `_start` runs one attempt as its own task (`transports.base.attempt`, reporting to `_ended`),
`_flush` records a batch of results in one transaction, decides the next state of each job (retry, finish,
disable the integration) and then tells the outcome hooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from herald.db import integrations as integration_repo
from herald.db import queue
from herald.db.database import Database
from herald.db.logs import LogRow
from herald.db.notify import jobs_due
from herald.db.operator_events import OperatorEvents
from herald.db.retention import purge
from herald.delivery.gate import Gate, Group
from herald.delivery.transports import make_transport
from herald.delivery.transports.base import Transport, attempt
from herald.domain.ids import new_id, utcnow
from herald.domain.messages import AttemptResult, OutboundMessage
from herald.domain.retry import next_delay
from herald.settings import Settings

log = logging.getLogger("herald.worker")


@dataclass(frozen=True, slots=True)
class Recorded:
    """What one committed batch did: the attempts recorded, and the integrations it disabled."""

    outcomes: list[queue.Outcome]
    results: dict[str, AttemptResult]  # job id -> the transport's result, for every recorded outcome
    disabled: list[str] = field(default_factory=list)
    dropped: int = 0  # results thrown away: another worker had taken the job over after our lease ran out


OutcomeHook = Callable[[Recorded], None]
"""Called after every committed batch (metrics, operator notifications). Must be quick and must not raise."""


class Worker:
    """One per process. Keeps up to `worker_concurrency` jobs (in flight or waiting their turn) and records
    results in batches.

    `transports` replaces the registry's transports by type (tests: a fake transport, no sockets).
    """

    def __init__(
        self,
        settings: Settings,
        db: Database,
        *,
        transports: Mapping[str, Transport] | None = None,
        hooks: list[OutcomeHook] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.notifier = db.notifier
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.hooks: list[OutcomeHook] = list(hooks or ())
        self._events = OperatorEvents(settings.public_url, settings.max_attempts)
        self.fair = queue.Fairness(settings.claim_per_integration, settings.breaker_failures,
                                   settings.breaker_probe_interval)
        self._transports: dict[str, Transport] = dict(transports or {})
        self._own_transports = not transports
        self._gate: Gate[queue.ClaimedJob] = Gate(settings.per_integration_inflight, settings.per_host_connections)
        self._groups: dict[int, Group] = {}  # id() of a ClaimedJob admitted and not yet ended -> its gate group
        self._in_row: dict[str, int] = {}  # integration id -> failed attempts in a row this worker made
        self._given_back: list[queue.ClaimedJob] = []  # withdrawn from the gate, to release with the next batch
        # integration id -> the number of the flush that recorded the failure opening its breaker (None: not yet
        # recorded); a claim that began before that flush committed could not see the breaker open
        self._opened: dict[str, int | None] = {}
        self._flushes = 0  # batches committed
        self._inflight: dict[int, asyncio.Task[AttemptResult]] = {}  # id() of the ClaimedJob being sent -> its task
        self._tokens: dict[str, str] = {}  # job id -> lease token, for every job held and not yet recorded
        self._done: list[tuple[queue.ClaimedJob, AttemptResult]] = []
        self._done_event = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._stop = asyncio.Event()
        self._claimed_once = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._renewer: asyncio.Task[None] | None = None
        self.delivered = 0  # attempts recorded by this worker

    @property
    def inflight(self) -> int:
        """Deliveries being sent now."""
        return len(self._inflight)

    @property
    def waiting(self) -> int:
        """Claimed jobs waiting for their integration's turn."""
        return self._gate.waiting

    # --- life cycle -------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="herald-claim"),
            asyncio.create_task(self._record_loop(), name="herald-record"),
        ]
        self._renewer = asyncio.create_task(self._renew_loop(), name="herald-renew")
        if self.settings.log_retention_days > 0:
            self._tasks.append(asyncio.create_task(self._retention_loop(), name="herald-retention"))
        if not self.db.is_sqlite:
            conninfo = self.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
            listen = self.notifier.listen_postgres(conninfo, self._stop)
            self._tasks.append(asyncio.create_task(listen, name="herald-listen"))
        log.info("worker %s started", self.name)

    async def stop(self) -> None:
        """Stop claiming, let in-flight deliveries finish (bounded), record them, release what is left."""
        self.request_stop()
        claim_task, record_task, *rest = self._tasks
        await asyncio.gather(claim_task, *rest, return_exceptions=True)
        unstarted = self._gate.drain()  # their leases are released below, with the rest
        log.info(
            "worker %s stopping: no more claims, %d deliveries in flight, %d claimed jobs not started (released)",
            self.name, len(self._inflight), len(unstarted),
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
        leftover = list(set(self._tokens.values()))
        if leftover:
            async with self.db.write() as conn:
                released = await queue.release(conn, leftover, utcnow())
            log.info("released %d leased jobs", released)
        if self._own_transports:
            for transport in self._transports.values():
                with contextlib.suppress(Exception):
                    await transport.close()
        log.info("worker %s stopped; it recorded %d attempts", self.name, self.delivered)

    async def ready(self) -> None:
        """Until the worker takes part: it has looked for due jobs once and, on PostgreSQL, hears NOTIFY."""
        await self._claimed_once.wait()
        if not self.db.is_sqlite:
            await self.notifier.listening.wait()

    async def run_forever(self, on_ready: Callable[[], None] | None = None) -> None:
        """Start, call `on_ready` once the worker takes part (see `ready`), and run until asked to stop."""
        await self.start()
        if on_ready is not None:
            ready = asyncio.ensure_future(self.ready())
            stopping = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({ready, stopping}, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            stopping.cancel()
            if not self._stop.is_set():
                on_ready()
        await self._stop.wait()

    def request_stop(self) -> None:
        self._stop.set()
        self.notifier.wake()
        self._slot_free.set()

    # --- claim --------------------------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        s = self.settings
        while not self._stop.is_set():
            # results not yet recorded count too: while the database is away they wait here, bounded
            capacity = s.worker_concurrency - len(self._inflight) - self._gate.waiting - len(self._done)
            if capacity <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            want = min(capacity, s.worker_batch)
            began = self._flushes
            try:
                async with self.db.write() as conn:
                    claimed, next_due = await queue.claim(conn, want, s.lease_seconds, utcnow(), self.fair)
                    for job in claimed:
                        if job.integration.deleted_at is not None:
                            await queue.cancel(conn, job, utcnow())
            except Exception:
                # the database may be briefly away; keep the worker alive
                log.exception("claiming jobs failed; retrying shortly")
                await self.notifier.wait(s.worker_poll_interval)
                continue
            finally:
                self._claimed_once.set()
            for job in claimed:
                if job.integration.deleted_at is None:
                    self._tokens[job.id] = job.lease_token
                    self._admit(job, began)
            if len(claimed) == want:
                continue
            # Sleep until woken by a publish, or until the next job falls due (at most the poll interval).
            idle = s.worker_poll_interval
            if next_due is not None:
                idle = max(0.0, min(idle, (next_due - utcnow()).total_seconds()))
            await self.notifier.wait(idle)

    # --- gate ---------------------------------------------------------------------------------------------------

    def _admit(self, job: queue.ClaimedJob, claim_began: int) -> None:
        """Deliver now, or once its integration and its peer (receiver host, broker) have a free place. Or give
        it back unsent: its integration's breaker opened here, and the claim that took it began before the
        opening failure was recorded, so it could not know (a later claim takes only a probe)."""
        iid = job.integration_id
        if iid in self._opened:
            opened = self._opened[iid]
            if opened is None or claim_began < opened:
                self._given_back.append(job)
                self._done_event.set()
                return
            del self._opened[iid]
        try:
            peer = self.transport(job.integration.integration_type).peer(job.integration.configuration)
        except Exception:  # noqa: BLE001 - no transport for it: `_start` records why; it shares no peer
            peer = ""
        group = self._groups[id(job)] = (peer, job.integration_id)
        if self._gate.admit(group, job):
            self._start(job)

    def _ended(self, job: queue.ClaimedJob, result: AttemptResult | None) -> None:
        """An attempt ended (None: cancelled at shutdown): queue its result, hand its places to the next jobs."""
        if result is not None:
            self._done.append((job, result))
            self._done_event.set()
            self._count(job.integration_id, result.succeeded)
        self._inflight.pop(id(job), None)
        following = self._gate.release(self._groups.pop(id(job)))
        if not self._stop.is_set():  # once stopping, their leases are released unstarted
            for job_next in following:
                self._start(job_next)
        self._slot_free.set()

    def _count(self, integration_id: str, succeeded: bool) -> None:
        """Failures in a row: at `breaker_failures`, the integration's breaker opens (every worker's failures
        count in the database), and its jobs still waiting their turn here go back to the database unsent with
        the next batch, instead of going out one after the other at a dead receiver."""
        if succeeded:
            self._in_row.pop(integration_id, None)
            self._opened.pop(integration_id, None)
            return
        failures = self._in_row[integration_id] = self._in_row.get(integration_id, 0) + 1
        if failures >= self.settings.breaker_failures:
            self._opened[integration_id] = None
            self._given_back += self._gate.withdraw(integration_id)

    # --- deliver ------------------------------------------------------------------------------------------------

    def transport(self, integration_type: str) -> Transport:
        found = self._transports.get(integration_type)
        if found is None:
            found = self._transports[integration_type] = make_transport(integration_type, self.settings)
        return found

    @staticmethod
    def _message(job: queue.ClaimedJob) -> OutboundMessage:
        i = job.integration
        return OutboundMessage(
            job_id=job.id, event_id=job.event_id, store_id=job.store_id, triggered_by=job.triggered_by,
            attempt=job.attempt, payload_json=job.payload, event_created_at=job.event_created_at,
            integration_id=job.integration_id, integration_type=i.integration_type, integration_name=i.name,
            integration_description=i.description, configuration=i.configuration,
            signing_secrets=i.signing_secrets(utcnow()),
        )

    def _start(self, job: queue.ClaimedJob) -> None:
        """One task per attempt: `attempt` itself, which reports to `_ended` (no wrapper coroutine per delivery)."""
        try:
            transport = self.transport(job.integration.integration_type)
        except Exception as exc:  # an unknown type or a transport that cannot be made: a log row, not a stuck job
            context = {"job_id": job.id, "integration_id": job.integration_id}
            log.exception("no transport for job %s", job.id, extra=context)
            broken = AttemptResult(False, None, "", f"The delivery failed inside Herald ({type(exc).__name__}).", 0.0)
            asyncio.get_running_loop().call_soon(self._ended, job, broken)  # not from here: _ended may start the next
            return
        then = functools.partial(self._ended, job)
        self._inflight[id(job)] = asyncio.create_task(attempt(transport, self._message(job), then=then))

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
            except Exception:
                log.exception("renewing leases failed")  # try again at the next beat; two thirds of the lease left

    async def _retention_loop(self) -> None:
        """Every `retention_interval`, remove what is older than the retention, a small batch per transaction."""
        s = self.settings
        while not self._stop.is_set():
            try:
                purged = await purge(self.db, utcnow() - timedelta(days=s.log_retention_days), stop=self._stop)
                if purged.total:
                    counts = (purged.logs, purged.jobs, purged.events)
                    log.info("retention removed %d logs, %d jobs and %d events", *counts)
            except Exception:
                log.exception("retention pass failed; trying again at the next one")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), s.retention_interval)

    # --- record -------------------------------------------------------------------------------------------------

    async def _record_loop(self) -> None:
        while not self._stop.is_set():
            await self._done_event.wait()
            self._done_event.clear()
            try:
                await self._flush()
            except Exception as exc:  # noqa: BLE001 - the database may be away: keep the results, retry shortly
                log.warning("recording %d attempts failed (%s: %s); will retry", len(self._done), type(exc).__name__,
                            str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "")
                await asyncio.sleep(0.5)
                self._done_event.set()
            else:
                self._slot_free.set()  # recorded results made room for claims

    def _outcome(self, job: queue.ClaimedJob, result: AttemptResult, now: datetime) -> queue.Outcome:
        s = self.settings
        status, run_at = "succeeded", None
        if not result.succeeded:
            delay = None if result.gone else next_delay(
                s.retry_schedule, job.attempt, job.max_attempts, jitter=s.retry_jitter,
                retry_after=result.retry_after, retry_after_max=s.retry_after_max,
            )
            status, run_at = ("failed", None) if delay is None else ("pending", now + timedelta(seconds=delay))
        entry = LogRow(
            id=new_id(), store_id=job.store_id, integration_id=job.integration_id, job_id=job.id,
            succeeded=result.succeeded, attempt=job.attempt, processing_time=result.processing_time,
            body=result.body, status_code=result.status_code, error_detail=result.error_detail, created_at=now,
        )
        return queue.Outcome(job, status, run_at, entry)

    async def _flush(self) -> None:
        if not self._done and not self._given_back:
            return
        batch, self._done = self._done, []
        given_back, self._given_back = self._given_back, []
        opening = [iid for iid, flush in self._opened.items() if flush is None]  # their failures are in `batch`
        now = utcnow()
        outcomes = [self._outcome(job, result, now) for job, result in batch]
        results = {job.id: result for job, result in batch}
        disabled: list[str] = []
        try:
            async with self.db.write() as conn:
                if given_back:
                    await queue.release(conn, list({j.lease_token for j in given_back}), now,
                                        only=[j.id for j in given_back])
                kept = await queue.record(conn, outcomes, now, self.fair) if outcomes else []
                if kept:
                    # finished jobs leave their integration's share, and retries may be due before the claim
                    # loop's next look: it looks again once this commits
                    await jobs_due(conn, other_processes=False)
                gone = {o.job.integration_id for o in kept if results[o.job.id].gone}
                failing = {o.job.integration_id for o in kept if not o.log.succeeded}
                stale = await queue.failing_too_long(
                    conn, failing, now - timedelta(seconds=self.settings.disable_after)
                )
                recorded = {o.job.integration_id: o.job.store_id for o in kept}
                for integration_id in sorted(gone | set(stale)):
                    store_id = recorded[integration_id]
                    if await integration_repo.disable(conn, store_id, integration_id, now, self._events) is not None:
                        disabled.append(integration_id)
        except BaseException:
            # The transaction rolled back: keep the results for the retry (the lease-token check makes a
            # retry after an unknown commit outcome harmless), or the attempts would be lost and redelivered.
            self._done[:0] = batch
            self._given_back[:0] = given_back
            raise
        self._flushes += 1
        for iid in opening:
            if iid in self._opened and self._opened[iid] is None:
                self._opened[iid] = self._flushes
        for job in given_back:
            self._groups.pop(id(job), None)
        for job in [*(job for job, _ in batch), *given_back]:
            if self._tokens.get(job.id) == job.lease_token:
                del self._tokens[job.id]
        self.delivered += len(kept)
        for integration_id in disabled:
            log.warning("integration %s disabled after failing deliveries", integration_id,
                        extra={"integration_id": integration_id})
        if self.hooks:
            self._tell(Recorded(kept, {o.job.id: results[o.job.id] for o in kept}, disabled, len(batch) - len(kept)))

    def _tell(self, recorded: Recorded) -> None:
        for hook in self.hooks:
            try:
                hook(recorded)
            except Exception:
                log.exception("an outcome hook failed")
