"""Migrations on SQLite and PostgreSQL: 0003 fills the per-minute totals from the last day of existing logs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from herald.db.database import sync_url
from herald.db.migrate import head, upgrade
from herald.domain.ids import new_id, utcnow
from tests.support.databases import dedicated_database


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    with dedicated_database(request, request.param, "migrate") as url:
        yield url


def test_0003_counts_the_last_day_of_logs_into_minutes(fresh_url: str) -> None:
    upgrade(fresh_url, "0002")
    engine = sa.create_engine(sync_url(fresh_url), poolclass=sa.pool.NullPool)
    now = utcnow()
    recent = (now - timedelta(hours=2)).replace(second=10, microsecond=0)  # its minute holds both
    rows = [(recent, True), (recent + timedelta(seconds=5), True), (recent, False), (now - timedelta(days=3), True)]
    store, integration = new_id(), new_id()
    with engine.begin() as conn:
        for at, ok in rows:
            stamp = at.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds") if conn.dialect.name == \
                "sqlite" else at
            conn.execute(sa.text(
                "INSERT INTO logs (id, store_id, integration_id, job_id, succeeded, attempt, processing_time, body,"
                " status_code, error_detail, created_at) VALUES (:id, :s, :i, :j, :ok, 1, 0.1, '', 200, '', :at)"),
                {"id": new_id(), "s": store, "i": integration, "j": new_id(), "ok": ok, "at": stamp})
    upgrade(fresh_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == head()
        found = conn.execute(sa.text(
            "SELECT minute, succeeded, count FROM log_minutes WHERE store_id = :s ORDER BY succeeded"), {"s": store}
        ).all()
    engine.dispose()
    minute = recent.replace(second=0, microsecond=0)
    # the three-day-old log is outside the chart's day: not counted
    assert [(bool(ok), n) for _, ok, n in found] == [(False, 1), (True, 2)]
    for at, _, _ in found:
        text = str(at.astimezone(UTC) if isinstance(at, datetime) else at)
        assert text.startswith(minute.strftime("%Y-%m-%d %H:%M:00")), text
