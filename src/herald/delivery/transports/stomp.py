"""Delivery to a STOMP 1.2 broker (RabbitMQ, ActiveMQ, Artemis): SEND with a receipt, await RECEIPT.

Written on asyncio streams rather than on a library: the one maintained asyncio client (stompman
3.16) neither reports the receipt id, nor lets us set the CONNECT ``host`` header (RabbitMQ reads it
as the virtual host and refuses an IP address), and it reports a login ERROR as a timeout.
The protocol subset we need -- CONNECT, SEND, RECEIPT, ERROR, DISCONNECT -- is small.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from herald.delivery.guard import BlockedAddressError, resolve_public
from herald.delivery.transports.base import Delivered, DeliveryFailed, blocked_detail, current_phase, note_phase
from herald.delivery.transports.stomp_frames import Frame, read_frame
from herald.domain.cloudevents import CONTENT_TYPE, cloudevent
from herald.domain.messages import OutboundMessage
from herald.settings import Settings

DEFAULT_PORTS = {"stomp": 61613, "stomp+ssl": 61614}
HEARTBEAT_MS = 10_000  # we ask the broker for one every 10 s, so a dead connection is noticed
IDLE_CLOSE = 300.0  # connections unused this long (s) are closed: integrations come and go
READ_LIMIT = 1 << 20  # longest frame line or NUL-terminated body we accept


class StompFailure(DeliveryFailed):
    """One attempt failed; ``detail`` is the sentence for the log, ``body`` the broker's words."""

    def __init__(self, detail: str, body: str = "") -> None:
        super().__init__(detail, body=body)


@dataclass(frozen=True, slots=True)
class Address:
    url: str
    host: str
    port: int
    tls: bool
    vhost: str  # the CONNECT ``host`` header; RabbitMQ takes it as the virtual host

    @classmethod
    def parse(cls, url: str) -> Address:
        parts = urlsplit(url.strip())
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except (KeyError, ValueError):
            port = 0
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname or not port:
            raise StompFailure(
                f"The STOMP address {url!r} is not a stomp:// or stomp+ssl:// host:port address."
            )
        return cls(
            url, parts.hostname, port, parts.scheme == "stomp+ssl", unquote(parts.path[1:]) or "/"
        )


