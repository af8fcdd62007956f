"""OAuth2 client-credentials tokens for the gateway: signed, expiring, bound to one pipeline.

    from gateway.auth import TokenIssuer
    issuer = TokenIssuer.for_project(project_dir, ttl_seconds=3600)
    token, expires_in = issuer.issue("demo")           # after checking client id + secret
    issuer.verify(token)                                # -> "demo", or raises TokenError

A token is ``<payload>.<signature>``: the payload is base64url JSON ``{"p": pipeline, "e":
expiry epoch seconds, "n": nonce}`` and the signature is HMAC-SHA256 with a key kept in the
project directory (``gateway.key``, mode 0600), so tokens survive a gateway restart and can be
checked without a lookup. Verified tokens are cached until they expire; the clock is injected so
that expiry is tested without sleeping. Tokens and secrets are never logged.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import secrets
import time
from pathlib import Path

KEY_FILE = "gateway.key"
DEFAULT_TTL_SECONDS = 3600
_CACHE_LIMIT = 10_000


class TokenError(Exception):
    """A token that is malformed, forged or expired (HTTP 401)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def load_or_create_key(project_dir: Path) -> bytes:
    path = Path(project_dir) / KEY_FILE
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, key.hex().encode())
    finally:
        os.close(fd)
    return key


class TokenIssuer:
    def __init__(self, key: bytes, ttl_seconds: int = DEFAULT_TTL_SECONDS, clock=time.time):
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}

    @classmethod
    def for_project(cls, project_dir: Path, ttl_seconds: int = DEFAULT_TTL_SECONDS, clock=time.time) -> "TokenIssuer":
        try:
            key = load_or_create_key(project_dir)
        except FileExistsError:  # another process created it at the same moment
            key = load_or_create_key(project_dir)
        return cls(key, ttl_seconds, clock)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def issue(self, pipeline: str) -> tuple[str, int]:
        expiry = math.ceil(self._clock() + self.ttl_seconds)  # never shorter than promised
        payload = _b64(json.dumps({"p": pipeline, "e": expiry, "n": secrets.token_hex(4)},
                                  separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload)}", self.ttl_seconds

    def verify(self, token: str) -> str:
        """The pipeline a valid token belongs to; TokenError when it is not valid now."""
        cached = self._cache.get(token)
        now = self._clock()
        if cached is not None:
            if now < cached[1]:
                return cached[0]
            del self._cache[token]
            raise TokenError("token expired")
        payload, _, signature = token.partition(".")
        if not payload or not hmac.compare_digest(signature, self._sign(payload)):
            raise TokenError("invalid token")
        try:
            claims = json.loads(_unb64(payload))
            pipeline, expiry = str(claims["p"]), float(claims["e"])
        except (ValueError, KeyError, TypeError):
            raise TokenError("invalid token") from None
        if now >= expiry:
            raise TokenError("token expired")
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[token] = (pipeline, expiry)
        return pipeline
