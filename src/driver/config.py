"""Where the driver sends events and how it retries.

    from driver.config import ClientConfig
    ClientConfig()                                             # $PSTREAM_GATEWAY_URL or http://127.0.0.1:8080
    ClientConfig(gateway_url="http://127.0.0.1:9000")
    ClientConfig.of({"gateway_url": "http://127.0.0.1:9000", "max_attempts": 3})
    ClientConfig(gateway_protocol="http", gateway_host="127.0.0.1:9000")   # the reference's keys

The token endpoint defaults to ``<gateway_url>/auth/token`` (``auth_url`` or
``$PSTREAM_AUTH_URL`` to change it). A token is refreshed when ``refresh_fraction`` of its
lifetime has passed, and at once when the gateway answers 401.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields

DEFAULT_GATEWAY_URL = "http://127.0.0.1:8080"
GATEWAY_URL_ENV = "PSTREAM_GATEWAY_URL"
AUTH_URL_ENV = "PSTREAM_AUTH_URL"


@dataclass
class ClientConfig:
    gateway_url: str | None = None
    auth_url: str | None = None
    event_path: str = "/event"
    timeout_seconds: float = 10.0
    max_attempts: int = 5            # tries per event on 5xx / connection errors
    backoff_seconds: float = 0.05    # first wait; doubles per try
    max_backoff_seconds: float = 2.0
    refresh_fraction: float = 0.8
    max_connections: int = 64
    # the reference driver's keys, accepted for compatibility
    gateway_protocol: str | None = None
    gateway_host: str | None = None
    gateway_endpoint: str | None = None
    auth_protocol: str | None = None
    auth_host: str | None = None
    auth_endpoint: str | None = None

    @classmethod
    def of(cls, value) -> "ClientConfig":
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, dict):
            known = {f.name for f in fields(cls)}
            unknown = set(value) - known
            if unknown:
                raise ValueError(f"unknown driver config keys: {', '.join(sorted(unknown))}")
            return cls(**value)
        raise TypeError("config must be a ClientConfig, a dict or None")

    @property
    def base_url(self) -> str:
        if self.gateway_url:
            return self.gateway_url.rstrip("/")
        if self.gateway_host:
            return f"{self.gateway_protocol or 'https'}://{self.gateway_host}"
        return os.environ.get(GATEWAY_URL_ENV, DEFAULT_GATEWAY_URL).rstrip("/")

    @property
    def event_url(self) -> str:
        return self.base_url + (self.gateway_endpoint or self.event_path)

    @property
    def token_url(self) -> str:
        if self.auth_url:
            return self.auth_url
        if self.auth_host:
            return f"{self.auth_protocol or 'https'}://{self.auth_host}{self.auth_endpoint or '/auth/token'}"
        return os.environ.get(AUTH_URL_ENV) or self.base_url + "/auth/token"
