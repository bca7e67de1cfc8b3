"""A fast webhook receiver in its own process: answers 200, counts requests, optionally records arrivals.

`python -m bench.receiver [--record] [--hang-path PREFIX [--hang-seconds S]]` listens on a free loopback port
and prints `listening PORT`. With --hang-path, a request whose path starts with PREFIX is answered only after
S seconds (a receiver that hangs: longer than Herald's delivery timeout, it never gets its answer through).
GET /_bench/stats answers the count and one sample request (to replay for the ceiling);
GET /_bench/arrivals answers, with --record, `[arrived_at, event id, payload.sent_at]` per request.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import orjson
from aiohttp import web


class Receiver:
    def __init__(self, record: bool, hang_path: str | None = None, hang_seconds: float = 60.0) -> None:
        self.record = record
        self.hang_path = hang_path
        self.hang_seconds = hang_seconds
        self.hung = 0
        self.count = 0
        self.sample: dict[str, object] | None = None
        self.arrivals: list[tuple[float, bytes]] = []

    async def hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hang_path is not None and request.path.startswith(self.hang_path):
            self.hung += 1
            await asyncio.sleep(self.hang_seconds)
            return web.Response(text="late")
        if self.record:
            self.arrivals.append((time.time(), body))
        self.count += 1
        if self.sample is None:
            headers = {str(k): v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
            self.sample = {"headers": headers, "body": body.decode()}
        return web.Response(text="ok")

    async def stats(self, _: web.Request) -> web.Response:
        return web.Response(
            body=orjson.dumps({"count": self.count, "hung": self.hung, "sample": self.sample}),
            content_type="application/json",
        )

    async def arrivals_view(self, _: web.Request) -> web.Response:
        out = []
        for at, body in self.arrivals:
            doc = orjson.loads(body)
            out.append((at, doc.get("id"), (doc.get("payload") or {}).get("sent_at")))
        return web.Response(body=orjson.dumps(out), content_type="application/json")


async def main(record: bool, hang_path: str | None = None, hang_seconds: float = 60.0) -> None:
    rx = Receiver(record, hang_path, hang_seconds)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/_bench/stats", rx.stats)
    app.router.add_get("/_bench/arrivals", rx.arrivals_view)
    app.router.add_route("*", "/{tail:.*}", rx.hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"listening {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--record", action="store_true", help="keep arrival times and bodies (latency runs)")
    parser.add_argument("--hang-path", default=None, help="answer requests under this path only after --hang-seconds")
    parser.add_argument("--hang-seconds", type=float, default=60.0, help="how long a hanging request waits (60)")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main(args.record, args.hang_path, args.hang_seconds))
    except ImportError:
        asyncio.run(main(args.record, args.hang_path, args.hang_seconds))
    except KeyboardInterrupt:
        sys.exit(0)
