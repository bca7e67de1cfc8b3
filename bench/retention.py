"""7. Retention during deliveries (PostgreSQL): the throughput workload with and without a purge of old logs.

ROWS delivery logs older than Herald's default retention (30 days), each with its finished job and its event,
are written straight into the migrated schema (`INSERT ... SELECT` over `generate_series`, UUIDv7 ids as Herald
makes them) with their totals in `log_counts`. The throughput scenario's workload (N events published in
batches of 1000 to one enabled webhook integration of `herald serve`, timed from the first publish until N
more logs are recorded) then runs five times, alternating:

- without purge: `herald serve` with `HERALD_LOG_RETENTION_DAYS=0` (no retention pass);
- during purge: `herald serve` with the default retention. Its worker starts a retention pass at start, as
  every worker does (and then every `HERALD_RETENTION_INTERVAL`), in the process that delivers; once the
  round's deliveries are in, the pass is left to finish. Each such round has ROWS old rows of its own, written
  just before the round without purge that precedes it, so that it runs beside the start of a whole pass.

Before each round: VACUUM and CHECKPOINT, so that no round pays for the one before it (dead rows, hint bits,
dirty pages). No ANALYZE: with statistics taken while no job was pending, PostgreSQL has found the jobs that
the worker records through the partial index of due jobs, so that every record statement read the whole
backlog (docs/benchmarks.md, "Retention during deliveries"). That is the worker's statement, not the purge,
and it would weigh on every round alike. The pass is timed from
the worker's own log lines ("worker ... started", "retention removed ..."). Afterwards no old row may be
left, and `log_counts` must equal `count(*)` in every group, as must `results.total`.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from bench.harness import Api, Context, Process, Session, run_async, wait_until
from bench.report import Row
from bench.throughput import EVENTS
from herald.domain.ids import floor_id

NAME = "retention"
BACKENDS = ("sqlite", "postgresql")  # SQLite gets a row saying why it is skipped
ROWS = {"quick": 100_000, "full": 1_000_000}
PLAN = ("seed", "without", "during", "without", "seed", "during", "without")  # seed: ROWS more old rows
TARGET_RATIO = 80.0  # % of the deliveries per second without a purge
AGE_DAYS = 40  # how old the seeded rows are; Herald's default retention is 30 days
RETENTION_DAYS = 30
STEP_MS = 1  # the seeded rows are 1 ms apart, the newest AGE_DAYS old

_REMOVED = re.compile(r"retention removed (\d+) logs, (\d+) jobs and (\d+) events")


def _uuid7(kind: int) -> str:
    """SQL for the UUIDv7 of row h.i at millisecond h.ms: kind 0 the event, 1 its job, 2 the job's log."""
    return (f"substr(h.ms, 1, 8) || '-' || substr(h.ms, 9, 4) || '-7{kind}00-8' || substr(h.seq, 1, 3) || '-'"
            " || substr(h.seq, 4, 12)")


_SERIES = (
    "(SELECT i, lpad(to_hex(%(start)s::bigint + i * %(step)s), 12, '0') AS ms, lpad(to_hex(i), 15, '0') AS seq,"
    " to_timestamp((%(start)s::bigint + i * %(step)s) / 1000.0) AS at, i %% 10 = 3 AS failed"
    " FROM generate_series(0, %(n)s - 1) AS i) AS h"
)
_PAYLOAD = ("'{\"id\":\"order-' || lpad(h.i::text, 8, '0') || '\",\"type\":\"order\",\"status\":\"paid\",\"payment\":"
            "\"paid\",\"meta\":{\"display_price\":{\"with_tax\":{\"amount\":4999,\"currency\":\"USD\"}}}}'")
