"""A sender for synchronous code: a thread that owns an asyncio loop and an ``AsyncSender``.

    from driver.client.syncsender import SyncSender
    sender = SyncSender(client_id, client_secret, config={"gateway_url": "http://127.0.0.1:8080"})
    sender.start()          # starts the thread
    sender.wait_ready()     # blocks until the loop runs and a token was fetched
    response = sender.send_event(event)      # None on success, else the error (a SendError)
    future = sender.submit(event)            # concurrent.futures.Future, for pipelining
    sender.stop()

Safe to call from several threads. The thread is a daemon, so a script that forgets ``stop()``
still exits.
"""
from __future__ import annotations

import asyncio
import threading

from driver.client.asyncsender import AsyncSender
from driver.client.errors import SendError
from driver.serializer import SerializationType


class SyncSender(threading.Thread):
    def __init__(self, client_id: str, client_secret: str, config=None, timeout_seconds: float = 60.0):
        super().__init__(name="pstream-sync-sender", daemon=True)
        self._sender = AsyncSender(client_id, client_secret, config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._timeout = timeout_seconds
        self.auth_error: SendError | None = None

    @property
    def config(self):
        return self._sender.config

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        await self._sender.start()
        try:
            await self._sender.authenticate()
        except SendError as exc:
            self.auth_error = exc
        except Exception as exc:  # connection refused and the like
            self.auth_error = SendError(None, f"cannot reach {self._sender.config.token_url}: {type(exc).__name__}")
        self._ready.set()
        await self._stopped.wait()
        await self._sender.close()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait for the loop (and the first token). Raises the authentication error, if any."""
        if not self._ready.wait(timeout if timeout is not None else self._timeout):
            raise TimeoutError("the sender did not become ready")
        if self.auth_error is not None:
            raise self.auth_error

    def submit(self, event, serialization_type: SerializationType = SerializationType.AVRO_BINARY):
        if not self._ready.is_set():
            self.wait_ready()
        return asyncio.run_coroutine_threadsafe(self._sender.send_event(event, serialization_type), self._loop)

    def send_event(self, event, serialization_type: SerializationType = SerializationType.AVRO_BINARY):
        """Send one event and wait: None when accepted, else the SendError."""
        return self.submit(event, serialization_type).result(self._timeout)

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self.join(self._timeout)
