"""1. Durable throughput: deliveries per second from publish to recorded log, with `herald serve`.

A backlog of N events (batches of 1000) is published to one enabled webhook integration whose receiver
answers 200 from its own process; the clock runs from the first publish until N logs are in the database.
The ceiling is a bare aiohttp client replaying Herald's request N times to the same receiver.
"""

from __future__ import annotations

import time

from bench.ceiling import ceiling
from bench.harness import Api, Context, Process, Session, run_async, wait_for_logs
from bench.report import Row

NAME = "throughput"
BACKENDS = ("sqlite", "postgresql")
EVENTS = {"quick": 10_000, "full": 100_000}
TARGET = {"postgresql": 5000.0, "sqlite": 3000.0}
SHARE_OF_CEILING = 40.0


async def deliver_backlog(
    session: Session, api_process: Process, receiver: Process, credentials: dict[str, str], n: int
) -> tuple[float, float]:
    """Publish n events and wait until n logs are recorded: (deliveries per second, seconds spent publishing)."""
    async with Api(api_process.url, credentials) as api:
        await api.create_integration(f"{receiver.url}/hook")
        started = time.monotonic()
        await api.publish_backlog(n)
        published = time.monotonic()
        done = await wait_for_logs(session.db, n, timeout=max(120.0, n / 100))
    return n / (done - started), published - started


def run(ctx: Context, backend: str) -> list[Row]:
    n = EVENTS[ctx.mode]
    with ctx.session(backend) as s:
        receiver = s.receiver()
        credentials = s.store()
        herald = s.herald("serve")
        cpu, wall = herald.cpu_seconds(), time.monotonic()
        with ctx.profiled(NAME, backend, herald):
            rate, publishing = run_async(deliver_backlog(s, herald, receiver, credentials, n))
        busy = 100 * (herald.cpu_seconds() - cpu) / (time.monotonic() - wall)
        herald.stop()  # the ceiling gets the machine to itself, as Herald did
        top = run_async(ceiling(receiver.url, n))
    share = 100 * rate / top
    return [
        Row(NAME, backend, "deliveries/s", rate, "deliveries/s", TARGET[backend], ceiling=top,
            note=f"{n:,} events, herald serve (CPU {busy:.0f} % of one core); publishing took {publishing:.1f} s"),
        Row(NAME, backend, "share of ceiling", share, "%", SHARE_OF_CEILING),
    ]
