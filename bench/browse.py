"""4. Log browsing: page latency over HTTP (`herald api`) on a logs table filled directly in bulk.

The rows belong to one store, spread over a few integrations, one in ten failed, one millisecond apart,
with UUIDv7 ids as Herald makes them. PostgreSQL gets COPY, then ANALYZE (what autovacuum would do);
SQLite gets executemany in large transactions and no ANALYZE (Herald runs none).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg

from bench.harness import Api, Context, Database, Process, percentile, run_async
from bench.report import Row
from herald.api.jsonapi import encode_cursor

NAME = "logs"
BACKENDS = ("sqlite", "postgresql")
ROWS = {"quick": {"sqlite": (100_000,), "postgresql": (100_000,)},
        "full": {"sqlite": (1_000_000,), "postgresql": (1_000_000, 10_000_000)}}
INTEGRATIONS = 4
REQUESTS = 200  # so that p99 is not simply the slowest request
DEEP_OFFSET = 100_000
TARGET_P99 = 20.0  # ms, every page but the deep offset
CHUNK = 100_000
COLUMNS = ("id", "store_id", "integration_id", "job_id", "succeeded", "attempt", "processing_time", "body",
           "status_code", "error_detail", "created_at")
FAILED = ("Internal Server Error", 500,
          "Received a status code outside of 2xx range - treating webhook as a fail")


def uuid7(ms: int, seq: int) -> str:
    """A UUIDv7 for millisecond `ms`, its random bits replaced by `seq` so that ids sort as they are made."""
    h = f"{ms:012x}7000{(0b10 << 62) | (seq & (2**62 - 1)):016x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def log_rows(store_id: str, integration_ids: list[str], n: int, start_ms: int) -> Iterator[tuple[Any, ...]]:
    for i in range(n):
        ms = start_ms + i
        failed = (i // len(integration_ids)) % 10 == 3  # one in ten, in every integration
        body, status, error = FAILED if failed else ("ok", 200, "")
        yield (uuid7(ms, 2 * i), store_id, integration_ids[i % len(integration_ids)], uuid7(ms, 2 * i + 1),
               not failed, 2 if failed else 1, 0.0123, body, status, error,
               datetime.fromtimestamp(ms / 1000, UTC))


# The running totals Herald keeps beside its logs (table log_counts), made here for the rows loaded directly.
COUNTS = (
    "INSERT INTO log_counts (store_id, integration_id, succeeded, count) "
    "SELECT store_id, integration_id, succeeded, count(*) FROM logs GROUP BY store_id, integration_id, succeeded"
)


def fill(db: Database, store_id: str, integration_ids: list[str], n: int) -> str:
    """Insert n logs ending now; answer the id of the middle row (a cursor deep in)."""
    start_ms = int(time.time() * 1000) - n
    rows = log_rows(store_id, integration_ids, n, start_ms)
    if db.backend == "sqlite":
        conn = sqlite3.connect(db.path, isolation_level=None)
        insert = f"INSERT INTO logs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
        done = 0
        while done < n:
            chunk = [
                (*r[:10], r[10].strftime("%Y-%m-%d %H:%M:%S.%f")) for _, r in zip(range(CHUNK), rows, strict=False)
            ]
            conn.execute("BEGIN")
            conn.executemany(insert, chunk)
            conn.execute("COMMIT")
            done += len(chunk)
        conn.execute(COUNTS)
        conn.close()
    else:
        with psycopg.connect(db.url) as conn:
            with conn.cursor().copy(f"COPY logs ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.execute(COUNTS)
            conn.execute("ANALYZE logs")
    return uuid7(start_ms + n // 2, 2 * (n // 2))


async def pages(
    herald: Process, credentials: dict[str, str], n: int, middle: str, integration_id: str
) -> dict[str, list[float] | None]:
    """REQUESTS timed GETs per kind of page (after two untimed ones); every answer must be a full page."""
    kinds: dict[str, tuple[str, dict[str, str]] | None] = {
        "first page": ("/v2/integrations/logs", {"page[limit]": "100"}),
        f"offset {DEEP_OFFSET:,}": ("/v2/integrations/logs", {"page[limit]": "100", "page[offset]": str(DEEP_OFFSET)})
        if n >= DEEP_OFFSET + 100 else None,
        "cursor from the middle": (
            "/v2/integrations/logs", {"page[limit]": "100", "page[after]": encode_cursor(middle)}
        ),
        "filtered eq(succeeded,false)": (f"/v2/integrations/{integration_id}/logs",
                                         {"page[limit]": "100", "filter": "eq(succeeded,false)"}),
    }
    out: dict[str, list[float] | None] = {}
    async with Api(herald.url, credentials) as api:
        for kind, request in kinds.items():
            if request is None:
                out[kind] = None
                continue
            times = []
            for i in range(REQUESTS + 2):
                t = time.perf_counter()
                status, doc = await api.get(*request)
                if status != 200 or len(doc["data"]) != 100:
                    raise RuntimeError(f"{kind}: answered {status} with {len(doc.get('data', []))} rows")
                if kind == "first page" and doc["results"]["total"] != n:
                    raise RuntimeError(f"{kind}: results.total {doc['results']['total']} for {n} rows")
                if i >= 2:
                    times.append(1000 * (time.perf_counter() - t))
            out[kind] = times
    return out


async def integrations(herald: Process, credentials: dict[str, str]) -> list[str]:
    async with Api(herald.url, credentials) as api:
        return [
            await api.create_integration("http://127.0.0.1:9/hook", f"Bench {i}", enabled=False)
            for i in range(INTEGRATIONS)
        ]


def one_size(ctx: Context, backend: str, n: int) -> list[Row]:
    with ctx.session(backend) as s:
        credentials = s.store()
        herald = s.herald("api")
        ids = run_async(integrations(herald, credentials))
        t = time.monotonic()
        middle = fill(s.db, credentials["id"], ids, n)
        loaded = time.monotonic() - t
        got = run_async(pages(herald, credentials, n, middle, ids[0]))
    rows = []
    size = f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n // 1000}k"
    for kind, times in got.items():
        metric = f"{kind}, p99 ({size} rows)"
        if times is None:
            rows.append(Row(NAME, backend, metric, None, "ms", note=f"skipped: fewer than {DEEP_OFFSET + 100:,} rows"))
            continue
        target = None if kind.startswith("offset") else TARGET_P99
        rows.append(Row(NAME, backend, metric, percentile(times, 99), "ms", target, "<=",
                        note=f"p50 {percentile(times, 50):.1f} ms, max {max(times):.1f} ms"))
    rows[0].note += f"; {n:,} rows loaded in {loaded:.0f} s; herald api"
    return rows


def run(ctx: Context, backend: str) -> list[Row]:
    return [row for n in ROWS[ctx.mode][backend] for row in one_size(ctx, backend, n)]
