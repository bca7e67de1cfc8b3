"""Driver-level statements must store values exactly as SQLAlchemy does, or the API would misread them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from herald.db.driver_sql import Sql, sqlite_ts
from herald.db.tables import UTCDateTime

MOMENTS = [
    datetime(2026, 11, 26, 17, 5, 3, 123456, tzinfo=UTC),
    datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: still written with .000000
    datetime(2026, 6, 1, 2, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),  # another offset: stored as UTC
]


@pytest.mark.parametrize("moment", MOMENTS, ids=["micro", "whole-second", "offset"])
def test_sqlite_timestamps_match_sqlalchemy_storage(moment: datetime) -> None:
    engine = sa.create_engine("sqlite://")
    table = sa.Table("t", sa.MetaData(), sa.Column("at", UTCDateTime))
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), {"at": moment})
        stored = conn.exec_driver_sql("SELECT at FROM t").scalar_one()
        assert stored == sqlite_ts(moment)
        # and a value written by the driver reads back through SQLAlchemy as the same instant
        conn.exec_driver_sql("DELETE FROM t")
        conn.exec_driver_sql("INSERT INTO t (at) VALUES (?)", (sqlite_ts(moment),))
        assert conn.execute(sa.select(table.c.at)).scalar_one() == moment


def test_sqlite_timestamps_sort_as_time() -> None:
    earlier = datetime(2026, 11, 26, 9, 59, 59, 999999, tzinfo=UTC)
    later = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    assert sqlite_ts(earlier) < sqlite_ts(later)


def test_postgresql_text_is_derived_and_postgresql_only_statements_refuse_sqlite() -> None:
    both = Sql("SELECT id FROM jobs WHERE id = ? AND status = ?")
    assert both.postgresql == "SELECT id FROM jobs WHERE id = %s AND status = %s"
    assert both.for_sqlite() == "SELECT id FROM jobs WHERE id = ? AND status = ?"
    only = Sql(None, "SELECT pg_notify('herald_jobs', '')")
    with pytest.raises(TypeError, match="PostgreSQL only"):
        only.for_sqlite()
    with pytest.raises(ValueError):
        Sql(None)


def test_log_columns_are_the_logs_table() -> None:
    """`LogRow` spells the log columns once; the statements derived from it must name the table's columns."""
    from herald.db.logs import LOG_COLUMNS
    from herald.db.queue import _INSERT_LOGS, _RECORD_PG
    from herald.db.tables import logs

    assert {name for name, _ in LOG_COLUMNS} == {c.name for c in logs.columns}
    for name, kind in LOG_COLUMNS:
        assert f"u.{name}" in _RECORD_PG.postgresql
        assert kind in {"text", "bool", "int", "float8", "timestamptz"}
    assert _INSERT_LOGS.for_sqlite().count("?") == len(LOG_COLUMNS)
