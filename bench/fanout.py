"""10. Fan-out: one event to 1,000 integrations, against 1,000 events to one integration, with `herald serve`.

Fan-out: one store with INTEGRATIONS enabled webhook integrations, all observing `order.paid`, each with its
own path on one receiver (its own process, answering 200). One event is published (one request, accepted in
one transaction: the answer must list INTEGRATIONS jobs), and the clock runs from the publish until that
many more logs are recorded (Herald's running totals in `log_counts`, polled every 10 ms). Repeated ROUNDS
times, one event after the other.

One integration: the same, in its own database and `herald serve`, with one integration and batches of
INTEGRATIONS events (one request, one transaction) instead of one event: the same number of jobs per
publish, all of one integration. Deliveries/s over each side = deliveries / the sum of the rounds' times.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.harness import Api, Context, Process, Session, order, run_async
from bench.report import Row

NAME = "fanout"
BACKENDS = ("sqlite", "postgresql")
INTEGRATIONS = 1000
ROUNDS = {"quick": 3, "full": 10}
TARGET_RATIO = 0.9  # fan-out deliveries/s against one integration's


async def logs_reach(session: Session, n: int, timeout: float) -> float:
    """Poll the recorded-logs total every 10 ms until it reaches n; the monotonic time then."""
    deadline = time.monotonic() + timeout
    while (await asyncio.to_thread(session.db.logs_recorded)) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{n:,} logs not recorded within {timeout:.0f} s")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def make_integrations(herald: Process, receiver: Process, credentials: dict[str, str]) -> float:
    """INTEGRATIONS webhook integrations observing `order.paid`, each with its own path; answers the seconds."""
    async with Api(herald.url, credentials, connections=16) as api:
        t0 = time.monotonic()
        made = asyncio.Semaphore(16)

        async def make(i: int) -> None:
            async with made:
                await api.create_integration(f"{receiver.url}/hook/{i}", name=f"Fan-out {i}")

        await asyncio.gather(*(make(i) for i in range(INTEGRATIONS)))
        return time.monotonic() - t0


async def fan_out(s: Session, herald: Process, credentials: dict[str, str],
                  rounds: int) -> tuple[list[float], list[float]]:
    """Answers each round's seconds from publish to the last log, and each publish request's seconds."""
    async with Api(herald.url, credentials) as api:
        took, requests = [], []
        for k in range(rounds):
            start = time.monotonic()
            doc = {"data": {"type": "event", "triggered_by": "order.paid", "payload": order(k)}}
            answer = await api.post("/v2/events", doc, 202)
            requests.append(time.monotonic() - start)
            jobs = len(answer["data"]["relationships"]["jobs"]["data"])
            if jobs != INTEGRATIONS:
                raise RuntimeError(f"the publish answer lists {jobs} jobs, not {INTEGRATIONS}")
            took.append(await logs_reach(s, (k + 1) * INTEGRATIONS, timeout=120) - start)
    return took, requests


async def one_integration(s: Session, herald: Process, receiver: Process, credentials: dict[str, str],
                          rounds: int) -> tuple[list[float], list[float]]:
    async with Api(herald.url, credentials) as api:
        await api.create_integration(f"{receiver.url}/hook")
        took, requests = [], []
        for k in range(rounds):
            start = time.monotonic()
            answer = await api.publish([order(k * INTEGRATIONS + i) for i in range(INTEGRATIONS)])
            requests.append(time.monotonic() - start)
            if len(answer["data"]) != INTEGRATIONS:
                raise RuntimeError(f"the publish answer lists {len(answer['data'])} events, not {INTEGRATIONS}")
            took.append(await logs_reach(s, (k + 1) * INTEGRATIONS, timeout=120) - start)
    return took, requests


def _spread(took: list[float]) -> str:
    rates = sorted(INTEGRATIONS / t for t in took)
    return f"rounds {rates[0]:,.0f}–{rates[-1]:,.0f}/s (median {statistics.median(rates):,.0f})"


def run(ctx: Context, backend: str) -> list[Row]:
    rounds = ROUNDS[ctx.mode]
    with ctx.session(backend) as s:
        receiver = s.receiver()
        credentials = s.store()
        herald = s.herald("serve")
        setup = run_async(make_integrations(herald, receiver, credentials))
        cpu = herald.cpu_seconds()
        with ctx.profiled(f"{NAME}-many", backend, herald):
            fan, fan_requests = run_async(fan_out(s, herald, credentials, rounds))
        fan_cpu = herald.cpu_seconds() - cpu
    with ctx.session(backend) as s:
        receiver = s.receiver()
        credentials = s.store()
        herald = s.herald("serve")
        cpu = herald.cpu_seconds()
        with ctx.profiled(f"{NAME}-one", backend, herald):
            single, single_requests = run_async(one_integration(s, herald, receiver, credentials, rounds))
        single_cpu = herald.cpu_seconds() - cpu
    n = rounds * INTEGRATIONS
    fan_rate, single_rate = n / sum(fan), n / sum(single)
    ctx.detail(NAME, backend, {"fan_out_seconds": fan, "one_integration_seconds": single,
                               "fan_out_publish_seconds": fan_requests, "one_publish_seconds": single_requests,
                               "fan_out_cpu_seconds": fan_cpu, "one_integration_cpu_seconds": single_cpu})
    return [
        Row(NAME, backend, f"deliveries/s, 1 event → {INTEGRATIONS:,} integrations", fan_rate, "deliveries/s",
            note=f"{rounds} events, {n:,} deliveries, herald serve; {_spread(fan)}; publish request p50"
                 f" {1000 * statistics.median(fan_requests):.0f} ms; herald CPU {1e6 * fan_cpu / n:.0f} µs per"
                 f" delivery; {INTEGRATIONS:,} integrations made in {setup:.0f} s"),
        Row(NAME, backend, f"deliveries/s, {INTEGRATIONS:,} events → 1 integration", single_rate, "deliveries/s",
            note=f"{rounds} batches of {INTEGRATIONS:,}, {n:,} deliveries; {_spread(single)}; publish request p50"
                 f" {1000 * statistics.median(single_requests):.0f} ms; herald CPU {1e6 * single_cpu / n:.0f} µs per"
                 " delivery"),
        Row(NAME, backend, "fan-out vs one integration", fan_rate / single_rate, "x", TARGET_RATIO),
    ]
