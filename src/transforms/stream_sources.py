"""Streaming sources: Pub/Sub (Dataflow) and Kafka (Flink) messages -> events with event time.

    from transforms.stream_sources import ParseMessages, ReadKafkaEvents, ReadPubSubEvents
    read = p | ReadPubSubEvents({contract.ref: contract}, subscription="projects/demo-project/subscriptions/events")
    read = p | ReadKafkaEvents({contract.ref: contract}, "broker:9092", ["events"], payload_format="avro")
    read[ReadPubSubEvents.EVENTS]        # (position, event) pairs, timestamped with strmMeta.timestamp
    read[ReadPubSubEvents.DEAD_LETTER]   # messages that are not events: reason and position only

A message holds one event as the gateway accepted it, ``strmMeta`` included: JSON
(``application/json``) or Avro binary (``application/x-avro-binary``: the contract's record
schema from ``contracts.avro``, without a container header). A message attribute or Kafka header
``Strm-Serialization-Type`` chooses the format per message, else ``payload_format`` does; an
Avro message's contract is the ``Strm-Schema-Ref`` attribute or header, else the pipeline's only
contract. ``strmMeta.timestamp`` (epoch ms, set by the gateway on acceptance) becomes the
element's event time; a message without it is a dead letter.

Positions name the message, never its content: ``pubsub:<message id>``,
``kafka:<topic>/<partition>@<offset>``. Dead letters never echo a message's text or attributes:
an unknown ``Strm-Schema-Ref`` appears in ``describe_ref``'s bounded form; a failure no check
foresaw is caught per message (its exception's class, never its text).

Watermarks: Pub/Sub's follows publish time, or the ``timestamp_attribute`` when given (e.g. an
attribute holding strmMeta.timestamp); Kafka's follows the records' create time
(``create_time_policy``), which the gateway's producer sets on acceptance. Both stay within
moments of strmMeta.timestamp, well inside the export writer's allowed lateness.

``ReadFromKafka`` is a cross-language (Java) transform: it expands through an expansion service
(``expansion_service`` address, or Beam's default, which starts a Java jar), so it needs Java
where the pipeline is built, e.g. the Flink job's launcher.
"""
from __future__ import annotations

import io

import apache_beam as beam
import fastavro
import orjson
from apache_beam.metrics import Metrics

from contracts.avro import avro_schema
from contracts.model import Contract
from contracts.strm_meta import TIMESTAMP_MS, describe_ref
from transforms.dead_letters import DEAD_LETTER, FailureLog, contract_label, dead_letter

JSON, AVRO = "json", "avro"
FORMATS = (JSON, AVRO)
SERIALIZATION_ATTRIBUTE = "Strm-Serialization-Type"
SCHEMA_ATTRIBUTE = "Strm-Schema-Ref"
MEDIA_TYPES = {"application/json": JSON, "application/x-avro-binary": AVRO}


class _ParseMessageFn(beam.DoFn):
    """(position, payload bytes, attributes) -> timestamped (position, event), or a dead letter."""

    def __init__(self, contracts: dict[str, Contract], payload_format: str):
        self.contracts = contracts
        self.payload_format = payload_format
        self.read = Metrics.counter("pipeline", "rows_read")
        self.rejected = Metrics.counter("pipeline", "dead_letter_read")

    def setup(self):
        self.schemas = {ref: fastavro.parse_schema(avro_schema(c)) for ref, c in self.contracts.items()}
        self.only_ref = next(iter(self.contracts)) if len(self.contracts) == 1 else None
        self.failures = FailureLog("read")

    def _reject(self, position: str, reason: str, ref=None):
        self.rejected.inc()
        label = contract_label(ref, self.contracts) if ref is not None else self.only_ref
        return beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(position, "read", reason, label))

    def _decode(self, payload: bytes, attributes: dict):
        media_type = attributes.get(SERIALIZATION_ATTRIBUTE)
        form = MEDIA_TYPES.get(media_type, self.payload_format) if media_type else self.payload_format
        if media_type and media_type not in MEDIA_TYPES:
            raise ValueError(f"{SERIALIZATION_ATTRIBUTE} is not one of {', '.join(MEDIA_TYPES)}")
        if form == JSON:
            try:
                return orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON (column {exc.colno})") from None
        ref = attributes.get(SCHEMA_ATTRIBUTE) or self.only_ref
        schema = self.schemas.get(ref) if ref.__class__ is str else None
        if schema is None:
            shown = f"'{describe_ref(ref)}'" if ref is not None else "nothing"
            raise ValueError(f"an Avro message needs a known contract in {SCHEMA_ATTRIBUTE}, got {shown}")
        try:
            return fastavro.schemaless_reader(io.BytesIO(payload), schema)
        except Exception as exc:  # fastavro raises EOFError, ValueError, UnicodeDecodeError, ...
            raise ValueError(f"not an Avro record of {ref} ({type(exc).__name__})") from None

    def process(self, message):
        position, payload, attributes = message
        self.read.inc()
        attributes = attributes or {}
        try:
            event = self._decode(payload, attributes)
            meta = event.get("strmMeta") if event.__class__ is dict else None
            millis = meta.get("timestamp") if meta.__class__ is dict else None
        except ValueError as exc:  # our own messages above: they name no value
            yield self._reject(position, str(exc), attributes.get(SCHEMA_ATTRIBUTE))
            return
        except Exception as exc:  # the catch-all: class and stage, never the text
            yield self._reject(position, self.failures.record(exc, position), attributes.get(SCHEMA_ATTRIBUTE))
            return
        if meta is None:
            yield self._reject(position, "an event must be a JSON object with strmMeta")
            return
        if millis.__class__ is not int or not 0 <= millis <= TIMESTAMP_MS[1]:
            yield self._reject(position, "strmMeta/timestamp is missing or not epoch milliseconds",
                               meta.get("eventContractRef"))
            return
        yield beam.window.TimestampedValue((position, event), millis / 1000)


