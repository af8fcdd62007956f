"""Open-loop HTTP load generator for the gateway benchmark (run as its own process).

    python -m benchmarks.loadgen --url http://127.0.0.1:8080/event --rate 10000 --seconds 5 \\
        --header "Authorization: Bearer ..." --body-file event.json     # prints one JSON line

Requests are scheduled at fixed times (``rate`` per second) and each latency is measured from
its scheduled time to the end of its response, so a stalled server is charged for the requests
it delayed (no coordinated omission). Keep-alive connections, at most one request in flight per
connection; a request waits for a free connection if all are busy (that wait counts as latency).
``--rate 0`` measures the maximum: every connection sends its next request as soon as the
previous answer arrives.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import time
from urllib.parse import urlparse

import uvloop


class _Connection(asyncio.Protocol):
    def __init__(self, owner):
        self.owner = owner
        self.buffer = b""
        self.started = 0.0
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end]
            status = int(head[9:12])
            length = 0
            lower = head.lower()
            index = lower.find(b"content-length:")
            if index >= 0:
                length = int(lower[index + 15:lower.find(b"\r\n", index) if lower.find(b"\r\n", index) > 0 else None])
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.owner.done(self, status)

    def connection_lost(self, exc):
        self.owner.lost(self)


class LoadGenerator:
    def __init__(self, url: str, headers: list[str], body: bytes, connections: int):
        parsed = urlparse(url)
        self.host, self.port = parsed.hostname, parsed.port or 80
        lines = [f"POST {parsed.path or '/'} HTTP/1.1", f"Host: {parsed.netloc}", f"Content-Length: {len(body)}", *headers]
        self.request = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self.connections = connections
        self.idle: collections.deque = collections.deque()
        self.waiting: collections.deque = collections.deque()  # scheduled times with no free connection
        self.latencies: list[float] = []
        self.statuses = collections.Counter()
        self.closed_loop = False
        self.recording = False
        self.lost_connections = 0

    async def open(self):
        loop = asyncio.get_running_loop()
        for _ in range(self.connections):
            _, protocol = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
            self.idle.append(protocol)

    def send(self, connection, scheduled: float):
        connection.started = scheduled
        connection.transport.write(self.request)

    def done(self, connection, status: int):
        now = time.perf_counter()
        if self.recording:
            self.latencies.append(now - connection.started)
            self.statuses[status] += 1
        if self.closed_loop:
            self.send(connection, now)
        elif self.waiting:
            self.send(connection, self.waiting.popleft())
        else:
            self.idle.append(connection)

    def lost(self, connection):
        self.lost_connections += 1

    def submit(self, scheduled: float):
        if self.idle:
            self.send(self.idle.popleft(), scheduled)
        else:
            self.waiting.append(scheduled)

    async def run_rate(self, rate: float, seconds: float, warmup: float) -> None:
        start = time.perf_counter()
        total = int(rate * (seconds + warmup))
        index = 0
        while index < total:
            now = time.perf_counter()
            self.recording = now - start >= warmup
            due = min(total, int((now - start) * rate) + 1)
            while index < due:
                self.submit(start + index / rate)
                index += 1
            await asyncio.sleep(0.0002)
        deadline = time.perf_counter() + 5
        while (self.waiting or len(self.idle) < self.connections) and time.perf_counter() < deadline:
            await asyncio.sleep(0.001)

    async def run_max(self, seconds: float, warmup: float) -> float:
        self.closed_loop = True
        now = time.perf_counter()
        while self.idle:
            self.send(self.idle.popleft(), now)
        await asyncio.sleep(warmup)
        self.recording = True
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        self.recording = False
        elapsed = time.perf_counter() - started
        self.closed_loop = False
        await asyncio.sleep(0.2)
        return elapsed


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def main_async(args) -> dict:
    body = open(args.body_file, "rb").read()
    generator = LoadGenerator(args.url, args.header, body, args.connections)
    await generator.open()
    if args.rate > 0:
        await generator.run_rate(args.rate, args.seconds, args.warmup)
        elapsed = args.seconds
    else:
        elapsed = await generator.run_max(args.seconds, args.warmup)
    values = sorted(generator.latencies)
    return {
        "rate": args.rate, "requests": len(values), "achieved_per_s": len(values) / elapsed,
        "p50_ms": percentile(values, 0.50) * 1000, "p99_ms": percentile(values, 0.99) * 1000,
        "max_ms": (values[-1] * 1000) if values else float("nan"),
        "statuses": dict(generator.statuses), "lost_connections": generator.lost_connections,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--body-file", required=True)
    parser.add_argument("--rate", type=float, default=0, help="requests per second; 0 = as fast as possible")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=1)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(json.dumps(runner.run(main_async(args))))


if __name__ == "__main__":
    main()
