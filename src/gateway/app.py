"""The event gateway as a plain ASGI application (served by uvicorn, see ``gateway.server``).

    from gateway.app import GatewayApp
    from gateway.settings import GatewaySettings
    app = GatewayApp(GatewaySettings(project_dir="/tmp/demo"))
    # gateway.server.run(settings) serves it with the connection limits of gateway.connections

Endpoints:

- ``POST /auth/token``: OAuth2 client credentials (form or JSON ``grant_type=client_credentials``,
  ``client_id``, ``client_secret``; or HTTP Basic) -> ``{"access_token", "token_type": "Bearer",
  "expires_in"}``; 401 for unknown credentials.
- ``POST /event`` (also ``/pipelines/<name>/event``): headers ``Authorization: Bearer <token>``,
  ``Strm-Schema-Ref: handle/name/version`` (a reference into the project's contract registry,
  never a path: ``gateway.registry``), ``Strm-Serialization-Type: application/json`` or
  ``application/x-avro-binary`` (Avro binary of ``contracts.avro.avro_schema``). Answers 204 once
  the event is in the pipeline's spool (fsynced), or, with a ``publisher`` (``gateway.publish``),
  once Pub/Sub or Kafka acknowledged it (503 if it did not); 400 with the reference's text for a bad event
  or an unknown contract, one whose lifecycle state accepts no events (``Schema '<ref>' is not active
  (state DRAFT)``: only ACTIVE and DEPRECATED do; a DEPRECATED one's 204 carries
  ``Strm-Contract-State: DEPRECATED``) or a malformed ``Strm-Schema-Ref``; 401 without a valid token
  (a malformed one included); 403 for a token of another pipeline or a disabled one; 413 over
  ``max_event_bytes``; 415 for another serialization type. Timeouts, header size and connection
  caps are the server's (``gateway.connections``: 408, 431, 503).
- ``GET /health`` (``/is-alive``): ``{"status": "ok"}``. ``GET /metrics``: Prometheus text, for
  clients on the loopback address only, or, with ``--metrics-token-file``, for requests with
  ``Authorization: Bearer <that token>`` (401 without it).
- websocket ``/ws/<pipeline or privacy stream>`` (bearer token of its pipeline): one JSON text
  message per event the pipeline writes for that stream from now on (``?from=start``: all).

It is a bare ASGI callable rather than a framework app: the hot path (``POST /event``) is a
handful of dict lookups, ``orjson`` and the validator, measured in ``benchmarks/gateway.py``.
No request ends in a traceback: what the app does not expect is a 500, logged once per window
with its count (``gateway.problems``).
"""
from __future__ import annotations

import asyncio
import base64
import hmac
import io
import ipaddress
import logging
import os
import random
import time
from pathlib import Path
from urllib.parse import parse_qs

import fastavro
import orjson

from contracts.avro import avro_schema
from contracts.events import EventError, EventValidator
from gateway.auth import TokenError, TokenIssuer, authenticate_client
from gateway.metrics import Metrics
from controlplane.project import Project, ProjectError
from gateway.problems import ProblemLog
from gateway.publish import EventPublisher, PublishError
from controlplane.contracts import ContractRegistry
from gateway.registry import ContractCache, Refused
from gateway.settings import GatewaySettings
from gateway.spool import Spool
from gateway.tail import tail_jsonl, visible_jsonl


JSON = "application/json"
AVRO_BINARY = "application/x-avro-binary"
SERIALIZATION_TYPES = (JSON, AVRO_BINARY)
MAX_TOKEN_BYTES = 4096
_CLOSE = [(b"connection", b"close")]
_KINDS = {b"application/json": JSON, b"application/x-avro-binary": AVRO_BINARY}
_NO_CONTENT = {"type": "http.response.start", "status": 204, "headers": []}
_NO_CONTENT_DEPRECATED = {"type": "http.response.start", "status": 204,
                          "headers": [(b"strm-contract-state", b"DEPRECATED")]}   # accepted, with a warning
_EMPTY_BODY = {"type": "http.response.body", "body": b""}
_random_bits = random.getrandbits  # the nonce is a dedupe aid, not a secret


_Reject = Refused   # an answer with a status and a short text: the request ends here


class _Disconnected(Exception):
    """The client went away (or the body timeout fired) before the whole body arrived."""


class _Contract:
    """What the hot path needs of one contract: its validator and parsed Avro schema."""

    __slots__ = ("ref", "validator", "avro", "accepted")

    def __init__(self, contract):
        self.ref = contract.ref
        self.accepted = _NO_CONTENT_DEPRECATED if contract.state == "DEPRECATED" else _NO_CONTENT
        self.validator = EventValidator(contract)
        self.avro = fastavro.parse_schema(avro_schema(contract))


