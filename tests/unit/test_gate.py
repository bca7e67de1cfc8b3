"""PerKeyLimit: at most N running per key, waiters in arrival order, freed places handed over."""

from __future__ import annotations

import pytest

from herald.delivery.gate import PerKeyLimit


def test_admits_up_to_the_limit_per_key_and_hands_over_in_order() -> None:
    gate: PerKeyLimit[str] = PerKeyLimit(2)
    assert [gate.admit("a", x) for x in ("a1", "a2", "a3", "a4")] == [True, True, False, False]
    assert gate.admit("b", "b1") is True  # another key has its own places
    assert (gate.running("a"), gate.running("b"), gate.waiting) == (2, 1, 2)
    assert gate.release("a") == "a3"  # the freed place goes to the first waiter, which now runs
    assert (gate.running("a"), gate.waiting) == (2, 1)
    assert gate.release("a") == "a4"
    assert gate.release("a") is None
    assert gate.release("a") is None
    assert gate.running("a") == 0
    assert gate.admit("a", "a5") is True


def test_drain_removes_every_waiter() -> None:
    gate: PerKeyLimit[int] = PerKeyLimit(1)
    for key, item in (("a", 1), ("a", 2), ("b", 3), ("b", 4), ("a", 5)):
        gate.admit(key, item)
    assert sorted(gate.drain()) == [2, 4, 5]
    assert gate.waiting == 0
    assert gate.release("a") is None


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        PerKeyLimit(0)
