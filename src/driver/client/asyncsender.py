"""Send events concurrently from asyncio code.

    from driver.client.asyncsender import AsyncSender
    async with AsyncSender(client_id, client_secret, config={"gateway_url": url}) as sender:
        errors = await asyncio.gather(*(sender.send_event(e) for e in events))   # None = accepted

``send_event`` returns None when the gateway answered 204 and a ``SendError`` otherwise; it
never raises for a refused event. Connection errors and 5xx answers are retried with
exponential backoff (``max_attempts``, ``backoff_seconds``); 4xx answers are not, except one
retry with a fresh token after a 401. Up to ``max_connections`` requests are in flight.
"""
from __future__ import annotations

import asyncio
import logging

import aiohttp

from driver.client.auth import TokenProvider
from driver.client.errors import SendError
from driver.config import ClientConfig
from driver.serializer import SerializationType, serialize

log = logging.getLogger(__name__)
_RETRYABLE = (aiohttp.ClientConnectionError, asyncio.TimeoutError)


class AsyncSender:
    def __init__(self, client_id: str, client_secret: str | None, config=None, tokens=None):
        """``tokens``: another source of bearer tokens (``token()``, ``invalidate()``) instead of
        the client-credentials exchange, e.g. the CLI's tokens signed with the project's key."""
        self.config = ClientConfig.of(config)
        self._client_id = client_id
        self._client_secret = client_secret
        self._session: aiohttp.ClientSession | None = None
        self.tokens: TokenProvider | None = tokens
        self.sent = 0
        self.retries = 0

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.config.max_connections)
            self._session = aiohttp.ClientSession(connector=connector)
            if self.tokens is None:
                self.tokens = TokenProvider(self._session, self.config, self._client_id, self._client_secret)

    async def authenticate(self) -> None:
        """Fetch a token now (raises SendError with the status if the credentials are refused)."""
        await self.start()
        await self.tokens.token()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> "AsyncSender":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def send_event(self, event, serialization_type: SerializationType = SerializationType.AVRO_BINARY):
        """None when accepted, else a SendError (status and the gateway's text)."""
        try:
            body, kind, ref = serialize(event, serialization_type)
        except (ValueError, TypeError) as exc:
            return SendError(None, f"cannot serialize the event: {exc}")
        return await self.send_bytes(body, kind, ref)

    async def send_bytes(self, body: bytes, serialization_header: str, schema_ref: str):
        await self.start()
        config = self.config
        timeout = aiohttp.ClientTimeout(total=config.timeout_seconds)
        delay = config.backoff_seconds
        refreshed = False
        error: SendError | None = None
        attempt = 0
        while attempt < config.max_attempts:
            attempt += 1
            try:
                token = await self.tokens.token()
                headers = {
                    "Authorization": f"Bearer {token}",
                    "Strm-Schema-Ref": schema_ref,
                    "Strm-Serialization-Type": serialization_header,
                    "Content-Type": serialization_header,
                }
                async with self._session.post(config.event_url, data=body, headers=headers, timeout=timeout) as response:
                    if response.status == 204:
                        self.sent += 1
                        return None
                    text = await response.text()
                    error = SendError(response.status, text)
                    if response.status == 401 and not refreshed:
                        self.tokens.invalidate()
                        refreshed = True
                        attempt -= 1  # a fresh token is not a retry
                        continue
                    if response.status < 500:
                        return error
            except SendError as exc:  # the token endpoint refused or failed
                if exc.status is not None and exc.status < 500:
                    return exc
                error = exc
            except _RETRYABLE as exc:
                error = SendError(None, f"cannot reach the gateway at {config.event_url}: {type(exc).__name__}")
            if attempt < config.max_attempts:
                self.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, config.max_backoff_seconds)
        return error
