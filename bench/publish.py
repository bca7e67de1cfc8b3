"""3. Publish API: events accepted per second, single requests and batches of 100.

Measured twice: against `herald api` (the publish API alone, as it runs when API and workers are separate
processes; this is what the targets judge), then against `herald serve`, whose worker delivers what is
published to the receiver meanwhile, so the API shares its process (one core) with real deliveries.
The load generator is one uvloop+aiohttp process on the same machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bench.harness import Api, Context, Process, order, percentile, run_async
from bench.report import Row

NAME = "publish"
BACKENDS = ("sqlite", "postgresql")
SECONDS = {"quick": 5, "full": 20}
SINGLE_CONNECTIONS = 32
BATCH = 100
BATCH_CONNECTIONS = 8
TARGET_SINGLE = 2000.0  # requests per second
TARGET_BATCHED = 20000.0  # events per second


async def hammer(
    connections: int, seconds: float, request: Callable[[int], Awaitable[object]]
) -> tuple[float, list[float]]:
    """`connections` clients, each sending one request after the other for `seconds`: (requests/s, latencies ms)."""
    latencies: list[float] = []
    deadline = time.monotonic() + seconds
    sequence = iter(range(10**9))

    async def client() -> None:
        while time.monotonic() < deadline:
            t = time.monotonic()
            await request(next(sequence))
            latencies.append(1000 * (time.monotonic() - t))

    started = time.monotonic()
    await asyncio.gather(*(client() for _ in range(connections)))
    return len(latencies) / (time.monotonic() - started), latencies


async def measure(
    herald: Process, receiver: Process, credentials: dict[str, str], seconds: float
) -> dict[str, tuple[float, list[float]]]:
    async with Api(herald.url, credentials, connections=SINGLE_CONNECTIONS) as api:
        await api.create_integration(f"{receiver.url}/hook")
        single = lambda i: api.publish_one(order(i))  # noqa: E731
        batch = lambda i: api.publish([order(i * BATCH + k) for k in range(BATCH)])  # noqa: E731
        await hammer(SINGLE_CONNECTIONS, 1.0, single)  # warm-up: connections, caches
        return {
            "single": await hammer(SINGLE_CONNECTIONS, seconds, single),
            "batched": await hammer(BATCH_CONNECTIONS, seconds, batch),
        }


ROLES = {"api": "herald api", "serve": "herald serve, worker on"}


def run(ctx: Context, backend: str) -> list[Row]:
    seconds = SECONDS[ctx.mode]
    rows: list[Row] = []
    for role, label in ROLES.items():
        with ctx.session(backend) as s:
            receiver = s.receiver()
            credentials = s.store()
            herald = s.herald(role)
            cpu, wall = herald.cpu_seconds(), time.monotonic()
            with ctx.profiled(f"{NAME}-{role}", backend, herald):
                got = run_async(measure(herald, receiver, credentials, seconds))
            busy = 100 * (herald.cpu_seconds() - cpu) / (time.monotonic() - wall)
        single_rate, single_ms = got["single"]
        batch_rate, batch_ms = got["batched"]
        rows += [
            Row(NAME, backend, f"single events, requests/s ({role})", single_rate, "req/s", TARGET_SINGLE,
                note=f"{label}; {SINGLE_CONNECTIONS} connections, {seconds} s (herald CPU {busy:.0f} % of one core); "
                     f"p50 {percentile(single_ms, 50):.1f} ms, p99 {percentile(single_ms, 99):.1f} ms"),
            Row(NAME, backend, f"batches of {BATCH}, events/s ({role})", batch_rate * BATCH, "events/s", TARGET_BATCHED,
                note=f"{label}; {BATCH_CONNECTIONS} connections, {seconds} s; p50 {percentile(batch_ms, 50):.1f} ms, "
                     f"p99 {percentile(batch_ms, 99):.1f} ms per batch"),
        ]
    return rows
