"""The gateway's Pub/Sub and Kafka publishers (gateway/publish*.py).

Pub/Sub: a real gateway process publishes over real gRPC to tests/fake_pubsub.py (found through
PUBSUB_EMULATOR_HOST, as google-cloud-pubsub does). Kafka: no broker can be installed here, so
only what needs none is tested: URIs, producer settings, and bounded, named failures when the
broker is unreachable. Delivery to a real Kafka broker is NOT tested.
"""
from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time

import apache_beam as beam
import grpc
import pytest
from apache_beam.io.gcp.pubsub import PubsubMessage
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from google.pubsub_v1 import types

from contracts import load_contract
from fake_pubsub import FakePubSub
from gateway.publish import TIMESTAMP_ATTRIBUTE, PublishError, publisher_for
from gateway.publish_kafka import KafkaPublisher, parse_kafka_uri
from gateway.publish_pubsub import parse_pubsub_uri
from gateway_helpers import SIMULATOR, GatewayProcess, make_project, read_spool, repo_env, simulator_event
from transforms.stream_sources import ParseMessages, pubsub_message

TOPIC = "projects/demo-project/topics/events"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pubsub():
    with FakePubSub(topics=[TOPIC, "projects/demo-project/topics/events-demo"]) as fake:
        yield fake


def gateway_start(tmp_path, publish: str, env: dict | None = None, command=("gateway",), timeout: float = 60):
    """``python -m gateway --publish ...`` expected to refuse to start: (exit code, stderr, seconds)."""
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", *command, "--project-dir", str(tmp_path), "--port", "0",
                           "--publish", publish], env=repo_env(**(env or {})), capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stderr, time.monotonic() - started


