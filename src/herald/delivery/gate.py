"""Who may send now: at most N deliveries in flight per integration and M per peer (a receiver host, a broker);
the rest wait their turn inside the worker, and a peer's freed place goes to its integrations in turn.

Waiting here costs a deque entry; waiting as a task parked in the HTTP client's per-host queue cost far more per
delivery, and it was first come, first served: an integration whose receiver hangs filled every connection to
its host, and a healthy integration on the same host waited the whole timeout behind it. With N below M, one
stuck integration leaves M - N places to the others; with several, the places freed go round the integrations
waiting, so none waits behind another's whole backlog.
"""

from __future__ import annotations

import collections
from typing import Generic, TypeVar

T = TypeVar("T")

Group = tuple[str, str]
"""(peer, integration id): the peer's connections are shared, the integration's share is its own."""


class Gate(Generic[T]):
    """Admits an item when its group has fewer than `per_integration` running and its peer fewer than `per_peer`.

    Invariant: a peer with a free place has no group waiting in its turn order (`_turns`), so an item that
    finds both places free can start at once without passing anyone.
    """

    __slots__ = ("per_integration", "per_peer", "_running", "_peer_running", "_waiting", "_turns", "waiting")

    def __init__(self, per_integration: int, per_peer: int) -> None:
        if per_integration < 1 or per_peer < 1:
            raise ValueError("the limits must be at least 1")
        self.per_integration = per_integration
        self.per_peer = per_peer
        self._running: dict[Group, int] = {}
        self._peer_running: dict[str, int] = {}
        self._waiting: dict[Group, collections.deque[T]] = {}
        # per peer, the groups with waiters and room of their own, in turn order (a dict keeps insertion order)
        self._turns: dict[str, dict[Group, None]] = {}
        self.waiting = 0  # items waiting, over all groups

    def admit(self, group: Group, item: T) -> bool:
        """True: `item` may start now (it holds a place). False: it waits until `release` hands it one."""
        peer = group[0]
        running = self._running.get(group, 0)
        if running < self.per_integration and self._peer_running.get(peer, 0) < self.per_peer:
            self._running[group] = running + 1
            self._peer_running[peer] = self._peer_running.get(peer, 0) + 1
            return True
        waiters = self._waiting.get(group)
        if waiters is None:
            waiters = self._waiting[group] = collections.deque()
        waiters.append(item)
        self.waiting += 1
        if running < self.per_integration:  # only the peer is full: the group takes its turn
            self._turns.setdefault(peer, {})[group] = None
        return False

    def release(self, group: Group) -> list[T]:
        """One item of `group` ended. Returns the items that now hold the freed places (usually one, of this
        group or of the next group in the peer's turn order; none when nothing waits)."""
        peer = group[0]
        running = self._running[group] - 1
        if running:
            self._running[group] = running
        else:
            del self._running[group]
        peer_running = self._peer_running[peer] - 1
        turns = self._turns.get(peer)
        if group in self._waiting and (turns is None or group not in turns):
            # it was at its own limit; now it has room, and waits for a place of the peer behind the others
            turns = self._turns.setdefault(peer, {})
            turns[group] = None
        started: list[T] = []
        while turns and peer_running < self.per_peer:
            nxt = next(iter(turns))
            del turns[nxt]
            waiters = self._waiting[nxt]
            started.append(waiters.popleft())
            self.waiting -= 1
            peer_running += 1
            now = self._running[nxt] = self._running.get(nxt, 0) + 1
            if not waiters:
                del self._waiting[nxt]
            elif now < self.per_integration:
                turns[nxt] = None  # back of the line
        if turns is not None and not turns:
            del self._turns[peer]
        if peer_running:
            self._peer_running[peer] = peer_running
        else:
            del self._peer_running[peer]
        return started

    def running(self, group: Group) -> int:
        return self._running.get(group, 0)

    def peer_running(self, peer: str) -> int:
        return self._peer_running.get(peer, 0)

    def withdraw(self, integration_id: str) -> list[T]:
        """Every waiting item of one integration, removed (its breaker opened: they go back to the database)."""
        items: list[T] = []
        for group in [g for g in self._waiting if g[1] == integration_id]:
            waiters = self._waiting.pop(group)
            items.extend(waiters)
            turns = self._turns.get(group[0])
            if turns is not None:
                turns.pop(group, None)
                if not turns:
                    del self._turns[group[0]]
        self.waiting -= len(items)
        return items

    def drain(self) -> list[T]:
        """Every waiting item, removed (at shutdown: they are released unstarted)."""
        items = [item for waiters in self._waiting.values() for item in waiters]
        self._waiting.clear()
        self._turns.clear()
        self.waiting = 0
        return items
