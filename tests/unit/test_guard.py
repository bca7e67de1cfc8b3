"""The outbound address policy shared by the transports: public_addresses, resolve_public, GuardedResolver.

The resolve_public tests use only IP literals and 'localhost': getaddrinfo answers them without DNS.
"""

from __future__ import annotations

import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from herald.delivery.guard import BlockedAddressError, GuardedResolver, public_addresses, resolve_public

PUBLIC = "93.184.216.34"


def test_public_addresses_drops_blocked_ones_and_keeps_the_order() -> None:
    addresses = ["10.0.0.1", "2606:2800:220:1::1", "127.0.0.1", PUBLIC, "169.254.169.254"]

    assert public_addresses("example.com", addresses, False) == ["2606:2800:220:1::1", PUBLIC]


def test_public_addresses_refuses_when_only_blocked_ones_remain() -> None:
    with pytest.raises(BlockedAddressError) as caught:
        public_addresses("internal.example", ["127.0.0.1", "::1", "192.168.1.2"], False)

    assert caught.value.host == "internal.example"
    assert caught.value.addresses == ["127.0.0.1", "::1", "192.168.1.2"]
    assert str(caught.value) == "internal.example resolves only to blocked addresses: 127.0.0.1, ::1, 192.168.1.2"


def test_public_addresses_keeps_everything_when_private_networks_are_allowed() -> None:
    assert public_addresses("internal.example", ["127.0.0.1", PUBLIC, "10.1.2.3"], True) == [
        "127.0.0.1",
        PUBLIC,
        "10.1.2.3",
    ]


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "::ffff:127.0.0.1", "10.0.0.7", "169.254.169.254"])
async def test_resolve_public_refuses_a_blocked_ip_literal(host: str) -> None:
    with pytest.raises(BlockedAddressError) as caught:
        await resolve_public(host, 61613, allow_private=False)

    assert caught.value.host == host
    assert caught.value.addresses == [host]


async def test_resolve_public_allows_a_public_ip_literal() -> None:
    assert await resolve_public(PUBLIC, 61613, allow_private=False) == [PUBLIC]


async def test_resolve_public_allows_loopback_when_private_networks_are_allowed() -> None:
    assert await resolve_public("127.0.0.1", 61613, allow_private=True) == ["127.0.0.1"]


async def test_resolve_public_refuses_localhost() -> None:
    with pytest.raises(BlockedAddressError) as caught:
        await resolve_public("localhost", 61613, allow_private=False)

    assert caught.value.host == "localhost"
    assert "127.0.0.1" in caught.value.addresses or "::1" in caught.value.addresses
    assert len(caught.value.addresses) == len(set(caught.value.addresses))  # de-duplicated


async def test_resolve_public_returns_localhost_when_private_networks_are_allowed() -> None:
    addresses = await resolve_public("localhost", 61613, allow_private=True)

    assert "127.0.0.1" in addresses or "::1" in addresses
    assert len(addresses) == len(set(addresses))


class _FixedResolver(AbstractResolver):
    """Answers every name with the same addresses (no DNS)."""

    def __init__(self, hosts: list[str]) -> None:
        self.hosts = hosts

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=ip, port=port, family=family, proto=0, flags=0) for ip in self.hosts
        ]

    async def close(self) -> None:
        pass


async def test_guarded_resolver_applies_the_same_policy() -> None:
    inner = _FixedResolver(["127.0.0.1", PUBLIC, "10.0.0.1"])

    allowed = await GuardedResolver(inner).resolve("mixed.example", 443)
    everything = await GuardedResolver(inner, allow_private=True).resolve("mixed.example", 443)

    assert [r["host"] for r in allowed] == [PUBLIC]
    assert allowed[0] == ResolveResult(
        hostname="mixed.example", host=PUBLIC, port=443, family=socket.AF_INET, proto=0, flags=0
    )
    assert [r["host"] for r in everything] == ["127.0.0.1", PUBLIC, "10.0.0.1"]
    with pytest.raises(BlockedAddressError) as caught:
        await GuardedResolver(_FixedResolver(["127.0.0.1", "10.0.0.1"])).resolve("private.example", 443)
    assert caught.value.addresses == ["127.0.0.1", "10.0.0.1"]
