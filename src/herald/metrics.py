"""Prometheus metrics of one Herald process: deliveries (through the worker's outcome hook), HTTP requests, the
worker's queue, and the due jobs read cheaply from the database.

Each process (`herald api`, `herald worker`, `herald serve`) has its own registry and exposes only its own figures:
`GET /metrics` on the API, and `HERALD_METRICS_PORT` for a separate listener (the only way to scrape a worker).
No label holds a secret, a store credential or an id: labels are integration types, outcomes, route templates,
methods and status codes, so their number stays small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST, start_http_server

from herald.db.driver_sql import Driver, Sql
from herald.domain.ids import utcnow

log = logging.getLogger("herald")

if TYPE_CHECKING:
    from herald.db.database import Database
    from herald.delivery.worker import Recorded, Worker

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "MetricsMiddleware"]

# a `_created` series beside every counter doubles the output, and nobody graphs it
disable_created_metrics()  # type: ignore[no-untyped-call]

_ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0, 86400.0)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# Both use the partial index ix_jobs_due (its predicate is exactly this text): the cost follows the backlog,
# not the size of the jobs table.
_OPEN_JOBS = Sql("SELECT status, count(*) FROM jobs WHERE status IN ('pending', 'delivering') GROUP BY status")
_DUE = Sql("SELECT count(*), min(run_at) FROM jobs WHERE status IN ('pending', 'delivering') AND run_at <= ?")


class Metrics:
    """The metrics of one process, in a registry of its own (several apps in one test process do not clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.deliveries = Counter(
            "herald_deliveries", "Delivery attempts recorded, by outcome and integration type.",
            ["outcome", "integration_type"], registry=r,
        )
        self.dropped = Counter(
            "herald_delivery_results_dropped", "Attempt results not recorded: another worker held the job by then.",
            registry=r,
        )
        self.disabled = Counter(
            "herald_integrations_disabled", "Integrations disabled by a worker (410 Gone, failing too long).",
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "herald_attempt_duration_seconds", "How long one delivery attempt took.", ["integration_type"],
            buckets=_ATTEMPT_BUCKETS, registry=r,
        )
        self.delivery_latency = Histogram(
            "herald_publish_to_delivery_seconds", "From the event's publication to its successful delivery.",
            ["integration_type"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.http_requests = Counter(
            "herald_http_requests", "API requests answered, by route template, method and status.",
            ["route", "method", "status"], registry=r,
        )
        self.http_seconds = Histogram(
            "herald_http_request_duration_seconds", "Time to answer an API request, by route template.",
            ["route", "method"], buckets=_HTTP_BUCKETS, registry=r,
        )
        self.jobs = Gauge("herald_jobs", "Jobs not finished yet, by status.", ["status"], registry=r)
        self.due = Gauge("herald_jobs_due", "Jobs due now and not being delivered by a live lease.", registry=r)
        self.oldest_due = Gauge(
            "herald_oldest_due_job_age_seconds", "How long the oldest due job has been due (0: none).", registry=r
        )
        self.inflight = Gauge("herald_worker_inflight", "Deliveries this worker is sending now.", registry=r)
        self.waiting = Gauge(
            "herald_worker_waiting", "Jobs this worker holds that wait for their integration's or their host's turn.",
            registry=r,
        )
        self._http: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    # --- deliveries: the worker's outcome hook ---------------------------------------------------------------

    def on_recorded(self, recorded: Recorded) -> None:
        now = utcnow()
        for outcome in recorded.outcomes:
            kind = outcome.job.integration.integration_type
            result = recorded.results[outcome.job.id]
            self.deliveries.labels("succeeded" if result.succeeded else "failed", kind).inc()
            self.attempt_seconds.labels(kind).observe(result.processing_time)
            if result.succeeded:
                self.delivery_latency.labels(kind).observe((now - outcome.job.event_created_at).total_seconds())
        if recorded.dropped:
            self.dropped.inc(recorded.dropped)
        if recorded.disabled:
            self.disabled.inc(len(recorded.disabled))

    def watch(self, worker: Worker) -> None:
        """Count `worker`'s deliveries, and read its queue at every scrape."""
        worker.hooks.append(self.on_recorded)
        self.inflight.set_function(lambda: worker.inflight)
        self.waiting.set_function(lambda: worker.waiting)

    # --- the database --------------------------------------------------------------------------------------------

    async def refresh(self, db: Database) -> None:
        """Read the open jobs and the due backlog (two statements on the partial index of open jobs). When the
        database is away the gauges keep their last values: the process's own figures are still worth a scrape."""
        now = utcnow()
        try:
            async with db.read() as conn:
                driver = Driver(conn)
                counts = dict(await driver.all(_OPEN_JOBS))
                due, oldest = (await driver.all(_DUE, (driver.ts(now),)))[0]
                oldest_at = driver.ts_out(oldest)
        except Exception:
            log.warning("metrics: reading the job counts failed", exc_info=True)
            return
        for status in ("pending", "delivering"):
            self.jobs.labels(status).set(counts.get(status, 0))
        self.due.set(due)
        self.oldest_due.set(max((now - oldest_at).total_seconds(), 0.0) if oldest_at is not None else 0.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def serve(self, port: int, host: str = "0.0.0.0") -> None:
        """A listener of its own (a thread) for this registry, for processes without the API (HERALD_METRICS_PORT)."""
        start_http_server(port, addr=host, registry=self.registry)

    # --- HTTP ------------------------------------------------------------------------------------------------------

    def observe_http(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        children = self._http.get(key)
        if children is None:  # label look-ups cost more than the increment: keep the children per key
            children = self._http[key] = (
                self.http_requests.labels(route, method, str(status)),
                self.http_seconds.labels(route, method),
            )
        children[0].inc()
        children[1].observe(seconds)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class MetricsMiddleware:
    """Counts every HTTP answer by route template (`/v2/integrations/{integration_id}`, never the raw path, so ids
    stay out of the labels; unmatched paths count as `unmatched`). Pure ASGI: a few microseconds per request."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]], metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            self.metrics.observe_http(template, scope["method"], status, time.perf_counter() - started)
