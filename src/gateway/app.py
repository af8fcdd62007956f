"""The event gateway as a plain ASGI application (served by uvicorn, see ``gateway.server``).

    from gateway.app import GatewayApp, GatewaySettings
    app = GatewayApp(GatewaySettings(project_dir="/tmp/demo"))
    # uvicorn.run(app, host="127.0.0.1", port=8080)

Endpoints:

- ``POST /auth/token``: OAuth2 client credentials (form or JSON ``grant_type=client_credentials``,
  ``client_id``, ``client_secret``; or HTTP Basic) -> ``{"access_token", "token_type": "Bearer",
  "expires_in"}``; 401 for unknown credentials.
- ``POST /event`` (also ``/pipelines/<name>/event``): headers ``Authorization: Bearer <token>``,
  ``Strm-Schema-Ref: handle/name/version``, ``Strm-Serialization-Type: application/json`` or
  ``application/x-avro-binary`` (Avro binary of ``contracts.avro.avro_schema``). Answers 204 once
  the event is in the pipeline's spool (fsynced), or, with a ``publisher`` (``gateway.publish``),
  once Pub/Sub or Kafka acknowledged it (503 if it did not); 400 with the reference's text for a bad event
  or an unknown / inactive contract; 401 without a valid token; 403 for a token of another
  pipeline or a disabled one; 413 over ``max_event_bytes``; 415 for another serialization type.
- ``GET /health`` (``/is-alive``): ``{"status": "ok"}``. ``GET /metrics``: Prometheus text.
- websocket ``/ws/<pipeline or privacy stream>`` (bearer token of its pipeline): one JSON text
  message per event the pipeline writes for that stream from now on (``?from=start``: all).

It is a bare ASGI callable rather than a framework app: the hot path (``POST /event``) is a
handful of dict lookups, ``orjson`` and the validator, measured in ``benchmarks/gateway.py``.
"""
from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import fastavro
import orjson

from contracts import ContractError, load_contract
from contracts.avro import avro_schema
from contracts.events import EventError, EventValidator
from gateway.fastcheck import compile_fast_check
from gateway.auth import DEFAULT_TTL_SECONDS, TokenError, TokenIssuer, authenticate_client
from gateway.metrics import Metrics
from controlplane.project import Project, ProjectError
from gateway.publish import EventPublisher, PublishError
from gateway.spool import DEFAULT_MAX_AGE_SECONDS, DEFAULT_MAX_BYTES, Spool
from gateway.tail import tail_jsonl, visible_jsonl

log = logging.getLogger(__name__)

JSON = "application/json"
AVRO_BINARY = "application/x-avro-binary"
SERIALIZATION_TYPES = (JSON, AVRO_BINARY)
DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
_KINDS = {b"application/json": JSON, b"application/x-avro-binary": AVRO_BINARY}
_NO_CONTENT = {"type": "http.response.start", "status": 204, "headers": []}
_EMPTY_BODY = {"type": "http.response.body", "body": b""}
_random_bits = random.getrandbits  # the nonce is a dedupe aid, not a secret


@dataclass
class GatewaySettings:
    project_dir: str | Path
    token_ttl_seconds: int = DEFAULT_TTL_SECONDS
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    segment_max_bytes: int = DEFAULT_MAX_BYTES
    segment_max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS
    tail_poll_seconds: float = 0.2


class _Reject(Exception):
    def __init__(self, status: int, message: str):
        self.status = status
        self.message = message


class _Contract:
    """What the hot path needs of one contract: its validator and parsed Avro schema."""

    __slots__ = ("ref", "validator", "fast", "avro", "active")

    def __init__(self, contract):
        self.ref = contract.ref
        self.active = contract.is_active
        self.validator = EventValidator(contract)
        self.fast = compile_fast_check(contract)
        self.avro = fastavro.parse_schema(avro_schema(contract))


