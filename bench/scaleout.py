"""6. Scale-out on PostgreSQL: `herald api` with one `herald worker`, then with two; deliveries per second.

Same method as the throughput scenario (a backlog published in batches of 1000, timed until every log is
recorded), with the roles in separate processes. The ceiling is measured after the one-worker run.
"""

from __future__ import annotations

import os

from bench.ceiling import ceiling
from bench.harness import Context, run_async
from bench.report import Row
from bench.throughput import EVENTS, deliver_backlog

NAME = "scaleout"
BACKENDS = ("postgresql",)
WORKERS = (1, 2)


def run(ctx: Context, backend: str) -> list[Row]:
    n = EVENTS[ctx.mode]
    rates: dict[int, float] = {}
    top = None
    for workers in WORKERS:
        with ctx.session(backend) as s:
            receiver = s.receiver()
            credentials = s.store()
            api = s.herald("api")
            started = [s.herald("worker") for _ in range(workers)]
            rates[workers], _ = run_async(deliver_backlog(s, api, receiver, credentials, n))
            if top is None:
                for proc in (api, *started):
                    proc.stop()
                top = run_async(ceiling(receiver.url, n))
    rows = [
        Row(NAME, backend, f"deliveries/s, api + {w} worker{'s' if w > 1 else ''}", rate, "deliveries/s", ceiling=top,
            note=f"{n:,} events")
        for w, rate in rates.items()
    ]
    rows.append(Row(NAME, backend, f"speed-up, {WORKERS[-1]} workers vs 1", rates[WORKERS[-1]] / rates[1], "x",
                    note=f"{os.cpu_count()} CPUs shared with the API, PostgreSQL and the receiver"))
    return rows
