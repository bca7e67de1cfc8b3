"""Cost of one delivery in an in-process worker: CPU time, or machine instructions under callgrind.

    .venv/bin/python -m bench.worker_cost N sqlite|postgresql
    valgrind --tool=callgrind --instr-atstart=no .venv/bin/python -m bench.worker_cost N sqlite --callgrind

N events are published (worker off), then one `Worker` delivers them through the real webhook transport to
`bench/receiver.py` in its own process, and the worker process's CPU time is measured until all N are recorded.
With `--callgrind`, instruction counting is switched on for exactly that phase (`callgrind_control`), so
the figure is repeatable on a shared, noisy machine where wall-clock rates swing by 15 % between runs; compare
two commits by running it on each. Older commits' Worker took a notifier argument; both forms are handled.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _callgrind(switch: str) -> None:
    """Instruction counting on or off, right now (blocking on purpose: nothing else may run in between)."""
    subprocess.run(["callgrind_control", "-i", switch, str(os.getpid())], check=True, capture_output=True)


async def run(n: int, backend: str, port: int, callgrind: bool) -> str:
    from herald.app import create_app, settle_heap
    from tests.support.helpers import make_settings, new_store

    drop = None
    if backend == "sqlite":
        url = f"sqlite:///{tempfile.mkdtemp()}/worker-cost.db"
    else:
        import psycopg

        name = f"herald_bench_{secrets.token_hex(4)}"
        admin = os.environ.get("HERALD_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1/postgres")
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        url, drop = f"{admin.rsplit('/', 1)[0]}/{name}", (admin, name)
    try:
        from herald.db.migrate import upgrade
    except ImportError:  # commits before the db/ package
        from herald.store.migrate import upgrade  # type: ignore[import-not-found,no-redef]
    upgrade(url)
    settings = make_settings(url, retry_schedule="5", log_level="warning")
    app: Any = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5))
            async with httpx.AsyncClient(transport=transport, base_url="http://herald") as client:
                store = await new_store(app, client)
                body = {"data": {"type": "integration", "name": "bench", "enabled": True, "observes": ["order.paid"],
                                 "configuration": {"url": f"http://127.0.0.1:{port}/hook"}}}
                assert (await client.post("/v2/integrations", headers=store.headers, json=body)).status_code == 201
                for i in range(0, n, 1000):
                    events = [{"type": "event", "triggered_by": "order.paid", "payload": {"id": f"o{j}", "amount": 100}}
                              for j in range(i, min(n, i + 1000))]
                    answer = await client.post("/v2/events", headers=store.headers, json={"data": events})
                    assert answer.status_code == 202
            from herald.delivery.worker import Worker

            if "notifier" in inspect.signature(Worker).parameters:
                worker = Worker(settings, app.state.db, app.state.notifier)  # type: ignore[call-arg]
            else:
                worker = Worker(settings, app.state.db)
            settle_heap()
            if callgrind:
                _callgrind("on")
            cpu, wall = time.process_time(), time.perf_counter()
            await worker.start()
            # older Workers have no hook to wait on; no database polling either: it would be counted too
            while worker.delivered < n:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            if callgrind:
                _callgrind("off")
            await worker.stop()
    finally:
        if drop is not None:
            import psycopg

            with psycopg.connect(drop[0], autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{drop[1]}" WITH (FORCE)')
    rate = f"{n / wall:,.0f}/s"
    return f"{backend}: {n} deliveries in {wall:.2f} s ({rate}), worker CPU {cpu / n * 1e6:.0f} us per delivery"


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n, backend = (int(args[0]) if args else 20000), (args[1] if len(args) > 1 else "sqlite")
    sys.path.insert(0, str(ROOT))
    import uvloop

    command = [sys.executable, str(ROOT / "bench" / "receiver.py")]
    receiver = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline().split()[1])
        print(uvloop.run(run(n, backend, port, "--callgrind" in sys.argv)))
    finally:
        receiver.terminate()


if __name__ == "__main__":
    main()