class GatewayApp:
    def __init__(self, settings: GatewaySettings, clock=time.time, publisher: EventPublisher | None = None):
        self.settings = settings
        self.publisher = publisher  # None: accepted events go to the spool
        self.project_dir = Path(settings.project_dir)
        self._clock = clock
        self.issuer = TokenIssuer.for_project(self.project_dir, settings.token_ttl_seconds, clock)
        self.metrics = Metrics()
        self.spools: dict[str, Spool] = {}
        self._contracts: dict[str, _Contract | _Reject] = {}
        self._by_header: dict[bytes, _Contract] = {}  # raw Strm-Schema-Ref -> contract (good ones only)
        self._project = Project.open(self.project_dir)
        self._project_mtime = self._mtime()
        self._project_checked = 0.0
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
            await self._websocket(scope, receive, send)
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
        if self.publisher is not None:
            self.publisher.close()

    async def _roll_old_segments(self):
        loop = asyncio.get_running_loop()
        period = max(0.05, min(1.0, self.settings.segment_max_age_seconds / 4))
        while True:
            await asyncio.sleep(period)
            for spool in list(self.spools.values()):
                try:
                    await loop.run_in_executor(spool._executor, spool.roll_if_old)
                except (OSError, RuntimeError):
                    log.exception("rolling a spool segment failed")

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
                except ProjectError:
                    log.exception("project file unreadable; keeping the last good one")
        return self._project

    def spool(self, pipeline: str) -> Spool:
        spool = self.spools.get(pipeline)
        if spool is None:
            spool = self.spools[pipeline] = Spool(
                self.project_dir / "spool" / pipeline, self.settings.segment_max_bytes,
                self.settings.segment_max_age_seconds, self._clock)
        return spool

    def contract(self, ref: str) -> _Contract:
        entry = self._contracts.get(ref)
        if entry is None:
            try:
                entry = _Contract(load_contract(ref, [self.project_dir / "contracts"]))
                if not entry.active:
                    entry = _Reject(400, f"Schema '{ref}' is not active")
            except ContractError:
                entry = _Reject(400, f"Schema '{ref}' not found")
            self._contracts[ref] = entry
        if isinstance(entry, _Reject):
            raise entry
        return entry

    @staticmethod
    async def _answer(send, status: int, body: bytes = b"", content_type: bytes = b"text/plain; charset=utf-8"):
        headers = [(b"content-type", content_type)] if body else []
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _read_body(self, receive, limit: int) -> bytes:
        chunks, size = [], 0
        while True:
            message = await receive()
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
                body = self.metrics.render(self.spools).encode()
                await self._answer(send, 200, body, b"text/plain; version=0.0.4")
            else:
                raise _Reject(404, "Not found")
        except _Reject as reject:
            self.metrics.inc("gateway_requests_total", reject.status)
            await self._answer(send, reject.status, reject.message.encode())

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
        try:  # bound to the client id and credential generation (gateway.auth)
            entry = self.issuer.verify(token[7:].strip().decode("latin-1"), self.project())
        except TokenError as exc:
            raise _Reject(401, f"Unauthorized: {exc}") from None
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
        contract = self._by_header.get(schema_ref)
        if contract is None:
            contract = self._by_header[schema_ref] = self.contract(schema_ref.decode("latin-1").strip())
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
            sent_ref = meta.get("eventContractRef")
            if sent_ref is None:
                meta["eventContractRef"] = ref
            elif sent_ref != ref:
                raise _Reject(400, f"Event with schema: '{ref}': strmMeta.eventContractRef '{sent_ref}' "
                                   "does not match the Strm-Schema-Ref header")
            if meta.get("consentLevels") is None:
                meta["consentLevels"] = []
        fast = contract.fast
        if fast is None or not fast(event):
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
                log.warning("%s", exc)
                raise _Reject(503, "Event could not be published, try again") from None
        else:
            spool = self.spools.get(entry.id) or self.spool(entry.id)   # spool/<pipeline id>/
            try:
                await spool.append(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
            except OSError:  # disk full, I/O error: not accepted, the sender may retry
                log.exception("spool write failed for pipeline %s", pipeline)
                raise _Reject(503, "Event could not be stored, try again") from None
        self.metrics.accepted += 1
        await send(_NO_CONTENT)
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
        query = parse_qs(scope.get("query_string", b"").decode())
        token = query.get("token", [None])[0]
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].decode("latin-1").strip()
        try:
            if not token:
                raise _Reject(401, "Missing bearer token")
            try:
                pipeline = self.issuer.verify(token, self.project()).name
            except TokenError as exc:
                raise _Reject(401, f"Unauthorized: {exc}") from None
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