SEED = (
    f"INSERT INTO events (id, store_id, triggered_by, payload, created_at)"
    f" SELECT {_uuid7(0)}, %(store)s, 'order.paid', {_PAYLOAD}, h.at FROM {_SERIES}",
    f"INSERT INTO jobs (id, store_id, integration_id, event_id, triggered_by, status, attempts, max_attempts, run_at,"
    f" lease_token, created_at, updated_at)"
    f" SELECT {_uuid7(1)}, %(store)s, %(integration)s, {_uuid7(0)}, 'order.paid',"
    f" CASE WHEN h.failed THEN 'failed' ELSE 'succeeded' END, 1, 10, NULL, NULL, h.at, h.at + interval '12 ms'"
    f" FROM {_SERIES}",
    f"INSERT INTO logs (id, store_id, integration_id, job_id, succeeded, attempt, processing_time, body, status_code,"
    f" error_detail, created_at)"
    f" SELECT {_uuid7(2)}, %(store)s, %(integration)s, {_uuid7(1)}, NOT h.failed, 1, 0.0123,"
    f" CASE WHEN h.failed THEN 'Internal Server Error' ELSE 'ok' END, CASE WHEN h.failed THEN 500 ELSE 200 END,"
    f" CASE WHEN h.failed THEN 'Received a status code outside of 2xx range - treating webhook as a fail'"
    f" ELSE '' END, h.at + interval '12 ms' FROM {_SERIES}",
    # the running totals Herald keeps beside its logs, for the rows written here
    "INSERT INTO log_counts (store_id, integration_id, succeeded, count)"
    " SELECT store_id, integration_id, succeeded, count(*) FROM logs WHERE integration_id = %(integration)s"
    " GROUP BY store_id, integration_id, succeeded"
    " ON CONFLICT (store_id, integration_id, succeeded) DO UPDATE SET count = log_counts.count + excluded.count",
)
# every group of the totals beside the rows it counts; a difference in any group is an error
TOTALS = (
    "SELECT coalesce(c.store_id, l.store_id), coalesce(c.integration_id, l.integration_id),"
    " coalesce(c.succeeded, l.succeeded), coalesce(c.count, 0), coalesce(l.count, 0)"
    " FROM log_counts c FULL JOIN (SELECT store_id, integration_id, succeeded, count(*) AS count FROM logs"
    " GROUP BY store_id, integration_id, succeeded) l"
    " ON (c.store_id, c.integration_id, c.succeeded) = (l.store_id, l.integration_id, l.succeeded)"
)


@dataclass
class Round:
    kind: str
    rate: float
    seconds: float
    cpu: float = 0.0  # herald serve's CPU over the round, % of one core
    load: float = 0.0  # the machine's 1-minute load average at the end of the round (others' work included)
    purge_running_at_end: bool | None = None  # during-purge rounds: the pass had not ended when N logs were in


@dataclass
class Segment:
    """One retention pass, from the worker's log lines."""

    seconds: float
    logs: int
    jobs: int
    events: int


@dataclass
class Outcome:
    rounds: list[Round] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    seeded: int = 0  # logs (with as many jobs and events)
    seed_seconds: list[float] = field(default_factory=list)
    old_left: dict[str, int] = field(default_factory=dict)
    groups: int = 0
    totals_off: int = 0
    negative: int = 0
    api_total: int = 0
    store_rows: int = 0


def seed(url: str, store_id: str, integration_id: str, n: int, k: int = 0) -> float:
    """n old events, their finished jobs (one in ten failed) and one log each, with the logs' totals; seconds.
    The k-th seeding is older than the ones before it (its own ids)."""
    started = time.monotonic()
    start_ms = int((datetime.now(UTC) - timedelta(days=AGE_DAYS)).timestamp() * 1000) - (k + 1) * n * STEP_MS
    params = {"start": start_ms, "step": STEP_MS, "n": n, "store": store_id, "integration": integration_id}
    with psycopg.connect(url) as conn:
        for sql in SEED:
            conn.execute(sql, params)
    return time.monotonic() - started


def settle(url: str) -> None:
    """What a quiet database would have done by now: dead rows gone, visibility map set, dirty pages written out
    (no statistics: see the module's docstring)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM events, jobs, logs, log_counts")
        try:
            conn.execute("CHECKPOINT")
        except psycopg.errors.InsufficientPrivilege:
            pass  # a role without pg_checkpoint: the rounds may then pay for a checkpoint now and then


class Totals:
    """The totals Herald keeps for one integration, read from a thread so that the load generator's loop stays
    free (a primary-key read of two rows, cheap enough for every 50 ms)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)

    def recorded(self, integration_id: str) -> int:
        row = self.conn.execute("SELECT coalesce(sum(count), 0) FROM log_counts WHERE integration_id = %s",
                                (integration_id,)).fetchone()
        return int(row[0]) if row else 0

    def rows(self, integration_id: str) -> int:
        row = self.conn.execute("SELECT count(*) FROM logs WHERE integration_id = %s", (integration_id,)).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self.conn.close()


