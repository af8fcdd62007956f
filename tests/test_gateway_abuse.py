"""The gateway bounded under abuse (issue 11 point 3), over real sockets: timeouts, caps, floods, bad headers."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import orjson
import pytest

from gateway_helpers import SIMULATOR, GatewayProcess, make_project, read_spool, repo_env, simulator_event

FLOOD = Path(__file__).resolve().parent / "connection_flood.py"


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def read_all(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection; (data, seconds until closed)."""
    sock.settimeout(timeout)
    started, data = time.monotonic(), b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data, time.monotonic() - started


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and a Content-Length body) from a kept-alive connection."""
    sock.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(4096)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head).group(1))
    while len(body) < length:
        body += sock.recv(4096)
    return head + b"\r\n\r\n" + body


def event_request(token: str, body: bytes, ref: str = SIMULATOR, length: int | None = None) -> bytes:
    return (f"POST /event HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer {token}\r\n"
            f"Strm-Schema-Ref: {ref}\r\nStrm-Serialization-Type: application/json\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n").encode() + body


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    project_dir = tmp_path_factory.mktemp("abuse")
    make_project(project_dir, "demo")
    with GatewayProcess(project_dir, extra=("--header-timeout", "2", "--body-timeout", "2",
                                            "--keep-alive-requests", "3", "--max-header-bytes", "8192")) as gw:
        yield gw


# ------------------------------------------------------------------------------------- timeouts
def test_a_one_byte_a_second_body_gets_408_within_the_body_timeout(gateway):
    token = gateway.token("demo")
    event = simulator_event(session=408)
    body = orjson.dumps(event)
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(event_request(token, b"", length=len(body)))
        started, answer = time.monotonic(), b""
        sock.settimeout(0.05)
        for byte in body:   # one byte a second, as long as the server listens
            try:
                sock.sendall(bytes([byte]))
                answer += sock.recv(4096)
            except socket.timeout:
                pass
            except (BrokenPipeError, ConnectionResetError):
                break
            if answer or time.monotonic() - started > 15:
                break
            time.sleep(1)
        more, _ = read_all(sock, 5)
        answer += more
    seconds = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert 1.5 < seconds < 6, seconds          # --body-timeout 2, not the 20 s of the whole body
    assert b"session-408" not in b"".join(read_spool(gateway.project_dir, "demo"))


def test_half_sent_headers_and_silent_connections_are_closed_within_the_header_timeout(gateway):
    half, silent = [], []
    for index in range(300):
        sock = socket.create_connection(("127.0.0.1", gateway.port))
        if index % 2:
            sock.sendall(b"POST /event HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer x")
            half.append(sock)
        else:
            silent.append(sock)
    started = time.monotonic()
    results = {}

    def wait(sock):
        results[sock] = read_all(sock, 15)

    threads = [threading.Thread(target=wait, args=(sock,)) for sock in half + silent]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    closed_after = time.monotonic() - started
    assert all(results[sock][0].startswith(b"HTTP/1.1 408 ") for sock in half)
    assert all(results[sock][0] == b"" for sock in silent)       # closed without an answer
    assert closed_after < 8, closed_after                         # --header-timeout 2 (+ a loaded machine)
    for sock in half + silent:
        sock.close()


def test_keep_alive_connections_serve_a_bounded_number_of_requests(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        answers = []
        for _ in range(3):
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\n\r\n")
            answers.append(read_response(sock))
        rest, _ = read_all(sock, 5)
    assert all(answer.startswith(b"HTTP/1.1 200 ") for answer in answers)
    assert b"connection: close" not in answers[0] and b"connection: close" in answers[2]
    assert rest == b""   # closed after the third (--keep-alive-requests 3)


# -------------------------------------------------------------------------- malformed requests
def test_oversized_headers_get_431_and_the_connection_is_closed(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: gateway\r\nX-Padding: " + b"x" * 20_000 + b"\r\n\r\n")
        answer, _ = read_all(sock, 5)
    assert answer.startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize("authorization, status", [
    ("Bearer t\u00f6ken\u2603".encode(), 401), (b"Bearer \xff\xfe garbage", 401), (b"Bearer " + b"A" * 5000, 401),
    (b"Bearer " + b"a" * 50 + b"." + b"b" * 43, 401), (b"Bearer", 401), (b"Basic \xc3\xa9t\xc3\xa9", 401),
    (b"Bearer \x00\x01", 400),   # control characters: not HTTP (the parser's 400)
])
def test_malformed_bearer_tokens_are_4xx_without_a_traceback(gateway, authorization, status):
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        body = orjson.dumps(simulator_event(1))
        sock.sendall(event_request("x", body).replace(b"Authorization: Bearer x", b"Authorization: " + authorization))
        answer, _ = read_all(sock, 5)
    assert answer.startswith(b"HTTP/1.1 %d " % status), answer[:200]


def test_malformed_token_requests_are_4xx(gateway):
    for headers, body in [
        ({"Authorization": b"Basic \xc3\xa9\xff"}, b""),
        ({"Content-Type": "application/json"}, b'{"client_id": ["x"], "client_secret": {"a": 1}}'),
        ({"Content-Type": "application/json"}, b"[1, 2]"),
        ({}, b"client_id=%ff%fe&client_secret=\xff"),
    ]:
        response = gateway.client.post("/auth/token", content=body, headers=headers)
        assert 400 <= response.status_code < 500, (headers, body, response.status_code)


WEBSOCKET_WITHOUT_TOKEN = (b"GET /ws/demo HTTP/1.1\r\nHost: gateway\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def test_websocket_with_a_non_ascii_token_is_refused(gateway):
    with socket.create_connection(("127.0.0.1", gateway.port)) as sock:
        sock.sendall(WEBSOCKET_WITHOUT_TOKEN.replace(b"/ws/demo", b"/ws/demo?token=%C3%B6%FF"))
        answer, _ = read_all(sock, 5)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]


def test_repeated_errors_are_logged_once_with_a_count_and_without_tracebacks(tmp_path):
    make_project(tmp_path, "demo")
    gw = GatewayProcess(tmp_path, extra=("--header-timeout", "1")).start()
    try:
        for _ in range(200):
            with socket.create_connection(("127.0.0.1", gw.port)) as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                read_all(sock, 5)
        token = gw.token("demo")
        for index in range(200):   # 4xx of the app are answers, not log lines
            assert gw.post_event(token, b"{", ref="x" * 1000).status_code == 400
            assert gw.post_event(f"t\u00f6ken{index}".encode().hex(), simulator_event(1)).status_code == 401
        for _ in range(50):          # refused web socket handshakes: answers, not log lines
            with socket.create_connection(("127.0.0.1", gw.port)) as sock:
                sock.sendall(WEBSOCKET_WITHOUT_TOKEN)
                assert read_all(sock, 5)[0].startswith(b"HTTP/1.1 401 ")
        sockets = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(50)]
        time.sleep(2.5)              # --header-timeout 1: all 50 closed
        for sock in sockets:
            sock.close()
    finally:
        log = gw.stop_and_log()
    lines = log.splitlines()
    assert "Traceback" not in log
    invalid = [line for line in lines if "invalid HTTP request" in line]
    assert len(invalid) == 2, invalid     # the first one as it happens, then the count of the others
    assert re.search(r"invalid HTTP request: 199 more times in the last \d+ s", invalid[1]), invalid
    timeouts = [line for line in lines if "header" in line and "timeout" in line]
    assert len(timeouts) == 2 and "49 more times" in timeouts[1], timeouts
    assert len(lines) < 10, lines


# ---------------------------------------------------------------------------------- connections
def test_at_the_connection_cap_a_busy_server_answers_503(tmp_path):
    make_project(tmp_path, "demo")
    with GatewayProcess(tmp_path, extra=("--max-connections", "2", "--body-timeout", "30")) as gw:
        token = gw.token("demo")
        busy = []
        for _ in range(2):   # two requests waiting for their bodies: busy, not idle
            sock = socket.create_connection(("127.0.0.1", gw.port))
            sock.sendall(event_request(token, b"{", length=100))
            busy.append(sock)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", gw.port)) as third:
            answer, _ = read_all(third, 5)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        for sock in busy:
            sock.close()
        time.sleep(0.3)
        assert httpx.get(f"{gw.url}/health").status_code == 200   # room again


def test_thousands_of_idle_and_half_open_connections_do_not_starve_authenticated_clients(tmp_path):
    """3,000 idle or half-sent connections, re-opened as soon as the server closes them, against a
    cap of 1,000 and a header timeout longer than the test: token and event requests are answered."""
    make_project(tmp_path, "demo")
    connections, cap = 3000, 1000
    with GatewayProcess(tmp_path, extra=("--max-connections", str(cap), "--header-timeout", "60")) as gw:
        client_id, secret = gw.credentials("demo")
        flood = subprocess.Popen([sys.executable, str(FLOOD), "--port", str(gw.port), "--connections",
                                  str(connections), "--reconnect-after", "1"],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=repo_env())
        try:
            status = {}
            deadline = time.monotonic() + 60
            while status.get("opened", 0) < connections:   # the whole flood is in (and being re-opened)
                assert time.monotonic() < deadline, status
                status = json.loads(flood.stdout.readline())
            server_fds = [open_fds(gw.process.pid)]
            latencies, answers = [], []
            for index in range(20):
                started = time.monotonic()
                with httpx.Client(base_url=gw.url, timeout=10) as client:   # a new connection each time
                    token = client.post("/auth/token", data={"grant_type": "client_credentials",
                                                              "client_id": client_id, "client_secret": secret})
                    answers.append(token.status_code)
                with httpx.Client(base_url=gw.url, timeout=10) as client:
                    event = client.post("/event", content=orjson.dumps(simulator_event(index)), headers={
                        "Authorization": f"Bearer {token.json()['access_token']}", "Strm-Schema-Ref": SIMULATOR,
                        "Strm-Serialization-Type": "application/json"})
                    answers.append(event.status_code)
                latencies.append(time.monotonic() - started)
                server_fds.append(open_fds(gw.process.pid))
            flood.stdin.close()
            final = {}
            for line in flood.stdout:
                final = json.loads(line)
        finally:
            if flood.poll() is None:
                flood.terminate()
            flood.wait(10)
    print(f"flood: {final['opened']} connections opened ({connections} at a time), {final['closed_by_server']} "
          f"closed by the gateway; gateway fds {min(server_fds)}-{max(server_fds)} (cap {cap}); "
          f"token + event in {min(latencies) * 1000:.0f}-{max(latencies) * 1000:.0f} ms")
    assert answers == [200, 204] * 20
    assert max(server_fds) <= cap + 64       # the cap holds (plus the listening socket, spool, pipes)
    assert final["opened"] > connections     # the gateway made room by closing flood connections
    assert max(latencies) < 10
    assert len(read_spool(tmp_path, "demo")) == 20


def test_problem_log_logs_a_kind_once_per_window_then_its_count():
    import logging

    from gateway.problems import ProblemLog

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("test.problems")
    logger.addHandler(Keep())
    logger.propagate = False
    now = [0.0]
    problems = ProblemLog(logger, window_seconds=60, clock=lambda: now[0])
    for _ in range(1000):
        problems.report("bad request", "bad requests answered 400")
    problems.report("timeout", "a timeout")
    assert records == ["bad requests answered 400", "a timeout"]
    now[0] = 30
    problems.flush()                       # the window has not ended: nothing yet
    assert len(records) == 2
    now[0] = 61
    problems.report("bad request", "bad requests answered 400")   # a new window: the count, then the message
    assert records[2:] == ["bad request: 999 more times in the last 60 s", "bad requests answered 400"]
    problems.flush(force=True)             # at shutdown: only kinds with a count to tell
    assert len(records) == 4 and problems.total == {"bad request": 1001, "timeout": 1}
