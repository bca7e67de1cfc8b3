"""The schema, in SQLAlchemy Core. Ids are UUIDv7 strings: time-ordered, so `ORDER BY id` is creation order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out; timestamptz on PostgreSQL, a sortable naive UTC string on SQLite."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class JSONText(TypeDecorator[Any]):
    """JSON kept as text and (de)serialised with orjson: the same bytes on every backend."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value: str | None, dialect: sa.Dialect) -> Any:
        return None if value is None else orjson.loads(value)


ID = sa.String(36)

meta = sa.Table(
    "herald_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

stores = sa.Table(
    "stores",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("client_id", sa.String(64), nullable=False, unique=True),
    sa.Column("client_secret_hash", sa.String(128), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

integrations = sa.Table(
    "integrations",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("store_id", ID, sa.ForeignKey("stores.id"), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("integration_type", sa.String(32), nullable=False),
    sa.Column("observes", JSONText, nullable=False),
    sa.Column("configuration", JSONText, nullable=False),
    sa.Column("signing_secret", sa.String(128), nullable=False),
    sa.Column("previous_signing_secret", sa.String(128), nullable=True),
    sa.Column("previous_secret_expires_at", UTCDateTime, nullable=True),
    sa.Column("failing_since", UTCDateTime, nullable=True),
    # the circuit breaker: failed attempts in a row, and (while open) no claim before this time but one probe
    sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
    sa.Column("breaker_until", UTCDateTime, nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Column("deleted_at", UTCDateTime, nullable=True),
    sa.Index("ix_integrations_store", "store_id", "id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("store_id", ID, nullable=False),
    sa.Column("triggered_by", sa.String(128), nullable=False),
    sa.Column("payload", sa.Text, nullable=False),  # the JSON text as published
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_events_store", "store_id", "id"),
)

idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("store_id", ID, primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
)

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("store_id", ID, nullable=False),
    sa.Column("integration_id", ID, nullable=False),
    sa.Column("event_id", ID, nullable=False),
    sa.Column("triggered_by", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    # When the job is next due: the next attempt while pending, the lease expiry while delivering.
    sa.Column("run_at", UTCDateTime, nullable=True),
    sa.Column("lease_token", sa.String(36), nullable=True),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
    sa.Index(
        "ix_jobs_due",
        "run_at",
        postgresql_where=sa.text("status IN ('pending', 'delivering')"),
        sqlite_where=sa.text("status IN ('pending', 'delivering')"),
    ),
    sa.Index("ix_jobs_integration", "integration_id", "id"),
    sa.Index("ix_jobs_event", "event_id"),
    sa.Index(
        "ix_jobs_open_integration", "integration_id", "run_at",
        postgresql_where=sa.text("status IN ('pending', 'delivering')"),
        sqlite_where=sa.text("status IN ('pending', 'delivering')"),
    ),
    sa.Index(
        "ix_jobs_held", "integration_id", "run_at",
        postgresql_where=sa.text("status = 'delivering'"), sqlite_where=sa.text("status = 'delivering'"),
    ),
)

logs = sa.Table(
    "logs",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("store_id", ID, nullable=False),
    sa.Column("integration_id", ID, nullable=False),
    sa.Column("job_id", ID, nullable=False),
    sa.Column("succeeded", sa.Boolean, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("processing_time", sa.Float, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("error_detail", sa.Text, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Index("ix_logs_store", "store_id", "id"),
    sa.Index("ix_logs_integration", "integration_id", "id"),
    sa.Index("ix_logs_job", "job_id", "id"),
    sa.Index("ix_logs_store_succeeded", "store_id", "succeeded", "id"),
    sa.Index("ix_logs_integration_succeeded", "integration_id", "succeeded", "id"),
)

log_counts = sa.Table(
    "log_counts",
    metadata,
    sa.Column("store_id", ID, primary_key=True),
    sa.Column("integration_id", ID, primary_key=True),
    sa.Column("succeeded", sa.Boolean, primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# Deliveries per store, integration, minute and outcome, kept with the logs (in the same transaction): the
# dashboard's chart and its health figures read minutes, not millions of log rows.
log_minutes = sa.Table(
    "log_minutes",
    metadata,
    sa.Column("store_id", ID, primary_key=True),
    sa.Column("minute", UTCDateTime, primary_key=True),
    sa.Column("integration_id", ID, primary_key=True),
    sa.Column("succeeded", sa.Boolean, primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
)

# A signed-in dashboard: the cookie holds a random token, the table only its SHA-256 (a leaked table signs no one
# in); signing out deletes the row. `csrf` is the token every form and state-changing request must carry.
dashboard_sessions = sa.Table(
    "dashboard_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("store_id", ID, nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
)

# One-time sign-in links (POST /v2/dashboard/links): usable once, for five minutes.
dashboard_links = sa.Table(
    "dashboard_links",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("store_id", ID, nullable=False),
    sa.Column("expires_at", UTCDateTime, nullable=False),
    sa.Column("used_at", UTCDateTime, nullable=True),
)

# Failed sign-ins on PostgreSQL, shared by every API process (herald.db.sign_ins): one fixed-window counter per key,
# the key a digest of the client_id, the address or both; `window_start` in Unix seconds. Windows that ended are
# deleted from time to time.
sign_in_failures = sa.Table(
    "sign_in_failures",
    metadata,
    sa.Column("key", sa.String(32), primary_key=True),
    sa.Column("window_start", sa.Float, nullable=False),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Index("ix_sign_in_failures_window", "window_start"),
)
