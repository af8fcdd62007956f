"""Load and fault run of the gateway: mixed traffic at a fixed rate, one SIGKILL and restart in the middle.

    python -m benchmarks.gateway_fault                         # 60 s at 1,000 requests/s, kill at 30 s
    python -m benchmarks.gateway_fault --rate 2000 --seconds 60 --kill-at 30 --json figures.json

The gateway (``python -m gateway``, spool mode) runs pinned to CPU 0; this process generates the
load on CPU 1 (open loop, as ``benchmarks/loadgen.py``: each request has a scheduled time, its
latency counts from then, so a stalled or dead gateway is charged for every request it delayed).
Traffic, by request number: 70% valid events (each with its own marker in ``consistentValue``),
15% invalid ones (a missing required field, a body that is not JSON, a path as
``Strm-Schema-Ref``) and 15% unauthenticated ones (no token, a forged token, a non-ASCII token).
At ``--kill-at`` seconds the gateway gets SIGKILL and is started again on the same port;
requests meanwhile wait for a connection (up to ``--give-up`` seconds, then they count as not sent).

Printed: answers by kind and status (and requests without an answer: in flight at the kill, or
never sent), p50/p99/max latency of the 204s (all, and outside the restart), how long the gateway
was down, and from the spool afterwards: events lost (answered 204 but not in the spool),
duplicated (in the spool more than once), and bad events in the spool (must be 0).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import uvloop

from benchmarks.gateway import _env, _pin, _wait_port, headers
from benchmarks.loadgen import _Connection, percentile

VALID, INVALID, UNAUTHENTICATED = "valid", "invalid", "unauthenticated"
KINDS = (VALID, INVALID, UNAUTHENTICATED)
NO_ANSWER, NOT_SENT = "no answer", "not sent"


def request_kind(index: int) -> str:
    slot = index % 20
    return VALID if slot < 14 else INVALID if slot < 17 else UNAUTHENTICATED


def build_request(index: int, token: str, host: str) -> bytes:
    """Request number ``index`` of the mix (see the module docstring), as bytes."""
    slot = index % 20
    event = {"strmMeta": {"eventContractRef": "strmprivacy/example/1.5.0", "consentLevels": [0, 1]},
             "uniqueIdentifier": f"u-{index}", "consistentValue": f"ok-{index}",
             "someSensitiveValue": "s", "notSensitiveValue": "n"}
    lines = headers(token)
    if slot >= 14:
        event["consistentValue"] = f"bad-{index}"
    if slot == 14:
        del event["consistentValue"]
        event["uniqueIdentifier"] = f"bad-{index}"
    body = orjson.dumps(event)
    if slot == 15:
        body = b'{"consistentValue": "bad-' + str(index).encode() + b'", '   # not JSON
    elif slot == 16:
        lines = [line for line in lines if not line.startswith("Strm-Schema-Ref")] + [
            "Strm-Schema-Ref: ../../../../tmp/evil.yaml"]
    elif slot >= 17:
        lines = [line for line in lines if not line.startswith("Authorization")]
        if slot == 18:
            lines.append(f"Authorization: Bearer {token[:-4]}AAAA")
        lines.append("Connection: close")   # the gateway closes after a 401 anyway
    head = "\r\n".join(["POST /event HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}", *lines])
    if slot == 19:
        head += "\r\nAuthorization: Bearer t\u00f6k\u00e9n"
    return head.encode("utf-8") + b"\r\n\r\n" + body


class _Tracked(_Connection):
    """loadgen's connection, noticing ``connection: close`` so that it is not used again."""

    index: int | None = None
    closing = False

    def data_received(self, data):
        if b"connection: close" in data.lower():
            self.closing = True
        super().data_received(data)