class ParseMessages(beam.PTransform):
    """Parses (position, payload, attributes) triples; outputs EVENTS and DEAD_LETTER."""

    EVENTS = "events"
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, contracts: dict[str, Contract], payload_format: str = JSON):
        super().__init__()
        if payload_format not in FORMATS:
            raise ValueError(f"payload format '{payload_format}' is not one of {', '.join(FORMATS)}")
        self.contracts = contracts
        self.payload_format = payload_format

    def expand(self, messages):
        return messages | "ParseMessages" >> beam.ParDo(
            _ParseMessageFn(self.contracts, self.payload_format)).with_outputs(DEAD_LETTER, main=self.EVENTS)


def pubsub_message(message) -> tuple:
    """A ``PubsubMessage`` as (position, payload, attributes)."""
    return f"pubsub:{message.message_id}", message.data, dict(message.attributes or {})


class ReadPubSubEvents(beam.PTransform):
    """Reads a Pub/Sub subscription (or a topic, through a new subscription) of gateway events."""

    EVENTS = ParseMessages.EVENTS
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, contracts: dict[str, Contract], subscription: str | None = None, topic: str | None = None,
                 payload_format: str = JSON, timestamp_attribute: str | None = None):
        super().__init__()
        if bool(subscription) == bool(topic):
            raise ValueError("give exactly one of a Pub/Sub subscription or topic")
        self.contracts = contracts
        self.subscription, self.topic = subscription, topic
        self.payload_format = payload_format
        self.timestamp_attribute = timestamp_attribute

    def expand(self, pbegin):
        from apache_beam.io.gcp.pubsub import ReadFromPubSub
        return (
            pbegin
            | "ReadFromPubSub" >> ReadFromPubSub(subscription=self.subscription, topic=self.topic,
                                                 with_attributes=True, timestamp_attribute=self.timestamp_attribute)
            | "AsMessages" >> beam.Map(pubsub_message)
            | "Parse" >> ParseMessages(self.contracts, self.payload_format)
        )


def kafka_message(record) -> tuple:
    """A ``ReadFromKafka(with_metadata=True)`` row as (position, payload, headers)."""
    headers = {}
    for header in getattr(record, "headers", None) or ():
        key, value = (header.key, header.value) if hasattr(header, "key") else header
        headers[key] = value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else value
    return f"kafka:{record.topic}/{record.partition}@{record.offset}", record.value, headers


class ReadKafkaEvents(beam.PTransform):
    """Reads Kafka topics of gateway events through Beam's cross-language ReadFromKafka."""

    EVENTS = ParseMessages.EVENTS
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, contracts: dict[str, Contract], bootstrap_servers: str, topics: list[str],
                 payload_format: str = JSON, consumer_config: dict | None = None,
                 expansion_service: str | None = None, from_earliest: bool = False):
        super().__init__()
        if not bootstrap_servers or not topics:
            raise ValueError("Kafka needs bootstrap servers and at least one topic")
        self.contracts = contracts
        self.payload_format = payload_format
        self.topics = list(topics)
        self.expansion_service = expansion_service
        # A consumer group without committed offsets starts at the end of the topic, unless the
        # exporters asked for the events the topic already holds (include_existing_events).
        self.consumer_config = {"bootstrap.servers": bootstrap_servers,
                                "auto.offset.reset": "earliest" if from_earliest else "latest",
                                **(consumer_config or {})}

    def kafka_read(self):
        """The cross-language read itself (constructing it needs no Java; applying it does)."""
        from apache_beam.io.kafka import ReadFromKafka
        return ReadFromKafka(consumer_config=self.consumer_config, topics=self.topics, with_metadata=True,
                             timestamp_policy=ReadFromKafka.create_time_policy,
                             expansion_service=self.expansion_service)

    def expand(self, pbegin):
        return (
            pbegin
            | "ReadFromKafka" >> self.kafka_read()
            | "AsMessages" >> beam.Map(kafka_message)
            | "Parse" >> ParseMessages(self.contracts, self.payload_format)
        )
