"""2. Latency: publish to receiver hit, at a steady 200 events/s, with `herald serve`.

An open-loop publisher sends one event every 5 ms (each its own request, whatever the previous one is
doing) and puts time.time() in the payload; the receiver, in its own process, notes time.time() on arrival.
One machine, one clock. One second of warm-up is left out.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp

from bench.harness import Api, Context, Process, paced, percentile, run_async, wait_until
from bench.report import Row

NAME = "latency"
BACKENDS = ("sqlite", "postgresql")
RATE = 200  # events per second
SECONDS = {"quick": 10, "full": 30}
WARMUP = 1.0
TARGETS = {"p50": 10.0, "p99": 50.0}


async def steady(
    herald: Process, receiver: Process, credentials: dict[str, str], seconds: float
) -> dict[str, list[float]]:
    """Publish at RATE for WARMUP + seconds; answer latencies in ms: send→hit, send→202 and 202→hit."""
    async with Api(herald.url, credentials) as api:
        await api.create_integration(f"{receiver.url}/hook")
        sent: dict[str, float] = {}
        accepted: dict[str, float] = {}

        async def one(i: int) -> None:
            at = time.time()
            event_id = await api.publish_one({"id": f"order-{i}", "sent_at": at})
            accepted[event_id], sent[event_id] = time.time(), at

        total = int(RATE * (WARMUP + seconds))
        measure_from = time.time() + WARMUP
        await paced(total, RATE, one)

    async with aiohttp.ClientSession() as session:
        async def fetch(path: str) -> Any:
            async with session.get(f"{receiver.url}/_bench/{path}") as r:
                return await r.json()

        await wait_until(lambda: fetch("stats"), lambda s: s["count"] >= total, timeout=60)
        arrivals = await fetch("arrivals")
    out: dict[str, list[float]] = {"hit": [], "request": [], "after_202": []}
    for at, event_id, sent_at in arrivals:
        if event_id in accepted and sent_at >= measure_from:
            out["hit"].append(1000 * (at - sent_at))
            out["request"].append(1000 * (accepted[event_id] - sent[event_id]))
            out["after_202"].append(1000 * (at - accepted[event_id]))
    return out


def run(ctx: Context, backend: str) -> list[Row]:
    seconds = SECONDS[ctx.mode]
    with ctx.session(backend) as s:
        receiver = s.receiver(record=True)
        credentials = s.store()
        herald = s.herald("serve")
        got = run_async(steady(herald, receiver, credentials, seconds))
    hit = got["hit"]
    pct = {f"p{p}": percentile(hit, p) for p in (50, 90, 95, 99)} | {"max": max(hit)}
    ctx.detail(NAME, backend, pct)
    note = f"{len(hit):,} events at {RATE}/s over {seconds} s, herald serve"
    request, after = got["request"], got["after_202"]
    return [
        Row(NAME, backend, "p50 publish→hit", pct["p50"], "ms", TARGETS["p50"], "<=", note=note),
        Row(NAME, backend, "p95 publish→hit", pct["p95"], "ms"),
        Row(NAME, backend, "p99 publish→hit", pct["p99"], "ms", TARGETS["p99"], "<=", note=f"max {pct['max']:.1f} ms"),
        Row(NAME, backend, "p50 publish request (send→202)", percentile(request, 50), "ms",
            note=f"p99 {percentile(request, 99):.1f} ms"),
        Row(NAME, backend, "p50 202→hit", percentile(after, 50), "ms",
            note=f"p99 {percentile(after, 99):.1f} ms (negative: delivered before the 202 was read)"),
    ]
