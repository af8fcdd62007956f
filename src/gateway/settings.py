"""The gateway's settings: one object, every command-line flag declared once, here.

    from gateway.settings import GatewaySettings
    parser = argparse.ArgumentParser()
    GatewaySettings.add_arguments(parser)                 # --port, --header-timeout, ... with help
    settings = GatewaySettings.from_args(parser.parse_args())
    settings.to_argv()                                    # the same settings as flags, for a child process
    GatewaySettings(project_dir="/tmp/demo", port=0)      # or built directly (tests, embedding)

``python -m gateway`` (``gateway.server``), ``pstream gateway`` and ``pstream local``
(``cli/local.py``) all take their gateway flags from here; a command may change a default
(``pstream local`` rolls spool segments every second) with ``parser.set_defaults``. A flag is
the field name in kebab-case (``max_event_bytes`` -> ``--max-event-bytes``); its help text and
type come from the field's metadata. Fields without help (``tail_poll_seconds``) are settings
for code and tests, not flags.

The limits exist so that no client, with a token or without, can hold the server's memory, file
descriptors or event loop: see ``gateway.connections`` for the connection limits and timeouts and
``gateway.registry`` for the contract references.

This module imports no third-party package, so that ``--help`` stays fast.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from gateway.auth import DEFAULT_TTL_SECONDS
from gateway.spool import DEFAULT_MAX_AGE_SECONDS as DEFAULT_SEGMENT_SECONDS
from gateway.spool import DEFAULT_MAX_BYTES as DEFAULT_SEGMENT_BYTES

DEFAULT_PORT = 8080
DEFAULT_MAX_EVENT_BYTES = 1 << 20
PROJECT_DIR_ENV = "PSTREAM_PROJECT_DIR"   # controlplane.project's (not imported: it loads YAML and the crypto core)


def _flag(help: str, type=None, metavar: str | None = None, aliases: tuple[str, ...] = (), choices=None) -> dict:
    return {"help": help, "type": type, "metavar": metavar, "aliases": aliases, "choices": choices}


@dataclass(frozen=True)
class GatewaySettings:
    project_dir: str | Path | None = field(default=None, metadata=_flag(
        f"project directory (default: ${PROJECT_DIR_ENV} or ~/.config/pstream)", str, "DIR",
        aliases=("--project_dir",)))
    host: str = field(default="127.0.0.1", metadata=_flag("address to listen on (default %(default)s)", str))
    port: int = field(default=DEFAULT_PORT, metadata=_flag("port; 0 picks a free one (default %(default)s)", int))
    ready_file: str | None = field(default=None, metadata=_flag(
        "write the bound port to this file once listening (for scripts and tests)", str, "FILE"))
    publish: str | None = field(default=None, metadata=_flag(
        "publish accepted events instead of spooling them: pubsub://projects/PROJECT/topics/TOPIC or "
        "kafka://HOST:PORT/TOPIC; a topic may hold {pipeline}; ?timeout=SECONDS bounds each publish "
        "(default 10); see gateway/publish.py (default: the local spool)", str, "URI"))
    token_ttl: int = field(default=DEFAULT_TTL_SECONDS, metadata=_flag(
        "seconds an access token is valid (default %(default)s)", int, "SECONDS"))
    # request limits
    max_event_bytes: int = field(default=DEFAULT_MAX_EVENT_BYTES, metadata=_flag(
        "a larger event body gets 413 (default %(default)s)", int, "BYTES"))
    max_header_bytes: int = field(default=16 * 1024, metadata=_flag(
        "request line and headers larger than this get 431 and the connection is closed "
        "(default %(default)s)", int, "BYTES"))
    header_timeout: float = field(default=10.0, metadata=_flag(
        "seconds a client has to send a complete request line and headers, from connecting or from "
        "its first byte of a following request; then the connection is closed (default %(default)s)",
        float, "SECONDS"))
    body_timeout: float = field(default=10.0, metadata=_flag(
        "seconds a client has to send the whole body after the headers; then 408 and the connection "
        "is closed (default %(default)s)", float, "SECONDS"))
    keep_alive_timeout: float = field(default=5.0, metadata=_flag(
        "an idle keep-alive connection is closed after this many seconds (default %(default)s)", float, "SECONDS"))
    keep_alive_requests: int = field(default=1000, metadata=_flag(
        "requests served on one connection before it is closed (default %(default)s)", int, "N"))
    max_connections: int = field(default=4096, metadata=_flag(
        "open connections at most (bounded by the file descriptor limit); at the cap a new connection "
        "takes the place of the oldest one that has not sent a complete request, so idle clients cannot "
        "lock others out (default %(default)s)", int, "N"))
    # contracts
    max_contract_bytes: int = field(default=256 * 1024, metadata=_flag(
        "a contract file larger than this is refused without being read (default %(default)s)", int, "BYTES"))
    contract_cache_seconds: float = field(default=5.0, metadata=_flag(
        "an unknown contract reference is remembered this long, and a known contract file is checked for "
        "changes this often, so a contract added to the project is used without a restart "
        "(default %(default)s)", float, "SECONDS"))
    contract_cache_size: int = field(default=1024, metadata=_flag(
        "contract references remembered, known and unknown (default %(default)s)", int, "N"))
    # spool
    segment_bytes: int = field(default=DEFAULT_SEGMENT_BYTES, metadata=_flag(
        "close a spool segment at this size (default %(default)s)", int, "BYTES"))
    segment_seconds: float = field(default=DEFAULT_SEGMENT_SECONDS, metadata=_flag(
        "close a spool segment after this many seconds (default %(default)s)", float, "SECONDS"))
    # operations
    metrics_token_file: str | None = field(default=None, metadata=_flag(
        "GET /metrics needs 'Authorization: Bearer <the first line of this file>'; without it, /metrics "
        "answers only clients on the loopback address", str, "FILE"))
    log_level: str = field(default="warning", metadata=_flag(
        "log level (default %(default)s)", str, choices=("debug", "info", "warning", "error")))
    log_window_seconds: float = field(default=60.0, metadata=_flag(
        "a repeated problem (bad requests, timeouts, refused contracts) is logged once per window, "
        "then with how many times it happened (default %(default)s)", float, "SECONDS"))
    tail_poll_seconds: float = 0.2   # web socket listeners: how often output files are looked at

    # ---------------------------------------------------------------- flags
    @staticmethod
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, group_title: str | None = None) -> None:
        """Declare every setting that has help text as a flag (``dest`` is the field name)."""
        target = parser.add_argument_group(group_title) if group_title else parser
        for item in dataclasses.fields(cls):
            meta = item.metadata
            if not meta:
                continue
            options = {"dest": item.name, "default": item.default, "help": meta["help"]}
            for key in ("type", "metavar", "choices"):
                if meta[key] is not None:
                    options[key] = meta[key]
            target.add_argument(cls.flag(item.name), **options)
            for alias in meta["aliases"]:   # older spellings: accepted, not shown (flags are kebab-case)
                target.add_argument(alias, **{**options, "default": argparse.SUPPRESS, "help": argparse.SUPPRESS})

    @classmethod
    def from_args(cls, args: argparse.Namespace, **overrides) -> "GatewaySettings":
        values = {item.name: getattr(args, item.name) for item in dataclasses.fields(cls)
                  if item.metadata and hasattr(args, item.name)}
        values.update(overrides)
        return cls(**values).resolved()

    def resolved(self) -> "GatewaySettings":
        """The settings with the project directory filled in (flag, environment or default)."""
        if self.project_dir is not None:
            return dataclasses.replace(self, project_dir=Path(self.project_dir))
        from controlplane.project import default_project_dir

        return dataclasses.replace(self, project_dir=default_project_dir())

    def to_argv(self, **overrides) -> list[str]:
        """These settings as ``python -m gateway`` flags (defaults left out)."""
        argv = []
        values = dataclasses.replace(self, **overrides) if overrides else self
        for item in dataclasses.fields(self):
            value = getattr(values, item.name)
            if item.metadata and value is not None and value != item.default:
                argv += [self.flag(item.name), str(value)]
        return argv

    def check(self) -> None:
        """ValueError naming the flag of a setting that cannot work."""
        positive = ("max_event_bytes", "max_header_bytes", "header_timeout", "body_timeout", "keep_alive_timeout",
                    "keep_alive_requests", "max_connections", "max_contract_bytes", "contract_cache_size",
                    "segment_bytes", "segment_seconds", "token_ttl", "log_window_seconds")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"{self.flag(name)} must be greater than 0")
        if self.contract_cache_seconds < 0:
            raise ValueError(f"{self.flag('contract_cache_seconds')} must not be negative")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"{self.flag('port')} must be between 0 and 65535")
