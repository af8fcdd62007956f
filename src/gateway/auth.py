"""OAuth2 client-credentials tokens for the gateway: signed, expiring, bound to one client id and
one credential generation of the project.

    from gateway.auth import TokenIssuer, authenticate_client
    issuer = TokenIssuer.for_project(project_dir, ttl_seconds=3600)
    pipeline = authenticate_client(project, client_id, client_secret)   # Pipeline, or None
    token, expires_in = issuer.issue(pipeline)
    issuer.verify(token, project)          # -> the Pipeline, or raises TokenError

A token is ``<payload>.<signature>``: the payload is base64url JSON ``{"c": client id, "g":
credential generation, "e": expiry epoch seconds, "n": nonce}`` and the signature is
HMAC-SHA256 with a key kept in the project directory (``gateway.key``, mode 0600), so tokens
survive a gateway restart. ``verify`` checks the signature and the expiry, then looks the client
id up in the project (``controlplane.project``) and compares the generation: a deleted pipeline
(its client id is gone, and a pipeline created again under its name has a new one) and a rotated
one (``pstream rotate-credentials``: the generation went up) refuse every earlier token at once,
as soon as the gateway has read the changed project file.

Client secrets are checked against their salted hash in constant time
(``Pipeline.check_secret``); a token of any shape (non-ASCII, huge, not base64) is a
TokenError, never another exception. Verified signatures are cached until the token expires
(the project lookup is done on every call); the clock is injected so that expiry is tested
without sleeping. Tokens and secrets are never logged.

Whoever can read the project directory can mint tokens (``issue``) without a secret: the CLI
does so for its own commands (``pstream simulate``, ``pstream listen``).
"""
from __future__ import annotations

import base64
import binascii
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
MAX_TOKEN_CHARS = 1024
_CACHE_LIMIT = 10_000


class TokenError(Exception):
    """A token that is malformed, forged, expired or revoked (HTTP 401)."""


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


def authenticate_client(project, client_id, client_secret):
    """The pipeline whose credentials these are, or None (unknown id, wrong secret, not text)."""
    if not isinstance(client_id, str) or not isinstance(client_secret, str):
        return None
    pipeline = project.pipeline_by_client(client_id)
    if pipeline is None:
        return None
    return pipeline if pipeline.check_secret(client_secret) else None


class TokenIssuer:
    def __init__(self, key: bytes, ttl_seconds: int = DEFAULT_TTL_SECONDS, clock=time.time):
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[str, int, float]] = {}

    @classmethod
    def for_project(cls, project_dir: Path, ttl_seconds: int = DEFAULT_TTL_SECONDS, clock=time.time) -> "TokenIssuer":
        try:
            key = load_or_create_key(project_dir)
        except FileExistsError:  # another process created it at the same moment
            key = load_or_create_key(project_dir)
        return cls(key, ttl_seconds, clock)

    def _sign(self, payload: bytes) -> bytes:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest()).encode()

    def issue(self, pipeline) -> tuple[str, int]:
        """A token for the pipeline's current credentials (its client id and generation)."""
        expiry = math.ceil(self._clock() + self.ttl_seconds)  # never shorter than promised
        claims = {"c": pipeline.client_id, "g": pipeline.credential_generation, "e": expiry,
                  "n": secrets.token_hex(4)}
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(payload.encode()).decode()}", self.ttl_seconds

    def _claims(self, token) -> tuple[str, int, float]:
        """(client id, generation, expiry) of a token with a valid signature; TokenError otherwise."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise TokenError("invalid token")
        payload, _, signature = token.partition(".")
        if not payload or not hmac.compare_digest(signature.encode(), self._sign(payload.encode())):
            raise TokenError("invalid token")
        try:
            claims = json.loads(_unb64(payload))
            client_id, generation, expiry = claims["c"], claims["g"], float(claims["e"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise TokenError("invalid token") from None
        if not isinstance(client_id, str) or not isinstance(generation, int):
            raise TokenError("invalid token")
        return client_id, generation, expiry

    def verify(self, token, project):
        """The pipeline a token is valid for now; TokenError when it is not (never another error)."""
        claims = self._cache.get(token) if isinstance(token, str) else None
        if claims is None:
            claims = self._claims(token)
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[token] = claims
        client_id, generation, expiry = claims
        if self._clock() >= expiry:
            self._cache.pop(token, None)
            raise TokenError("token expired")
        pipeline = project.pipeline_by_client(client_id)
        if pipeline is None:
            raise TokenError("the credentials of this token were deleted")
        if pipeline.credential_generation != generation:
            raise TokenError("the credentials of this token were rotated: get a new token")
        return pipeline