async def workload(herald: Process, credentials: dict[str, str], totals: Totals, integration: str,
                   n: int) -> tuple[float, float]:
    """The throughput scenario's: n events, until n more logs of the integration are recorded; (rate, seconds)."""
    before = await asyncio.to_thread(totals.rows, integration)
    async with Api(herald.url, credentials) as api:
        started = time.monotonic()
        await api.publish_backlog(n)
        await wait_until(lambda: asyncio.to_thread(totals.recorded, integration), lambda c: c >= before + n,
                         timeout=max(120.0, n / 100), every=0.05)
        seconds = time.monotonic() - started
    rows = await asyncio.to_thread(totals.rows, integration)
    if rows != before + n:
        raise RuntimeError(f"the integration has {rows - before} new logs for {n} events (a retry, or a lost total)")
    return n / seconds, seconds


def _lines(proc: Process) -> list[dict[str, Any]]:
    out = []
    for line in proc.log_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return out


def _ts(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["ts"].replace("Z", "+00:00")).timestamp()


def pass_ended(proc: Process) -> bool:
    return "retention removed" in proc.log_path.read_text(errors="replace")


def segment(proc: Process) -> Segment:
    """The pass of this `herald serve`: from its worker's start to the line that says what it removed."""
    lines = _lines(proc)
    start = next((_ts(x) for x in lines if re.fullmatch(r"worker .* started", x.get("msg", ""))), None)
    end = next(((_ts(x), m) for x in lines if (m := _REMOVED.fullmatch(x.get("msg", "")))), None)
    if start is None or end is None:
        raise RuntimeError(f"no retention pass in the worker's log:\n{proc.output()}")
    at, m = end
    return Segment(at - start, int(m[1]), int(m[2]), int(m[3]))


