"""Every HERALD_* setting, documented once. Each has a default that works."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_RETRY_SCHEDULE = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HERALD_", extra="ignore")

    database_url: str = Field(
        "sqlite:///herald.db",
        description="sqlite:///path/to/file.db or postgresql://user@host/db; the async driver is chosen by Herald.",
    )
    secret_key: str | None = Field(
        None,
        description="Signs access tokens. Unset: a random key is created once and kept in the database, "
        "so every process sharing the database shares it.",
    )
    token_ttl: int = Field(3600, description="Access token lifetime in seconds.")
    public_url: str | None = Field(
        None,
        description="Base URL used in links (e.g. https://hooks.example.com). Unset: answers take it from the request, "
        "and Herald's own integration.* events carry links relative to Herald.",
    )
    retry_schedule: Annotated[tuple[float, ...], NoDecode] = Field(
        DEFAULT_RETRY_SCHEDULE,
        description=(
            "Delays in seconds after each failed attempt, comma-separated; its length + 1 is the number of attempts."
        ),
    )
    retry_jitter: float = Field(0.1, description="Relative jitter applied to each retry delay (0.1 = ±10 %).")
    retry_after_max: float = Field(86400, description="Upper bound in seconds for a receiver's Retry-After.")
    delivery_timeout: float = Field(10.0, description="One deadline in seconds for a whole delivery attempt.")
    allow_private_networks: bool = Field(
        False, description="Allow deliveries to loopback, private and link-local addresses (development, tests)."
    )
    disable_after: float = Field(
        5 * 86400, description="Seconds an integration may fail every delivery before it is disabled."
    )
    max_payload_bytes: int = Field(256 * 1024, description="Largest accepted event payload, in bytes.")
    max_body_bytes: int = Field(32 * 1024 * 1024, description="Largest accepted request body, in bytes (413 beyond).")
    idempotency_ttl: int = Field(86400, description="Seconds an Idempotency-Key is remembered.")
    lease_seconds: float = Field(
        60.0, description="How long a worker holds a claimed job before another worker may take it over."
    )
    worker_concurrency: int = Field(
        512, description="Jobs a worker process holds at once (being sent, or waiting for their integration's turn)."
    )
    worker_batch: int = Field(250, description="Jobs claimed per database round trip.")
    worker_poll_interval: float = Field(1.0, description="Longest sleep of an idle worker between checks for due jobs.")
    per_host_connections: int = Field(
        100, ge=1, description="Deliveries in flight per worker to one receiver host (scheme, host and port) or "
        "broker: its connection pool's size. When they are all busy, the places freed go to that host's "
        "integrations in turn."
    )
    per_integration_inflight: int = Field(
        50, ge=1, description="Deliveries of one integration in flight per worker. Keep it below "
        "HERALD_PER_HOST_CONNECTIONS: an integration whose receiver hangs then leaves the rest of its host's "
        "connections to the other integrations on that host."
    )
    claim_per_integration: int = Field(
        100, ge=1, description="Jobs of one integration held by all workers together (being sent or waiting for "
        "their turn): the rest of a slow integration's backlog stays in the database, out of the others' way."
    )
    breaker_failures: int = Field(
        10, ge=1, description="Failed attempts in a row that open an integration's circuit breaker: its jobs then "
        "wait, but for one probe every HERALD_BREAKER_PROBE_INTERVAL seconds, until an attempt succeeds."
    )
    breaker_probe_interval: float = Field(
        30.0, gt=0, description="Seconds between the probes of an integration whose circuit breaker is open."
    )
    login_attempts: int = Field(
        10, ge=1, description="Failed sign-ins allowed per client_id, and per client_id from one address, per window; "
        "a client over it is refused (429) until its window passes, even with its correct secret."
    )
    login_address_attempts: int = Field(
        100, ge=1, description="Failed sign-ins allowed from one address per window, whatever the client_ids. Keep it "
        "well above HERALD_LOGIN_ATTEMPTS, so that one client's failures never lock the other clients behind the same "
        "address (a proxy, an office) out."
    )
    login_window: int = Field(
        300, ge=1, description="Window in seconds for counting failed sign-ins. The counts are kept in the database on "
        "PostgreSQL (shared by every API process), in memory on SQLite."
    )
    rate_limit: float = Field(
        0, ge=0, description="Requests per second each store may make to the /v2 API (a token bucket per store; "
        "beyond it 429 with Retry-After); 0 turns the limit off. Counted in each API process on its own: behind a "
        "proxy spreading requests over N processes, a store gets up to N times as much."
    )
    rate_limit_burst: float | None = Field(
        None, ge=1, description="Requests a store may make at once before HERALD_RATE_LIMIT paces it (the bucket's "
        "size). Unset: twice HERALD_RATE_LIMIT."
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    log_retention_days: float = Field(
        30, ge=0, description="Delivery logs older than this many days are removed, with the finished jobs and the "
        "events nothing needs any more; 0 keeps everything."
    )
    retention_interval: float = Field(
        3600, gt=0, description="Seconds between a worker's retention passes (one worker at a time on PostgreSQL)."
    )
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="Log lines: json (one object per line), text, or auto (json unless stderr is a terminal)."
    )
    metrics_port: int | None = Field(
        None,
        description="Also serve /metrics on this port, on a listener of its own (the only way to scrape a "
        "`herald worker`). Unset: only the API's GET /metrics.",
    )

    @field_validator("retry_schedule", mode="before")
    @classmethod
    def _parse_schedule(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.split(",") if p.strip()]
            return tuple(float(p) for p in parts)
        if isinstance(value, (int, float)):
            return (float(value),)
        return value

    @field_validator("retry_schedule")
    @classmethod
    def _check_schedule(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(v < 0 for v in value):
            raise ValueError("retry delays must not be negative")
        return value

    @property
    def max_attempts(self) -> int:
        return len(self.retry_schedule) + 1

    @property
    def rate_limit_bucket(self) -> float:
        """The token bucket's size: HERALD_RATE_LIMIT_BURST, or twice the rate; never below one request."""
        return max(1.0, self.rate_limit_burst if self.rate_limit_burst is not None else 2 * self.rate_limit)
