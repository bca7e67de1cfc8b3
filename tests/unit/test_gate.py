"""Gate: at most N running per integration and M per peer; waiters in arrival order within an integration, and a
peer's freed places dealt to its integrations in turn."""

from __future__ import annotations

import pytest

from herald.delivery.gate import Gate

A, B, C = ("host-1", "a"), ("host-1", "b"), ("host-1", "c")
OTHER = ("host-2", "d")


def test_admits_up_to_the_limit_per_integration_and_hands_over_in_order() -> None:
    gate: Gate[str] = Gate(2, 10)
    assert [gate.admit(A, x) for x in ("a1", "a2", "a3", "a4")] == [True, True, False, False]
    assert gate.admit(B, "b1") is True  # another integration has its own places
    assert (gate.running(A), gate.running(B), gate.peer_running("host-1"), gate.waiting) == (2, 1, 3, 2)
    assert gate.release(A) == ["a3"]  # the freed place goes to the first waiter, which now runs
    assert (gate.running(A), gate.waiting) == (2, 1)
    assert gate.release(A) == ["a4"]
    assert gate.release(A) == []
    assert gate.release(A) == []
    assert gate.running(A) == 0 and gate.peer_running("host-1") == 1
    assert gate.admit(A, "a5") is True


def test_a_stuck_integration_leaves_the_rest_of_its_host_to_the_others() -> None:
    """Per integration 3, per host 5: the stuck one holds 3 and waits with the rest; the healthy one on the same
    host still starts at once, twice, and only then waits for the host."""
    gate: Gate[str] = Gate(3, 5)
    assert [gate.admit(A, f"stuck{i}") for i in range(100)] == [True] * 3 + [False] * 97
    assert [gate.admit(B, f"ok{i}") for i in range(3)] == [True, True, False]
    assert gate.peer_running("host-1") == 5
    assert gate.admit(OTHER, "elsewhere") is True  # another host is not concerned


def test_a_full_host_deals_its_freed_places_in_turn() -> None:
    gate: Gate[str] = Gate(10, 2)
    assert gate.admit(A, "a1") and gate.admit(A, "a2")
    for item in ("a3", "a4", "a5"):
        assert gate.admit(A, item) is False
    assert gate.admit(B, "b1") is False and gate.admit(C, "c1") is False and gate.admit(B, "b2") is False
    # a's deliveries end one by one: the host's places go round a, b, c (a came first), not to a's backlog
    started = [x for _ in range(6) for x in gate.release(A if gate.running(A) else B)]
    assert started[:3] == ["a3", "b1", "c1"], started
    assert sorted(started) == ["a3", "a4", "a5", "b1", "b2", "c1"]
    assert gate.waiting == 0


def test_an_integration_back_under_its_limit_waits_behind_the_host_queue() -> None:
    gate: Gate[str] = Gate(1, 2)
    assert gate.admit(A, "a1") is True and gate.admit(A, "a2") is False  # a at its own limit
    assert gate.admit(B, "b1") is True  # host now full
    assert gate.admit(C, "c1") is False  # c waits for the host
    assert gate.release(A) == ["c1"]  # a's freed host place: c was waiting for the host before a had room again
    assert gate.release(B) == ["a2"]
    assert (gate.peer_running("host-1"), gate.waiting) == (2, 0)


def test_drain_removes_every_waiter() -> None:
    gate: Gate[int] = Gate(1, 2)
    for group, item in ((A, 1), (A, 2), (B, 3), (B, 4), (A, 5), (C, 6)):
        gate.admit(group, item)
    assert sorted(gate.drain()) == [2, 4, 5, 6]
    assert gate.waiting == 0
    assert gate.release(A) == []
    assert gate.release(B) == []


def test_limits_below_one_are_refused() -> None:
    with pytest.raises(ValueError):
        Gate(0, 5)
    with pytest.raises(ValueError):
        Gate(5, 0)


def test_withdraw_takes_one_integrations_waiters_out_of_every_turn() -> None:
    gate: Gate[str] = Gate(1, 2)
    assert gate.admit(A, "a1") and gate.admit(B, "b1")  # host full
    for group, item in ((A, "a2"), (B, "b2"), (C, "c1"), (("host-2", "a"), "a-elsewhere")):
        gate.admit(group, item)
    gate.admit(("host-2", "a"), "a-elsewhere-2")
    assert sorted(gate.withdraw("a")) == ["a-elsewhere-2", "a2"]  # "a-elsewhere" had started on host-2
    assert gate.waiting == 2
    assert gate.release(A) == ["c1"]  # c waited for the host; a's withdrawn job is not started
    assert gate.release(B) == ["b2"]
    assert gate.withdraw("nobody") == []
