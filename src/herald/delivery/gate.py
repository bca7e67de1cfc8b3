"""At most N deliveries in flight per integration; the rest wait their turn in the worker, in arrival order.

Waiting here costs a deque entry; waiting as a task parked in the HTTP client's per-host queue cost far more per
delivery, and one slow receiver could fill every slot of the connection pool.
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

T = TypeVar("T")


class PerKeyLimit(Generic[T]):
    """Admits up to `limit` running items per key; `release` hands the freed place to the key's next waiter."""

    __slots__ = ("limit", "_running", "_waiting", "waiting")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the limit must be at least 1")
        self.limit = limit
        self._running: dict[str, int] = {}
        self._waiting: dict[str, collections.deque[T]] = {}
        self.waiting = 0  # items waiting, over all keys

    def admit(self, key: str, item: T) -> bool:
        """True: `item` may start now (it holds a place). False: it waits until a place of `key` is released."""
        running = self._running.get(key, 0)
        if running >= self.limit:
            self._waiting.setdefault(key, collections.deque()).append(item)
            self.waiting += 1
            return False
        self._running[key] = running + 1
        return True

    def release(self, key: str) -> T | None:
        """One item of `key` ended. Returns the next waiting item, which now holds the freed place, or None."""
        queue = self._waiting.get(key)
        if queue:
            item = queue.popleft()
            self.waiting -= 1
            if not queue:
                del self._waiting[key]
            return item
        running = self._running[key] - 1
        if running:
            self._running[key] = running
        else:
            del self._running[key]
        return None

    def running(self, key: str) -> int:
        return self._running.get(key, 0)

    def drain(self) -> list[T]:
        """Every waiting item, removed (at shutdown: they are released unstarted)."""
        items = [item for queue in self._waiting.values() for item in queue]
        self._waiting.clear()
        self.waiting = 0
        return items
