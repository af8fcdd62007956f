"""The gateway over a real socket: 204, every 4xx, JSON and Avro bodies, token expiry, durability."""
from __future__ import annotations

import asyncio
import io
import signal
import time

import fastavro
import httpx
import orjson
import pytest
import yaml

from contracts import load_contract
from contracts.avro import avro_schema
from controlplane.project import Project
from gateway_helpers import SIMULATOR, WEBSHOP, GatewayProcess, make_project, read_spool, simulator_event


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    project_dir = tmp_path_factory.mktemp("gateway")
    make_project(project_dir, "demo", "other", "disabled")
    project = Project.open(project_dir)
    project.pipelines["disabled"].enabled = False
    project.save()
    draft = project_dir / "contracts" / "acme" / "Draft" / "1.0.0.yaml"
    draft.parent.mkdir(parents=True)
    draft.write_text(yaml.safe_dump({
        "ref": "acme/Draft/1.0.0", "state": "DRAFT", "schema": {"name": "Draft", "nodes": [{"name": "id", "type": "STRING", "required": True}]},
        "keyField": "id"}))
    with GatewayProcess(project_dir, max_event_bytes=4096) as gw:
        yield gw


def webshop_event(**changes) -> dict:
    event = {
        "strmMeta": {"eventContractRef": WEBSHOP, "consentLevels": [2]},
        "transactionId": "849938247", "userId": "477049", "email": "mistykirby@hotmail.com", "age": 31,
        "tshirtSize": "M", "fullName": "William Robles", "phoneNumber": "001-652-752-8469x68291",
        "address": "076 Mandy Corners Suite 751", "transactionAmount": 12, "items": [11217, 18090],
        "totalItems": 2, "date": "2022-09-16 16:02:32", "purposeConsent": 2,
    }
    event.update(changes)
    return event


def avro_bytes(ref: str, event: dict) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, fastavro.parse_schema(avro_schema(load_contract(ref))), event)
    return buffer.getvalue()


def spool_events(gw, pipeline="demo") -> list[dict]:
    return [orjson.loads(line) for line in read_spool(gw.project_dir, pipeline)]


def test_json_event_is_accepted_spooled_and_stamped(gateway):
    token = gateway.token("demo")
    before = len(spool_events(gateway))
    response = gateway.post_event(token, simulator_event(7))
    assert response.status_code == 204 and response.content == b""
    events = spool_events(gateway)
    assert len(events) == before + 1
    stored = events[-1]
    assert stored["consistentValue"] == "session-7"
    meta = stored["strmMeta"]
    assert meta["eventContractRef"] == SIMULATOR and meta["consentLevels"] == [0, 1]
    assert isinstance(meta["nonce"], int) and meta["nonce"] > 0
    assert abs(meta["timestamp"] - time.time() * 1000) < 60_000


def test_avro_binary_event_is_accepted(gateway):
    token = gateway.token("demo")
    event = webshop_event(userId="avro-user")
    event["strmMeta"] = {"eventContractRef": WEBSHOP, "nonce": None, "timestamp": None, "keyLink": None,
                         "billingId": None, "consentLevels": [1, 2]}
    response = gateway.post_event(token, avro_bytes(WEBSHOP, event), ref=WEBSHOP, kind="application/x-avro-binary")
    assert response.status_code == 204, response.text
    stored = [e for e in spool_events(gateway) if e.get("userId") == "avro-user"]
    assert len(stored) == 1 and stored[0]["items"] == [11217, 18090] and stored[0]["strmMeta"]["consentLevels"] == [1, 2]


def test_regex_violation_gets_the_reference_400_text(gateway):
    response = gateway.post_event(gateway.token("demo"), webshop_event(tshirtSize="XXL"), ref=WEBSHOP)
    assert response.status_code == 400
    assert response.text == (f"Field: 'tshirtSize' in event with schema: '{WEBSHOP}' with value: 'XXL' "
                             "doesn't match regex: '^(XS|S|M|L|XL)$'")


@pytest.mark.parametrize("body, ref, expected", [
    ({k: v for k, v in simulator_event().items() if k != "consistentValue"}, SIMULATOR, "consistentValue"),
    (b"{not json", SIMULATOR, "could not be deserialized"),
    (b"[1, 2]", SIMULATOR, "must be a JSON object"),
    (simulator_event(), "acme/Missing/1.0.0", "not found"),
    ({**simulator_event(), "extra": 1}, SIMULATOR, "1 field is not in the contract (the first is field 5"),
    (simulator_event(), "acme/Draft/1.0.0", "is not active"),
])
def test_bad_events_get_400(gateway, body, ref, expected):
    if isinstance(body, dict):
        body = {**body, "strmMeta": {**body["strmMeta"], "eventContractRef": ref}}
    response = gateway.post_event(gateway.token("demo"), body, ref=ref)
    assert response.status_code == 400
    assert expected in response.text


def test_avro_body_that_does_not_decode_gets_400(gateway):
    response = gateway.post_event(gateway.token("demo"), b"\xff\xff\xff", ref=WEBSHOP, kind="application/x-avro-binary")
    assert response.status_code == 400


def test_mismatching_contract_ref_gets_400(gateway):
    event = simulator_event()
    event["strmMeta"]["eventContractRef"] = WEBSHOP
    assert gateway.post_event(gateway.token("demo"), event, ref=SIMULATOR).status_code == 400


def test_missing_or_invalid_token_gets_401(gateway):
    assert gateway.post_event(None, simulator_event()).status_code == 401
    assert gateway.post_event("not-a-token", simulator_event()).status_code == 401
    forged = gateway.token("demo")[:-3] + "AAA"
    assert gateway.post_event(forged, simulator_event()).status_code == 401


