"""9. Fairness (a noisy neighbour): a healthy integration's latency and throughput beside a stuck one.

`herald serve` with `HERALD_DELIVERY_TIMEOUT=2`, one store, two webhook integrations: a stuck one observing
`order.created`, whose receiver answers only after HANG seconds (so every attempt times out), and a healthy
one observing `order.paid`, whose receiver answers 200 and records arrivals (as in `latency`). BACKLOG
`order.created` events are published first (batches of 1000), and at once an open-loop publisher sends one
`order.paid` event every 5 ms (200 events/s, one per request) with `time.time()` in the payload for
WARMUP + SECONDS; the healthy receiver notes `time.time()` on arrival (first arrival per event). The first
second is warm-up and left out.

Five runs (three with --quick, whose breaker stays on), each with its own database and `herald serve`, with
the same settings and the same healthy load:

- alone: no stuck integration, no backlog (the baseline);
- neighbour on its own host: the stuck receiver is a process of its own (another port, so another pool of
  connections in Herald's client), with Herald's defaults: the stuck integration's circuit breaker opens
  after HERALD_BREAKER_FAILURES=10 failed attempts in a row;
- the same with the breaker kept shut (HERALD_BREAKER_FAILURES=1000000): only the claim's share per
  integration (HERALD_CLAIM_PER_INTEGRATION=100 held by all workers) keeps the stuck backlog out of the way;
- neighbour on the same host, and the same with the breaker kept shut: one receiver process serves both
  integrations, hanging under /slow (the stuck integration's path) only, so both share Herald's connections
  to that host (HERALD_PER_HOST_CONNECTIONS=100, of which the stuck one may hold
  HERALD_PER_INTEGRATION_INFLIGHT=50).

Healthy deliveries/s = measured events delivered / (last arrival - first measured publish). When the healthy
publishing stops, the stuck integration's jobs are counted in the jobs table by status: 'delivering' (held
by the worker) and 'pending' (left in the database).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness import Api, Context, Process, Session, _wait, order, paced, percentile, run_async
from bench.report import Row

NAME = "fairness"
BACKENDS = ("sqlite", "postgresql")
RATE = 200  # healthy events per second
SECONDS = {"quick": 8, "full": 30}
BACKLOG = {"quick": 1_000, "full": 5_000}
WARMUP = 1.0
DELIVERY_TIMEOUT = 2.0  # HERALD_DELIVERY_TIMEOUT for every run
HANG = 30.0  # the stuck receiver answers after this long: never within the delivery timeout
TARGET_P99 = 1000.0  # ms, healthy publish→delivery with the neighbour
TARGET_SHARE = 90.0  # % of the healthy deliveries/s without the neighbour
SHUT = {"HERALD_BREAKER_FAILURES": "1000000"}
# label, where the stuck receiver is (None: no neighbour), Herald's extra settings
RUNS: tuple[tuple[str, str | None, dict[str, str]], ...] = (
    ("alone", None, {}),
    ("neighbour on its own host", "own", {}),
    ("neighbour on its own host, breaker off", "own", SHUT),
    ("neighbour on the same host", "same", {}),
    ("neighbour on the same host, breaker off", "same", SHUT),
)
QUICK = ("alone", "neighbour on its own host", "neighbour on the same host")  # --quick leaves the breaker on


def receiver(session: Session, hang: str | None, record: bool) -> Process:
    """bench.receiver in its own process; with `hang`, requests under that path are answered after HANG s."""
    argv = [sys.executable, "-m", "bench.receiver"] + (["--record"] if record else [])
    if hang is not None:
        argv += ["--hang-path", hang, "--hang-seconds", str(HANG)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = session._spawn("receiver", argv, env)
    _wait(lambda: "listening" in proc.output(), proc, 15, "listen")
    proc.port = int(proc.output().split("listening", 1)[1].split()[0])
    return proc


async def webhook(api: Api, url: str, name: str, key: str) -> str:
    doc = {"data": {"type": "integration", "name": name, "enabled": True, "observes": [key],
                    "configuration": {"url": url}}}
    return str((await api.post("/v2/integrations", doc, 201))["data"]["id"])


@dataclass
class Outcome:
    latencies: list[float]  # ms, measured healthy events that arrived (first arrival of each)
    measured: int  # measured healthy events accepted
    rate: float  # healthy deliveries per second
    twice: int  # healthy events that arrived more than once (an attempt timed out after reaching the receiver)
    state: dict[str, Any]  # the integrations' jobs and attempts when publishing stopped


async def _fetch(session: aiohttp.ClientSession, receiver: Process, path: str) -> Any:
    async with session.get(f"{receiver.url}/_bench/{path}") as r:
        return await r.json()


def _state(s: Session, healthy: str, stuck: str | None) -> dict[str, Any]:
    def count(sql: str) -> int:
        return int(s.db.scalar(sql))

    out = {"healthy_failed": count(f"SELECT count(*) FROM logs WHERE integration_id = '{healthy}' AND NOT succeeded")}
    if stuck is not None:
        jobs = f"SELECT count(*) FROM jobs WHERE integration_id = '{stuck}' AND "
        out |= {
            "delivering": count(jobs + "status = 'delivering'"), "pending": count(jobs + "status = 'pending'"),
            "finished": count(jobs + "status NOT IN ('pending', 'delivering')"),
            "consecutive_failures": count(f"SELECT consecutive_failures FROM integrations WHERE id = '{stuck}'"),
        }
    return out


async def one_run(s: Session, herald: Process, healthy: Process, stuck: Process | None,
                  credentials: dict[str, str], backlog: int, seconds: float) -> Outcome:
    async with Api(herald.url, credentials) as api:
        healthy_id = await webhook(api, f"{healthy.url}/hook", "Healthy", "order.paid")
        stuck_id = None
        if stuck is not None:
            stuck_id = await webhook(api, f"{stuck.url}/slow/hook", "Stuck", "order.created")
            for start in range(0, backlog, 1000):
                doc = {"data": [{"type": "event", "triggered_by": "order.created", "payload": order(i)}
                                for i in range(start, min(backlog, start + 1000))]}
                await api.post("/v2/events", doc, 202)
        sent: dict[str, float] = {}  # event id -> publish time, for every accepted healthy event

        async def one(i: int) -> None:
            at = time.time()
            sent[await api.publish_one({"id": f"order-{i}", "sent_at": at})] = at

        total = int(RATE * (WARMUP + seconds))
        measure_from = time.time() + WARMUP
        await paced(total, RATE, one)
        state = await asyncio.to_thread(_state, s, healthy_id, stuck_id)

    async with aiohttp.ClientSession() as client:
        for _ in range(600):  # up to 60 s for the stragglers
            if len({a[1] for a in await _fetch(client, healthy, "arrivals")} & sent.keys()) >= len(sent):
                break
            await asyncio.sleep(0.1)
        arrivals = await _fetch(client, healthy, "arrivals")
        if stuck is not None:
            state["attempts"] = (await _fetch(client, stuck, "stats"))["hung"]
    first: dict[str, tuple[float, float]] = {}
    for at, event_id, sent_at in arrivals:
        if event_id in sent and sent_at is not None and sent_at >= measure_from:
            if event_id not in first or at < first[event_id][0]:
                first[event_id] = (at, sent_at)
    twice = sum(1 for a in arrivals if a[1] in first) - len(first)
    latencies = [1000 * (at - sent_at) for at, sent_at in first.values()]
    last = max((at for at, _ in first.values()), default=measure_from + 1)
    measured = sum(1 for at in sent.values() if at >= measure_from)
    return Outcome(latencies, measured, len(latencies) / (last - measure_from), twice, state)


def run(ctx: Context, backend: str) -> list[Row]:
    seconds, backlog = SECONDS[ctx.mode], BACKLOG[ctx.mode]
    got: dict[str, Outcome] = {}
    for label, where, extra in RUNS:
        if ctx.mode == "quick" and label not in QUICK:
            continue
        with ctx.session(backend) as s:
            healthy = receiver(s, "/slow" if where == "same" else None, record=True)
            stuck = receiver(s, "/slow", record=False) if where == "own" else healthy if where == "same" else None
            credentials = s.store()
            herald = s.herald("serve", HERALD_DELIVERY_TIMEOUT=str(DELIVERY_TIMEOUT), **extra)
            with ctx.profiled(f"{NAME}-{len(got)}", backend, herald):
                got[label] = run_async(one_run(s, herald, healthy, stuck, credentials, backlog, seconds))
    ctx.detail(NAME, backend, {label: {"p50": percentile(o.latencies, 50) if o.latencies else None,
                                       "p99": percentile(o.latencies, 99) if o.latencies else None,
                                       "rate": o.rate, "delivered": len(o.latencies), "measured": o.measured,
                                       "twice": o.twice, "state": o.state} for label, o in got.items()})
    base = got["alone"]
    rows = []
    for label, o in got.items():
        if not o.latencies:
            rows.append(Row(NAME, backend, f"healthy p99 publish→delivery, {label}", None,
                            note=f"error: none of {o.measured:,} healthy events arrived"))
            continue
        is_base = label == "alone"
        note = f"p50 {percentile(o.latencies, 50):.1f} ms, max {max(o.latencies):.1f} ms"
        if is_base:
            note += f"; {o.measured:,} healthy events at {RATE}/s over {seconds} s, herald serve"
        else:
            note += f"; {backlog:,} stuck jobs published first"
        if o.measured > len(o.latencies):
            note += f"; {o.measured - len(o.latencies):,} not delivered within 60 s"
        if o.state["healthy_failed"]:
            note += f"; {o.state['healthy_failed']:,} failed healthy attempts"
        if o.twice:
            note += f"; {o.twice:,} delivered twice"
        rows.append(Row(NAME, backend, f"healthy p99 publish→delivery, {label}", percentile(o.latencies, 99), "ms",
                        None if is_base else TARGET_P99, "<=", note=note))
        if is_base:
            rows.append(Row(NAME, backend, "healthy deliveries/s, alone", o.rate, "deliveries/s"))
            continue
        rows.append(Row(NAME, backend, f"healthy deliveries/s, {label}, vs alone", 100 * o.rate / base.rate, "%",
                        TARGET_SHARE, note=f"{o.rate:.0f} against {base.rate:.0f} deliveries/s"))
        st = o.state
        rows.append(Row(
            NAME, backend, f"stuck jobs held by the worker, {label}", st["delivering"], "jobs",
            note=f"{st['pending']:,} pending in the database, {st['finished']:,} finished, of {backlog:,};"
                 f" {st['attempts']:,} attempts reached the stuck receiver;"
                 f" {st['consecutive_failures']:,} failures in a row recorded",
        ))
    return rows
