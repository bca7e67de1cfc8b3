"""The ceiling: a bare aiohttp client sending the same POSTs to the same receiver, with Herald's concurrency and
no storage."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from herald.settings import Settings


def herald_concurrency() -> tuple[int, int]:
    """Herald's defaults: deliveries in flight per worker, and per receiver host for one integration (the
    smaller of its host's and its own limit: the ceiling's receiver has one integration)."""
    fields = Settings.model_fields
    per_host = min(int(fields["per_host_connections"].default), int(fields["per_integration_inflight"].default))
    return int(fields["worker_concurrency"].default), per_host


async def blast(url: str, body: bytes, headers: dict[str, str], n: int) -> float:
    """Send `n` POSTs of `body` as Herald's worker would (same limits); answer requests per second."""
    in_flight, per_host = herald_concurrency()
    connector = aiohttp.TCPConnector(limit=in_flight, limit_per_host=per_host)
    remaining = n
    failures = 0

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
                failures += r.status != 200

    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.monotonic()
        await asyncio.gather(*(sender(session) for _ in range(min(in_flight, n))))
        elapsed = time.monotonic() - started
    if failures:
        raise RuntimeError(f"the receiver refused {failures} of {n} ceiling requests")
    return n / elapsed


async def ceiling(receiver_url: str, n: int, tries: int = 3) -> float:
    """Replay the request Herald first delivered to this receiver (body and headers) n times (at most 20,000),
    `tries` times; the best rate is the ceiling (the machine is shared, and a ceiling is the best one can do)."""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{receiver_url}/_bench/stats") as r:
            sample = (await r.json())["sample"]
    if sample is None:
        raise RuntimeError("the receiver has seen no request to replay")
    body, headers = sample["body"].encode(), sample["headers"]
    return max([await blast(f"{receiver_url}/hook", body, headers, min(n, 20_000)) for _ in range(tries)])
