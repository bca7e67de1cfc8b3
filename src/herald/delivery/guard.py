"""Outbound address policy: webhooks must not reach Herald's own network (SSRF).

The check runs on the address actually used to connect (inside the resolver the connector
calls), so a hostname that resolves, or later re-resolves, to a private address is refused too.
IP-literal URLs never reach the resolver, so `check_url_host` covers them before sending.
Transports that open their own sockets (STOMP) call `resolve_public` and connect only to the addresses
it returns; getaddrinfo returns an IP literal as is, so a literal is judged the same way as a name.
The policy itself, which addresses survive, is written once, in `public_addresses`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket

from aiohttp import ClientConnectionError
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}


class BlockedAddressError(ClientConnectionError):
    """The destination resolves only to addresses the policy refuses."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        self.host = host
        self.addresses = addresses
        super().__init__(f"{host} resolves only to blocked addresses: {', '.join(addresses)}")


def is_blocked_address(address: str | IPAddress) -> bool:
    """True for loopback, private, link-local, multicast, unspecified, reserved, CGNAT and
    cloud-metadata addresses (IPv4-mapped IPv6 addresses are judged as their IPv4 address)."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return True  # not an address we can judge: refuse rather than guess
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    return (
        ip in _METADATA
        or ip.is_loopback
        or ip.is_private
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_unspecified
        or ip.is_reserved
        or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT)
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def public_addresses(host: str, addresses: list[str], allow_private: bool) -> list[str]:
    """The `addresses` of `host` that may be connected to, in their order: all of them when private
    networks are allowed, else those not blocked; `BlockedAddressError` when none is left."""
    if allow_private:
        return list(addresses)
    allowed = [address for address in addresses if not is_blocked_address(address)]
    if not allowed:
        raise BlockedAddressError(host, list(addresses))
    return allowed


async def resolve_public(host: str, port: int, *, allow_private: bool) -> list[str]:
    """Resolve `host` (a name or an IP literal) for a TCP connection and keep the addresses the
    policy allows (see `public_addresses`), without duplicates; socket.gaierror when it does not resolve.
    Connect to the returned addresses, not to `host`, so DNS cannot slip a private address in."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    resolved = list(dict.fromkeys(str(info[4][0]) for info in infos))
    return public_addresses(host, resolved, allow_private)


def check_url_host(host: str, allow_private: bool) -> None:
    """Refuse an IP-literal host the policy blocks; hostnames are left to `GuardedResolver`."""
    if allow_private:
        return
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    public_addresses(host, [str(ip)], allow_private)


class GuardedResolver(AbstractResolver):
    """Wraps the default resolver and drops the addresses the policy refuses."""

    def __init__(self, inner: AbstractResolver | None = None, *, allow_private: bool = False) -> None:
        self._inner = inner if inner is not None else DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = set(public_addresses(host, [r["host"] for r in results], self._allow_private))
        return [r for r in results if r["host"] in allowed]

    async def close(self) -> None:
        await self._inner.close()