def wait_for(check: Any, proc: Process, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited early:\n{proc.output()}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not done within {timeout:.0f} s:\n{proc.output()}")
        time.sleep(0.1)


async def checks(herald: Process, credentials: dict[str, str], url: str, out: Outcome) -> None:
    """After the last round: no old row left; every total equal to the rows it counts, and results.total too."""
    boundary = floor_id(datetime.now(UTC) - timedelta(days=RETENTION_DAYS))
    with psycopg.connect(url, autocommit=True) as conn:
        for table in ("logs", "jobs", "events"):
            row = conn.execute(f"SELECT count(*) FROM {table} WHERE id < %s", (boundary,)).fetchone()
            out.old_left[table] = int(row[0]) if row else -1
        groups = conn.execute(TOTALS).fetchall()
        row = conn.execute("SELECT count(*) FROM logs WHERE store_id = %s", (credentials["id"],)).fetchone()
        out.store_rows = int(row[0]) if row else -1
    out.groups = len(groups)
    out.totals_off = sum(abs(int(counted) - int(rows)) for *_, counted, rows in groups)
    out.negative = sum(1 for *_, counted, _ in groups if counted < 0)
    async with Api(herald.url, credentials) as api:
        status, doc = await api.get("/v2/integrations/logs", {"page[limit]": "1"})
        if status != 200:
            raise RuntimeError(f"GET /v2/integrations/logs answered {status}: {doc}")
        out.api_total = int(doc["results"]["total"])


def rounds(s: Session, n_rows: int, n_events: int) -> Outcome:
    out = Outcome()
    receiver = s.receiver()
    credentials = s.store()
    setup = s.herald("api")
    archive, webhook = run_async(_integrations(setup, receiver, credentials))
    setup.stop()
    totals = Totals(s.db.url)
    try:
        for step in PLAN:
            if step == "seed":
                out.seed_seconds.append(seed(s.db.url, credentials["id"], archive, n_rows, len(out.seed_seconds)))
                out.seeded += n_rows
                continue
            settle(s.db.url)
            env = {"HERALD_LOG_LEVEL": "info", "HERALD_LOG_RETENTION_DAYS": "0" if step == "without" else
                   str(RETENTION_DAYS)}
            herald = s.herald("serve", **env)
            cpu = herald.cpu_seconds()
            rate, seconds = run_async(workload(herald, credentials, totals, webhook, n_events))
            r = Round(step, rate, seconds, 100 * (herald.cpu_seconds() - cpu) / seconds, os.getloadavg()[0])
            if step == "during":
                r.purge_running_at_end = not pass_ended(herald)
                wait_for(lambda h=herald: pass_ended(h), herald, max(600.0, n_rows / 200), "the retention pass")
                herald.stop()
                out.segments.append(x := segment(herald))
                if (x.logs, x.jobs, x.events) != (n_rows, n_rows, n_rows):
                    raise RuntimeError(f"the pass removed {x.logs:,} logs, {x.jobs:,} jobs and {x.events:,} events"
                                       f" of the {n_rows:,} of each seeded for it")
            herald.stop()
            out.rounds.append(r)
            print(f"   round {len(out.rounds)} ({step} purge): {rate:,.0f} deliveries/s in {seconds:.1f} s,"
                  f" herald serve at {r.cpu:.0f} % of a core, load {r.load:.2f} at the end"
                  + (f"; pass still running at the end: {r.purge_running_at_end}, all of it "
                     f"{out.segments[-1].seconds:.1f} s" if step == "during" else ""), flush=True)
        api = s.herald("api")
        run_async(checks(api, credentials, s.db.url, out))
        api.stop()
    finally:
        totals.close()
    return out


async def _integrations(herald: Process, receiver: Process, credentials: dict[str, str]) -> tuple[str, str]:
    """The old logs' integration (disabled: it delivers nothing now) and the one every round delivers to."""
    async with Api(herald.url, credentials) as api:
        archive = await api.create_integration("http://127.0.0.1:9/hook", "Archive webhook", enabled=False)
        return archive, await api.create_integration(f"{receiver.url}/hook")


def run(ctx: Context, backend: str) -> list[Row]:
    if backend != "postgresql":
        why = "PostgreSQL only: the old rows are written with generate_series, and on SQLite purge and deliveries " \
              "take turns on one write lock, another measurement"
        print(f"   retention: skipped on {backend} ({why})", flush=True)
        return [Row(NAME, backend, "-", None, note=f"skipped: {why}")]
    n_rows, n_events = ROWS[ctx.mode], EVENTS[ctx.mode]
    with ctx.session(backend) as s:
        out = rounds(s, n_rows, n_events)
    return rows(out, n_rows, n_events)


def rows(out: Outcome, n_rows: int, n_events: int) -> list[Row]:
    without = [r for r in out.rounds if r.kind == "without"]
    ratios = []
    for i, r in enumerate(out.rounds):
        if r.kind == "during":  # against the rounds just before and after it
            ratios.append(100 * r.rate / statistics.mean([out.rounds[i - 1].rate, out.rounds[i + 1].rate]))
    during = [r for r in out.rounds if r.kind == "during"]
    seconds = sum(x.seconds for x in out.segments)
    removed = sum(x.logs for x in out.segments)
    jobs, events = sum(x.jobs for x in out.segments), sum(x.events for x in out.segments)
    size = f"{n_rows / 1e6:g}M" if n_rows >= 1_000_000 else f"{n_rows // 1000}k"
    overlap = "" if all(r.purge_running_at_end for r in during) else \
        "; the pass ended before the last delivery of a round: that round was partly without it"
    left = sum(out.old_left.values())
    off = out.totals_off + out.negative + abs(out.api_total - out.store_rows)
    return [
        Row(NAME, "postgresql", "deliveries/s without purge", statistics.mean(r.rate for r in without),
            "deliveries/s", note=f"{n_events:,} events, herald serve; rounds "
            + ", ".join(f"{r.rate:,.0f}" for r in without)),
        Row(NAME, "postgresql", f"deliveries/s during purge ({size} old logs)", statistics.mean(r.rate for r in during),
            "deliveries/s", note="rounds " + ", ".join(f"{r.rate:,.0f}" for r in during) + overlap),
        Row(NAME, "postgresql", "during / without", statistics.mean(ratios), "%", TARGET_RATIO,
            note="each against the rounds before and after it: " + ", ".join(f"{x:.0f} %" for x in ratios)
            + f"; herald serve's CPU in rounds 1-{len(out.rounds)}: " + ", ".join(f"{r.cpu:.0f}" for r in out.rounds)
            + " % of a core; 1-min load at their ends: " + ", ".join(f"{r.load:.1f}" for r in out.rounds)),
        Row(NAME, "postgresql", "purge, logs removed per second", removed / seconds if seconds else None, "logs/s",
            note=f"{removed:,} logs, {jobs:,} jobs and {events:,} events in {seconds:.1f} s, {len(out.segments)}"
            " passes of the worker's own (" + ", ".join(f"{x.seconds:.1f} s" for x in out.segments)
            + f"); {n_rows:,} of each seeded before each, in " + ", ".join(f"{x:.0f}" for x in out.seed_seconds)
            + " s"),
        Row(NAME, "postgresql", "old rows left afterwards", left, "rows", 0, "<=",
            note=", ".join(f"{k} {v:,}" for k, v in out.old_left.items())),
        Row(NAME, "postgresql", "totals off (log_counts, results.total)", off, "logs", 0, "<=",
            note=f"log_counts against count(*) in {out.groups} groups (sum of differences, {out.negative} negative);"
            f" results.total {out.api_total:,} for {out.store_rows:,} rows"),
    ]
