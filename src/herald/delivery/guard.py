"""Outbound address policy: webhooks must not reach Herald's own network (SSRF).

The check runs on the address actually used to connect (inside the resolver the connector
calls), so a hostname that resolves, or later re-resolves, to a private address is refused too.
IP-literal URLs never reach the resolver, so `check_url_host` covers them before sending.
"""

from __future__ import annotations

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


def check_url_host(host: str, allow_private: bool) -> None:
    """Refuse an IP-literal host the policy blocks; hostnames are left to `GuardedResolver`."""
    if allow_private:
        return
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if is_blocked_address(ip):
        raise BlockedAddressError(host, [str(ip)])


class GuardedResolver(AbstractResolver):
    """Wraps the default resolver and drops the addresses the policy refuses."""

    def __init__(self, inner: AbstractResolver | None = None, *, allow_private: bool = False) -> None:
        self._inner = inner if inner is not None else DefaultResolver()
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        allowed = [r for r in results if not is_blocked_address(r["host"])]
        if not allowed:
            raise BlockedAddressError(host, [r["host"] for r in results])
        return allowed

    async def close(self) -> None:
        await self._inner.close()
