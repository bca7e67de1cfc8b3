"""HERALD_METRICS_PORT: a `herald worker` has no API, so its deliveries are scraped from a listener of its own."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import (
    HERALD,
    HeraldProcess,
    Receiver,
    create_store,
    free_port,
    herald_env,
    poll,
    start,
    token,
)

pytestmark = pytest.mark.e2e


def _value(text: str, line_start: str) -> float:
    found = [line for line in text.splitlines() if line.startswith(line_start)]
    return float(found[0].rsplit(" ", 1)[1]) if found else 0.0


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[HeraldProcess, int, dict[str, str]]]:
    """`herald api` and a `herald worker` with HERALD_METRICS_PORT on one SQLite file."""
    url = f"sqlite:///{tmp_path}/metrics.db"
    subprocess.run(HERALD + ["migrate"], env=herald_env(url), check=True, capture_output=True)
    creds = create_store(url)
    api_port, metrics_port = free_port(), free_port()
    api = start(["api", "--port", str(api_port)], herald_env(url), tmp_path / "api.log", api_port)
    worker = start(["worker"], herald_env(url, HERALD_METRICS_PORT=str(metrics_port)), tmp_path / "worker.log")
    try:
        yield api, metrics_port, creds
    finally:
        worker.stop()
        api.stop()


async def test_a_workers_deliveries_are_scraped_from_its_metrics_port(
    deployment: tuple[HeraldProcess, int, dict[str, str]],
) -> None:
    api, metrics_port, creds = deployment
    async with Receiver() as receiver, httpx.AsyncClient(base_url=api.url) as client:
        headers = {"Authorization": f"Bearer {token(api.url, creds['client_id'], creds['client_secret'])}"}
        body = {"data": {"type": "integration", "name": "m", "enabled": True, "observes": ["order.paid"],
                         "configuration": {"url": receiver.url(), "secret_key": "metrics-secret-value"}}}
        assert (await client.post("/v2/integrations", json=body, headers=headers)).status_code == 201
        events = [{"type": "event", "triggered_by": "order.paid", "payload": {"id": f"o{i}"}} for i in range(5)]
        assert (await client.post("/v2/events", json={"data": events}, headers=headers)).status_code == 202
        await receiver.wait_for(5)

        async def scrape() -> str:
            async with httpx.AsyncClient() as plain:
                return (await plain.get(f"http://127.0.0.1:{metrics_port}/metrics")).text

        succeeded = 'herald_deliveries_total{integration_type="webhook",outcome="succeeded"}'
        # the job gauges come from the worker's own timer (every 5 s): they reach 0 once all are delivered
        text = await poll(scrape, lambda t: _value(t, succeeded) == 5 and "herald_jobs_due 0.0" in t)
        assert re.search(r"^herald_jobs\{status=\"pending\"\} 0\.0$", text, re.M)
        assert "herald_worker_inflight" in text
        assert "metrics-secret-value" not in text and creds["client_secret"] not in text
        api_text = (await client.get("/metrics")).text  # the API process counts its own requests only
        assert _value(api_text, 'herald_http_requests_total{method="POST",route="/v2/events",status="202"}') == 1
        assert _value(api_text, succeeded) == 0
