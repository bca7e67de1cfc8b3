"""Pure domain rules: the events catalogue, wildcards, masking, retry schedule, filters, settings."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from herald.api.jsonapi import APIError, parse_filter_string
from herald.domain.events import EVENT_KEYS, is_valid_pattern, matches
from herald.domain.masking import mask, mask_configuration
from herald.domain.retry import next_delay
from herald.settings import Settings


def test_catalogue_has_the_documented_events() -> None:
    for key in ("order.paid", "order.refunded", "customAPIEntryType.created", "cart.deleted", "file.created",
                "one-time-password-token-request.created", "integration.deleted", "stock-transaction.created"):
        assert key in EVENT_KEYS
    assert "cart.created" not in EVENT_KEYS
    assert len(EVENT_KEYS) == 15 * 3 + 18


def test_patterns_and_matching() -> None:
    assert is_valid_pattern("*") and is_valid_pattern("order.*") and is_valid_pattern("order.paid")
    assert not is_valid_pattern("orders.*") and not is_valid_pattern("order.") and not is_valid_pattern("order.paid.x")
    assert matches(["order.*"], "order.paid")
    assert not matches(["order.*"], "order-thing.paid")
    assert matches(["*"], "product.created")
    assert not matches(["order.paid"], "order.created")


def test_masking() -> None:
    assert mask("abcdefghij") == "******ghij"
    assert mask("12345678") == "********"
    assert mask("") == ""
    masked = mask_configuration({"url": "https://x", "secret_key": "supersecret", "password": "pw"})
    assert masked == {"url": "https://x", "secret_key": "*******cret", "password": "**"}


def test_retry_schedule_with_jitter() -> None:
    schedule = (5, 300, 1800)
    rng = random.Random(1)
    for attempts, base in ((1, 5), (2, 300), (3, 1800)):
        delay = next_delay(schedule, attempts, 4, rng=rng)
        assert delay is not None and base * 0.9 <= delay <= base * 1.1
    assert next_delay(schedule, 4, 4) is None


def test_retry_after_replaces_the_schedule_within_bounds() -> None:
    assert next_delay((300,), 1, 2, retry_after=7) == 7
    assert next_delay((300,), 1, 2, retry_after=10**9, retry_after_max=3600) == 3600
    assert next_delay((300,), 2, 2, retry_after=7) is None  # no attempts left


def test_manual_retry_beyond_the_schedule_reuses_the_last_delay() -> None:
    assert next_delay((5, 10), 5, 7, jitter=0) == 10


def test_default_schedule_is_ten_attempts() -> None:
    s = Settings(_env_file=None)
    assert s.retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert s.max_attempts == 10


def test_schedule_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_RETRY_SCHEDULE", "1, 2.5,3")
    assert Settings().retry_schedule == (1.0, 2.5, 3.0)
    monkeypatch.setenv("HERALD_RETRY_SCHEDULE", "1,-2")
    with pytest.raises(ValueError):
        Settings()


def test_filter_parser() -> None:
    assert parse_filter_string("eq(succeeded,false):ge(created_at,2026-11-01T00:00:00Z)") == [
        ("eq", "succeeded", "false"), ("ge", "created_at", "2026-11-01T00:00:00Z"),
    ]
    assert parse_filter_string('eq(name,"a, b (c)"):like(name,*x*)') == [
        ("eq", "name", "a, b (c)"), ("like", "name", "*x*"),
    ]
    for bad in ("eq(name,x", "eq(name,x)eq(a,b)", "noparen", 'eq(name,"open)'):
        with pytest.raises(APIError) as err:
            parse_filter_string(bad)
        assert err.value.status == 400


def _cli_variables() -> set[str]:
    """HERALD_* variables that CLI options read (`--store` reads HERALD_STORE), which are not settings."""
    import click
    import typer

    from herald.cli import app

    found: set[str] = set()

    def walk(command: click.Command) -> None:
        for param in command.params:
            names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
            found.update(n for n in names if n.startswith("HERALD_"))
        for sub in getattr(command, "commands", {}).values():
            walk(sub)

    walk(typer.main.get_command(app))
    return found


def test_readme_documents_every_setting() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented = set(re.findall(r"`(HERALD_[A-Z_]+)`", readme))
    expected = {f"HERALD_{name.upper()}" for name in Settings.model_fields}
    assert expected <= documented, expected - documented
    assert documented <= expected | _cli_variables(), documented - expected - _cli_variables()
    rows = dict(re.findall(r"^\| `(HERALD_[A-Z_]+)` \| `([^`]*)` \|", readme, flags=re.M))
    for name, field in Settings.model_fields.items():
        default = field.default
        if isinstance(default, tuple):
            shown = ",".join(f"{v:g}" for v in default)
        elif default is None:
            shown = "(unset)"
        elif isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = f"{default:g}" if isinstance(default, float) else str(default)
        assert rows[f"HERALD_{name.upper()}"].replace(".0", "") == shown.replace(".0", ""), name
