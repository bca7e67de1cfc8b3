"""Databases of their own for tests that start Herald processes."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def dedicated_database(request: pytest.FixtureRequest, backend: str, label: str) -> Iterator[str]:
    """A fresh database for one serve process (its own SQLite file, or a sibling PostgreSQL database
    next to the session's `postgres_url`, which keeps that fixture's skip/require behaviour)."""
    if backend == "sqlite":
        path = request.getfixturevalue("tmp_path_factory").mktemp(f"delivery-{label}") / "herald.db"
        yield f"sqlite:///{path}"
        return
    import psycopg

    base = request.getfixturevalue("postgres_url")
    name = f"herald_e2e_{label}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(base, autocommit=True, connect_timeout=3) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{base.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=3) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
