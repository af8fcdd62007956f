"""Contracts by reference only (issue 11 point 2): paths, alias bombs, huge files, caches, over real sockets."""
from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from controlplane.contracts import ContractRegistry, contract_file
from gateway.registry import BAD_REF_MESSAGE, MAX_REF_CHARS, ContractCache, Refused, parse_ref
from gateway_helpers import SIMULATOR, GatewayProcess, make_project, read_spool, simulator_event

SHIPPED = Path(__file__).resolve().parent.parent / "src" / "contracts"


def contract_text(ref: str, state: str = "ACTIVE", extra_field: str | None = None) -> str:
    """The simulator's contract filed under another reference (optionally with one more field)."""
    data = yaml.safe_load((SHIPPED / f"{SIMULATOR}.yaml").read_text())
    data["ref"], data["state"] = ref, state
    if extra_field:
        data["schema"]["nodes"].append({"name": extra_field, "type": "STRING"})
    return yaml.safe_dump(data, sort_keys=False)


def put_contract(project_dir: Path, ref: str, text: str | bytes) -> Path:
    path = project_dir / "contracts" / f"{ref}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def alias_bomb() -> str:
    """A "billion laughs" contract: 2.7 KB of YAML whose aliases expand to 9**9 strings."""
    lines = ["ref: acme/Bomb/1.0.0", "state: ACTIVE", 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 10):
        lines.append(f"l{level}: &l{level} [" + ",".join([f"*l{level - 1}"] * 9) + "]")
    lines += ["schema:", "  name: Bomb", "  nodes:", "    - {name: id, type: STRING, required: true, doc: *l9}",
              "keyField: id", "# " + "padding to the size seen in the issue " * 55]
    return "\n".join(lines) + "\n"


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


# ------------------------------------------------------------------------ the reference itself
@pytest.mark.parametrize("ref", [
    "/some/dir/evil.yaml", "../../..", "../../../etc/passwd", "../x/1.0.0", "acme/../1.0.0", "acme/Shop/../../1.0.0",
    "./acme/Shop/1.0.0", "acme/Shop/1.0.0/", "acme/Shop/1.0", "acme/Shop/1.0.0.yaml", "acme\\Shop\\1.0.0",
    "acme/Shop/1.0.0\x00", ".hidden/Shop/1.0.0", "acme/.Shop/1.0.0", "acme/Shop/v1.0.0", "acme//Shop/1.0.0",
    "a" * 1000, "acme/Sh\u00f6p/1.0.0", "",
])
def test_anything_but_handle_name_version_is_refused_before_the_file_system(ref, monkeypatch):
    def no_file_system(*args, **kwargs):
        raise AssertionError(f"the file system was touched for {ref!r}")

    registry = ContractCache(ContractRegistry("/nonexistent", contracts_path=False), build=lambda contract: contract)
    monkeypatch.setattr(os, "stat", no_file_system)
    monkeypatch.setattr(os, "open", no_file_system)
    with pytest.raises(Refused) as info:
        asyncio.run(registry.resolve(ref.encode("utf-8")))
    assert info.value.status == 400 and info.value.message == BAD_REF_MESSAGE
    assert registry.loads == 0 and not registry._refused   # not even remembered: nothing to look up
    registry.close()


@settings(max_examples=3000, deadline=None)
@given(st.text(alphabet="ab_-./\\0123456789\x00 ~\u00f6", max_size=40) | st.binary(max_size=40))
def test_every_accepted_reference_names_a_file_inside_the_directory(text):
    directory = Path("/srv/registry")
    try:
        ref = parse_ref(text)
    except Refused:
        return
    path = contract_file(directory, ref)
    assert ".." not in path.parts and path.parts[:3] == directory.parts
    assert len(path.relative_to(directory).parts) == 3 and path.suffix == ".yaml"
    assert len(ref) <= MAX_REF_CHARS


