"""The retry schedule: when the next attempt of a failed job is due, if any."""

from __future__ import annotations

import random
from collections.abc import Sequence


def next_delay(
    schedule: Sequence[float],
    attempts_made: int,
    max_attempts: int,
    *,
    jitter: float = 0.1,
    retry_after: float | None = None,
    retry_after_max: float = 86400.0,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds until the next attempt after `attempts_made` attempts, or None when the job has failed for good.

    A receiver's Retry-After (429/503) replaces the scheduled delay, bounded by `retry_after_max`.
    """
    if attempts_made >= max_attempts or not schedule and retry_after is None:
        return None
    if retry_after is not None:
        return max(0.0, min(retry_after, retry_after_max))
    base = schedule[min(attempts_made, len(schedule)) - 1] if attempts_made >= 1 else 0.0
    spread = base * jitter
    return max(0.0, base + (rng or random).uniform(-spread, spread))
