"""The driver against real sockets: the gateway, and a scripted server for retries and 401s."""
from __future__ import annotations

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from driver.client.asyncsender import AsyncSender
from driver.client.errors import SendError
from driver.client.syncsender import SyncSender
from driver.config import ClientConfig
from driver.serializer import SerializationType
from gateway_helpers import GatewayProcess, make_project, read_spool, simulator_event


class Scripted:
    """A loopback HTTP server answering POST /event with the next scripted status."""

    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.events = 0
        self.tokens = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if self.path == "/auth/token":
                    outer.tokens += 1
                    body = json.dumps({"access_token": f"t{outer.tokens}", "expires_in": 3600}).encode()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                outer.events += 1
                status = outer.statuses.pop(0) if outer.statuses else 204
                body = b"" if status == 204 else f"status {status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def send_one(url, event=None, **config):
    async def main():
        async with AsyncSender("id", "secret", {"gateway_url": url, "backoff_seconds": 0.01, **config}) as sender:
            return await sender.send_event(event or simulator_event(), SerializationType.JSON), sender
    return asyncio.run(main())


def test_5xx_is_retried_with_backoff_until_accepted():
    server = Scripted([503, 500, 204])
    try:
        error, sender = send_one(server.url)
        assert error is None and server.events == 3 and sender.retries == 2
    finally:
        server.close()


def test_400_is_never_retried():
    server = Scripted([400])
    try:
        error, _ = send_one(server.url)
        assert isinstance(error, SendError) and error.status == 400 and server.events == 1
    finally:
        server.close()


def test_401_refreshes_the_token_once():
    server = Scripted([401, 204])
    try:
        error, sender = send_one(server.url)
        assert error is None and server.tokens == 2 and server.events == 2
    finally:
        server.close()


def test_retries_stop_after_max_attempts():
    server = Scripted([503] * 10)
    try:
        error, _ = send_one(server.url, max_attempts=3)
        assert error.status == 503 and server.events == 3
    finally:
        server.close()


def test_connection_errors_are_retried_then_reported():
    server = Scripted([])
    url = server.url
    server.close()
    started = time.monotonic()
    error, sender = send_one(url, max_attempts=3)
    assert isinstance(error, SendError) and error.status is None and "cannot reach" in str(error)
    assert time.monotonic() - started < 5


def test_config_from_env_and_reference_keys(monkeypatch):
    monkeypatch.setenv("PSTREAM_GATEWAY_URL", "http://127.0.0.1:9999/")
    assert ClientConfig().event_url == "http://127.0.0.1:9999/event"
    assert ClientConfig().token_url == "http://127.0.0.1:9999/auth/token"
    legacy = ClientConfig.of({"gateway_protocol": "http", "gateway_host": "127.0.0.1:1234"})
    assert legacy.event_url == "http://127.0.0.1:1234/event"
    with pytest.raises(ValueError):
        ClientConfig.of({"gateway": "x"})


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    project_dir = tmp_path_factory.mktemp("driver")
    make_project(project_dir, "demo")
    with GatewayProcess(project_dir, token_ttl=2) as gw:
        yield gw


def test_sync_sender_sends_json_and_avro_and_returns_errors(gateway):
    client_id, secret = gateway.credentials("demo")
    sender = SyncSender(client_id, secret, config={"gateway_url": gateway.url})
    sender.start()
    sender.wait_ready()
    try:
        assert sender.send_event(simulator_event(1), SerializationType.JSON) is None
        assert sender.send_event(simulator_event(2)) is None  # Avro binary by default
        bad = simulator_event(3)
        del bad["consistentValue"]
        error = sender.send_event(bad, SerializationType.JSON)
        assert isinstance(error, SendError) and error.status == 400 and "consistentValue" in str(error)
        local = sender.send_event(bad)  # Avro cannot even encode it: refused before sending
        assert isinstance(local, SendError) and local.status is None and "consistentValue" in str(local)
    finally:
        sender.stop()
    stored = [orjson.loads(line)["consistentValue"] for line in read_spool(gateway.project_dir, "demo")]
    assert "session-1" in stored and "session-2" in stored and "session-3" not in stored


def test_sync_sender_with_wrong_secret_fails_on_wait_ready(gateway):
    client_id, _ = gateway.credentials("demo")
    sender = SyncSender(client_id, "wrong", config={"gateway_url": gateway.url})
    sender.start()
    with pytest.raises(SendError) as info:
        sender.wait_ready()
    assert info.value.status == 401
    sender.stop()


def test_token_is_refreshed_before_it_expires(gateway):
    client_id, secret = gateway.credentials("demo")

    async def main():
        async with AsyncSender(client_id, secret, {"gateway_url": gateway.url}) as sender:
            assert await sender.send_event(simulator_event(4)) is None
            await asyncio.sleep(2.2)  # the first token (2 s) has expired by now
            assert await sender.send_event(simulator_event(5)) is None
            return sender.tokens.fetches

    assert asyncio.run(main()) == 2


def test_async_sender_many_concurrent_events(gateway):
    client_id, secret = gateway.credentials("demo")

    async def main():
        async with AsyncSender(client_id, secret, {"gateway_url": gateway.url}) as sender:
            events = []
            for i in range(300):
                event = simulator_event(i)
                event["uniqueIdentifier"] = f"bulk-{i}"
                events.append(event)
            return await asyncio.gather(*(sender.send_event(e) for e in events))

    assert asyncio.run(main()) == [None] * 300
    stored = {orjson.loads(line)["uniqueIdentifier"] for line in read_spool(gateway.project_dir, "demo")}
    assert {f"bulk-{i}" for i in range(300)} <= stored


def test_dict_event_without_contract_ref_is_an_error_not_an_exception(gateway):
    client_id, secret = gateway.credentials("demo")

    async def main():
        async with AsyncSender(client_id, secret, {"gateway_url": gateway.url}) as sender:
            return await sender.send_event({"strmMeta": {}, "x": 1})

    error = asyncio.run(main())
    assert isinstance(error, SendError) and "eventContractRef" in str(error)