class FaultLoad:
    def __init__(self, host: str, port: int, token: str, connections: int, give_up: float):
        self.host, self.port, self.token = host, port, token
        self.connections, self.give_up = connections, give_up
        self.idle: collections.deque = collections.deque()
        self.pending: collections.deque = collections.deque()   # (index, scheduled) with no free connection
        self.open = 0
        self.answers = {kind: collections.Counter() for kind in KINDS}
        self.latencies: list[tuple[float, float]] = []            # (scheduled, seconds) of 204s
        self.accepted: set[int] = set()
        self.in_doubt: set[int] = set()                           # sent, connection lost before the answer
        self.stopping = False

    # connections -------------------------------------------------------
    async def keep_connections(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping:
            if self.open < self.connections:
                try:
                    _, connection = await loop.create_connection(lambda: _Tracked(self), self.host, self.port)
                except OSError:   # the gateway is down: try again shortly
                    await asyncio.sleep(0.02)
                    continue
                self.open += 1
                self.release(connection)
            else:
                await asyncio.sleep(0.005)

    def release(self, connection) -> None:
        """A connection free for the next request: take a waiting one, or wait for one."""
        now = time.perf_counter()
        while self.pending:
            index, scheduled = self.pending.popleft()
            if now - scheduled > self.give_up:
                self.answers[request_kind(index)][NOT_SENT] += 1
                continue
            self.send(connection, index, scheduled)
            return
        self.idle.append(connection)

    def send(self, connection, index: int, scheduled: float) -> None:
        connection.index, connection.started = index, scheduled
        connection.transport.write(build_request(index, self.token, self.host))

    def submit(self, index: int, scheduled: float) -> None:
        while self.idle:
            connection = self.idle.popleft()
            if not connection.transport.is_closing():
                self.send(connection, index, scheduled)
                return
        self.pending.append((index, scheduled))

    # loadgen's _Connection callbacks ------------------------------------
    def done(self, connection, status: int) -> None:
        index, connection.index = connection.index, None
        kind = request_kind(index)
        self.answers[kind][status] += 1
        if status == 204:
            self.latencies.append((connection.started, time.perf_counter() - connection.started))
            if kind == VALID:
                self.accepted.add(index)
        if not connection.closing:
            self.release(connection)

    def lost(self, connection) -> None:
        self.open -= 1
        if connection.index is not None:
            self.answers[request_kind(connection.index)][NO_ANSWER] += 1
            self.in_doubt.add(connection.index)
        try:
            self.idle.remove(connection)
        except ValueError:
            pass

    # the run -------------------------------------------------------------
    async def run(self, rate: float, seconds: float) -> int:
        keeper = asyncio.get_running_loop().create_task(self.keep_connections())
        start = time.perf_counter()
        total, index = int(rate * seconds), 0
        while index < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while index < due:
                self.submit(index, start + index / rate)
                index += 1
            await asyncio.sleep(0.0005)
        deadline = time.perf_counter() + self.give_up + 5
        while (self.pending or self.open > len(self.idle)) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        self.stopping = True
        keeper.cancel()
        for index, _ in self.pending:
            self.answers[request_kind(index)][NOT_SENT] += 1
        return total


def start_gateway(project_dir: Path, port: int, ready: Path) -> subprocess.Popen:
    if ready.exists():
        ready.unlink()
    return subprocess.Popen([sys.executable, "-m", "gateway", "--project-dir", str(project_dir), "--port", str(port),
                             "--ready-file", str(ready), "--segment-seconds", "5"], env=_env(), preexec_fn=_pin(0),
                            stderr=subprocess.PIPE)


def spooled_markers(project_dir: Path) -> collections.Counter:
    from gateway.spool import all_segments

    markers = collections.Counter()
    from controlplane.project import Project

    for segment in all_segments(Project.open(project_dir).spool_dir("bench")):   # spool/<pipeline id>/
        for line in segment.read_bytes().splitlines():
            if line.strip():
                event = orjson.loads(line)
                markers[event.get("consistentValue") or event.get("uniqueIdentifier")] += 1
    return markers


def run(args) -> dict:
    from controlplane.project import Project

    work = Path(tempfile.mkdtemp(prefix="gateway-fault-", dir=args.work_dir))
    try:
        project_dir = work / "project"
        project = Project.open(project_dir)
        pipeline = project.create_pipeline("bench")
        project.save()
        ready = work / "port"
        gateway = start_gateway(project_dir, 0, ready)
        port = _wait_port(ready, gateway)
        token = httpx.post(f"http://127.0.0.1:{port}/auth/token", data={
            "grant_type": "client_credentials", "client_id": pipeline.client_id,
            "client_secret": pipeline.client_secret}).json()["access_token"]
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {1})
        load = FaultLoad("127.0.0.1", port, token, args.connections, args.give_up)
        fault: dict = {}

        async def kill_and_restart():
            await asyncio.sleep(args.kill_at)
            nonlocal gateway
            fault["killed_at"] = time.perf_counter()
            gateway.send_signal(signal.SIGKILL)
            gateway.wait()
            gateway = start_gateway(project_dir, port, ready)
            await asyncio.get_running_loop().run_in_executor(None, _wait_port, ready, gateway)
            fault["listening_at"] = time.perf_counter()

        async def main():
            killer = asyncio.get_running_loop().create_task(kill_and_restart())
            started = time.perf_counter()
            total = await load.run(args.rate, args.seconds)
            await killer
            return total, started

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            total, started = runner.run(main())
        gateway.send_signal(signal.SIGTERM)
        gateway.wait(30)
        gateway_log = gateway.stderr.read().decode(errors="replace")
        markers = spooled_markers(project_dir)
    finally:
        if "gateway" in locals() and gateway.poll() is None:
            gateway.kill()
        shutil.rmtree(work, ignore_errors=True)
    spooled_ok = {int(m[3:]) for m in markers if m and m.startswith("ok-")}
    down_from, down_to = fault["killed_at"], fault["listening_at"]
    all_204 = sorted(seconds for _, seconds in load.latencies)
    outside = sorted(seconds for scheduled, seconds in load.latencies
                     if not down_from - 1 <= scheduled <= down_to + 2)
    return {
        "rate": args.rate, "seconds": args.seconds, "requests": total, "kill_at": args.kill_at,
        "answers": {kind: {str(k): v for k, v in counts.items()} for kind, counts in load.answers.items()},
        "p50_ms": percentile(all_204, 0.50) * 1000, "p99_ms": percentile(all_204, 0.99) * 1000,
        "max_ms": all_204[-1] * 1000 if all_204 else float("nan"),
        "p50_outside_restart_ms": percentile(outside, 0.50) * 1000,
        "p99_outside_restart_ms": percentile(outside, 0.99) * 1000,
        "down_seconds": down_to - down_from,
        "accepted": len(load.accepted),
        "in_spool": sum(markers.values()),
        "lost": len(load.accepted - spooled_ok),
        "duplicated": sum(count - 1 for count in markers.values() if count > 1),
        "in_doubt": len(load.in_doubt), "in_doubt_in_spool": len(load.in_doubt & spooled_ok),
        "bad_in_spool": sum(count for marker, count in markers.items() if not (marker or "").startswith("ok-")),
        "gateway_log_lines": len(gateway_log.splitlines()),
        "tracebacks_in_log": gateway_log.count("Traceback"),
        "loadavg_1min_at_end": os.getloadavg()[0],
    }


