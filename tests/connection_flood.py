"""A flood of idle and half-open connections against a server, as its own process (tests, benchmarks).

    python tests/connection_flood.py --port 8080 --connections 3000 --reconnect-after 1
    # every 0.5 s one JSON line: {"open": 2871, "opened": 5012, "closed_by_server": 2141, "failed": 0}

Half of the connections send the start of a request and never finish its headers; the other half
send nothing. A connection the server closes is opened again ``--reconnect-after`` seconds later
(0: never), as a persistent attacker would. Runs until stdin closes (or SIGTERM), then prints a
last line with ``"final": true``. The open file limit is raised to the hard limit first.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import resource
import signal
import sys

HALF_SENT = b"POST /event HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer not-finished"


class _Idle(asyncio.Protocol):
    def __init__(self, flood: "Flood", half_sent: bool):
        self.flood, self.half_sent = flood, half_sent

    def connection_made(self, transport):
        self.flood.open += 1
        if self.half_sent:
            transport.write(HALF_SENT)

    def data_received(self, data):
        pass

    def connection_lost(self, exc):
        self.flood.open -= 1
        self.flood.closed_by_server += 1
        self.flood.lost(self.half_sent)


class Flood:
    def __init__(self, host: str, port: int, connections: int, reconnect_after: float):
        self.host, self.port, self.connections, self.reconnect_after = host, port, connections, reconnect_after
        self.open = self.opened = self.closed_by_server = self.failed = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stopping = False

    async def connect(self, half_sent: bool) -> None:
        try:
            await self.loop.create_connection(lambda: _Idle(self, half_sent), self.host, self.port)
            self.opened += 1
        except OSError:
            self.failed += 1
            self.lost(half_sent)

    def lost(self, half_sent: bool) -> None:
        if self.reconnect_after > 0 and not self.stopping:
            self.loop.call_later(self.reconnect_after, lambda: self.loop.create_task(self.connect(half_sent)))

    def status(self, final: bool = False) -> str:
        return json.dumps({"open": self.open, "opened": self.opened, "closed_by_server": self.closed_by_server,
                           "failed": self.failed, "final": final})

    async def run(self) -> None:
        self.loop = asyncio.get_running_loop()
        done = asyncio.Event()
        self.loop.add_reader(sys.stdin.fileno(), lambda: done.set() if not sys.stdin.buffer.read1(1024) else None)
        self.loop.add_signal_handler(signal.SIGTERM, done.set)
        for index in range(self.connections):   # in batches, so the server's accept queue keeps up
            self.loop.create_task(self.connect(half_sent=index % 2 == 0))
            if index % 200 == 199:
                await asyncio.sleep(0.02)
        while not done.is_set():
            print(self.status(), flush=True)
            try:
                await asyncio.wait_for(done.wait(), 0.5)
            except asyncio.TimeoutError:
                pass
        self.stopping = True
        print(self.status(final=True), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=3000)
    parser.add_argument("--reconnect-after", type=float, default=1.0)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 64:
        sys.exit(f"the open file limit ({hard}) is below {args.connections} connections")
    asyncio.run(Flood(args.host, args.port, args.connections, args.reconnect_after).run())


if __name__ == "__main__":
    main()
