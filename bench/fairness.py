"""9. Fairness (a noisy neighbour): a healthy integration's latency and throughput beside a stuck one.

Two receivers, each in its own process: the healthy one answers 200 and records arrivals (as in `latency`);
the stuck one answers nothing for HANG seconds, longer than `HERALD_DELIVERY_TIMEOUT=2`, so every attempt
against it times out. `herald serve`, one store, two webhook integrations: the stuck one observes
`order.created`, the healthy one `order.paid`. BACKLOG `order.created` events are published first (batches
of 1000), and at once an open-loop publisher sends one `order.paid` event every 5 ms (200 events/s, one per
request) with `time.time()` in the payload for WARMUP + SECONDS; the healthy receiver notes `time.time()`
on arrival. The first second is warm-up and left out.

Three runs, each with its own database and `herald serve`, with the same settings and the same healthy load:

- alone: no stuck integration, no backlog (the baseline);
- neighbour: as above, with Herald's defaults (the stuck integration's circuit breaker opens after
  HERALD_BREAKER_FAILURES=10 failed attempts in a row);
- neighbour, breaker off: HERALD_BREAKER_FAILURES=1000000, so that only the claim's share per integration
  (HERALD_CLAIM_PER_INTEGRATION=100 held by all workers) keeps the stuck backlog out of the way.

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

from bench.harness import Api, Context, Process, Session, _wait, order, percentile, run_async
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
RUNS = (("alone", {}), ("neighbour", {}), ("neighbour, breaker off", {"HERALD_BREAKER_FAILURES": "1000000"}))


def hanging_receiver(session: Session, prefix: str) -> Process:
    """bench.receiver in its own process, answering requests under `prefix` only after HANG seconds."""
    argv = [sys.executable, "-m", "bench.receiver", "--hang-path", prefix, "--hang-seconds", str(HANG)]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    proc = session._spawn("receiver-hang", argv, env)
    _wait(lambda: "listening" in proc.output(), proc, 15, "listen")
    proc.port = int(proc.output().split("listening", 1)[1].split()[0])
    return proc


async def webhook(api: Api, url: str, name: str, key: str) -> str:
    doc = {"data": {"type": "integration", "name": name, "enabled": True, "observes": [key],
                    "configuration": {"url": url}}}
    return str((await api.post("/v2/integrations", doc, 201))["data"]["id"])


@dataclass
class Outcome:
    latencies: list[float]  # ms, measured healthy events that arrived
    measured: int  # measured healthy events published
    rate: float  # healthy deliveries per second
    stuck: dict[str, Any]  # the stuck integration's jobs and attempts when publishing stopped (neighbour runs)


async def _fetch(session: aiohttp.ClientSession, receiver: Process, path: str) -> Any:
    async with session.get(f"{receiver.url}/_bench/{path}") as r:
        return await r.json()


def _stuck_state(s: Session, iid: str) -> dict[str, Any]:
    def count(where: str) -> int:
        return int(s.db.scalar(f"SELECT count(*) FROM jobs WHERE integration_id = '{iid}' AND {where}"))

    return {
        "delivering": count("status = 'delivering'"), "pending": count("status = 'pending'"),
        "finished": count("status NOT IN ('pending', 'delivering')"),
        "consecutive_failures": int(s.db.scalar(
            f"SELECT consecutive_failures FROM integrations WHERE id = '{iid}'")),
    }


async def one_run(s: Session, herald: Process, healthy: Process, stuck: Process | None,
                  credentials: dict[str, str], backlog: int, seconds: float) -> Outcome:
    async with Api(herald.url, credentials) as api:
        await webhook(api, f"{healthy.url}/hook", "Healthy", "order.paid")
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
        start = time.monotonic()
        tasks = []
        for i in range(total):
            delay = start + i / RATE - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        state = await asyncio.to_thread(_stuck_state, s, stuck_id) if stuck_id else {}

    async with aiohttp.ClientSession() as client:
        for _ in range(600):  # up to 60 s for the stragglers
            if (await _fetch(client, healthy, "stats"))["count"] >= total:
                break
            await asyncio.sleep(0.1)
        arrivals = await _fetch(client, healthy, "arrivals")
        if stuck is not None:
            state["attempts"] = (await _fetch(client, stuck, "stats"))["hung"]
    latencies, last = [], measure_from
    for at, event_id, sent_at in arrivals:
        if event_id in sent and sent_at is not None and sent_at >= measure_from:
            latencies.append(1000 * (at - sent_at))
            last = max(last, at)
    measured = sum(1 for at in sent.values() if at >= measure_from)
    return Outcome(latencies, measured, len(latencies) / (last - measure_from), state)


def run(ctx: Context, backend: str) -> list[Row]:
    seconds, backlog = SECONDS[ctx.mode], BACKLOG[ctx.mode]
    got: dict[str, Outcome] = {}
    for label, extra in RUNS:
        with ctx.session(backend) as s:
            healthy = s.receiver(record=True)
            stuck = hanging_receiver(s, "/slow") if label != "alone" else None
            credentials = s.store()
            herald = s.herald("serve", HERALD_DELIVERY_TIMEOUT=str(DELIVERY_TIMEOUT), **extra)
            with ctx.profiled(f"{NAME}-{label.replace(' ', '').replace(',', '-')}", backend, herald):
                got[label] = run_async(one_run(s, herald, healthy, stuck, credentials, backlog, seconds))
            if got[label].latencies:
                print(f"   {label}: p99 {percentile(got[label].latencies, 99):.1f} ms,"
                      f" {got[label].rate:.0f} deliveries/s {got[label].stuck}", flush=True)
    ctx.detail(NAME, backend, {label: {"p50": percentile(o.latencies, 50) if o.latencies else None,
                                       "p99": percentile(o.latencies, 99) if o.latencies else None,
                                       "rate": o.rate, "delivered": len(o.latencies), "measured": o.measured,
                                       "stuck": o.stuck} for label, o in got.items()})
    base = got["alone"]
    rows = []
    for label, o in got.items():
        missing = o.measured - len(o.latencies)
        if not o.latencies:
            rows.append(Row(NAME, backend, f"healthy p99 publish→delivery, {label}", None,
                            note=f"error: none of {o.measured:,} healthy events arrived"))
            continue
        is_base = label == "alone"
        note = f"{len(o.latencies):,} healthy events at {RATE}/s over {seconds} s, herald serve"
        if not is_base:
            note += f"; {backlog:,} stuck jobs published first"
        if missing:
            note += f"; {missing:,} not delivered within 60 s"
        rows += [
            Row(NAME, backend, f"healthy p50 publish→delivery, {label}", percentile(o.latencies, 50), "ms", note=note),
            Row(NAME, backend, f"healthy p99 publish→delivery, {label}", percentile(o.latencies, 99), "ms",
                None if is_base else TARGET_P99, "<=", note=f"max {max(o.latencies):.1f} ms"),
            Row(NAME, backend, f"healthy deliveries/s, {label}", o.rate, "deliveries/s"),
        ]
        if is_base:
            continue
        rows.append(Row(NAME, backend, f"healthy deliveries/s, {label} vs alone", 100 * o.rate / base.rate, "%",
                        TARGET_SHARE))
        st = o.stuck
        rows.append(Row(
            NAME, backend, f"stuck jobs held by the worker, {label}", st["delivering"], "jobs",
            note=f"{st['pending']:,} pending in the database, {st['finished']:,} finished, of {backlog:,};"
                 f" {st['attempts']:,} attempts reached the stuck receiver;"
                 f" {st['consecutive_failures']:,} failures in a row recorded",
        ))
    return rows