def test_token_endpoint_refuses_wrong_secret(gateway):
    client_id, _ = gateway.credentials("demo")
    response = gateway.client.post("/auth/token", data={"grant_type": "client_credentials",
                                                        "client_id": client_id, "client_secret": "wrong"})
    assert response.status_code == 401
    assert gateway.client.post("/auth/token", data={"grant_type": "password"}).status_code == 400


def test_token_endpoint_accepts_basic_auth_and_json(gateway):
    client_id, secret = gateway.credentials("demo")
    basic = gateway.client.post("/auth/token", auth=(client_id, secret), data={"grant_type": "client_credentials"})
    assert basic.status_code == 200 and basic.json()["token_type"] == "Bearer"
    as_json = gateway.client.post("/auth/token", json={"client_id": client_id, "client_secret": secret})
    assert as_json.status_code == 200 and as_json.json()["expires_in"] > 0


def test_token_of_another_pipeline_gets_403(gateway):
    response = gateway.post_event(gateway.token("other"), simulator_event(), path="/pipelines/demo/event")
    assert response.status_code == 403
    assert gateway.post_event(gateway.token("demo"), simulator_event(), path="/pipelines/demo/event").status_code == 204


def test_disabled_pipeline_gets_403(gateway):
    assert gateway.post_event(gateway.token("disabled"), simulator_event()).status_code == 403


def test_oversized_event_gets_413(gateway):
    event = simulator_event()
    event["notSensitiveValue"] = "x" * 5000
    assert gateway.post_event(gateway.token("demo"), event).status_code == 413


def test_unknown_serialization_type_gets_415(gateway):
    response = gateway.post_event(gateway.token("demo"), simulator_event(), kind="application/xml")
    assert response.status_code == 415
    response = gateway.client.post("/event", content=b"{}", headers={
        "Authorization": f"Bearer {gateway.token('demo')}", "Strm-Schema-Ref": SIMULATOR})
    assert response.status_code == 415


def test_health_and_metrics(gateway):
    assert gateway.client.get("/health").json() == {"status": "ok"}
    gateway.post_event(gateway.token("demo"), simulator_event())
    metrics = gateway.client.get("/metrics").text
    assert 'gateway_requests_total{status="204"}' in metrics
    demo_id = Project.open(gateway.project_dir).pipelines["demo"].id   # spools are keyed by pipeline id
    assert f'gateway_spool_lines_total{{pipeline="{demo_id}"}}' in metrics
    assert gateway.client.get("/nope").status_code == 404
    assert gateway.client.get("/event").status_code == 405


def test_expired_token_gets_401(tmp_path):
    make_project(tmp_path, "demo")
    with GatewayProcess(tmp_path, token_ttl=1) as gw:
        token = gw.token("demo")
        assert gw.post_event(token, simulator_event()).status_code == 204
        time.sleep(2.2)  # a token lives ttl to ttl + 1 s (expiry rounded up to a whole second)
        response = gw.post_event(token, simulator_event())
        assert response.status_code == 401 and "expired" in response.text
        assert gw.post_event(gw.token("demo"), simulator_event()).status_code == 204


def test_tokens_survive_a_gateway_restart(tmp_path):
    make_project(tmp_path, "demo")
    with GatewayProcess(tmp_path) as gw:
        token = gw.token("demo")
    with GatewayProcess(tmp_path) as gw:
        assert gw.post_event(token, simulator_event()).status_code == 204


def test_pipeline_created_while_running_can_authenticate(tmp_path):
    make_project(tmp_path, "demo")
    with GatewayProcess(tmp_path) as gw:
        project = Project.open(tmp_path)
        project.create_pipeline("late")
        project.save()
        assert gw.post_event(gw.token("late"), simulator_event()).status_code == 204


def test_nothing_acknowledged_is_lost_when_the_gateway_is_killed(tmp_path):
    """Concurrent senders; SIGKILL right after the last 204; every acknowledged event is in the spool."""
    make_project(tmp_path, "demo")
    gw = GatewayProcess(tmp_path, segment_max_bytes=20_000).start()
    try:
        token = gw.token("demo")
        acknowledged: list[str] = []

        async def send_all():
            headers = {"Authorization": f"Bearer {token}", "Strm-Schema-Ref": SIMULATOR,
                       "Strm-Serialization-Type": "application/json"}
            async with httpx.AsyncClient(base_url=gw.url, limits=httpx.Limits(max_connections=32), timeout=60) as client:
                async def one(i):
                    event = simulator_event(i)
                    event["uniqueIdentifier"] = f"ack-{i}"
                    response = await client.post("/event", content=orjson.dumps(event), headers=headers)
                    if response.status_code == 204:
                        acknowledged.append(f"ack-{i}")
                await asyncio.gather(*(one(i) for i in range(600)))

        asyncio.run(send_all())
        gw.process.send_signal(signal.SIGKILL)
        gw.process.wait(10)
    finally:
        gw.stop()
    assert len(acknowledged) == 600
    stored = [orjson.loads(line)["uniqueIdentifier"] for line in read_spool(tmp_path, "demo")]
    assert sorted(stored) == sorted(acknowledged)
    spool = Project.open(tmp_path).spool_dir("demo")
    segments = list(spool.iterdir())
    assert len(segments) > 1  # rolled by size along the way
    # a restart closes the segment the kill left open (if the last write did not fill it), keeping every line
    with GatewayProcess(tmp_path) as gw2:
        assert gw2.client.get("/health").status_code == 200
    from gateway.spool import closed_segments
    closed = [line for s in closed_segments(spool) for line in s.read_bytes().splitlines()]
    assert len(closed) == 600
    assert not any(s.name.endswith(".open") for s in spool.iterdir())
