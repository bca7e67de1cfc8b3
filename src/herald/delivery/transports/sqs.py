"""Delivery to an AWS SQS queue (or an SQS-compatible server): one SendMessage per attempt.

aiobotocore keeps us on the event loop and speaks every SQS wire protocol botocore knows. Clients
are expensive to build (service model, connection pool), so one is kept per set of credentials.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
    SSLError,
)

from herald.delivery.guard import BlockedAddressError, GuardedResolver, check_url_host
from herald.delivery.transports.base import Delivered, DeliveryFailed, blocked_detail
from herald.domain.cloudevents import cloudevent
from herald.domain.messages import OutboundMessage
from herald.settings import Settings

# Error codes SQS (query and JSON protocols) answers when the signature or key is refused.
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "InvalidSecurity",
    }
)
_MISSING_QUEUE_CODES = frozenset(
    {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue"}
)
_ACCESS_CODES = frozenset({"AccessDenied", "AccessDeniedException"})
_KNOWN_CODES = _CREDENTIAL_CODES | _MISSING_QUEUE_CODES | _ACCESS_CODES

_DNS_ERRORS: tuple[type[Exception], ...] = tuple(
    filter(None, [getattr(aiohttp, "ClientConnectorDNSError", None)])  # aiohttp >= 3.10
)
_ClientKey = tuple[str, str | None, str, str]


class SqsTransport:
    """Sends the job's CloudEvent as the SQS MessageBody; success is SQS's 200 with a MessageId.

    The outbound address policy applies to the SQS endpoint: IP literals are checked before
    sending, host names inside the resolver aiohttp uses to connect.
    """

    def __init__(
        self, *, timeout: float = 10.0, allow_private: bool = False, source: str = "herald"
    ) -> None:
        self.timeout = timeout
        self.allow_private = allow_private
        self.source = source
        self._session = get_session()
        self._exit_stack = AsyncExitStack()
        self._clients: dict[_ClientKey, Any] = {}
        self._lock = asyncio.Lock()
        self._resolver: GuardedResolver | None = None

    async def _client(self, config: dict[str, Any]) -> Any:
        # The secret is part of the key so that a corrected secret takes effect at once.
        key: _ClientKey = (
            str(config["region"]),
            config.get("endpoint_url") or None,
            str(config["aws_access_key_id"]),
            str(config["aws_secret_access_key"]),
        )
        async with self._lock:
            client = self._clients.get(key)
            if client is None:
                # Made here, not in __init__: aiohttp's default resolver binds to the running loop.
                if self._resolver is None:
                    self._resolver = GuardedResolver(allow_private=self.allow_private)
                client = await self._exit_stack.enter_async_context(
                    self._session.create_client(
                        "sqs",
                        region_name=key[0],
                        endpoint_url=key[1],
                        aws_access_key_id=key[2],
                        aws_secret_access_key=key[3],
                        config=AioConfig(
                            connect_timeout=self.timeout,
                            read_timeout=self.timeout,
                            # Herald's retry schedule is the only retry: one attempt, one request.
                            retries={"total_max_attempts": 1},
                            connector_args={"resolver": self._resolver},
                        ),
                    )
                )
                self._clients[key] = client
            return client

    @classmethod
    def from_settings(cls, settings: Settings) -> SqsTransport:
        return cls(timeout=settings.delivery_timeout, allow_private=settings.allow_private_networks)

    async def send(self, message: OutboundMessage) -> Delivered:
        config = message.configuration
        url = str(config.get("url", ""))
        params: dict[str, Any] = {
            "QueueUrl": url,
            "MessageBody": cloudevent(message, self.source).decode(),
        }
        if url.endswith(".fifo"):
            # FIFO queues require both; the job id lets SQS drop a duplicate of an accepted attempt.
            params["MessageGroupId"] = message.integration_id
            params["MessageDeduplicationId"] = message.job_id
        try:
            if endpoint := config.get("endpoint_url"):
                check_url_host(urlsplit(str(endpoint)).hostname or "", self.allow_private)
            client = await self._client(config)
            answer = await client.send_message(**params)
        except ClientError as exc:
            status, detail = _client_error(exc)
            raise DeliveryFailed(detail, status=status, body=str(exc)) from exc
        except (ConnectTimeoutError, ReadTimeoutError) as exc:
            raise DeliveryFailed(self.timeout_detail(self.timeout, ""), body=str(exc)) from exc
        except BlockedAddressError as exc:
            raise DeliveryFailed(blocked_detail(exc.host), body=str(exc)) from exc
        except BotoCoreError as exc:
            raise DeliveryFailed(_transport_error(exc), body=str(exc)) from exc
        except KeyError as exc:
            raise DeliveryFailed(f"The aws_sqs configuration has no {exc} value.", body=str(exc)) from exc
        except TimeoutError:
            raise
        except Exception as exc:  # e.g. an SQS-compatible server answering what botocore cannot parse
            raise DeliveryFailed(f"The SQS request failed ({type(exc).__name__}).", body=str(exc)) from exc
        status = answer.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return Delivered(status, broker_id=str(answer.get("MessageId", "")))

    def peer(self, configuration: Mapping[str, Any]) -> str:
        return str(configuration.get("endpoint_url") or f"sqs:{configuration.get('region', '')}")

    def timeout_detail(self, timeout: float, phase: str) -> str:
        return f"The SQS request timed out after {timeout:g} s."

    async def close(self) -> None:
        self._clients.clear()
        await self._exit_stack.aclose()
        if self._resolver is not None:
            await self._resolver.close()
            self._resolver = None


def _client_error(exc: ClientError) -> tuple[int | None, str]:
    """SQS answered with an error: its HTTP status and one sentence saying whose fault it is."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    error = exc.response.get("Error", {})
    code, text = str(error.get("Code", "")), str(error.get("Message", ""))
    if code not in _KNOWN_CODES:
        # Some SQS-compatible servers answer XML to a JSON request; botocore keeps the raw body.
        code = next((known for known in _KNOWN_CODES if f">{known}<" in text), code)
    if code in _MISSING_QUEUE_CODES:
        return status, "The SQS queue does not exist."
    if code in _CREDENTIAL_CODES:
        return status, f"SQS rejected the AWS credentials ({code})."
    if code in _ACCESS_CODES:
        return status, "The AWS credentials are not allowed to send messages to this SQS queue."
    return status, f"SQS refused the message ({code or status}: {text})."


def _transport_error(exc: BotoCoreError) -> str:
    """No answer from SQS: say whether the address, the port or TLS was the problem."""
    cause = getattr(exc, "kwargs", {}).get("error")
    if isinstance(exc, SSLError):
        return "The TLS handshake with the SQS endpoint failed."
    if isinstance(cause, BlockedAddressError):
        return blocked_detail(cause.host)
    if isinstance(exc, EndpointConnectionError):
        os_error = getattr(cause, "os_error", cause)
        if isinstance(os_error, socket.gaierror) or isinstance(cause, _DNS_ERRORS):
            return "The SQS endpoint's host name could not be resolved."
        if isinstance(os_error, ConnectionRefusedError) or (
            isinstance(os_error, OSError) and os_error.errno == errno.ECONNREFUSED
        ):
            return "The SQS endpoint refused the connection."
        return "Could not connect to the SQS endpoint."
    return f"The SQS request failed ({type(exc).__name__})."