class GatewayApp:
    def __init__(self, settings: GatewaySettings, clock=time.time, publisher: EventPublisher | None = None,
                 problems: ProblemLog | None = None):
        settings = settings.resolved()
        self.settings = settings
        self.publisher = publisher  # None: accepted events go to the spool
        self.project_dir = Path(settings.project_dir)
        self._clock = clock
        self.problems = problems or ProblemLog(logging.getLogger("gateway"), settings.log_window_seconds)
        self.issuer = TokenIssuer.for_project(self.project_dir, settings.token_ttl, clock)
        self.metrics = Metrics()
        self.spools: dict[str, Spool] = {}
        self._project = Project.open(self.project_dir)
        self._project_mtime = self._mtime()
        self._project_checked = 0.0
        self.contracts = ContractCache(
            ContractRegistry(self.project_dir, contracts_path=False), build=_Contract,
            max_bytes=settings.max_contract_bytes, ttl_seconds=settings.contract_cache_seconds,
            max_entries=settings.contract_cache_size, problems=self.problems)
        self._metrics_token = _read_token_file(settings.metrics_token_file) if settings.metrics_token_file else None
        self._roller: asyncio.Task | None = None
        spool_root = self.project_dir / "spool"
        if spool_root.is_dir():  # close segments a killed gateway left open
            for directory in sorted(spool_root.iterdir()):
                if directory.is_dir():
                    self.spool(directory.name)

    # ------------------------------------------------------------ plumbing
    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            try:
                await self._websocket(scope, receive, send)
            except Exception as exc:  # a bug: close (403 before the handshake), one log line per window
                self.problems.report("internal error", "internal error in a web socket", logging.ERROR, exc)
                try:
                    await send({"type": "websocket.close", "code": 1011})
                except Exception:  # already closed
                    pass
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._roller = asyncio.get_running_loop().create_task(self._roll_old_segments())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._roller:
                    self._roller.cancel()
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def close(self) -> None:
        for spool in self.spools.values():
            spool.close()
        self.spools.clear()
        self.contracts.close()
        if self.publisher is not None:
            self.publisher.close()
        self.problems.flush(force=True)

    async def _roll_old_segments(self):
        """Timer work: close old spool segments, log the counts of repeated problems."""
        loop = asyncio.get_running_loop()
        period = max(0.05, min(1.0, self.settings.segment_seconds / 4))
        while True:
            await asyncio.sleep(period)
            for spool in list(self.spools.values()):
                try:
                    await loop.run_in_executor(spool._executor, spool.roll_if_old)
                except (OSError, RuntimeError) as exc:
                    self.problems.report("spool roll", "rolling a spool segment failed", logging.ERROR, exc)
            self.problems.flush()

    def _mtime(self) -> float:
        try:
            return os.stat(self.project_dir / Project.FILE).st_mtime
        except OSError:
            return 0.0

    def project(self) -> Project:
        """The project, re-read when its file changed (checked at most once a second)."""
        now = time.monotonic()
        if now - self._project_checked >= 1.0:
            self._project_checked = now
            mtime = self._mtime()
            if mtime != self._project_mtime:
                try:
                    self._project = Project.open(self.project_dir)
                    self._project_mtime = mtime
                except ProjectError as exc:
                    self.problems.report("project file", f"project file unreadable, keeping the last good one: {exc}",
                                         logging.ERROR)
        return self._project

    def spool(self, pipeline: str) -> Spool:
        spool = self.spools.get(pipeline)
        if spool is None:
            spool = self.spools[pipeline] = Spool(
                self.project_dir / "spool" / pipeline, self.settings.segment_bytes,
                self.settings.segment_seconds, self._clock)
        return spool

    @staticmethod
    async def _answer(send, status: int, body: bytes = b"", content_type: bytes = b"text/plain; charset=utf-8",
                      close: bool = False):
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())] if body else []
        if close:  # the client sent what it should not (no credentials, too much): no keep-alive for it
            headers += _CLOSE
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, receive, limit: int) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _Reject(413, f"Event larger than {limit} bytes")
                chunks.append(chunk)
            if not message.get("more_body"):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # --------------------------------------------------------------- http
    async def _http(self, scope, receive, send):
        path, method = scope["path"], scope["method"]
        try:
            if path == "/event" or (path.startswith("/pipelines/") and path.endswith("/event")):
                if method != "POST":
                    raise _Reject(405, "Use POST")
                await self._event(scope, receive, send, path[11:-6] if path != "/event" else None)
                return
            if path in ("/auth/token", "/oauth/token", "/token"):
                if method != "POST":
                    raise _Reject(405, "Use POST")
                await self._token(scope, receive, send)
            elif path in ("/health", "/is-alive", "/healthz"):
                await self._answer(send, 200, b'{"status":"ok"}', b"application/json")
            elif path == "/metrics":
                self._check_metrics_access(scope)
                body = self.metrics.render(self.spools).encode()
                await self._answer(send, 200, body, b"text/plain; version=0.0.4")
            else:
                raise _Reject(404, "Not found")
        except _Reject as reject:
            self.metrics.inc("gateway_requests_total", reject.status)
            await self._answer(send, reject.status, reject.message.encode(), close=reject.status in (401, 413))
        except _Disconnected:
            self.metrics.inc("gateway_requests_total", 499)   # nginx's "client closed request"
        except Exception as exc:  # a bug: one 500, one log line per window (with its traceback), keep serving
            self.metrics.inc("gateway_requests_total", 500)
            self.problems.report("internal error", f"internal error answering {method} {path[:100]}",
                                 logging.ERROR, exc)
            await self._answer(send, 500, b"Internal error", close=True)

    def _check_metrics_access(self, scope) -> None:
        if self._metrics_token is not None:
            given = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self._metrics_token):
                raise _Reject(401, "Metrics need the bearer token of --metrics-token-file")
        elif not _is_loopback(scope.get("client")):
            raise _Reject(403, "Metrics are served to loopback clients only (see --metrics-token-file)")

    async def _event(self, scope, receive, send, wanted_pipeline: str | None):
        headers = dict(scope["headers"])
        token = headers.get(b"authorization")
        schema_ref = headers.get(b"strm-schema-ref")
        serialization = headers.get(b"strm-serialization-type")
        content_length = headers.get(b"content-length")
        if serialization is None and headers.get(b"content-type", b"").startswith(b"application/json"):
            serialization = b"application/json"
        # 401 / 403: who is sending, and to which pipeline
        if token is None or not token[:7].lower() == b"bearer ":
            raise _Reject(401, "Missing bearer token")
        entry = self._verify(token[7:])   # bound to the client id and credential generation
        pipeline = entry.name
        if wanted_pipeline is not None and wanted_pipeline != pipeline:
            raise _Reject(403, f"Token is not valid for stream '{wanted_pipeline}'")
        if not entry.enabled:
            raise _Reject(403, f"Stream '{pipeline}' is disabled")
        # 413 / 415: size and format
        limit = self.settings.max_event_bytes
        if content_length is not None and content_length.isdigit() and int(content_length) > limit:
            raise _Reject(413, f"Event larger than {limit} bytes")
        kind = _KINDS.get(serialization)
        if kind is None:
            kind = serialization.decode("latin-1").split(";")[0].strip().lower() if serialization else None
        if kind not in SERIALIZATION_TYPES:
            raise _Reject(415, f"Unsupported Strm-Serialization-Type '{kind}': use {JSON} or {AVRO_BINARY}")
        if schema_ref is None:
            raise _Reject(400, "Missing Strm-Schema-Ref header")
        contract = self.contracts.cached(schema_ref)
        if contract is None:
            contract = await self.contracts.resolve(schema_ref)   # off the event loop; Refused is a _Reject
        ref = contract.ref
        body = await self._read_body(receive, limit)
        # 400: decode and validate
        try:
            if kind == JSON:
                event = orjson.loads(body)
            else:
                event = fastavro.schemaless_reader(io.BytesIO(body), contract.avro)
        except Exception:  # orjson.JSONDecodeError, Avro decode errors of many kinds
            raise _Reject(400, f"Event with schema: '{ref}' could not be deserialized as {kind}") from None
        if not isinstance(event, dict):
            raise _Reject(400, f"Event with schema: '{ref}': an event must be a JSON object")
        meta = event.get("strmMeta")
        if isinstance(meta, dict):
            if meta.get("eventContractRef") is None:
                meta["eventContractRef"] = ref  # another contract than the header's is the validator's 400
            if meta.get("consentLevels") is None:
                meta["consentLevels"] = []
        try:
            event = contract.validator.check(event)
        except EventError as err:
            raise _Reject(400, err.gateway_message(ref)) from None
        meta = event["strmMeta"]
        meta["nonce"] = _random_bits(31) or 1
        meta["timestamp"] = int(self._clock() * 1000)
        meta.setdefault("keyLink", None)
        meta.setdefault("billingId", None)
        if self.publisher is not None:
            try:
                await self.publisher.publish(pipeline, orjson.dumps(event), ref, meta["timestamp"])
            except PublishError as exc:  # broker down, timeout, missing topic: not accepted, retry
                self.problems.report("publish", str(exc))
                raise _Reject(503, "Event could not be published, try again") from None
        else:
            spool = self.spools.get(entry.id) or self.spool(entry.id)   # spool/<pipeline id>/
            try:
                await spool.append(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
            except OSError as exc:  # disk full, I/O error: not accepted, the sender may retry
                self.problems.report("spool write", f"spool write failed for pipeline {pipeline}: {exc}",
                                     logging.ERROR)
                raise _Reject(503, "Event could not be stored, try again") from None
        self.metrics.accepted += 1
        await send(contract.accepted)
        await send(_EMPTY_BODY)

    async def _token(self, scope, receive, send):
        body = await self._read_body(receive, 64 * 1024)
        content_type = b""
        basic = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"authorization" and value[:6].lower() == b"basic ":
                basic = value[6:]
        try:
            if content_type.startswith(b"application/json"):
                params = {k: str(v) for k, v in orjson.loads(body or b"{}").items()}
            else:
                params = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if basic is not None:
                client_id, _, client_secret = base64.b64decode(basic).decode().partition(":")
                params.setdefault("client_id", client_id)
                params.setdefault("client_secret", client_secret)
        except (ValueError, UnicodeDecodeError, AttributeError):
            raise _Reject(400, "Malformed token request") from None
        if not all(isinstance(value, str) for value in params.values()):
            raise _Reject(400, "Malformed token request")
        if params.get("grant_type", "client_credentials") != "client_credentials":
            raise _Reject(400, "Only grant_type=client_credentials is supported")
        client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
        pipeline = authenticate_client(self.project(), client_id, secret)
        if pipeline is None:  # created or rotated a moment ago: re-read now
            self._project_checked = 0.0
            pipeline = authenticate_client(self.project(), client_id, secret)
        if pipeline is None:
            raise _Reject(401, "Invalid client credentials")
        token, expires_in = self.issuer.issue(pipeline)
        self.metrics.inc("gateway_tokens_issued_total", 200)
        body = orjson.dumps({"access_token": token, "token_type": "Bearer", "expires_in": expires_in})
        await self._answer(send, 200, body, b"application/json")

    # ----------------------------------------------------------- websocket
    async def _websocket(self, scope, receive, send):
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        stream = scope["path"].rsplit("/", 1)[-1] if scope["path"].startswith("/ws/") else ""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), encoding="latin-1")
        token = query.get("token", [None])[0]
        token = token.encode("latin-1") if token is not None else None
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:]
        try:
            if not token:
                raise _Reject(401, "Missing bearer token")
            pipeline = self._verify(token).name
            try:
                source = self.project().source_of(stream)
                directory = self.project().stream_dir(stream)
            except ProjectError as exc:
                raise _Reject(404, str(exc)) from None
            if source != pipeline:
                raise _Reject(403, f"Token is not valid for stream '{stream}'")
        except _Reject as reject:
            await send({"type": "websocket.http.response.start", "status": reject.status,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")]})
            await send({"type": "websocket.http.response.body", "body": reject.message.encode()})
            return
        from_start = query.get("from", [""])[0] == "start"
        existing = set() if from_start else set(visible_jsonl(directory))  # before the client hears "accepted"
        await send({"type": "websocket.accept"})
        closed = asyncio.Event()

        async def watch_disconnect():
            while (await receive())["type"] != "websocket.disconnect":
                pass
            closed.set()

        watcher = asyncio.get_running_loop().create_task(watch_disconnect())
        try:
            async for line in tail_jsonl(directory, from_start, self.settings.tail_poll_seconds, closed, existing):
                await send({"type": "websocket.send", "text": line})
        except OSError:  # the client went away mid-send
            pass
        finally:
            watcher.cancel()
            if not closed.is_set():
                try:
                    await send({"type": "websocket.close", "code": 1000})
                except Exception:  # already closed by the peer
                    pass

    def _verify(self, token: bytes):
        """The pipeline (``controlplane.project.Pipeline``) of a bearer token (the bytes after
        "Bearer "), checked against the project's credential generations; 401 for anything else."""
        token = token.strip()
        if len(token) > MAX_TOKEN_BYTES or not token.isascii():
            raise _Reject(401, "Unauthorized: malformed token")
        try:
            return self.issuer.verify(token.decode("ascii"), self.project())
        except TokenError as exc:
            raise _Reject(401, f"Unauthorized: {exc}") from None


def _is_loopback(client) -> bool:
    if client is None:   # a Unix socket: local by construction
        return True
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


def _read_token_file(path: str) -> bytes:
    """The first line of a token file (ValueError when it is empty or not ASCII)."""
    lines = Path(path).read_bytes().splitlines()
    token = lines[0].strip() if lines else b""
    if not token or not token.isascii():
        raise ValueError(f"{path}: the first line must be the metrics token (ASCII)")
    return token
