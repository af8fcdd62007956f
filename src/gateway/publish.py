"""Where accepted events go: the local spool (the default), Google Cloud Pub/Sub, or Apache Kafka.

    from gateway.publish import publisher_for
    publisher_for(None)                                    # None: the spool
    publisher = publisher_for("pubsub://projects/my-project/topics/events")   # or pubsub://my-project/events
    publisher = publisher_for("kafka://broker-1:9092,broker-2:9092/events-{pipeline}?timeout=10")
    await publisher.publish("demo", b'{"strmMeta": {...}, ...}', "handle/name/1.0.0", 1710028630000)
    publisher.close()

``publisher_for`` opens the client and checks the target before the gateway listens (Pub/Sub:
the topic exists; Kafka: a broker answers, and names the topic), so a wrong target stops the
start with a ``PublishError`` naming it, instead of failing every request later; URI parameter
``check=false`` skips that (the broker may come up later; until then requests get 503).

``publish`` returns only once the broker acknowledged the message (Pub/Sub: the publish future
resolved; Kafka: delivered with ``acks=all``), and the gateway answers 204 only after that; any
failure within the target's ``timeout`` (seconds, a URI parameter, default 10) raises
``PublishError`` and the gateway answers 503, which the driver retries.

A message is one accepted event, exactly what the spool would hold on one line (``strmMeta``
with ``nonce`` and ``timestamp`` included, no newline), as JSON, with the attributes (Kafka:
headers) ``Strm-Serialization-Type: application/json``, ``Strm-Schema-Ref`` and
``Strm-Pipeline``; Pub/Sub messages also carry ``Strm-Event-Timestamp`` (strmMeta.timestamp, epoch
ms: run the pipeline with ``--pubsub_timestamp_attribute=Strm-Event-Timestamp`` so that its
watermark follows event time) and Kafka records have strmMeta.timestamp as their create time.
This is what ``transforms.stream_sources`` reads.

A topic may contain ``{pipeline}``, replaced by the pipeline's name (one topic per pipeline, as
one streaming job reads one pipeline's events); without it every pipeline publishes to the one
topic. Publisher modules: ``gateway.publish_pubsub`` and ``gateway.publish_kafka``.
"""
from __future__ import annotations

from typing import Protocol
from urllib.parse import parse_qsl

JSON_MEDIA_TYPE = "application/json"
SERIALIZATION_ATTRIBUTE = "Strm-Serialization-Type"
SCHEMA_ATTRIBUTE = "Strm-Schema-Ref"
PIPELINE_ATTRIBUTE = "Strm-Pipeline"
TIMESTAMP_ATTRIBUTE = "Strm-Event-Timestamp"
PIPELINE_PLACEHOLDER = "{pipeline}"
DEFAULT_TIMEOUT_SECONDS = 10.0
BROKER_SCHEMES = {"pubsub": "Google Cloud Pub/Sub", "kafka": "Apache Kafka"}


class PublishError(Exception):
    """The broker did not take a message (or cannot be reached); the text names the target, never the event."""


class EventPublisher(Protocol):
    target: str  # the URI, for messages

    async def publish(self, pipeline: str, data: bytes, schema_ref: str, timestamp_ms: int) -> None: ...

    def close(self) -> None: ...


def message_attributes(pipeline: str, schema_ref: str) -> dict[str, str]:
    """The attributes (Kafka: headers) of every published event."""
    return {SERIALIZATION_ATTRIBUTE: JSON_MEDIA_TYPE, SCHEMA_ATTRIBUTE: schema_ref, PIPELINE_ATTRIBUTE: pipeline}


def split_query(uri: str) -> tuple[str, dict[str, str]]:
    """'scheme://rest?a=1&b=2' -> ('scheme://rest', {'a': '1', 'b': '2'})."""
    base, _, query = uri.partition("?")
    return base, dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))


def timeout_from(params: dict[str, str], uri: str) -> float:
    raw = params.pop("timeout", None)
    if raw is None:
        return DEFAULT_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value <= 600:
        raise ValueError(f"publish target '{uri}': timeout must be seconds in (0, 600], got '{raw}'")
    return value


def check_from(params: dict[str, str], uri: str) -> bool:
    """The ``check`` parameter: false starts the gateway without reaching the broker first."""
    raw = params.pop("check", "true").lower()
    if raw not in ("true", "false"):
        raise ValueError(f"publish target '{uri}': check must be true or false, got '{raw}'")
    return raw == "true"


def publisher_for(uri: str | None) -> EventPublisher | None:
    """None for the spool; an opened, checked publisher for pubsub:// and kafka:// URIs.

    ValueError for a malformed or unknown URI, PublishError when the target cannot be used.
    """
    if not uri:
        return None
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if scheme == "pubsub":
        from gateway.publish_pubsub import PubSubPublisher, parse_pubsub_uri

        publisher = PubSubPublisher(parse_pubsub_uri(uri))
    elif scheme == "kafka":
        from gateway.publish_kafka import KafkaPublisher, parse_kafka_uri

        publisher = KafkaPublisher(parse_kafka_uri(uri))
    else:
        raise ValueError(f"unknown publish target '{uri}': use pubsub://projects/PROJECT/topics/TOPIC "
                         "or kafka://HOST:PORT/TOPIC")
    if not publisher.target.check_at_start:
        return publisher
    try:
        publisher.check()
    except BaseException:
        publisher.close()
        raise
    return publisher
