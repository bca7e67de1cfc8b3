"""HTTP webhook delivery over aiohttp: one POST per attempt, judged by status code."""

from __future__ import annotations

import errno
import math
import socket
import ssl
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from herald import __version__
from herald.delivery.guard import BlockedAddressError, GuardedResolver, check_url_host
from herald.delivery.transports.base import BODY_LIMIT, Delivered, DeliveryFailed, blocked_detail, cut_utf8
from herald.domain.messages import OutboundMessage
from herald.domain.webhook_request import webhook_body, webhook_headers
from herald.settings import Settings

_CLOSED_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}
NON_2XX = "Received a status code outside of 2xx range - treating webhook as a fail"


class WebhookTransport:
    """Delivers webhooks with a shared connection pool.

    The per-host limit keeps one slow receiver from holding every connection; the total limit
    bounds Herald's own sockets. The session is created lazily so it binds to the running loop.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        allow_private: bool = False,
        per_host_limit: int = 20,
        total_limit: int = 500,
        user_agent: str = f"Herald/{__version__}",
    ) -> None:
        self.timeout = timeout
        self._allow_private = allow_private
        self._per_host_limit = per_host_limit
        self._total_limit = total_limit
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None
        self._resolver: GuardedResolver | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._resolver = GuardedResolver(allow_private=self._allow_private)
            connector = aiohttp.TCPConnector(
                limit=self._total_limit,
                limit_per_host=self._per_host_limit,
                resolver=self._resolver,
            )
            # No client timeout at all: `attempt` enforces one deadline for the whole attempt.
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=None), trust_env=False,
                cookie_jar=aiohttp.DummyCookieJar(),  # a webhook receiver's cookies are never sent back
            )
        return self._session

    @classmethod
    def from_settings(cls, settings: Settings) -> WebhookTransport:
        return cls(
            timeout=settings.delivery_timeout,
            allow_private=settings.allow_private_networks,
            per_host_limit=settings.per_host_connections,
            total_limit=max(settings.worker_concurrency, 1),
        )

    async def send(self, message: OutboundMessage) -> Delivered:
        """One POST; 2xx is success, anything else (an answer or none) raises `DeliveryFailed`."""
        url_text = str(message.configuration.get("url", ""))
        try:
            url = _target(url_text, self._allow_private)
            body = webhook_body(message)
            request_headers = webhook_headers(message, body, int(time.time()), self._user_agent)
            # No timeout here: `attempt` holds one deadline for connecting, sending and reading the answer.
            async with self._get_session().post(
                url, data=body, headers=request_headers, allow_redirects=False
            ) as response:
                status, headers = response.status, response.headers
                length = response.content_length
                if length is not None and length <= BODY_LIMIT:
                    received = await response.read()
                else:
                    received = await _read_limited(response.content, BODY_LIMIT + 1)
        except TimeoutError:
            raise
        except Exception as exc:
            raise DeliveryFailed(_describe(exc, url_text)) from exc
        text = cut_utf8(received, BODY_LIMIT).decode("utf-8", errors="replace")
        if 200 <= status < 300:
            return Delivered(status, text)
        raise DeliveryFailed(
            _failure_detail(status, headers),
            status=status,
            body=text,
            retry_after=parse_retry_after(headers.get("Retry-After")) if status in (429, 503) else None,
            gone=status == 410,
        )

    def peer(self, configuration: Mapping[str, Any]) -> str:
        return _origin(str(configuration.get("url", "")))

    def timeout_detail(self, timeout: float, phase: str) -> str:
        return f"The receiver did not answer within the {timeout:g} s timeout."

    async def close(self) -> None:
        """Close pooled connections and the resolver."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None


async def _read_limited(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """Read at most `limit` bytes: a receiver answering megabytes costs us only a few KiB."""
    into = bytearray()
    while len(into) < limit:
        chunk = await stream.read(limit - len(into))
        if not chunk:
            break
        into += chunk
    return bytes(into)


@lru_cache(maxsize=4096)
def _target(url_text: str, allow_private: bool) -> URL:
    """The parsed webhook URL, refused when invalid or when its IP-literal host is blocked (cached per URL:
    every delivery of an integration goes to the same one)."""
    url = URL(url_text)
    if url.scheme not in ("http", "https") or not url.host:
        raise aiohttp.InvalidURL(url_text)
    check_url_host(url.raw_host or "", allow_private)
    return url


@lru_cache(maxsize=4096)
def _origin(url_text: str) -> str:
    """scheme://host:port, as the connection pool keys its connections (the text itself when unparsable)."""
    try:
        url = URL(url_text)
        return f"{url.scheme}://{url.host}:{url.port}" if url.host else url_text
    except (ValueError, TypeError):
        return url_text


def _failure_detail(status: int, headers: CIMultiDictProxy[str]) -> str:
    if 300 <= status < 400:
        location = headers.get("Location") or "(no Location header)"
        return (
            f"The receiver answered a {status} redirect to {location}, which is not followed"
            " - treating webhook as a fail"
        )
    return NON_2XX


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds from now (>= 0): delta-seconds or an HTTP-date; None if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        delay = float(value) if value.isascii() and value[:1].isdigit() else _date_delay(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return max(0.0, delay) if math.isfinite(delay) else None


def _date_delay(value: str) -> float:
    when = parsedate_to_datetime(value)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


def _describe(exc: Exception, url: str) -> str:
    """One sentence per cause, so a user reading the log knows what to fix."""
    if isinstance(exc, BlockedAddressError):
        return blocked_detail(exc.host)
    if isinstance(exc, aiohttp.InvalidURL):
        return f"The webhook URL {url!r} is not a valid http(s) URL."
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"The TLS certificate of the receiver could not be verified: {_first_line(exc.certificate_error)}."
    if isinstance(exc, aiohttp.ClientSSLError) or isinstance(exc, ssl.SSLError) or (
        isinstance(exc, aiohttp.ClientOSError) and isinstance(exc.__cause__, ssl.SSLError)
    ):
        cause = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
        return f"The TLS handshake with the receiver failed: {_first_line(cause)}."
    if isinstance(exc, aiohttp.ClientConnectorError):
        host = f"{exc.host}:{exc.port}"
        if isinstance(exc.os_error, socket.gaierror):
            return f"The receiver's host name {exc.host} could not be resolved (DNS failure)."
        if isinstance(exc.os_error, ConnectionRefusedError):
            return f"The connection to {host} was refused; nothing is listening there."
        return f"Could not connect to {host}: {_first_line(exc.os_error)}."
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError)) or (
        isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError))
        or (isinstance(exc, OSError) and exc.errno in _CLOSED_ERRNOS)
    ):
        return "The receiver closed or reset the connection before completing its answer."
    return f"The delivery failed with {type(exc).__name__}: {_first_line(exc) or 'no detail'}."


def _first_line(exc: BaseException | str) -> str:
    return str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