def test_the_negative_cache_is_bounded_expires_and_holds_no_traceback(tmp_path):
    now = [0.0]
    registry = ContractCache(ContractRegistry(tmp_path, contracts_path=False), build=lambda contract: contract,
                             ttl_seconds=5, max_entries=100,
                                clock=lambda: now[0])

    async def ask(count: int):
        for index in range(count):
            with pytest.raises(Refused, match="not found"):
                await registry.resolve(f"acme/Nope{index}/1.0.0".encode())

    asyncio.run(ask(2000))
    assert len(registry._refused) == 100                     # least recently used out first
    assert all(isinstance(entry, tuple) and len(entry) == 3 and isinstance(entry[2], str)
               for entry in registry._refused.values())       # a status and a message: no exception, no frames
    put_contract(tmp_path, "acme/Nope1999/1.0.0", contract_text("acme/Nope1999/1.0.0"))
    with pytest.raises(Refused, match="not found"):            # remembered for ttl_seconds ...
        asyncio.run(registry.resolve(b"acme/Nope1999/1.0.0"))
    now[0] = 5.1                                              # ... then looked up again
    assert asyncio.run(registry.resolve(b"acme/Nope1999/1.0.0")).ref == "acme/Nope1999/1.0.0"
    registry.close()


# ------------------------------------------------------------------------------ over the socket
@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    project_dir = tmp_path_factory.mktemp("refs")
    make_project(project_dir, "demo")
    outside = project_dir.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "evil.yaml").write_text(contract_text("evil/Evil/1.0.0", extra_field="anything"))
    put_contract(project_dir, "acme/Bomb/1.0.0", alias_bomb())
    big = put_contract(project_dir, "acme/Big/1.0.0", b"")
    with open(big, "wb") as handle:   # 30 MB of YAML-looking text
        line = b"key: " + b"x" * 59 + b"\n"
        handle.write(line * (30 * (1 << 20) // len(line)))
    for index in range(2):   # 150 KB each: under --max-contract-bytes, slow to parse (about a second), not a contract
        put_contract(project_dir, f"acme/Slow{index}/1.0.0",
                     "".join(f"- {{name: field{i}, type: STRING, doc: 'xxxxxxxx'}}\n" for i in range(3000)))
    with GatewayProcess(project_dir, extra=("--contract-cache-seconds", "0.5")) as gw:
        gw.outside = outside
        yield gw


def test_a_path_as_ref_is_400_and_nothing_is_spooled(gateway):
    token = gateway.token("demo")
    event = simulator_event(1)
    event["anything"] = "a field only evil.yaml allows"
    evil = str(gateway.outside / "evil.yaml")
    for ref in (evil, evil[:-5], "../../..", "../../../outside/evil", "../outside/evil/1.0.0", "a" * 1000):
        event["strmMeta"]["eventContractRef"] = ref
        response = gateway.post_event(token, event, ref=ref)
        assert response.status_code == 400, (ref, response.text)
        assert response.text == BAD_REF_MESSAGE
    assert read_spool(gateway.project_dir, "demo") == []


def test_the_alias_bomb_is_refused_and_memory_stays_bounded(gateway):
    token = gateway.token("demo")
    assert len(alias_bomb()) in range(2500, 2900)
    before = memory_kib(gateway.process.pid)
    for _ in range(20):   # the negative cache expires every 0.5 s: the file is refused over and over
        response = gateway.post_event(token, simulator_event(1), ref="acme/Bomb/1.0.0")
        assert response.status_code == 400 and response.text == "Schema 'acme/Bomb/1.0.0' could not be loaded"
        assert gateway.client.get("/health").status_code == 200
        time.sleep(0.05)
    after = memory_kib(gateway.process.pid)
    grown_mib = (after["VmHWM"] - before["VmHWM"]) / 1024
    print(f"alias bomb: peak RSS {before['VmHWM'] / 1024:.0f} -> {after['VmHWM'] / 1024:.0f} MiB")
    assert grown_mib < 32, f"peak RSS grew by {grown_mib:.0f} MiB"


def test_a_30_mb_contract_is_refused_unread_and_slow_loads_do_not_block_health(gateway):
    token = gateway.token("demo")
    answers: list[tuple[str, int, float]] = []

    def send(ref: str):
        with GatewayClient(gateway) as client:
            started = time.monotonic()
            status = client.post_event(token, simulator_event(1), ref=ref).status_code
            answers.append((ref, status, time.monotonic() - started))

    refs = ["acme/Big/1.0.0"] * 5 + [f"acme/Slow{index}/1.0.0" for index in range(2)]
    senders = [threading.Thread(target=send, args=(ref,)) for ref in refs]
    for sender in senders:
        sender.start()
    health: list[float] = []
    while any(sender.is_alive() for sender in senders):
        started = time.monotonic()
        assert gateway.client.get("/health").status_code == 200
        health.append(time.monotonic() - started)
        time.sleep(0.02)
    for sender in senders:
        sender.join()
    assert sorted(status for _, status, _ in answers) == [400] * 7
    slowest_load = max(seconds for ref, _, seconds in answers if "Slow" in ref)
    print(f"slowest contract load {slowest_load:.2f} s; {len(health)} /health answers meanwhile, "
          f"slowest {max(health) * 1000:.0f} ms")
    assert len(health) >= 5                # /health was answered all along ...
    assert max(health) < 2.0               # ... without waiting for the loads
    assert max(seconds for ref, _, seconds in answers if "Big" in ref) < 2.0   # refused by its size
    log = gateway.stop_and_log()
    assert "acme/Big/1.0.0" in log and "larger than 262,144 bytes" in log
    assert "Traceback" not in log
    gateway.start()


def test_a_contract_added_or_changed_is_seen_without_a_restart(gateway):
    token = gateway.token("demo")
    ref = "acme/Later/1.0.0"
    event = simulator_event(2)
    event["strmMeta"]["eventContractRef"] = ref
    assert gateway.post_event(token, event, ref=ref).text == f"Schema '{ref}' not found"
    path = put_contract(gateway.project_dir, ref, contract_text(ref))
    time.sleep(0.6)   # --contract-cache-seconds 0.5
    assert gateway.post_event(token, event, ref=ref).status_code == 204
    path.write_text(contract_text(ref, state="DRAFT"))
    time.sleep(0.6)
    assert gateway.post_event(token, event, ref=ref).text == f"Schema '{ref}' is not active (state DRAFT)"
    path.unlink()
    time.sleep(0.6)
    assert gateway.post_event(token, event, ref=ref).text == f"Schema '{ref}' not found"


def test_malformed_ref_bytes_are_400_without_a_traceback(gateway):
    token = gateway.token("demo")
    for raw in (b"acme/Sh\xc3\xb6p/1.0.0", b"acme/Shop/1.0.0 \xff", b"x" * 1000, b"strmprivacy/example/1.5.0 trailing"):
        status, body = raw_post(gateway.port, [b"Authorization: Bearer " + token.encode(), b"Strm-Schema-Ref: " + raw,
                                               b"Strm-Serialization-Type: application/json"], b"{}")
        assert status == 400 and body == BAD_REF_MESSAGE.encode(), raw
    assert "Traceback" not in gateway.stop_and_log()
    gateway.start()


# ----------------------------------------------------------------------------------- helpers
class GatewayClient:
    """A client of its own (httpx clients are not shared between threads)."""

    def __init__(self, gateway):
        import httpx

        self.gateway, self.client = gateway, httpx.Client(base_url=gateway.url, timeout=30)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.client.close()

    def post_event(self, token, body, ref=SIMULATOR):
        import orjson

        return self.client.post("/event", content=orjson.dumps(body), headers={
            "Authorization": f"Bearer {token}", "Strm-Schema-Ref": ref, "Strm-Serialization-Type": "application/json"})


def raw_post(port: int, headers: list[bytes], body: bytes, path: bytes = b"/event") -> tuple[int, bytes]:
    """One HTTP/1.1 request with exactly these header bytes; (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = [b"POST " + path + b" HTTP/1.1", b"Host: gateway", b"Connection: close",
                b"Content-Length: " + str(len(body)).encode(), *headers]
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head[9:12]), rest
