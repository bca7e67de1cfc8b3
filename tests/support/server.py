"""A real Herald process (herald serve / api / worker) for end-to-end tests, and a real HTTP receiver."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web

HERALD = [sys.executable, "-m", "herald"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def herald_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.update(
        HERALD_DATABASE_URL=database_url,
        HERALD_ALLOW_PRIVATE_NETWORKS="true",
        HERALD_RETRY_SCHEDULE="0.3,0.3,0.3",
        HERALD_DELIVERY_TIMEOUT="5",
        HERALD_WORKER_POLL_INTERVAL="0.2",
        HERALD_SECRET_KEY="e2e-test-secret-key-0123456789abcdef",
        HERALD_LOG_LEVEL="warning",
        HERALD_BREAKER_FAILURES="1000",  # tests fail receivers on purpose; the breaker has tests of its own
    )
    env.update(extra)
    return env


@dataclass
class HeraldProcess:
    proc: subprocess.Popen[str]
    port: int | None
    log_path: Path
    credentials: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def start(
    args: list[str], env: dict[str, str], log_path: Path, port: int | None = None, timeout: float = 30
) -> HeraldProcess:
    """Start `herald <args>` and wait (poll with a deadline) until /readyz answers, when it serves HTTP."""
    handle = log_path.open("w")
    proc = subprocess.Popen(HERALD + args, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True)
    hp = HeraldProcess(proc, port, log_path)
    deadline = time.monotonic() + timeout
    if port is not None:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"herald exited early:\n{hp.output()}")
            try:
                if httpx.get(f"{hp.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                hp.stop(signal.SIGKILL)
                raise RuntimeError(f"herald did not become ready:\n{hp.output()}")
            time.sleep(0.05)
    else:
        while "started" not in hp.output():
            if proc.poll() is not None or time.monotonic() > deadline:
                hp.stop(signal.SIGKILL)
                raise RuntimeError(f"herald worker did not start:\n{hp.output()}")
            time.sleep(0.05)
    text = hp.output()
    for key in ("client_id", "client_secret"):
        m = re.search(rf"{key}:\s+(\S+)", text)
        if m:
            hp.credentials[key] = m.group(1)
    return hp


def serve(database_url: str, tmp_path: Path, **env: str) -> HeraldProcess:
    port = free_port()
    return start(["serve", "--port", str(port)], herald_env(database_url, **env), tmp_path / f"serve-{port}.log", port)


def token(base_url: str, client_id: str, client_secret: str) -> str:
    r = httpx.post(
        f"{base_url}/oauth/access_token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": client_secret},
    )
    r.raise_for_status()
    return r.json()["access_token"]


def create_store(database_url: str, name: str = "E2E store") -> dict[str, str]:
    """`herald stores create --json`, as an operator would run it."""
    out = subprocess.run(
        HERALD + ["stores", "create", "--name", name, "--json"],
        env=herald_env(database_url), capture_output=True, text=True, check=True,
    )
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Receiver:
    """A real HTTP server on loopback that records every request and answers with a programmable handler."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.requests: list[dict[str, Any]] = []
        self._arrived = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        entry = {"path": request.path, "headers": dict(request.headers), "body": body, "at": time.monotonic()}
        async with self._arrived:
            self.requests.append(entry)
            self._arrived.notify_all()
        if self.handler is not None:
            return await self.handler(request)
        return web.Response(text="ok")

    async def wait_for(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        async with self._arrived:
            await asyncio.wait_for(self._arrived.wait_for(lambda: len(self.requests) >= count), timeout)
        return self.requests


async def poll(
    fn: Callable[[], Awaitable[Any]], until: Callable[[Any], bool], timeout: float = 20, every: float = 0.05
) -> Any:
    """Call `fn` until `until(result)` holds or the deadline passes (then fail with the last result)."""
    deadline = time.monotonic() + timeout
    while True:
        result = await fn()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last result: {result!r}")
        await asyncio.sleep(every)