def print_summary(summary: dict) -> None:
    print(f"\nload and fault: {summary['seconds']:g} s at {summary['rate']:,.0f} requests/s "
          f"({summary['requests']:,} requests: 70% valid, 15% invalid, 15% unauthenticated), "
          f"SIGKILL and restart at {summary['kill_at']:g} s")
    statuses = sorted({status for counts in summary["answers"].values() for status in counts},
                      key=lambda s: (not s.isdigit(), s))
    print(f"  {'answers':16s}" + "".join(f"{status:>11s}" for status in statuses))
    for kind, counts in summary["answers"].items():
        print(f"  {kind:16s}" + "".join(f"{counts.get(status, 0):>11,}" for status in statuses))
    print(f"latency of 204s: p50 {summary['p50_ms']:.2f} ms, p99 {summary['p99_ms']:.2f} ms, max {summary['max_ms']:,.0f} ms;"
          f" outside the restart (1 s before the kill to 2 s after): p50 {summary['p50_outside_restart_ms']:.2f} ms, "
          f"p99 {summary['p99_outside_restart_ms']:.2f} ms")
    print(f"gateway down {summary['down_seconds']:.2f} s (SIGKILL to listening again)")
    print(f"events: {summary['accepted']:,} answered 204, {summary['in_spool']:,} in the spool; "
          f"lost {summary['lost']}, duplicated {summary['duplicated']}, bad events in the spool "
          f"{summary['bad_in_spool']}; {summary['in_doubt']} sent without an answer at the kill, "
          f"{summary['in_doubt_in_spool']} of them in the spool")
    print(f"gateway log: {summary['gateway_log_lines']} lines, {summary['tracebacks_in_log']} tracebacks; "
          f"1-minute load average at the end {summary['loadavg_1min_at_end']:.2f} on {os.cpu_count()} CPUs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000, help="requests per second (default %(default)s)")
    parser.add_argument("--seconds", type=float, default=60, help="length of the run (default %(default)s)")
    parser.add_argument("--kill-at", type=float, default=None, help="seconds into the run (default: the middle)")
    parser.add_argument("--connections", type=int, default=50, help="keep-alive connections (default %(default)s)")
    parser.add_argument("--give-up", type=float, default=5.0,
                        help="a request without a connection for this long is not sent (default %(default)s)")
    parser.add_argument("--work-dir", default=None, help="where the project and spool live (default: temp dir)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    if args.kill_at is None:
        args.kill_at = args.seconds / 2
    if not 0 < args.kill_at < args.seconds:
        parser.error("--kill-at must be inside the run")
    summary = run(args)
    print_summary(summary)
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    ok = summary["lost"] == 0 and summary["duplicated"] == 0 and summary["bad_in_spool"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
