"""OAuth2 client-credentials tokens for the driver, refreshed before they expire.

    tokens = TokenProvider(session, config, client_id, client_secret)
    token = await tokens.token()         # cached; refreshed after refresh_fraction of its lifetime
    tokens.invalidate()                  # after a 401: the next token() fetches a new one
"""
from __future__ import annotations

import asyncio
import time

import aiohttp

from driver.client.errors import SendError


class TokenProvider:
    def __init__(self, session: aiohttp.ClientSession, config, client_id: str, client_secret: str, clock=time.monotonic):
        self._session = session
        self._config = config
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock
        self._token: str | None = None
        self._refresh_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0

    def invalidate(self) -> None:
        self._token = None

    async def token(self) -> str:
        if self._token is not None and self._clock() < self._refresh_at:
            return self._token
        async with self._lock:
            if self._token is None or self._clock() >= self._refresh_at:
                await self._fetch()
        return self._token

    async def _fetch(self) -> None:
        form = {"grant_type": "client_credentials", "client_id": self._client_id, "client_secret": self._client_secret}
        timeout = aiohttp.ClientTimeout(total=self._config.timeout_seconds)
        async with self._session.post(self._config.token_url, data=form, timeout=timeout) as response:
            if response.status != 200:
                text = await response.text()
                raise SendError(response.status, f"authentication failed: {text}")
            body = await response.json(content_type=None)
        self.fetches += 1
        lifetime = float(body.get("expires_in") or 300)
        self._token = body["access_token"]
        self._refresh_at = self._clock() + lifetime * self._config.refresh_fraction
