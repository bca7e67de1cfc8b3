"""Who may ask how often: failed sign-ins (per client_id, per client_id and address, per address) and each store's
request rate on the /v2 API."""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from herald.db import sign_ins
from herald.db.database import Database
from herald.settings import Settings

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class SignInLimits:
    per_client: int  # failures per client_id, and per client_id from one address
    per_address: int  # failures from one address, whatever the client_ids
    window: float  # seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> SignInLimits:
        return cls(settings.login_attempts, settings.login_address_attempts, float(settings.login_window))


def _digest(text: str) -> str:
    # a client_id is whatever the request says: a digest keeps every key 32 characters long
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def sign_in_keys(limits: SignInLimits, client_id: str, address: str) -> list[tuple[str, int]]:
    """The counters a failed sign-in adds to, each with the failures it allows per window.

    The client_id's own counter locks that client out wherever it signs in from (a spread-out guess at one secret);
    the pair's counts one address's failures for it; the address's, at a much higher threshold, is what stops one
    address trying many client_ids. Another client behind the same address is never locked out by the first
    one's failures before the address's threshold."""
    return [
        (_digest("client\0" + client_id), limits.per_client),
        (_digest("pair\0" + address + "\0" + client_id), limits.per_client),
        (_digest("address\0" + address), limits.per_address),
    ]


def _seconds_left(start: float, count: int, limit: int, window: float, now: float) -> int | None:
    """Whole seconds until a counter that has reached its limit lets sign-ins through again (None: it has not)."""
    if count < limit or start + window <= now:
        return None
    return max(1, math.ceil(start + window - now))


class SignInCounter(Protocol):
    async def retry_after(self, client_id: str, address: str) -> int | None:
        """Seconds the caller must wait before trying again, or None when it may try now."""

    async def failed(self, client_id: str, address: str) -> None:
        """Count one failed sign-in."""


class FailedSignIns:
    """The counters in this process's memory, used on SQLite.

    On SQLite the API is one process (`herald serve`, or a single `herald api`), so its memory sees every sign-in;
    counting them in the database instead would put each failure on SQLite's single write lock, which every
    publish waits for, and let a flood of wrong secrets slow publishing down.

    A fixed window per key, opened by its first failure. At most `max_keys` keys are kept: past that, the one
    that failed least recently goes (and a key that is locked out counts as failing each time it is refused), so
    a spray of random client_ids cannot grow the process without bound."""

    MAX_KEYS = 50_000

    def __init__(self, limits: SignInLimits, *, clock: Clock = time.monotonic, max_keys: int = MAX_KEYS) -> None:
        self.limits = limits
        self.clock = clock
        self.max_keys = max_keys
        self._windows: OrderedDict[str, list[float]] = OrderedDict()  # key -> [window start, failures]

    def __len__(self) -> int:
        return len(self._windows)

    async def retry_after(self, client_id: str, address: str) -> int | None:
        now = self.clock()
        worst = None
        for key, limit in sign_in_keys(self.limits, client_id, address):
            found = self._windows.get(key)
            if found is None:
                continue
            wait = _seconds_left(found[0], int(found[1]), limit, self.limits.window, now)
            if wait is not None:
                self._windows.move_to_end(key)
                worst = max(worst or 0, wait)
        return worst

    async def failed(self, client_id: str, address: str) -> None:
        now = self.clock()
        for key, _ in sign_in_keys(self.limits, client_id, address):
            found = self._windows.get(key)
            if found is None or found[0] + self.limits.window <= now:
                self._windows[key] = [now, 1]
            else:
                found[1] += 1
            self._windows.move_to_end(key)
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)


class SharedFailedSignIns:
    """The counters in the database (`herald.db.sign_ins`), used on PostgreSQL: every `herald api` process on the
    database counts into the same rows, so N processes behind a proxy give a client no more tries than one.

    A check is one SELECT, a failure one upsert; ended windows are deleted at most once a window by each process.
    Times are Unix seconds from each process's clock (keep the machines' clocks in sync)."""

    def __init__(self, limits: SignInLimits, db: Database, *, clock: Clock = time.time) -> None:
        self.limits = limits
        self.db = db
        self.clock = clock
        self._pruned = -math.inf

    async def retry_after(self, client_id: str, address: str) -> int | None:
        now = self.clock()
        keys = sign_in_keys(self.limits, client_id, address)
        async with self.db.read() as conn:
            found = await sign_ins.windows(conn, [key for key, _ in keys], now, self.limits.window)
        waits = [
            _seconds_left(*found[key], limit, self.limits.window, now) for key, limit in keys if key in found
        ]
        return max((w for w in waits if w is not None), default=None)

    async def failed(self, client_id: str, address: str) -> None:
        now = self.clock()
        keys = [key for key, _ in sign_in_keys(self.limits, client_id, address)]
        async with self.db.write() as conn:
            await sign_ins.add(conn, keys, now, self.limits.window)
            if now - self._pruned >= self.limits.window:
                self._pruned = now
                await sign_ins.forget_ended(conn, now, self.limits.window)


def sign_in_counter(settings: Settings, db: Database) -> SignInCounter:
    limits = SignInLimits.from_settings(settings)
    if db.is_sqlite:
        return FailedSignIns(limits)
    return SharedFailedSignIns(limits, db)


class StoreRates:
    """A token bucket per store: `burst` requests at once, refilled at `rate` per second.

    In this process's memory (each API process paces its own share of the requests). A store's bucket is made by
    its first request; stores are few and made by operators, so the buckets need no bound."""

    __slots__ = ("rate", "burst", "clock", "_buckets")

    def __init__(self, rate: float, burst: float, *, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, list[float]] = {}  # store id -> [tokens, when counted]

    @classmethod
    def from_settings(cls, settings: Settings) -> StoreRates | None:
        if not settings.rate_limit:
            return None
        return cls(settings.rate_limit, settings.rate_limit_bucket)

    def wait(self, store_id: str) -> float:
        """Take a token for one request: 0.0 when there was one, else the seconds until there is."""
        now = self.clock()
        bucket = self._buckets.get(store_id)
        if bucket is None:
            self._buckets[store_id] = [self.burst - 1, now]
            return 0.0
        tokens = bucket[0] + (now - bucket[1]) * self.rate
        if tokens > self.burst:
            tokens = self.burst
        if tokens < 1:
            return (1 - tokens) / self.rate
        bucket[0] = tokens - 1
        bucket[1] = now
        return 0.0