# ------------------------------------------------------------------------------- Pub/Sub
def test_accepted_events_are_published_to_pubsub_as_the_pipeline_reads_them(tmp_path, pubsub):
    make_project(tmp_path, "demo")
    sent = [simulator_event(session) for session in range(1, 6)]
    before = int(time.time() * 1000)
    with GatewayProcess(tmp_path, publish=f"pubsub://{TOPIC}",
                        env={"PUBSUB_EMULATOR_HOST": pubsub.host}) as gw:
        token = gw.token("demo")
        statuses = [gw.post_event(token, event).status_code for event in sent]
        published = pubsub.published(TOPIC)  # read right after the 204s: no waiting
    after = int(time.time() * 1000)
    assert statuses == [204] * 5
    assert ("GetTopic", TOPIC) in pubsub.calls  # checked before listening
    assert read_spool(tmp_path, "demo") == []  # published instead of spooled, not both
    assert len(published) == 5
    events = []
    for message, original in zip(sorted(published, key=lambda m: json.loads(m.data)["uniqueIdentifier"]), sent):
        assert not message.data.endswith(b"\n")
        event = json.loads(message.data)
        meta = event.pop("strmMeta")
        assert event == {k: v for k, v in original.items() if k != "strmMeta"}
        assert meta["eventContractRef"] == SIMULATOR and meta["consentLevels"] == [0, 1]
        assert isinstance(meta["nonce"], int) and meta["nonce"] > 0
        assert before <= meta["timestamp"] <= after
        assert dict(message.attributes) == {"Strm-Serialization-Type": "application/json",
                                            "Strm-Schema-Ref": SIMULATOR, "Strm-Pipeline": "demo",
                                            TIMESTAMP_ATTRIBUTE: str(meta["timestamp"])}
        events.append((f"pubsub:{message.message_id}", event["uniqueIdentifier"], meta["timestamp"]))

    # The pipeline's side: the message as Beam's ReadFromPubSub(with_attributes=True) hands it over,
    # through the streaming source's own parsing; event time is strmMeta.timestamp.
    beam_messages = [PubsubMessage._from_proto_str(types.PubsubMessage.serialize(m)) for m in published]
    with TestPipeline(runner="FnApiRunner") as p:
        parsed = (p | beam.Create(beam_messages) | beam.Map(pubsub_message)
                  | ParseMessages({SIMULATOR: load_contract(SIMULATOR)}))
        stamped = parsed[ParseMessages.EVENTS] | beam.Map(
            lambda pair, t=beam.DoFn.TimestampParam: (pair[0], pair[1]["uniqueIdentifier"], t.micros // 1000))
        assert_that(stamped, equal_to(events), label="events")
        assert_that(parsed[ParseMessages.DEAD_LETTER], equal_to([]), label="dead")


def test_pubsub_errors_answer_503_never_204_and_recover(tmp_path, pubsub):
    make_project(tmp_path, "demo")
    with GatewayProcess(tmp_path, publish=f"pubsub://{TOPIC}?timeout=1",
                        env={"PUBSUB_EMULATOR_HOST": pubsub.host}) as gw:
        token = gw.token("demo")
        pubsub.fail_with = grpc.StatusCode.UNAVAILABLE  # retried by the client until the timeout
        started = time.monotonic()
        unavailable = gw.post_event(token, simulator_event(1))
        waited = time.monotonic() - started
        pubsub.fail_with = grpc.StatusCode.PERMISSION_DENIED  # not retried
        denied = gw.post_event(token, simulator_event(2))
        failed_publishes = sum(1 for method, _ in pubsub.calls if method == "Publish")
        pubsub.fail_with = None
        recovered = gw.post_event(token, simulator_event(3))
        metrics = gw.client.get("/metrics").text
    assert (unavailable.status_code, denied.status_code, recovered.status_code) == (503, 503, 204)
    assert unavailable.text == "Event could not be published, try again"
    assert waited < 5
    assert failed_publishes >= 3  # UNAVAILABLE was retried before giving up
    assert [json.loads(m.data)["uniqueIdentifier"] for m in pubsub.published(TOPIC)] == ["unique-3"]
    assert 'gateway_requests_total{status="503"} 2' in metrics
    log = gw.process.stderr.read().decode()
    assert f"publishing to Pub/Sub topic {TOPIC} failed: ServiceUnavailable" in log
    assert "sensitive-1" not in log and "unique-1" not in log  # no event values in logs


def test_topic_per_pipeline_and_a_missing_one_is_503(tmp_path, pubsub):
    make_project(tmp_path, "demo", "other")
    with GatewayProcess(tmp_path, publish="pubsub://demo-project/events-{pipeline}",
                        env={"PUBSUB_EMULATOR_HOST": pubsub.host}) as gw:
        assert gw.post_event(gw.token("demo"), simulator_event(1)).status_code == 204
        assert gw.post_event(gw.token("other"), simulator_event(2)).status_code == 503
    assert len(pubsub.published("projects/demo-project/topics/events-demo")) == 1
    assert pubsub.published("projects/demo-project/topics/events-other") == []
    assert "Pub/Sub topic projects/demo-project/topics/events-other does not exist" in gw.process.stderr.read().decode()


def test_gateway_does_not_start_without_its_topic_or_its_pubsub(tmp_path, pubsub):
    code, err, _ = gateway_start(tmp_path, "pubsub://projects/demo-project/topics/missing",
                                 {"PUBSUB_EMULATOR_HOST": pubsub.host})
    assert code == 1 and "Pub/Sub topic projects/demo-project/topics/missing does not exist" in err
    port = closed_port()
    code, err, seconds = gateway_start(tmp_path, f"pubsub://{TOPIC}?timeout=1",
                                       {"PUBSUB_EMULATOR_HOST": f"127.0.0.1:{port}"})
    assert code == 1 and f"cannot reach Pub/Sub topic {TOPIC} at 127.0.0.1:{port} within 1 s" in err
    assert seconds < 20  # interpreter start + a bounded check


def test_pubsub_uris():
    long = parse_pubsub_uri("pubsub://projects/my-project/topics/events?timeout=2.5")
    short = parse_pubsub_uri("pubsub://my-project/events-{pipeline}?check=false")
    assert (long.topic_path("x"), long.timeout, long.check_at_start) == ("projects/my-project/topics/events", 2.5, True)
    assert (short.topic_path("demo"), short.timeout, short.check_at_start) == \
        ("projects/my-project/topics/events-demo", 10.0, False)
    for bad in ("pubsub://my-project", "pubsub://projects/p/topics/", "pubsub://p/t?x=1", "pubsub://p/events?timeout=0",
                "pubsub://p/goog-events", "pubsub://p/events?check=maybe", "pubsub://p/1events"):
        with pytest.raises(ValueError, match="publish target"):
            parse_pubsub_uri(bad)


# --------------------------------------------------------------------------------- Kafka
def test_kafka_uris_and_producer_settings(tmp_path):
    config = tmp_path / "client.properties"
    config.write_text("# TLS\nsecurity.protocol=SSL\nssl.ca.location = /etc/ca.pem\n")
    target = parse_kafka_uri(f"kafka://b1:9092,[::1]:9093/events-{{pipeline}}?timeout=3&linger.ms=5"
                             f"&config_file={config}")
    assert (target.bootstrap_servers, target.topic("demo"), target.per_pipeline) == ("b1:9092,[::1]:9093",
                                                                                     "events-demo", True)
    settings = target.producer_config()
    assert settings["acks"] == "all" and settings["enable.idempotence"] is True
    assert settings["message.timeout.ms"] == 3000 and settings["request.timeout.ms"] == 3000
    assert (settings["linger.ms"], settings["security.protocol"], settings["ssl.ca.location"]) == \
        ("5", "SSL", "/etc/ca.pem")
    assert parse_kafka_uri("kafka://b1:9092/events?acks=-1").producer_config()["acks"] == "all"
    for bad, why in [("kafka://b1/events", "HOST:PORT"), ("kafka://b1:9092/", "use kafka://"),
                     ("kafka://b1:9092/bad topic", "topic"), ("kafka://b1:9092/e?acks=1", "acks must be all"),
                     ("kafka://b1:9092/e?message.timeout.ms=5", "come"), ("kafka://b1:9092/e?retries=1", "unknown"),
                     (f"kafka://b1:9092/e?config_file={tmp_path}/none", "cannot read")]:
        with pytest.raises(ValueError, match=why):
            parse_kafka_uri(bad)


def test_gateway_does_not_start_when_the_kafka_broker_is_unreachable(tmp_path):
    port = closed_port()
    uri = f"kafka://127.0.0.1:{port}/events?timeout=1"
    code, err, seconds = gateway_start(tmp_path, uri, command=("cli", "gateway"))  # pstream gateway --publish
    assert code == 1
    assert f"cannot reach Kafka brokers 127.0.0.1:{port} within 1 s (publish target '{uri}')" in err
    assert seconds < 20


def test_kafka_delivery_to_an_unreachable_broker_fails_in_bounded_time(tmp_path):
    port = closed_port()
    publisher = KafkaPublisher(parse_kafka_uri(f"kafka://127.0.0.1:{port}/events-{{pipeline}}?timeout=1"))

    async def send():
        return await asyncio.gather(*(publisher.publish("demo", b'{"a": 1}', SIMULATOR, 1) for _ in range(3)),
                                    return_exceptions=True)

    started = time.monotonic()
    try:
        results = asyncio.run(send())
    finally:
        publisher.close()
    assert time.monotonic() - started < 5  # timeout + librdkafka's 1 s timeout scan
    assert all(isinstance(r, PublishError) for r in results), results
    assert f"Kafka topic events-demo at 127.0.0.1:{port} failed: _MSG_TIMED_OUT" in str(results[0])


def test_kafka_gateway_started_unchecked_answers_503(tmp_path):
    make_project(tmp_path, "demo")
    port = closed_port()
    with GatewayProcess(tmp_path, publish=f"kafka://127.0.0.1:{port}/events?timeout=1&check=false") as gw:
        response = gw.post_event(gw.token("demo"), simulator_event(1))
    assert response.status_code == 503
    log = gw.process.stderr.read().decode()
    assert f"publishing to Kafka topic events at 127.0.0.1:{port} failed" in log
    assert read_spool(tmp_path, "demo") == []  # never silently spooled


def test_kafka_without_its_client_library_says_which_extra_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)
    with pytest.raises(PublishError, match=r"beam-privacy-streams\[kafka\]"):
        publisher_for("kafka://127.0.0.1:9092/events")


# ---------------------------------------------------------------------------- spool default
def test_the_spool_stays_the_default_and_unknown_targets_are_refused():
    from gateway.server import main as serve_main

    assert publisher_for(None) is None and publisher_for("") is None
    with pytest.raises(ValueError, match="unknown publish target"):
        publisher_for("ftp://x")
    assert serve_main(["--port", "0", "--publish", "kafka://127.0.0.1:9092/bad topic"]) == 2
