"""`herald purge`: counts with --dry-run, removes without, prints a summary (or JSON), refuses a bad duration."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.support.server import HERALD, create_store, herald_env

pytestmark = pytest.mark.e2e


def _old_rows(path: Path, count: int) -> None:
    """`count` old succeeded jobs with one log each, written as the tables store them."""
    at = datetime.now(UTC) - timedelta(days=45)
    stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f")
    ms = f"{int(at.timestamp() * 1000):012x}"
    with sqlite3.connect(path) as conn:
        store_id = conn.execute("SELECT id FROM stores").fetchone()[0]
        for i in range(count):
            tail = f"{i:018x}"
            ids = [f"{ms[:8]}-{ms[8:]}-7{kind}{tail[:2]}-8{tail[2:5]}-{tail[6:]}" for kind in "abc"]
            conn.execute("INSERT INTO events (id, store_id, triggered_by, payload, created_at) VALUES (?,?,?,?,?)",
                         (ids[0], store_id, "order.paid", "{}", stamp))
            conn.execute("INSERT INTO jobs (id, store_id, integration_id, event_id, triggered_by, status, attempts,"
                         " max_attempts, run_at, created_at, updated_at) VALUES (?,?,?,?,?,'succeeded',1,3,NULL,?,?)",
                         (ids[1], store_id, "gone-integration", ids[0], "order.paid", stamp, stamp))
            conn.execute("INSERT INTO logs (id, store_id, integration_id, job_id, succeeded, attempt, processing_time,"
                         " body, status_code, error_detail, created_at) VALUES (?,?,?,?,1,1,0.1,'',200,'',?)",
                         (ids[2], store_id, "gone-integration", ids[1], stamp))


def _purge(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(HERALD + ["purge", *args], env=herald_env(url), capture_output=True, text=True)


def test_purge_dry_run_then_for_real(tmp_path: Path) -> None:
    path = tmp_path / "purge.db"
    url = f"sqlite:///{path}"
    subprocess.run(HERALD + ["migrate"], env=herald_env(url), check=True, capture_output=True)
    create_store(url)
    _old_rows(path, 7)

    dry = _purge(url, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    summary = json.loads(dry.stdout.strip().splitlines()[-1])
    assert (summary["dry_run"], summary["logs"], summary["jobs"], summary["events"]) == (True, 7, 7, 7)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM logs").fetchone()[0] == 7  # nothing removed

    keep = _purge(url, "--older-than", "60d", "--json")
    assert json.loads(keep.stdout.strip().splitlines()[-1])["logs"] == 0

    real = _purge(url, "--older-than", "30d")
    assert real.returncode == 0, real.stderr
    assert "removed 7 logs, 7 finished jobs and 7 events older than" in real.stdout
    with sqlite3.connect(path) as conn:
        left = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("logs", "jobs", "events")]
    assert left == [0, 0, 0]

    bad = _purge(url, "--older-than", "soon")
    assert bad.returncode == 2
    assert "not a duration" in bad.stderr
