"""5. Memory: `herald worker` RSS while it works through a backlog of due jobs, at two backlog sizes.

The backlog is published through `herald api` before the worker starts, so every job is due at once;
VmRSS is read from /proc every 0.1 s until every job has its log. Flat means the bigger backlog costs
no more than a few MB more than the small one.
"""

from __future__ import annotations

import time

from bench.harness import Api, Context, Process, Session, run_async
from bench.report import Row

NAME = "memory"
BACKENDS = ("sqlite", "postgresql")
BACKLOGS = {"quick": (4_000, 20_000), "full": (20_000, 100_000)}
TARGET_MB = 200.0
TARGET_GROWTH_MB = 20.0


async def backlog(api_process: Process, receiver: Process, credentials: dict[str, str], n: int) -> None:
    async with Api(api_process.url, credentials) as api:
        await api.create_integration(f"{receiver.url}/hook")
        await api.publish_backlog(n)


def drain(s: Session, n: int) -> tuple[list[tuple[float, float]], float]:
    """Start a worker on the backlog; sample its RSS until n logs exist: ([(seconds, MiB)], deliveries/s)."""
    worker = s.herald("worker")
    started = time.monotonic()
    deadline = started + max(120.0, n / 100)
    samples: list[tuple[float, float]] = []
    next_count = 0.0
    while True:
        rss = worker.rss_mb()
        now = time.monotonic()
        if rss is None:
            raise RuntimeError(f"the worker died:\n{worker.output()}")
        samples.append((round(now - started, 2), round(rss, 1)))
        if now >= next_count:
            if s.db.count_logs() >= n:
                return samples, n / (now - started)
            next_count = now + 0.5
        if now > deadline:
            raise TimeoutError(f"{s.db.count_logs()} of {n} jobs delivered in {deadline - started:.0f} s")
        time.sleep(0.1)


def run(ctx: Context, backend: str) -> list[Row]:
    peaks: dict[int, float] = {}
    series: dict[str, list[tuple[float, float]]] = {}
    rates: dict[int, float] = {}
    for n in BACKLOGS[ctx.mode]:
        with ctx.session(backend) as s:
            receiver = s.receiver()
            credentials = s.store()
            api = s.herald("api")
            run_async(backlog(api, receiver, credentials, n))
            series[str(n)], rates[n] = drain(s, n)
        peaks[n] = max(mb for _, mb in series[str(n)])
    ctx.detail(NAME, backend, series)
    small, big = BACKLOGS[ctx.mode]
    return [
        Row(NAME, backend, f"max worker RSS, {big:,} jobs", peaks[big], "MB", TARGET_MB, "<=",
            note=f"start {series[str(big)][0][1]:.0f} MB; drained at {rates[big]:,.0f}/s"),
        Row(NAME, backend, f"RSS growth {small:,} → {big:,} jobs", peaks[big] - peaks[small], "MB",
            TARGET_GROWTH_MB, "<=", note=f"max {peaks[small]:.1f} MB with {small:,} jobs"),
    ]
