"""Bounded HTTP connections: uvicorn's httptools protocol with the timeouts and caps it lacks.

    from gateway.connections import ConnectionLimits, bounded_protocol
    limits = ConnectionLimits(max_connections=4096, header_timeout=10, body_timeout=10,
                              max_header_bytes=16384, keep_alive_requests=1000, problems=problems)
    uvicorn.Config(app, http=bounded_protocol(limits), timeout_keep_alive=5, limit_concurrency=None)

What uvicorn (0.54, ``uvicorn/protocols/http/httptools_impl.py``) offers and what it does not:

- ``timeout_keep_alive`` closes a connection idle *after* a response; used as it is.
- ``limit_concurrency`` answers 503 once connections + tasks reach the limit, counting idle
  connections too: 3,000 idle sockets would make every real request a 503. Not used.
- There is no timeout before the first request or while headers or a body arrive (a keep-alive
  timer is cancelled by every byte, so one byte a second holds a connection for ever), no limit
  on the size of the request line and headers (httptools buffers them), no cap on connections
  (20,000 idle sockets exhaust the file descriptors), no cap on requests per connection, and
  every unparsable request is logged as a warning, one line per request.

``bounded_protocol`` subclasses ``HttpToolsProtocol`` to add them, at the connection level
where they belong (an ASGI app only sees a request once its headers are complete):

- **Header timeout**: a connection has ``header_timeout`` seconds from connecting (and a
  following request from its first byte) to complete its request line and headers; then it is
  closed (with a 408 if it had started a request).
- **Body timeout**: the body must be complete ``body_timeout`` seconds after the headers; then
  the answer is 408, the app sees a disconnect (so nothing half-received is accepted), and the
  connection is closed.
- **Header size**: more than ``max_header_bytes`` before the end of the headers is a 431 and a
  closed connection.
- **Requests per connection**: the ``keep_alive_requests``-th response says ``connection: close``.
- **Connection cap**: at most ``max_connections`` open connections (web sockets included). At
  the cap a new connection does not wait and is not refused while an idle one can make room:
  the oldest connection that has not completed a request yet is closed (then the oldest idle
  keep-alive one), so a client that connects and sends its request promptly is served however
  many sockets others hold open; only when every connection is in the middle of a request is
  the new one answered 503 and closed.
- Problems (invalid requests, timeouts, refusals) go to ``gateway.problems``: logged once per
  window with a count, never once per request.

Deadlines are timestamps checked by one sweep over the connections every ``tick`` seconds
(a quarter of the shortest timeout, at most 0.5 s), not a timer per request: arming and
cancelling two ``call_later`` handles per request cost about 20% of a bare endpoint's CPU
(``python -m benchmarks.gateway --protocol``). A timeout fires up to ``tick`` late.

``QuietWebSocketProtocol`` is uvicorn's websockets-sansio protocol without one log line per
refused handshake: uvicorn 0.54 logs "ASGI callable returned without completing handshake" (an
error) after every ``websocket.http.response`` (our 401/403/404 to a listener), although that
response is a complete answer.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from gateway.problems import ProblemLog

log = logging.getLogger("gateway.connections")


class ConnectionLimits:
    """The limits, the deadlines' sweep, and the connections that could make room at the cap
    (one per server, shared by its connections)."""

    def __init__(self, max_connections: int = 4096, header_timeout: float = 10.0, body_timeout: float = 10.0,
                 max_header_bytes: int = 16 * 1024, keep_alive_requests: int = 1000,
                 problems: ProblemLog | None = None):
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes
        self.keep_alive_requests = keep_alive_requests
        self.problems = problems or ProblemLog(log)
        self.tick = max(0.05, min(0.5, header_timeout / 4, body_timeout / 4))
        self.watched: set = set()          # HTTP connections (web sockets leave once upgraded)
        # connections without a request in progress, oldest first: first the ones that never
        # completed a request, then the ones idle between requests
        self.fresh: OrderedDict = OrderedDict()
        self.idle: OrderedDict = OrderedDict()
        self.evicted = 0
        self.refused = 0
        self._sweeping: asyncio.AbstractEventLoop | None = None

    def watch(self, connection, loop: asyncio.AbstractEventLoop) -> None:
        self.watched.add(connection)
        self.fresh[connection] = None
        if self._sweeping is not loop:
            self._sweeping = loop
            loop.call_later(self.tick, self._sweep, loop)

    def forget(self, connection) -> None:
        self.watched.discard(connection)
        self.fresh.pop(connection, None)
        self.idle.pop(connection, None)

    def victim(self):
        """The connection to close to make room, or None when all are busy."""
        for waiting in (self.fresh, self.idle):
            if waiting:
                connection, _ = waiting.popitem(last=False)
                return connection
        return None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in [c for c in self.watched if c._deadline is not None and c._deadline <= now]:
            connection._expire()
        loop.call_later(self.tick, self._sweep, loop)


def bounded_protocol(limits: ConnectionLimits) -> type:
    """A ``HttpToolsProtocol`` subclass bound to these limits (one per server), for ``uvicorn.Config(http=...)``."""
    return type("BoundedHttpProtocol", (BoundedHttpProtocol,), {"limits": limits})


class BoundedHttpProtocol(HttpToolsProtocol):
    limits: ConnectionLimits
    _deadline: float | None = None    # loop time at which _on_deadline runs (None: no deadline)

    # ---------------------------------------------------------- connections
    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        limits = self.limits
        self._requests = 0
        self._header_bytes = 0
        self._too_large = False
        self._reading_headers = True   # from connecting until the first request's headers are complete
        if len(self.connections) > limits.max_connections:
            victim = limits.victim()
            if victim is None:
                limits.refused += 1
                limits.problems.report("connection cap", f"{limits.max_connections} connections are all busy "
                                       "with requests: new connections answered 503 (--max-connections)")
                self._answer_and_close(503, b"Too many connections, try again")
                return
            limits.evicted += 1
            limits.problems.report("connection cap: closed idle", f"{limits.max_connections} connections open: "
                                   "closing the oldest idle ones to make room (--max-connections)")
            victim._close()
        limits.watch(self, self.loop)
        self._set_deadline(limits.header_timeout, self._header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline = None
        self.limits.forget(self)
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        self._deadline = None
        self.limits.forget(self)   # still counted in server_state.connections by the web socket protocol
        super().handle_websocket_upgrade()

    def _close(self) -> None:
        self._deadline = None
        self.limits.forget(self)
        if not self.transport.is_closing():
            self.transport.close()

    def _answer_and_close(self, status: int, body: bytes) -> None:
        self._deadline = None
        self.limits.forget(self)
        if self.transport.is_closing():
            return
        self.transport.write(b"".join([
            STATUS_LINE[status], b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: ", str(len(body)).encode(), b"\r\nconnection: close\r\n\r\n", body]))
        self.transport.close()

    # ------------------------------------------------------------ deadlines
    def _set_deadline(self, seconds: float, then) -> None:
        self._deadline = self.loop.time() + seconds
        self._on_deadline = then

    def _expire(self) -> None:
        self._deadline = None
        self._on_deadline()

    def _header_timeout(self) -> None:
        self.limits.problems.report("header timeout", "connections closed: no complete request headers within "
                                    f"{self.limits.header_timeout:g} s (--header-timeout)")
        if self._header_bytes:   # a request had begun
            self._answer_and_close(408, b"Request headers not received in time")
        else:
            self._close()

    def _body_timeout(self) -> None:
        cycle = self.cycle
        self.limits.problems.report("body timeout", "requests answered 408: body not complete within "
                                    f"{self.limits.body_timeout:g} s (--body-timeout)")
        if cycle is not None and not cycle.response_complete:
            answered = cycle.response_started
            cycle.disconnected = True      # the app's receive() now says http.disconnect, its send() is dropped
            cycle.message_event.set()
            if answered:
                self._close()
                return
        self._answer_and_close(408, b"Request body not received in time")

    # -------------------------------------------------------------- parsing
    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._chunk = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._too_large:
                self._refuse_large_headers()
                return
            self.limits.problems.report("invalid HTTP request", "invalid HTTP requests answered 400 and closed")
            self._answer_and_close(400, b"Invalid HTTP request")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._reading_headers:   # incomplete headers: bound what the parser buffers
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._refuse_large_headers()

    def _unsupported_upgrade_warning(self) -> None:   # uvicorn logs this once per request
        self.limits.problems.report("unsupported upgrade", "requests asked to upgrade to a protocol other than "
                                    "web sockets: served as plain HTTP")

    def _refuse_large_headers(self) -> None:
        self.limits.problems.report("headers too large", "requests answered 431: request line and headers "
                                    f"over {self.limits.max_header_bytes} bytes (--max-header-bytes)")
        self._answer_and_close(431, b"Request headers too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._reading_headers:   # a following request on a kept-alive connection
            self._reading_headers = True
            self._header_bytes = 0
            self._set_deadline(self.limits.header_timeout, self._header_timeout)

    def on_headers_complete(self) -> None:
        if (self._header_bytes + self._chunk > self.limits.max_header_bytes   # (else they cannot be too large)
                and len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) > self.limits.max_header_bytes):
            self._too_large = True             # complete, but too large: the app never sees them
            raise ValueError("request headers too large")   # stops the parser; data_received answers 431
        self._reading_headers = False
        self._header_bytes = 0
        limits = self.limits
        limits.fresh.pop(self, None)     # busy: not a candidate to make room
        limits.idle.pop(self, None)
        previous = self.cycle
        super().on_headers_complete()
        if self.cycle is previous:       # a web socket upgrade: no HTTP request cycle
            self._deadline = None
            return
        self._requests += 1
        if self._requests >= limits.keep_alive_requests:
            self.cycle.keep_alive = False
        self._set_deadline(limits.body_timeout, self._body_timeout)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        cycle = self.cycle
        if cycle is not None and cycle.response_complete:
            cycle.more_body = False      # answered early (401, 413): uvicorn leaves this unset
        if not self._reading_headers:
            self._deadline = None
            self._maybe_idle()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        """Between requests (the last one answered and read to its end): a candidate to make room."""
        cycle = self.cycle
        if (cycle is not None and cycle.response_complete and not cycle.more_body and not self.pipeline
                and not self._reading_headers and not self.transport.is_closing()):
            self.limits.idle[self] = None


class QuietWebSocketProtocol(WebSocketsSansIOProtocol):
    async def send(self, message) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True   # answered (and closed): nothing left to complete