async def _open_stream(
    address: Address, ssl_context: ssl.SSLContext | None, allow_private: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """TCP (and TLS) to the broker; unless private networks are allowed, only to public addresses,
    judged on the resolved address we then connect to, so DNS cannot slip a private one in."""
    tls = (ssl_context or ssl.create_default_context()) if address.tls else None
    if allow_private:
        return await asyncio.open_connection(address.host, address.port, ssl=tls, limit=READ_LIMIT)
    allowed = await resolve_public(address.host, address.port, allow_private=False)
    for ip in allowed[:-1]:
        try:
            return await asyncio.open_connection(
                ip,
                address.port,
                ssl=tls,
                server_hostname=address.host if tls else None,
                limit=READ_LIMIT,
            )
        except OSError:
            continue  # the next address of the same host may answer
    return await asyncio.open_connection(
        allowed[-1],
        address.port,
        ssl=tls,
        server_hostname=address.host if tls else None,
        limit=READ_LIMIT,
    )


class Connection:
    """One logged-in broker connection shared by concurrent deliveries; receipts matched by id."""

    def __init__(
        self, address: Address, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.address = address
        self._reader = reader
        self._writer = writer
        self._write_lock = asyncio.Lock()
        self._receipts: dict[str, asyncio.Future[Frame]] = {}
        self._reader_task: asyncio.Task[None] | None = None
        self.closed = False
        self.last_used = time.monotonic()

    @classmethod
    async def open(
        cls,
        address: Address,
        username: str,
        password: str,
        *,
        ssl_context: ssl.SSLContext | None,
        allow_private: bool,
    ) -> Connection:
        try:
            reader, writer = await _open_stream(address, ssl_context, allow_private)
        except BlockedAddressError as exc:
            raise StompFailure(blocked_detail(exc.host), str(exc)) from exc
        except socket.gaierror as exc:
            raise StompFailure(
                f"The STOMP broker host of {address.url} could not be resolved.", str(exc)
            ) from exc
        except ssl.SSLError as exc:
            raise StompFailure(f"The TLS handshake with {address.url} failed.", str(exc)) from exc
        except ConnectionRefusedError as exc:
            raise StompFailure(
                f"The STOMP broker at {address.url} refused the connection.", str(exc)
            ) from exc
        except OSError as exc:
            raise StompFailure(
                f"Could not connect to the STOMP broker at {address.url}.", str(exc)
            ) from exc
        connection = cls(address, reader, writer)
        try:
            await connection._login(username, password)
        except BaseException:
            connection.abort()
            raise
        return connection

    async def _login(self, username: str, password: str) -> None:
        if any(c in value for value in (username, password) for c in "\r\n\0"):
            # CONNECT headers are sent unescaped, so a line break would forge headers.
            raise StompFailure("The STOMP username or password contains a line break or NUL.")
        connect = Frame(
            "CONNECT",
            {
                "accept-version": "1.2",
                "host": self.address.vhost,
                "login": username,
                "passcode": password,
                "heart-beat": f"0,{HEARTBEAT_MS}",
            },
        )
        self._writer.write(connect.encode())
        try:
            await self._writer.drain()
            answer = await read_frame(self._reader)
        except (OSError, asyncio.IncompleteReadError) as exc:
            raise StompFailure(
                f"The STOMP broker at {self.address.url} closed the connection during login.",
                str(exc),
            ) from exc
        if answer.command == "ERROR":
            raise StompFailure(
                f"The STOMP broker at {self.address.url} refused the login ({answer.describe()}).",
                answer.describe(),
            )
        if answer.command != "CONNECTED":
            raise StompFailure(
                f"The STOMP broker at {self.address.url} answered {answer.command} to CONNECT."
            )
        # The broker beats every max(sx, our 10 s) unless sx is 0; two missed beats mean it is gone.
        sx = answer.headers.get("heart-beat", "0,0").partition(",")[0]
        idle = 2 * max(int(sx), HEARTBEAT_MS) / 1000 if sx.isdigit() and int(sx) > 0 else None
        self._reader_task = asyncio.get_running_loop().create_task(self._read_loop(idle))

    async def _read_loop(self, idle: float | None) -> None:
        """Hands RECEIPT and ERROR frames to the waiting deliveries until the connection ends."""
        reason, words = "the broker closed the connection", ""
        try:
            while True:
                frame = await asyncio.wait_for(read_frame(self._reader), idle)
                if frame.command == "RECEIPT":
                    waiter = self._receipts.pop(frame.headers.get("receipt-id", ""), None)
                    if waiter and not waiter.done():
                        waiter.set_result(frame)
                elif frame.command == "ERROR":
                    # An ERROR ends the connection; without a receipt-id it may concern any SEND.
                    reason, words = f"the broker sent ERROR ({frame.describe()})", frame.describe()
                    waiter = self._receipts.pop(frame.headers.get("receipt-id", ""), None)
                    if waiter and not waiter.done():
                        waiter.set_result(frame)
                    break
        except TimeoutError:
            reason = "the broker stopped sending heart-beats"
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            reason = f"the connection broke ({exc or type(exc).__name__})"
        finally:
            self.abort(reason, words)

    @property
    def busy(self) -> bool:
        return bool(self._receipts)

    async def send(self, destination: str, body: bytes, receipt: str) -> None:
        """SEND and wait for its RECEIPT; the caller's deadline bounds the wait."""
        if self.closed:
            raise StompFailure(f"The connection to {self.address.url} was closed.")
        waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._receipts[receipt] = waiter
        headers = {
            "destination": destination,
            "content-type": CONTENT_TYPE,
            "content-length": str(len(body)),
            "persistent": "true",  # RabbitMQ and ActiveMQ keep the message across broker restarts
            "receipt": receipt,
        }
        try:
            async with self._write_lock:
                self._writer.write(Frame("SEND", headers, body).encode())
                await self._writer.drain()
            answer = await waiter
        except OSError as exc:
            self.abort(f"the connection broke ({exc})")
            raise StompFailure(
                f"The connection to {self.address.url} broke while sending.", str(exc)
            ) from exc
        finally:
            self._receipts.pop(receipt, None)
            self.last_used = time.monotonic()
        if answer.command == "ERROR":
            words = answer.describe()
            raise StompFailure(
                f"The STOMP broker at {self.address.url} rejected the message ({words}).", words
            )

    def abort(self, reason: str = "the connection was closed", words: str = "") -> None:
        """Close at once and fail every delivery still waiting for a receipt on this connection."""
        self.closed = True
        for receipt, waiter in list(self._receipts.items()):
            if not waiter.done():
                waiter.set_exception(
                    StompFailure(
                        f"No receipt came from {self.address.url}: {reason}.", words or reason
                    )
                )
            self._receipts.pop(receipt, None)
        self._writer.close()

    async def close(self, wait: float = 1.0) -> None:
        """A polite DISCONNECT (with receipt, as STOMP 1.2 asks), then close."""
        if not self.closed:
            try:
                async with asyncio.timeout(wait):
                    await self.send_disconnect()
            except (TimeoutError, OSError, StompFailure):
                pass
        self.abort()
        if self._reader_task is not None:
            self._reader_task.cancel()
            await asyncio.gather(self._reader_task, return_exceptions=True)

    async def send_disconnect(self) -> None:
        receipt = f"disconnect-{uuid.uuid4().hex}"
        waiter: asyncio.Future[Frame] = asyncio.get_running_loop().create_future()
        self._receipts[receipt] = waiter
        async with self._write_lock:
            self._writer.write(Frame("DISCONNECT", {"receipt": receipt}).encode())
            await self._writer.drain()
        await waiter


class StompTransport:
    """Sends the job's CloudEvent to ``destination``; success only once the broker's RECEIPT came.

    Connections are kept per (address, username, password) and reopened when they break; the
    ``addresses`` are tried in order until one accepts the login.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        allow_private: bool = False,
        source: str = "herald",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.source = source
        self.ssl_context = ssl_context  # for stomp+ssl; None means the system's trusted CAs
        self._connections: dict[tuple[str, str, str], Connection] = {}
        self._opening: dict[tuple[str, str, str], asyncio.Lock] = {}

    async def _connection(self, address: Address, username: str, password: str) -> Connection:
        key = (address.url, username, password)
        async with self._opening.setdefault(key, asyncio.Lock()):
            connection = self._connections.get(key)
            if connection is None or connection.closed:
                connection = await Connection.open(
                    address,
                    username,
                    password,
                    ssl_context=self.ssl_context,
                    allow_private=self.allow_private,
                )
                self._connections[key] = connection
            connection.last_used = time.monotonic()
            return connection

    @classmethod
    def from_settings(cls, settings: Settings) -> StompTransport:
        return cls(timeout=settings.delivery_timeout, allow_private=settings.allow_private_networks)

    async def send(self, message: OutboundMessage) -> Delivered:
        """SEND with a receipt to the first address that accepts the login; delivered once the RECEIPT came."""
        try:
            receipt = f"{message.job_id}-{message.attempt}-{uuid.uuid4().hex[:8]}"
            await self._send(message, receipt, asyncio.get_running_loop().time() + self.timeout)
            return Delivered(broker_id=receipt)
        except (StompFailure, TimeoutError):
            raise
        except Exception as exc:  # e.g. a peer speaking another protocol
            raise StompFailure(
                f"The STOMP delivery failed while {self._phase()} ({type(exc).__name__}).", str(exc)
            ) from exc
        finally:
            self._close_idle()

    def peer(self, configuration: Mapping[str, Any]) -> str:
        addresses = configuration.get("addresses")
        return ",".join(map(str, addresses)) if isinstance(addresses, list) else str(addresses)

    def timeout_detail(self, timeout: float, phase: str) -> str:
        return f"The STOMP attempt timed out after {timeout:g} s while {phase or 'starting'}."

    @staticmethod
    def _phase() -> str:
        return current_phase() or "starting"

    async def _send(self, message: OutboundMessage, receipt: str, deadline: float) -> None:
        config = message.configuration
        urls = config.get("addresses") or []
        if isinstance(urls, str):
            urls = [urls]
        destination = str(config.get("destination") or "")
        if not urls or not destination:
            raise StompFailure("The stomp configuration needs addresses and a destination.")
        body = cloudevent(message, self.source)
        failures: list[StompFailure] = []
        loop = asyncio.get_running_loop()
        for index, url in enumerate(urls):
            note_phase(f"connecting to {url}")
            # Each address gets its share of the time left: a silent one leaves room for the rest.
            share = (deadline - loop.time()) / (len(urls) - index)
            try:
                async with asyncio.timeout(share if index < len(urls) - 1 else None):
                    connection = await self._connection(
                        Address.parse(str(url)),
                        str(config.get("username", "")),
                        str(config.get("password", "")),
                    )
            except StompFailure as failure:
                failures.append(failure)
                continue
            except TimeoutError:
                failures.append(StompFailure(f"Connecting to the STOMP broker at {url} timed out."))
                continue
            note_phase(f"waiting for the receipt from {url}")
            await connection.send(destination, body, receipt)
            return
        raise StompFailure(" ".join(f.detail for f in failures), "\n".join(f.body for f in failures if f.body))

    def _close_idle(self) -> None:
        """Forget broken connections, drop idle ones (abruptly: no delivery should wait on it)."""
        cutoff = time.monotonic() - IDLE_CLOSE
        for key, connection in list(self._connections.items()):
            if connection.closed or (connection.last_used < cutoff and not connection.busy):
                del self._connections[key]
                connection.abort()
                lock = self._opening.get(key)
                if lock is not None and not lock.locked():
                    del self._opening[key]

    async def close(self) -> None:
        connections = list(self._connections.values())
        self._connections.clear()
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)
